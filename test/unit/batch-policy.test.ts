import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { decideBatch, type BatchDecision, type BatchPolicyOptions, type QueuedItem } from '../../services/router/batch-policy.js';
import type { ReplicaView } from '../../services/router/replica-picker.js';
import { lcg } from '../support/rng.js';

const opts: BatchPolicyOptions = { maxBatchSize: 4, batchWaitTimeoutMs: 50, affinityWaitMs: 500 };

function item(modelId: string, enqueuedAtMs: number, over: Partial<QueuedItem> = {}): QueuedItem {
  return { key: `${modelId}|1024x1024|30`, modelId, enqueuedAtMs, deadlineMs: 0, ...over };
}

function items(modelId: string, count: number, enqueuedAtMs: number): QueuedItem[] {
  return Array.from({ length: count }, () => item(modelId, enqueuedAtMs));
}

function replica(id: string, loadedModels: string[] = [], ongoingBatches = 0, maxOngoingBatches = 1): ReplicaView {
  return { id, loadedModels, ongoingBatches, maxOngoingBatches, inFlightItems: ongoingBatches * 4 };
}

function dispatched(d: BatchDecision): Extract<BatchDecision, { kind: 'dispatch' }> {
  assert.equal(d.kind, 'dispatch', `expected dispatch, got ${JSON.stringify(d)}`);
  return d;
}

describe('decideBatch: idle', () => {
  test('is idle for an empty queue', () => {
    assert.deepEqual(decideBatch([], [replica('r1')], opts, 0, lcg(1)), { kind: 'idle' });
  });

  test('is idle when no replica has a free slot, however old the queue', () => {
    const queue = items('a', 8, 0);
    assert.deepEqual(decideBatch(queue, [replica('r1', ['a'], 1)], opts, 10_000, lcg(1)), { kind: 'idle' });
  });

  test('is idle when there are no replicas at all', () => {
    assert.deepEqual(decideBatch(items('a', 8, 0), [], opts, 0, lcg(1)), { kind: 'idle' });
  });
});

describe('decideBatch: batch size and timing', () => {
  test('dispatches a full batch at once when a replica is free', () => {
    const d = dispatched(decideBatch(items('a', 6, 100), [replica('r1', ['a'])], opts, 100, lcg(1)));
    assert.deepEqual(d.indexes, [0, 1, 2, 3]);
    assert.equal(d.replicaId, 'r1');
    assert.equal(d.modelId, 'a');
    assert.equal(d.key, 'a|1024x1024|30');
    assert.equal(d.affinity, 'hit');
  });

  test('waits at most batch_wait_timeout_ms for a partial batch', () => {
    const queue = [item('a', 100), item('a', 120)];
    const rs = [replica('r1', ['a'])];
    assert.deepEqual(decideBatch(queue, rs, opts, 130, lcg(1)), { kind: 'wait', untilMs: 150 });
    assert.deepEqual(dispatched(decideBatch(queue, rs, opts, 150, lcg(1))).indexes, [0, 1]);
  });

  test('sends a partial batch at once when batch_wait_timeout_ms is 0', () => {
    const d = decideBatch([item('a', 100)], [replica('r1', ['a'])], { ...opts, batchWaitTimeoutMs: 0 }, 100, lcg(1));
    assert.deepEqual(dispatched(d).indexes, [0]);
  });

  test('does not wait for company past a request deadline', () => {
    const queue = [item('a', 100), item('a', 110, { deadlineMs: 140 })];
    const d = decideBatch(queue, [replica('r1', ['a'])], opts, 110, lcg(1));
    assert.deepEqual(dispatched(d).indexes, [0, 1]);
  });

  test('still waits when every deadline lies beyond the batch timer', () => {
    const queue = [item('a', 100, { deadlineMs: 5_000 })];
    assert.deepEqual(decideBatch(queue, [replica('r1', ['a'])], opts, 110, lcg(1)), { kind: 'wait', untilMs: 150 });
  });

  test('batches only items that share a key, oldest first', () => {
    const queue = [item('a', 0), item('a', 1, { key: 'a|512x512|30' }), item('a', 2), item('a', 3), item('a', 4, { key: 'a|512x512|30' }), item('a', 5), item('a', 6)];
    const d = dispatched(decideBatch(queue, [replica('r1', ['a'])], opts, 10, lcg(1)));
    assert.deepEqual(d.indexes, [0, 2, 3, 5]);
    assert.ok(d.indexes.every((i) => queue[i]!.key === d.key));
  });

  test('takes everything that accumulated under load once a slot frees (work-conserving)', () => {
    const queue = [item('a', 0), item('a', 5), item('a', 9)];
    const busy = decideBatch(queue, [replica('r1', ['a'], 1)], opts, 200, lcg(1));
    assert.deepEqual(busy, { kind: 'idle' });
    const freed = dispatched(decideBatch(queue, [replica('r1', ['a'], 0)], opts, 200, lcg(1)));
    assert.deepEqual(freed.indexes, [0, 1, 2]);
  });
});

