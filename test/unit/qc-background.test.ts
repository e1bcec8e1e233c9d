import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blockMedianField, estimateBackground, medianInPlace, residual } from '../../services/stages/qc/background.js';
import { dilate, labelComponents } from '../../services/stages/qc/binary-mask.js';
import { checkPlanet } from '../../services/stages/qc/qc-check.js';
import { DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';
import type { ValueGrid } from '../../services/stages/qc/value-grid.js';
import { mulberry32 } from '../../services/models/demo-models.js';

/** A grid of `w` x `h` cells whose red, green and blue come from `colour(x, y)`. */
function grid(w: number, h: number, colour: (x: number, y: number) => readonly [number, number, number]): ValueGrid {
  const r = new Float32Array(w * h);
  const g = new Float32Array(w * h);
  const b = new Float32Array(w * h);
  const v = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const c = colour(x, y);
      const i = y * w + x;
      [r[i], g[i], b[i]] = c;
      v[i] = Math.max(...c);
    }
  }
  return { w, h, cell: 1, r, g, b, v };
}

const inDisc = (x: number, y: number, cx: number, cy: number, radius: number): boolean => (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= radius * radius;

describe('medianInPlace', () => {
  test('returns the upper median of random arrays, as sorting does', () => {
    const rng = mulberry32(5);
    for (const n of [1, 2, 3, 10, 64, 255]) {
      const a = Float32Array.from({ length: n }, () => Math.floor(rng() * 20));
      const sorted = Float32Array.from(a).sort();
      assert.equal(medianInPlace(a, n), sorted[n >> 1], `n = ${n}`);
    }
  });
});

describe('estimateBackground', () => {
  test('follows a smooth haze gradient and ignores a small bright disc', () => {
    const haze = (x: number): [number, number, number] => [10 + x * 0.3, 5 + x * 0.1, 20 + x * 0.4];
    const g = grid(192, 96, (x, y) => (inDisc(x, y, 100, 48, 6) ? [220, 200, 160] : haze(x)));
    const bg = estimateBackground(g);
    let worst = 0;
    for (let y = 0; y < g.h; y++) {
      for (let x = 8; x < g.w - 8; x++) {
        const want = haze(x);
        const i = y * g.w + x;
        worst = Math.max(worst, Math.abs(bg.r[i]! - want[0]), Math.abs(bg.g[i]! - want[1]), Math.abs(bg.b[i]! - want[2]));
      }
    }
    // Bilinear between block centres is exact on a linear ramp; the disc's cells shift its
    // blocks' medians by a few ranks (about a level), not toward its 200 levels.
    assert.ok(worst < 1.5, `largest error ${worst} levels`);
  });

  test('infers the sky under a large excluded disc from the haze around it', () => {
    const haze = (y: number): [number, number, number] => [30 + y * 0.5, 20, 60];
    const inPlanet = (x: number, y: number): boolean => inDisc(x, y, 96, 48, 40);
    const g = grid(192, 96, (x, y) => (inPlanet(x, y) ? [200, 150, 90] : haze(y)));
    const plain = estimateBackground(g);
    const centre = 48 * g.w + 96;
    assert.ok(plain.r[centre]! > 150, 'without exclusion the disc is its own background');
    const exclude = new Uint8Array(g.w * g.h);
    for (let y = 0; y < g.h; y++) for (let x = 0; x < g.w; x++) if (inDisc(x, y, 96, 48, 42)) exclude[y * g.w + x] = 1;
    const bg = estimateBackground(g, exclude);
    assert.ok(Math.abs(bg.r[centre]! - haze(48)[0]) < 6 && Math.abs(bg.b[centre]! - 60) < 1, `inferred ${bg.r[centre]}, ${bg.g[centre]}, ${bg.b[centre]}`);
  });

  test('leaves the field at 0 when every cell is excluded', () => {
    const [field] = blockMedianField([new Float32Array(64 * 64).fill(9)], 64, 64, new Uint8Array(64 * 64).fill(1));
    assert.ok(field!.every((x) => x === 0));
  });
});

describe('residual', () => {
  test('scores the largest channel distance, and a black silhouette as nothing', () => {
    const cells: Array<[number, number, number]> = [[40, 40, 40], [70, 40, 40], [12, 30, 40], [4, 5, 6]];
    const g = grid(4, 1, (x) => cells[x]!);
    const bg = { r: new Float32Array(4).fill(40), g: new Float32Array(4).fill(40), b: new Float32Array(4).fill(40) };
    assert.deepEqual([...residual(g, bg, 10)], [0, 30, 28, 0]);
    assert.deepEqual([...residual(g, bg, 3)], [0, 30, 28, 36]);
  });
});

describe('labelComponents and dilate', () => {
  const parse = (rows: string[]): Uint8Array => Uint8Array.from(rows.join('').split(''), (c) => (c === '#' ? 1 : 0));

  test('joins a U whose arms get different provisional labels, and diagonal neighbours', () => {
    // A U (its arms meet only on the bottom row) and a line whose top cell touches it diagonally.
    const rows = ['#...#..#', '#...#.#.', '#####.#.', '......#.'];
    const { labels, components } = labelComponents(parse(rows), 8, 4);
    assert.deepEqual(components.map((c) => [c.area, c.minX, c.maxX, c.minY, c.maxY]).sort((a, b) => b[0]! - a[0]!), [[9, 0, 4, 0, 2], [4, 6, 7, 0, 3]]);
    assert.equal(labels[0], labels[4], 'both arms of the U carry one label');
  });

  test('grows a single cell into a (2r+1)-square', () => {
    const mask = new Uint8Array(9 * 9);
    mask[4 * 9 + 4] = 1;
    const grown = dilate(mask, 9, 9, 2);
    let n = 0;
    for (let y = 0; y < 9; y++) {
      for (let x = 0; x < 9; x++) {
        if (!grown[y * 9 + x]) continue;
        n++;
        assert.ok(Math.abs(x - 4) <= 2 && Math.abs(y - 4) <= 2, `cell ${x},${y} is outside the square`);
      }
    }
    assert.equal(n, 25);
  });
});

describe('checkPlanet in front of bright haze', () => {
  test('finds a disc whose dim limb is darker than the haze around it, to within 2 px', () => {
    const W = 1536;
    const H = 640;
    const rng = mulberry32(11);
    const data = new Uint8Array(W * H * 3);
    const disc = { cx: 700, cy: 320, r: 200 };
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = (y * W + x) * 3;
        // Haze: a broad purple glow, brightest (~100 levels) behind the disc.
        const glow = 100 * Math.exp(-(((x - 760) / 420) ** 2 + ((y - 300) / 260) ** 2) / 2);
        let c = [6 + glow * 0.7, 4 + glow * 0.3, 10 + glow];
        const d = Math.hypot(x + 0.5 - disc.cx, y + 0.5 - disc.cy) / disc.r;
        if (d <= 1) {
          // Strong limb darkening: the edge is ~15% of the centre, far darker than the haze there.
          const k = 0.15 + 0.85 * Math.sqrt(1 - d * d);
          c = [210 * k, 170 * k, 110 * k];
        }
        for (let ch = 0; ch < 3; ch++) data[p + ch] = Math.max(0, Math.min(255, Math.round(c[ch]! + (rng() - 0.5) * 4)));
      }
    }
    const v = checkPlanet({ data, width: W, height: H, channels: 3 }, DEFAULT_QC_OPTIONS);
    assert.ok(v.box, 'a planet is found');
    const want = { left: 500, top: 120, right: 900, bottom: 520 };
    for (const side of ['left', 'top', 'right', 'bottom'] as const) assert.ok(Math.abs(v.box[side] - want[side]) <= 2, `${side}: ${v.box[side]} vs ${want[side]}`);
    assert.deepEqual([v.passed, v.reasons], [true, []]);
  });
});
