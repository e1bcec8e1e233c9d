import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deriveSeed, describeGridSize, gridSize, LazyGrid, Permutation, type GridSpec } from '../../services/router/jobs/grid.js';

const spec = (over: Partial<GridSpec> = {}): GridSpec => ({
  colors: ['red', 'blue', 'green'], atmospheres: ['thin haze', 'storms'], moons: ['no moons', 'one moon', 'two moons'], skies: ['dark sky'],
  extras: [], fixedExtras: ['realistic'], seedsPerPrompt: 2, sample: 0, sampleSeed: '7', ...over,
});

describe('grid', () => {
  test('items are every combination × seeds, colour slowest and seed index fastest, with ids naming the axis indices', () => {
    const g = new LazyGrid(spec(), 1n);
    assert.equal(g.size, 3 * 2 * 3 * 1 * 2);
    assert.equal(g.item(0).customId, 'c00-a00-m00-s00-k0');
    assert.equal(g.item(1).customId, 'c00-a00-m00-s00-k1');
    assert.equal(g.item(2).customId, 'c00-a00-m01-s00-k0');
    assert.equal(g.item(35).customId, 'c02-a01-m02-s00-k1');
    assert.deepEqual(g.item(35).planet, { color: 'green', atmosphere: 'storms', moons: 'two moons', sky: 'dark sky', extras: ['realistic'] });
    assert.equal(new Set(Array.from({ length: g.size }, (_, i) => g.item(i).customId)).size, g.size);
  });

  test('an extras axis adds an e index; wide axes pad to their width; the seed index pads to its own', () => {
    const g = new LazyGrid(spec({ colors: Array.from({ length: 120 }, (_, i) => `c${i}`), extras: ['ethereal', 'gritty'], seedsPerPrompt: 12 }), 1n);
    assert.equal(g.item(0).customId, 'c000-a00-m00-s00-e00-k00');
    const last = g.item(g.size - 1);
    assert.equal(last.customId, 'c119-a01-m02-s00-e01-k11');
    assert.deepEqual(last.planet.extras, ['gritty', 'realistic']);
  });

  test('an empty axis is one empty slot and leaves the prompt slot empty', () => {
    const g = new LazyGrid(spec({ moons: [], skies: [] }), 1n);
    assert.equal(g.size, 3 * 2 * 2);
    assert.equal(g.item(0).planet.moons, '');
    assert.equal(g.item(0).customId, 'c00-a00-m00-s00-k0');
  });

  test('seeds depend on the job seed and the axis indices, not on the position', () => {
    const full = new LazyGrid(spec(), 99n);
    const sampled = new LazyGrid(spec({ sample: 5, sampleSeed: '3' }), 99n);
    const byId = new Map(Array.from({ length: full.size }, (_, i) => [full.item(i).customId, full.item(i).seed]));
    for (let i = 0; i < sampled.size; i++) assert.equal(sampled.item(i).seed, byId.get(sampled.item(i).customId));
    assert.notEqual(new LazyGrid(spec(), 100n).item(0).seed, full.item(0).seed);
    assert.equal(new LazyGrid(spec(), 99n).item(7).seed, full.item(7).seed);
    assert.notEqual(full.item(0).seed, full.item(1).seed);
  });

  test('a sample of N picks N distinct valid combinations, the same ones for the same sample_seed', () => {
    const s = spec({ sample: 10, seedsPerPrompt: 1 });
    const a = new LazyGrid(s, 1n);
    assert.equal(a.size, 10);
    const ids = Array.from({ length: 10 }, (_, i) => a.item(i).customId);
    assert.equal(new Set(ids).size, 10);
    const all = new LazyGrid(spec({ seedsPerPrompt: 1 }), 1n);
    const valid = new Set(Array.from({ length: all.size }, (_, i) => all.item(i).customId));
    assert.ok(ids.every((id) => valid.has(id)));
    assert.deepEqual(Array.from({ length: 10 }, (_, i) => new LazyGrid(s, 5n).item(i).customId), ids);
    assert.notDeepEqual(Array.from({ length: 10 }, (_, i) => new LazyGrid({ ...s, sampleSeed: '8' }, 1n).item(i).customId), ids);
  });

  test('the permutation is a bijection of [0, m) for awkward sizes', () => {
    for (const m of [1, 2, 3, 5, 17, 1000, 4097]) {
      const p = new Permutation(m, 42n);
      const seen = new Set(Array.from({ length: m }, (_, i) => p.at(i)));
      assert.equal(seen.size, m);
      assert.ok([...seen].every((x) => x >= 0 && x < m));
    }
  });

  test('a 10^7-item grid is held without materializing it: any item is computed directly', () => {
    const big = spec({ colors: Array.from({ length: 100 }, (_, i) => `c${i}`), atmospheres: Array.from({ length: 100 }, (_, i) => `a${i}`), moons: Array.from({ length: 100 }, (_, i) => `m${i}`), skies: ['s'], seedsPerPrompt: 10 });
    assert.equal(gridSize(big), 10_000_000);
    const g = new LazyGrid({ ...big, sample: 999_999 }, 3n);
    assert.equal(g.size, 9_999_990);
    assert.match(g.item(9_999_989).customId, /^c\d\d-a\d\d-m\d\d-s00-k9$/);
    assert.match(describeGridSize(big), /100 colors × 100 atmospheres × 100 moons × 1 skies × 10 seeds_per_prompt = 10000000 items/);
    assert.throws(() => g.item(g.size), RangeError);
  });

  test('deriveSeed mixes each index in turn', () => {
    assert.notEqual(deriveSeed(1n, [0, 1]), deriveSeed(1n, [1, 0]));
    assert.ok(deriveSeed(1n, [5]) < 1n << 64n);
  });
});