describe('decideBatch: choosing the group', () => {
  test('prefers a group whose model is loaded on a free replica over an older group', () => {
    const queue = [...items('b', 4, 0), ...items('a', 4, 10)];
    const d = dispatched(decideBatch(queue, [replica('r1', ['a'])], opts, 20, lcg(1)));
    assert.equal(d.modelId, 'a');
    assert.equal(d.affinity, 'hit');
  });

  test('among affinity hits, takes the largest group first', () => {
    const queue = [...items('a', 2, 0), ...items('b', 4, 10)];
    const rs = [replica('r1', ['a', 'b'])];
    const d = dispatched(decideBatch(queue, rs, { ...opts, batchWaitTimeoutMs: 0 }, 20, lcg(1)));
    assert.equal(d.modelId, 'b');
  });

  test('serves groups without a hit oldest first', () => {
    const queue = [...items('b', 4, 10), ...items('c', 4, 0)];
    const d = dispatched(decideBatch(queue, [replica('r1', ['a'])], opts, 20, lcg(1)));
    assert.equal(d.modelId, 'c');
    assert.equal(d.affinity, 'miss');
  });

  test('a miss goes to the replica with the fewest loaded models', () => {
    const rs = [replica('full', ['x', 'y']), replica('empty'), replica('one', ['z'])];
    for (let seed = 1; seed <= 10; seed++) {
      const d = dispatched(decideBatch(items('a', 4, 0), rs, opts, 0, lcg(seed)));
      assert.equal(d.replicaId, 'empty');
    }
  });

  test('dispatches a ready group instead of waiting for a partial one', () => {
    // 'a' is a hit but partial and young; 'b' is a miss but full.
    const queue = [item('a', 100), ...items('b', 4, 100)];
    const rs = [replica('r1', ['a']), replica('r2')];
    const d = dispatched(decideBatch(queue, rs, opts, 110, lcg(1)));
    assert.equal(d.modelId, 'b');
    assert.equal(d.replicaId, 'r2');
  });

  test('returns the earliest wake-up time when every group must wait', () => {
    const queue = [item('a', 100), item('b', 80)];
    const rs = [replica('r1', ['a']), replica('r2', ['b'])];
    assert.deepEqual(decideBatch(queue, rs, opts, 110, lcg(1)), { kind: 'wait', untilMs: 130 });
  });
});

describe('decideBatch: affinity and spilling', () => {
  test('holds a group for the busy replica that holds its model', () => {
    const queue = items('a', 4, 100);
    const rs = [replica('holder', ['a'], 1), replica('free')];
    assert.deepEqual(decideBatch(queue, rs, opts, 200, lcg(1)), { kind: 'wait', untilMs: 600 });
  });

  test('spills to another replica once the group has waited affinity_wait_ms', () => {
    const queue = items('a', 4, 100);
    const rs = [replica('holder', ['a'], 1), replica('free')];
    const d = dispatched(decideBatch(queue, rs, opts, 600, lcg(1)));
    assert.equal(d.replicaId, 'free');
    assert.equal(d.affinity, 'miss');
  });

  test('spills when the group outgrows what its holders can absorb', () => {
    const rs = [replica('holder', ['a'], 1), replica('free')];
    assert.equal(decideBatch(items('a', 4, 100), rs, opts, 110, lcg(1)).kind, 'wait');
    const d = dispatched(decideBatch(items('a', 5, 100), rs, opts, 110, lcg(1)));
    assert.equal(d.replicaId, 'free');
    assert.deepEqual(d.indexes, [0, 1, 2, 3]);
  });

  test('with spill_backlog_batches = 3 a group waits until it holds more than three batches per holder', () => {
    const rs = [replica('holder', ['a'], 1), replica('free')];
    const o3 = { ...opts, spillBacklogBatches: 3 };
    assert.equal(decideBatch(items('a', 12, 100), rs, o3, 110, lcg(1)).kind, 'wait');
    assert.equal(dispatched(decideBatch(items('a', 13, 100), rs, o3, 110, lcg(1))).replicaId, 'free');
  });

  test('does not starve an old group of another model', () => {
    // A steady full group of 'a' would always win as the largest hit; 'b' has waited past affinity_wait_ms.
    const queue = [item('b', 0), ...items('a', 8, 400)];
    const rs = [replica('r1', ['a', 'b'])];
    const d = dispatched(decideBatch(queue, rs, opts, 500, lcg(1)));
    assert.equal(d.modelId, 'b');
    assert.deepEqual(d.indexes, [0]);
  });

  test('a waiting affinity group does not block another group that can go now', () => {
    const queue = [...items('a', 4, 0), ...items('b', 4, 10)];
    const rs = [replica('holder', ['a'], 1), replica('free')];
    const d = dispatched(decideBatch(queue, rs, opts, 20, lcg(1)));
    assert.equal(d.modelId, 'b');
    assert.equal(d.replicaId, 'free');
  });
});

