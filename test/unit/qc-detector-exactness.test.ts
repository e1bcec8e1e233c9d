/**
 * The planet detector's fast paths give exactly what the plain computations give: the grid summed
 * a 32-bit word at a time, mask morphology four cells per word, the histogram median, the
 * run-by-run hole filling, the second background pass that redoes only what changed, and the
 * buffers reused from one image to the next.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { binnedMedian, estimateBackground, MEDIAN_BINS, medianInPlace, reestimateWithout, residual } from '../../services/stages/qc/background.js';
import { close3x3, dilate, dropSpecks, fillHoles, labelComponents } from '../../services/stages/qc/binary-mask.js';
import { detectPlanet } from '../../services/stages/qc/planet-detect.js';
import { valueGrid, type RawImage } from '../../services/stages/qc/value-grid.js';
import { mulberry32 } from '../../services/models/demo-models.js';
import { makeCase, renderCase } from '../support/planet-scenes.js';

/** `bytes` placed one byte into a larger buffer: the same pixels, not word-aligned (the per-byte paths). */
function unaligned(bytes: Uint8Array): Uint8Array {
  const backing = new Uint8Array(bytes.length + 1);
  backing.set(bytes, 1);
  return backing.subarray(1);
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rng() * 256));
}

/** Each cell's mean red, green and blue, one pixel at a time. */
function naiveMeans(img: RawImage, cell: number): Float32Array[] {
  const w = Math.ceil(img.width / cell);
  const h = Math.ceil(img.height / cell);
  const out = [new Float32Array(w * h), new Float32Array(w * h), new Float32Array(w * h)];
  for (let gy = 0; gy < h; gy++) {
    for (let gx = 0; gx < w; gx++) {
      const sums = [0, 0, 0];
      let n = 0;
      for (let y = gy * cell; y < Math.min(img.height, (gy + 1) * cell); y++) {
        for (let x = gx * cell; x < Math.min(img.width, (gx + 1) * cell); x++) {
          for (let c = 0; c < 3; c++) sums[c]! += img.data[(y * img.width + x) * img.channels + c]!;
          n++;
        }
      }
      for (let c = 0; c < 3; c++) out[c]![gy * w + gx] = sums[c]! / n;
    }
  }
  return out;
}

describe('valueGrid', () => {
  for (const [width, height, cell] of [[48, 20, 4], [44, 13, 8], [40, 9, 4]] as const) {
    test(`sums ${width}x${height} RGB in cells of ${cell} the same word-aligned, unaligned and pixel by pixel`, () => {
      const data = randomBytes(width * height * 3, width + height);
      const aligned = valueGrid({ data, width, height, channels: 3 }, cell);
      const bytewise = valueGrid({ data: unaligned(data), width, height, channels: 3 }, cell);
      const [r, g, b] = naiveMeans({ data, width, height, channels: 3 }, cell);
      assert.deepEqual([aligned.r, aligned.g, aligned.b, aligned.v], [bytewise.r, bytewise.g, bytewise.b, bytewise.v]);
      assert.deepEqual([aligned.r, aligned.g, aligned.b], [r, g, b]);
      for (let i = 0; i < aligned.v.length; i++) assert.equal(aligned.v[i], Math.max(r![i]!, g![i]!, b![i]!));
    });
  }

  test('reads white pixels (every lane at its largest) without overflow', () => {
    const data = new Uint8Array(32 * 32 * 3).fill(255);
    const grid = valueGrid({ data, width: 32, height: 32, channels: 3 }, 32);
    assert.deepEqual([grid.r[0], grid.g[0], grid.b[0], grid.v[0]], [255, 255, 255, 255]);
  });
});

/** 3x3 dilation (or erosion), the border replicating the edge cell: the definition, cell by cell. */
function naiveMorph(mask: Uint8Array, w: number, h: number, grow: boolean): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let acc = grow ? 0 : 1;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const v = mask[Math.min(h - 1, Math.max(0, y + dy)) * w + Math.min(w - 1, Math.max(0, x + dx))]!;
          acc = grow ? acc | v : acc & v;
        }
      }
      out[y * w + x] = acc;
    }
  }
  return out;
}

function randomMask(w: number, h: number, density: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: w * h }, () => (rng() < density ? 1 : 0));
}

describe('mask morphology', () => {
  for (const [w, h] of [[32, 12], [8, 1], [4, 5]] as const) {
    test(`dilates and closes a random ${w}x${h} mask as the definition does, word-aligned or not`, () => {
      for (const density of [0.1, 0.5, 0.9]) {
        const mask = randomMask(w, h, density, w * 7 + h + density * 10);
        const grown = naiveMorph(naiveMorph(mask, w, h, true), w, h, true);
        const closed = naiveMorph(naiveMorph(mask, w, h, true), w, h, false);
        assert.deepEqual(dilate(mask, w, h, 2), grown);
        assert.deepEqual(close3x3(mask, w, h), closed);
        // Unaligned buffers take the per-cell path.
        const out = unaligned(new Uint8Array(w * h));
        assert.deepEqual(Uint8Array.from(dilate(unaligned(mask), w, h, 2, out, unaligned(new Uint8Array(w * h)))), grown);
        assert.deepEqual(Uint8Array.from(close3x3(unaligned(mask), w, h, unaligned(new Uint8Array(w * h)), unaligned(new Uint8Array(w * h)), unaligned(new Uint8Array(w * h)))), closed);
        // Speck removal and labelling skip empty words when aligned: the same as cell by cell.
        assert.deepEqual(dropSpecks(mask, w, h), Uint8Array.from(dropSpecks(unaligned(mask), w, h)));
        const words = labelComponents(mask, w, h);
        const cells = labelComponents(unaligned(mask), w, h);
        assert.deepEqual([words.labels, words.components], [cells.labels, cells.components]);
      }
    });
  }
});

