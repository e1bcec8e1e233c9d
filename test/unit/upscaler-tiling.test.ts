import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  axisWeights, planAxis, planRuns, planTiles, rampFor, type TileJob, type TilingOptions,
} from '../../services/stages/upscaler-tiling.js';

/** Every (length, tileSize, padding) combination in small ranges, padding ≤ tileSize / 2. */
function* cases(): Generator<[number, TilingOptions]> {
  for (let tileSize = 1; tileSize <= 24; tileSize += 1) {
    for (let padding = 0; 2 * padding <= tileSize; padding++) {
      for (let length = 1; length <= 90; length++) yield [length, { tileSize, padding }];
    }
  }
}

describe('upscaler tiling', () => {
  test('cores partition the axis, each at most tileSize long, inside a window of one shared size', () => {
    for (const [length, o] of cases()) {
      const plan = planAxis(length, o);
      let next = 0;
      for (const { core, start } of plan.cells) {
        assert.equal(core.start, next);
        assert.ok(core.end > core.start);
        if (plan.cells.length > 1) assert.ok(core.end - core.start <= o.tileSize);
        assert.ok(start >= 0 && start + plan.window <= length, 'window inside the image');
        assert.ok(start <= core.start && core.end <= start + plan.window, 'core inside its window');
        next = core.end;
      }
      assert.equal(next, length);
      assert.equal(plan.window, Math.min(length, o.tileSize + 2 * o.padding));
    }
  });

  test('every interior core boundary has at least `padding` pixels of context in both windows', () => {
    for (const [length, o] of cases()) {
      const { cells, window } = planAxis(length, o);
      cells.slice(1).forEach((cell, k) => {
        const left = cells[k]!; // the cell before `cell`
        const boundary = cell.core.start;
        assert.ok(left.start + window - boundary >= o.padding, `left window of boundary ${boundary} (L=${length}, ${JSON.stringify(o)})`);
        assert.ok(boundary - cell.start >= o.padding, `right window of boundary ${boundary}`);
      });
    }
  });

  test('blend weights of all tiles sum to exactly 1 at every output pixel and vanish outside each window', () => {
    for (const scale of [1, 2, 3, 4]) {
      for (const [length, o] of cases()) {
        if (o.tileSize % 3 !== 0 || length % 7 !== 0) continue; // a sample keeps this fast
        const { cells, window } = planAxis(length, o);
        const sum = new Float64Array(length * scale);
        for (const c of cells) {
          const w = axisWeights(c.core, c.start, window, length, scale, rampFor(o.padding));
          assert.equal(w.length, window * scale);
          w.forEach((v, u) => { sum[c.start * scale + u]! += v; });
        }
        sum.forEach((s, u) => assert.ok(Math.abs(s - 1) < 1e-6, `pixel ${u}: weights sum to ${s} (L=${length}, s=${scale}, ${JSON.stringify(o)})`));
      }
    }
  });

  test('an image that fits one window is a single tile of weight 1', () => {
    const tiles = planTiles(40, 30, { tileSize: 32, padding: 8 });
    assert.equal(tiles.length, 1);
    assert.deepEqual(tiles[0], { x: 0, y: 0, width: 40, height: 30, coreX: { start: 0, end: 40 }, coreY: { start: 0, end: 30 } });
    assert.ok(axisWeights(tiles[0].coreX, 0, 40, 40, 2, 4).every((v) => v === 1));
  });

  test('plans a 1536x640 image with 128-pixel tiles as a 12x5 grid of 160x160 windows', () => {
    const tiles = planTiles(1536, 640, { tileSize: 128, padding: 16 });
    assert.equal(tiles.length, 60);
    assert.ok(tiles.every((t) => t.width === 160 && t.height === 160));
    assert.deepEqual(tiles[0]?.coreX, { start: 0, end: 128 });
    assert.equal(tiles[0]?.x, 0);
    assert.equal(tiles[1]?.x, 112);
    assert.equal(tiles[11]?.x, 1536 - 160);
  });

  test('rejects padding above half the tile size and non-integer sizes', () => {
    assert.throws(() => planAxis(100, { tileSize: 16, padding: 9 }), /tile padding must be an integer in \[0, tile size \/ 2 = 8\]/);
    assert.throws(() => planAxis(100, { tileSize: 0, padding: 0 }), /tile size must be a positive integer/);
    assert.throws(() => planAxis(0, { tileSize: 16, padding: 4 }), /image side must be a positive integer/);
  });

  test('groups tiles of several items into runs of equal window size, balanced, at most maxTilesPerRun each', () => {
    const jobs: TileJob[] = [];
    for (let t = 0; t < 6; t++) jobs.push({ item: 0, tile: t, width: 160, height: 160 });
    jobs.push({ item: 1, tile: 0, width: 40, height: 30 });
    for (let t = 0; t < 4; t++) jobs.push({ item: 2, tile: t, width: 160, height: 160 });
    const runs = planRuns(jobs, 8);
    assert.deepEqual(runs.map((r) => r.length), [5, 5, 1]);
    for (const r of runs) assert.ok(r.every((j) => j.width === r[0]?.width && j.height === r[0]?.height));
    assert.deepEqual(runs.flat().map((j) => `${j.item}:${j.tile}`).sort(), jobs.map((j) => `${j.item}:${j.tile}`).sort());
    assert.deepEqual(planRuns(jobs, 100).map((r) => r.length), [10, 1]);
    assert.throws(() => planRuns(jobs, 0), RangeError);
  });
});