describe('decideBatch: simulation', () => {
  interface SimResult { loads: Map<string, number>; served: number; maxQueueDelayMs: number }

  /**
   * Step a stream through the policy in 1 ms ticks against two single-slot replicas that take
   * `serviceMs` per batch. A 'miss' dispatch loads the model on its replica (nothing is evicted).
   * Arrivals come from a seeded rng: gaps uniform in [0, 2 × meanGapMs), model drawn from `models`.
   */
  function simulate(seed: number, models: string[], meanGapMs: number, serviceMs: number, simOpts: BatchPolicyOptions): SimResult {
    const total = 400;
    const rng = lcg(seed);
    const arrivalRng = lcg(seed * 7919 + 1);
    let t = 0;
    const arrivals = Array.from({ length: total }, () => {
      t += Math.floor(arrivalRng() * 2 * meanGapMs);
      return item(models[Math.floor(arrivalRng() * models.length)]!, t);
    });
    let queue: QueuedItem[] = [];
    let next = 0;
    const state = new Map<string, { loaded: string[]; busyUntilMs: number }>([
      ['r1', { loaded: [], busyUntilMs: -1 }],
      ['r2', { loaded: [], busyUntilMs: -1 }],
    ]);
    const loads = new Map<string, number>();
    let served = 0;
    let maxQueueDelayMs = 0;
    for (let now = 0; served < total; now++) {
      assert.ok(now < 1_000_000, 'simulation did not drain');
      while (next < total && arrivals[next]!.enqueuedAtMs === now) queue.push(arrivals[next++]!);
      for (;;) {
        const views: ReplicaView[] = [...state].map(([id, s]) => replica(id, s.loaded, s.busyUntilMs > now ? 1 : 0));
        const d = decideBatch(queue, views, simOpts, now, rng);
        if (d.kind !== 'dispatch') {
          if (d.kind === 'wait') assert.ok(d.untilMs > now, 'wait must lie in the future');
          break;
        }
        assert.ok(d.indexes.length > 0 && d.indexes.length <= simOpts.maxBatchSize);
        const r = state.get(d.replicaId)!;
        assert.ok(r.busyUntilMs <= now, 'dispatched to a busy replica');
        if (d.affinity === 'miss') {
          r.loaded.push(d.modelId);
          loads.set(d.modelId, (loads.get(d.modelId) ?? 0) + 1);
        } else {
          assert.ok(r.loaded.includes(d.modelId), 'a hit must land on a holder');
        }
        r.busyUntilMs = now + serviceMs;
        const taken = new Set(d.indexes);
        for (const i of d.indexes) maxQueueDelayMs = Math.max(maxQueueDelayMs, now - queue[i]!.enqueuedAtMs);
        queue = queue.filter((_, i) => !taken.has(i));
        served += taken.size;
      }
    }
    return { loads, served, maxQueueDelayMs };
  }

  // A random A/B mix at ~40% of capacity: a holder is often busy when its next batch is ready
  // while the other replica idles, so a policy without affinity waiting loads both models twice.
  for (const meanGapMs of [10, 12]) {
    test(`a mixed A/B stream over two replicas loads each model exactly once (mean gap ${meanGapMs} ms)`, () => {
      const simOpts = { ...opts, maxBatchSize: 8 };
      for (const seed of [1, 2, 3, 17, 99]) {
        const { loads, served, maxQueueDelayMs } = simulate(seed, ['A', 'B'], meanGapMs, 60, simOpts);
        assert.equal(served, 400);
        assert.deepEqual(Object.fromEntries(loads), { A: 1, B: 1 }, `seed ${seed}`);
        // Bounded latency: at most the batch timer plus one batch ahead on the holder.
        assert.ok(maxQueueDelayMs <= simOpts.batchWaitTimeoutMs + 60, `seed ${seed}: max queue delay ${maxQueueDelayMs} ms`);
      }
    });
  }

  test('a single model that outgrows its replica spreads to the second one', () => {
    // ~100 images/s: more than one replica's 4 images / 60 ms, less than two. The size rule must spill.
    const { loads, served, maxQueueDelayMs } = simulate(5, ['A'], 10, 60, opts);
    assert.equal(served, 400);
    assert.deepEqual(Object.fromEntries(loads), { A: 2 });
    assert.ok(maxQueueDelayMs < opts.affinityWaitMs, `max queue delay ${maxQueueDelayMs} ms`);
  });
});