/** Hole filling by definition: a flood from every border cell through unset cells, 4-connected. */
function naiveFillHoles(mask: Uint8Array, w: number, h: number): Uint8Array {
  const reached = new Uint8Array(w * h);
  const queue: number[] = [];
  for (let i = 0; i < w * h; i++) {
    const x = i % w;
    const y = Math.floor(i / w);
    if ((x === 0 || y === 0 || x === w - 1 || y === h - 1) && !mask[i]) {
      reached[i] = 1;
      queue.push(i);
    }
  }
  while (queue.length) {
    const i = queue.pop()!;
    const x = i % w;
    for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, i - w, i + w]) {
      if (j < 0 || j >= w * h || mask[j] || reached[j]) continue;
      reached[j] = 1;
      queue.push(j);
    }
  }
  return Uint8Array.from(mask, (m, i) => (m || !reached[i] ? 1 : 0));
}

describe('fillHoles', () => {
  test('fills exactly the unset cells the border cannot reach, on random masks', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const w = 5 + (seed % 17);
      const h = 3 + (seed % 11);
      const mask = randomMask(w, h, 0.3 + (seed % 5) * 0.1, seed);
      assert.deepEqual(fillHoles(mask, w, h), naiveFillHoles(mask, w, h), `seed ${seed}`);
    }
  });

  test('fills a ring with a hole inside a hole, and leaves an empty mask empty', () => {
    const rows = ['.......', '.#####.', '.#...#.', '.#.#.#.', '.#...#.', '.#####.', '.......'];
    const mask = Uint8Array.from(rows.join(''), (c) => (c === '#' ? 1 : 0));
    const filled = fillHoles(mask, 7, 7);
    const want = ['0000000', '0111110', '0111110', '0111110', '0111110', '0111110', '0000000'];
    assert.equal([...filled].join(''), want.join(''));
    assert.deepEqual(fillHoles(new Uint8Array(12), 4, 3), new Uint8Array(12));
  });
});

describe('binnedMedian', () => {
  test('returns the value medianInPlace returns, over sky-like, spread and out-of-range values', () => {
    const rng = mulberry32(3);
    const hist = new Uint16Array(MEDIAN_BINS);
    const gens: Array<() => number> = [() => Math.round((8 + rng() * 3) * 16) / 16, () => rng() * 255, () => rng() * 600 - 100, () => 42];
    for (const gen of gens) {
      for (const n of [1, 2, 7, 64]) {
        const a = Float32Array.from({ length: n }, gen);
        const want = medianInPlace(Float32Array.from(a), n);
        assert.equal(binnedMedian(a, n, hist, new Uint16Array(n), new Float32Array(n)), want);
        assert.ok(hist.every((c) => c === 0), 'the histogram is left clear');
      }
    }
  });
});

describe('reestimateWithout', () => {
  test('updates background and score to exactly a full estimate without the excluded cells', () => {
    const img = renderCase(makeCase('haze', 1536, 640, 4));
    const grid = valueGrid(img);
    const blocks = [0, 1, 2].map(() => new Float32Array(Math.ceil(grid.w / 16) * Math.ceil(grid.h / 16)));
    const bg = estimateBackground(grid, undefined, undefined, undefined, blocks);
    const score = residual(grid, bg, 10);
    // Exclude a disc of cells (where a planet would be) and a stripe along the top edge.
    const exclude = new Uint8Array(grid.w * grid.h);
    for (let y = 0; y < grid.h; y++) for (let x = 0; x < grid.w; x++) if ((x - 150) ** 2 + (y - 80) ** 2 < 45 ** 2 || y < 3) exclude[y * grid.w + x] = 1;
    const before = Float32Array.from(bg.r);
    reestimateWithout(grid, exclude, blocks, bg, score, 10);
    const full = estimateBackground(grid, exclude);
    assert.notDeepEqual(full.r, before, 'excluding the cells changes the background');
    assert.deepEqual([bg.r, bg.g, bg.b], [full.r, full.g, full.b]);
    assert.deepEqual(score, residual(grid, full, 10));
  });
});

describe('detectPlanet with reused buffers', () => {
  test('gives each image the same result whatever was checked before it, at either size', () => {
    const images = [renderCase(makeCase('disc', 1536, 640, 2)), renderCase(makeCase('banded', 2520, 1080, 3)), renderCase(makeCase('haze', 1536, 640, 5))];
    const first = images.map((img) => detectPlanet(img));
    const again = [2, 0, 1, 0].map((i) => [i, detectPlanet(images[i]!)] as const);
    for (const [i, d] of again) assert.deepEqual(d, first[i], `image ${i}`);
  });
});
