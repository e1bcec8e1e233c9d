import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { hasFreeSlot, pickPowerOfTwo, placeBatch, type ReplicaView } from '../../services/router/replica-picker.js';
import { lcg, sequence } from '../support/rng.js';

function replica(id: string, over: Partial<ReplicaView> = {}): ReplicaView {
  return { id, loadedModels: [], ongoingBatches: 0, maxOngoingBatches: 2, inFlightItems: 0, ...over };
}

describe('hasFreeSlot', () => {
  test('is true while ongoing batches are below the limit and false at it', () => {
    assert.equal(hasFreeSlot(replica('r', { ongoingBatches: 1, maxOngoingBatches: 2 })), true);
    assert.equal(hasFreeSlot(replica('r', { ongoingBatches: 2, maxOngoingBatches: 2 })), false);
    assert.equal(hasFreeSlot(replica('r', { ongoingBatches: 0, maxOngoingBatches: 0 })), false);
  });
});

describe('pickPowerOfTwo', () => {
  test('returns the only candidate without consulting the rng', () => {
    const only = replica('only');
    assert.equal(pickPowerOfTwo([only], () => { throw new Error('rng called'); }), only);
  });

  test('throws RangeError for an empty candidate list', () => {
    assert.throws(() => pickPowerOfTwo([], Math.random), RangeError);
  });

  test('power of two choices picks the less loaded of two', () => {
    const busy = replica('busy', { ongoingBatches: 1 });
    const idle = replica('idle', { ongoingBatches: 0 });
    for (let seed = 1; seed <= 50; seed++) {
      assert.equal(pickPowerOfTwo([busy, idle], lcg(seed)).id, 'idle');
      assert.equal(pickPowerOfTwo([idle, busy], lcg(seed)).id, 'idle');
    }
  });

  test('compares occupancy relative to each replica\'s own slot limit', () => {
    const halfOfFour = replica('a', { ongoingBatches: 2, maxOngoingBatches: 4 });
    const oneOfOne = replica('b', { ongoingBatches: 1, maxOngoingBatches: 1 });
    assert.equal(pickPowerOfTwo([oneOfOne, halfOfFour], lcg(7)).id, 'a');
  });

  test('breaks occupancy ties by fewer in-flight images', () => {
    const heavy = replica('heavy', { ongoingBatches: 1, inFlightItems: 8 });
    const light = replica('light', { ongoingBatches: 1, inFlightItems: 2 });
    for (let seed = 1; seed <= 20; seed++) assert.equal(pickPowerOfTwo([heavy, light], lcg(seed)).id, 'light');
  });

  test('breaks occupancy ties by the replica expected to be free sooner, before in-flight images', () => {
    const late = replica('late', { ongoingBatches: 1, maxOngoingBatches: 2, inFlightItems: 2, partialFromMs: 900 });
    const soon = replica('soon', { ongoingBatches: 1, maxOngoingBatches: 2, inFlightItems: 8, partialFromMs: 100 });
    for (let seed = 1; seed <= 20; seed++) assert.equal(pickPowerOfTwo([late, soon], lcg(seed)).id, 'soon');
    // Without an estimate on both sides the in-flight images decide.
    const unknown = replica('unknown', { ongoingBatches: 1, maxOngoingBatches: 2, inFlightItems: 1 });
    for (let seed = 1; seed <= 20; seed++) assert.equal(pickPowerOfTwo([unknown, soon], lcg(seed)).id, 'unknown');
  });

  test('breaks full ties with the rng, reaching both candidates', () => {
    const a = replica('a');
    const b = replica('b');
    const seen = new Set<string>();
    for (let seed = 1; seed <= 50; seed++) seen.add(pickPowerOfTwo([a, b], lcg(seed)).id);
    assert.deepEqual([...seen].sort(), ['a', 'b']);
  });

  test('samples two distinct candidates even when the rng repeats itself', () => {
    // Both draws are 0 → indexes 0 and (0 skipped →) 1; the less loaded of those two wins.
    const rs = [replica('r0', { ongoingBatches: 1 }), replica('r1'), replica('r2')];
    assert.equal(pickPowerOfTwo(rs, () => 0).id, 'r1');
  });

  test('never picks the most loaded of three and tolerates an rng that returns ~1', () => {
    const rs = [replica('low'), replica('mid', { ongoingBatches: 1 }), replica('high', { ongoingBatches: 2, maxOngoingBatches: 2 })];
    const rng = lcg(42);
    const counts = new Map<string, number>();
    for (let n = 0; n < 300; n++) {
      const id = pickPowerOfTwo(rs, rng).id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.equal(counts.get('high'), undefined);
    assert.ok((counts.get('low') ?? 0) > (counts.get('mid') ?? 0));
    assert.ok(rs.includes(pickPowerOfTwo(rs, sequence(0.9999999999, 0.9999999999, 0.5))));
  });
});

describe('placeBatch', () => {
  test('prefers the replica that holds the model', () => {
    const rs = [replica('r1', { loadedModels: ['b'] }), replica('r2', { loadedModels: ['a'], ongoingBatches: 1 }), replica('r3')];
    for (let seed = 1; seed <= 20; seed++) {
      const p = placeBatch('a', rs, false, lcg(seed));
      assert.equal(p.kind, 'hit');
      assert.equal(p.kind === 'hit' && p.replica.id, 'r2');
    }
  });

  test('picks the less loaded of several free holders', () => {
    const rs = [replica('busy', { loadedModels: ['a'], ongoingBatches: 1 }), replica('idle', { loadedModels: ['a'] })];
    const p = placeBatch('a', rs, false, lcg(3));
    assert.deepEqual(p.kind === 'hit' && p.replica.id, 'idle');
  });

  test('waits for a busy holder instead of loading the model elsewhere when spill is false', () => {
    const rs = [replica('holder', { loadedModels: ['a'], ongoingBatches: 2 }), replica('free')];
    assert.deepEqual(placeBatch('a', rs, false, lcg(1)), { kind: 'wait-affinity' });
  });

  test('spills to a free replica as a miss when spill is true', () => {
    const rs = [replica('holder', { loadedModels: ['a'], ongoingBatches: 2 }), replica('free')];
    const p = placeBatch('a', rs, true, lcg(1));
    assert.equal(p.kind, 'miss');
    assert.equal(p.kind === 'miss' && p.replica.id, 'free');
  });

  test('a miss goes to the replica with the fewest loaded models', () => {
    const rs = [
      replica('two', { loadedModels: ['x', 'y'] }),
      replica('one', { loadedModels: ['z'], ongoingBatches: 1 }),
      replica('three', { loadedModels: ['u', 'v', 'w'] }),
    ];
    for (let seed = 1; seed <= 20; seed++) {
      const p = placeBatch('a', rs, false, lcg(seed));
      assert.equal(p.kind, 'miss');
      assert.equal(p.kind === 'miss' && p.replica.id, 'one');
    }
  });

  test('a miss among equally empty replicas goes to the less loaded one', () => {
    const rs = [replica('busy', { ongoingBatches: 1 }), replica('idle')];
    const p = placeBatch('a', rs, false, lcg(9));
    assert.equal(p.kind === 'miss' && p.replica.id, 'idle');
  });

  test('returns none when no replica has a free slot, even if one holds the model', () => {
    const rs = [replica('r1', { loadedModels: ['a'], ongoingBatches: 2 }), replica('r2', { ongoingBatches: 2 })];
    assert.deepEqual(placeBatch('a', rs, false, lcg(1)), { kind: 'none' });
    assert.deepEqual(placeBatch('a', [], true, lcg(1)), { kind: 'none' });
  });
});