describe('decideBatch: prefetch timing (a busy replica\'s spare slot)', () => {
  /** r1 runs one batch and has a second slot; its partial slot opens at `partialFromMs`. */
  const busy = (partialFromMs?: number, loaded = ['a']): ReplicaView => ({
    ...replica('r1', loaded, 1, 2), ...(partialFromMs !== undefined ? { partialFromMs } : {}),
  });

  test('a full batch takes the spare slot at once', () => {
    const d = dispatched(decideBatch(items('a', 4, 0), [busy(500)], opts, 100, lcg(1)));
    assert.equal(d.replicaId, 'r1');
    assert.deepEqual(d.indexes, [0, 1, 2, 3]);
  });

  test('a partial batch stays queued until the slot opens, then goes', () => {
    const queue = items('a', 2, 0);
    assert.deepEqual(decideBatch(queue, [busy(500)], opts, 100, lcg(1)), { kind: 'wait', untilMs: 500 });
    const d = dispatched(decideBatch(queue, [busy(500)], opts, 500, lcg(1)));
    assert.deepEqual(d.indexes, [0, 1]);
  });

  test('without an estimate (no partialFromMs) a partial batch takes the spare slot as before', () => {
    assert.equal(dispatched(decideBatch(items('a', 2, 0), [busy()], opts, 100, lcg(1))).replicaId, 'r1');
  });

  test('a partial batch goes to an idle holder instead of waiting for the busy one', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const d = dispatched(decideBatch(items('a', 2, 0), [busy(500), replica('r2', ['a'])], opts, 100, lcg(seed)));
      assert.equal(d.replicaId, 'r2', `seed ${seed}`);
    }
  });

  test('a busy holder whose slot is not open yet keeps its model\'s partial batch (no reload elsewhere)', () => {
    // r2 is idle but does not hold `a`: before affinity_wait_ms runs out, the batch waits for r1.
    assert.deepEqual(decideBatch(items('a', 2, 0), [busy(300), replica('r2', ['b'])], opts, 100, lcg(1)), { kind: 'wait', untilMs: 300 });
  });

  test('the earliest of the slot opening and the batch timer wakes the policy', () => {
    // Not ready yet either (batch_wait_timeout 50 ms from 90 → 140): wait for whichever comes first.
    const d = decideBatch([item('a', 90)], [busy(120)], opts, 100, lcg(1));
    assert.deepEqual(d, { kind: 'wait', untilMs: 120 });
  });
});

describe('decideBatch: online before bulk', () => {
  const bulk = (modelId: string, n: number, at: number) => Array.from({ length: n }, () => item(modelId, at, { priority: 'bulk' }));

  test('takes a group holding an online item before an older, larger group of bulk items', () => {
    const queue = [...bulk('a', 8, 0), item('b', 100)];
    const d = dispatched(decideBatch(queue, [replica('r1', ['a', 'b'])], { ...opts, batchWaitTimeoutMs: 0 }, 200, lcg(1)));
    assert.equal(d.modelId, 'b');
    assert.deepEqual(d.indexes, [8]);
  });

  test('prefers an online group even over an overdue bulk group', () => {
    const queue = [...bulk('a', 4, 0), item('b', 9_000)];
    const d = dispatched(decideBatch(queue, [replica('r1', ['a', 'b'])], { ...opts, batchWaitTimeoutMs: 0 }, 10_000, lcg(1)));
    assert.equal(d.modelId, 'b');
  });

  test('fills a batch with bulk items of the same key behind its online ones', () => {
    // The scheduler queues online items ahead of bulk ones; the batch takes the oldest positions.
    const queue = [item('a', 50), ...bulk('a', 5, 0)];
    const d = dispatched(decideBatch(queue, [replica('r1', ['a'])], opts, 60, lcg(1)));
    assert.deepEqual(d.indexes, [0, 1, 2, 3]);
  });

  test('runs bulk work when no online work waits', () => {
    const d = dispatched(decideBatch(bulk('a', 4, 0), [replica('r1', ['a'])], opts, 1, lcg(1)));
    assert.equal(d.indexes.length, 4);
  });
});

