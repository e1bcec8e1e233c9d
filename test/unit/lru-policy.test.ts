import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chooseEvictions, planEvictions, type CachedModelState } from '../../services/worker/lru-policy.js';

function m(modelId: string, lastUsedMs: number, inUse = false, sizeBytes?: number): CachedModelState {
  return { modelId, lastUsedMs, inUse, ...(sizeBytes !== undefined ? { sizeBytes } : {}) };
}

const GB = 1024 ** 3;

describe('chooseEvictions', () => {
  test('evicts nothing while the incoming model fits under the cap', () => {
    assert.deepEqual(chooseEvictions([m('a', 1)], 2, 'b'), []);
    assert.deepEqual(chooseEvictions([], 1, 'a'), []);
  });

  test('evicts the least recently used model to make room for a new one', () => {
    assert.deepEqual(chooseEvictions([m('a', 30), m('b', 10), m('c', 20)], 3, 'd'), ['b']);
  });

  test('evicts several, oldest first, when the cache is over the cap', () => {
    assert.deepEqual(chooseEvictions([m('a', 30), m('b', 10), m('c', 20), m('d', 40)], 2, 'e'), ['b', 'c', 'a']);
  });

  test('never evicts a model in use, even the oldest', () => {
    assert.deepEqual(chooseEvictions([m('old', 1, true), m('mid', 5), m('new', 9)], 3, 'x'), ['mid']);
  });

  test('returns fewer than needed when everything else is in use, so the cache exceeds the cap', () => {
    assert.deepEqual(chooseEvictions([m('a', 1, true), m('b', 2, true)], 2, 'c'), []);
    assert.deepEqual(chooseEvictions([m('a', 1, true), m('b', 2), m('c', 3, true)], 1, 'd'), ['b']);
  });

  test('evicts nothing for a model that is already loaded and within the cap', () => {
    assert.deepEqual(chooseEvictions([m('a', 1), m('b', 2)], 2, 'a'), []);
  });

  test('trims down to the cap when the incoming model is already loaded', () => {
    assert.deepEqual(chooseEvictions([m('a', 5), m('b', 2), m('c', 9)], 2, 'c'), ['b']);
  });

  test('breaks ties in last use by model id, so the choice is deterministic', () => {
    assert.deepEqual(chooseEvictions([m('z', 5), m('k', 5), m('q', 5)], 2, 'n'), ['k', 'q']);
  });

  test('treats a cap below one as one', () => {
    assert.deepEqual(chooseEvictions([m('a', 1)], 0, 'b'), ['a']);
  });

  test('does not reorder or modify its input', () => {
    const loaded = Object.freeze([m('a', 3), m('b', 1), m('c', 2)]);
    chooseEvictions(loaded, 1, 'd');
    assert.deepEqual(loaded.map((x) => x.modelId), ['a', 'b', 'c']);
  });
});

describe('planEvictions with a byte budget', () => {
  test('evicts least recently used models until the incoming one fits the budget', () => {
    const loaded = [m('a', 30, false, 3 * GB), m('b', 10, false, 3 * GB), m('c', 20, false, 3 * GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 10, maxBytes: 10 * GB }, { modelId: 'd', sizeBytes: 4 * GB }), { kind: 'fits', evict: ['b'] });
    assert.deepEqual(planEvictions(loaded, { maxModels: 10, maxBytes: 10 * GB }, { modelId: 'd', sizeBytes: 7 * GB }), { kind: 'fits', evict: ['b', 'c'] });
  });

  test('evicts nothing while both the count and the bytes fit', () => {
    assert.deepEqual(planEvictions([m('a', 1, false, GB)], { maxModels: 2, maxBytes: 2 * GB }, { modelId: 'b', sizeBytes: GB }), { kind: 'fits', evict: [] });
  });

  test('applies whichever limit is tighter: the count, then the bytes', () => {
    const loaded = [m('a', 1, false, 1), m('b', 2, false, 1), m('c', 3, false, GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 2, maxBytes: 100 * GB }, { modelId: 'd', sizeBytes: 1 }).evict, ['a', 'b']);
    assert.deepEqual(planEvictions(loaded, { maxModels: 9, maxBytes: GB }, { modelId: 'd', sizeBytes: 1 }).evict, ['a', 'b', 'c']);
  });

  test('an unknown incoming size (first load) counts as 0 bytes', () => {
    const loaded = [m('a', 1, false, GB), m('b', 2, false, GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 5, maxBytes: 2 * GB }, { modelId: 'c' }), { kind: 'fits', evict: [] });
  });

  test('a model larger than the budget loads alone: every idle model goes, and the plan says oversized', () => {
    const loaded = [m('a', 1, false, GB), m('b', 2, false, GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 5, maxBytes: 4 * GB }, { modelId: 'huge', sizeBytes: 6 * GB }),
      { kind: 'over', evict: ['a', 'b'], reason: 'oversized', models: 1, bytes: 6 * GB });
  });

  test('keeps a loaded model larger than the budget when trimming for it (it is not reloaded at every use)', () => {
    const plan = planEvictions([m('huge', 5, false, 6 * GB)], { maxModels: 5, maxBytes: 4 * GB }, { modelId: 'huge' });
    assert.deepEqual(plan, { kind: 'over', evict: [], reason: 'oversized', models: 1, bytes: 6 * GB });
  });

  test('never evicts a model in use for bytes; says over because of models in use', () => {
    const loaded = [m('busy', 1, true, 3 * GB), m('idle', 2, false, GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 5, maxBytes: 4 * GB }, { modelId: 'new', sizeBytes: 2 * GB }),
      { kind: 'over', evict: ['idle'], reason: 'in-use', models: 2, bytes: 5 * GB });
  });

  test('trimming after a load with the new model pinned evicts the others, oldest first', () => {
    const loaded = [m('a', 1, false, 2 * GB), m('b', 2, false, 2 * GB), m('new', 3, true, 3 * GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 5, maxBytes: 5 * GB }, { modelId: 'new' }), { kind: 'fits', evict: ['a'] });
  });

  test('without maxBytes it is exactly the count policy', () => {
    const loaded = [m('a', 30, false, 9 * GB), m('b', 10, false, 9 * GB), m('c', 20, false, 9 * GB)];
    assert.deepEqual(planEvictions(loaded, { maxModels: 3 }, { modelId: 'd', sizeBytes: 9 * GB }).evict, chooseEvictions(loaded, 3, 'd'));
  });
});
