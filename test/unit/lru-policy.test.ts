import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chooseEvictions, type CachedModelState } from '../../services/worker/lru-policy.js';

function m(modelId: string, lastUsedMs: number, inUse = false): CachedModelState {
  return { modelId, lastUsedMs, inUse };
}

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