describe('decideBatch: the priority slot', () => {
  const full = (id: string, onlineBatches: number, over: Partial<ReplicaView> = {}): ReplicaView => ({ ...replica(id, ['a'], 2, 2), onlineBatches, ...over });

  test('an online batch goes to a replica whose slots are all taken by bulk batches', () => {
    const d = dispatched(decideBatch(items('a', 4, 0), [full('r1', 0)], opts, 10, lcg(1)));
    assert.equal(d.replicaId, 'r1');
  });

  test('an online batch goes to a replica holding an online and a bulk batch (ahead of the bulk one on its device)', () => {
    assert.equal(dispatched(decideBatch(items('a', 4, 0), [full('r1', 1)], opts, 10, lcg(1))).replicaId, 'r1');
  });

  test('no priority slot on a replica whose batches all hold online work, and none for bulk work', () => {
    assert.deepEqual(decideBatch(items('a', 4, 0), [full('r1', 2)], opts, 10, lcg(1)), { kind: 'idle' });
    const bulk = Array.from({ length: 4 }, () => item('a', 0, { priority: 'bulk' }));
    assert.deepEqual(decideBatch(bulk, [full('r1', 0)], opts, 10, lcg(1)), { kind: 'idle' });
  });

  test('a partial online batch is not held back for a replica busy with bulk work until it is nearly free', () => {
    const r = full('r1', 0, { partialFromMs: 5000 });
    const d = dispatched(decideBatch([item('a', 0)], [r], opts, 100, lcg(1)));
    assert.deepEqual(d.indexes, [0]);
  });
});

describe('decideBatch: bulk work never goes ahead of waiting online work', () => {
  const bulk = (n: number, at: number) => Array.from({ length: n }, () => item('a', at, { priority: 'bulk' }));

  test('an online batch for a busy replica holds online items only (bulk items would lengthen it)', () => {
    const busy: ReplicaView = { ...replica('r1', ['a'], 1, 2), onlineBatches: 0 };
    const d = dispatched(decideBatch([item('a', 0), item('a', 0), ...bulk(6, 0)], [busy], opts, 100, lcg(1)));
    assert.deepEqual(d.indexes, [0, 1]);
  });

  test('a full bulk batch does not take the slot an online batch waits for (batch_wait_timeout_ms)', () => {
    const free: ReplicaView = { ...replica('r1', ['a'], 1, 2), onlineBatches: 1 };
    const queue = [item('a', 90), ...bulk(4, 0)];
    assert.deepEqual(decideBatch(queue, [free], opts, 100, lcg(1)), { kind: 'wait', untilMs: 140 });
    assert.deepEqual(dispatched(decideBatch(queue, [free], opts, 140, lcg(1))).indexes, [0]);
  });

  test('a full bulk batch does not take the slot an online batch is held back from by prefetch timing', () => {
    const holding: ReplicaView = { ...replica('r1', ['a'], 1, 2), onlineBatches: 1, partialFromMs: 300 };
    const queue = [item('a', 0), ...bulk(4, 0)];
    assert.deepEqual(decideBatch(queue, [holding], opts, 100, lcg(1)), { kind: 'wait', untilMs: 300 });
  });

  test('bulk work still takes a replica that no online work waits for', () => {
    const r1: ReplicaView = { ...replica('r1', ['a'], 1, 2), onlineBatches: 1, partialFromMs: 300 };
    const r2: ReplicaView = { ...replica('r2', ['a'], 1, 2), onlineBatches: 1, partialFromMs: 300 };
    const queue = [item('a', 0), ...bulk(4, 0)];
    const d = dispatched(decideBatch(queue, [r1, r2], opts, 100, lcg(1)));
    assert.deepEqual(d.indexes, [1, 2, 3, 4]);
  });
});
