import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { simulateBatching } from '../../bench/lib/batch-queue-model.js';

const COST = { maxBatch: 8, fixedMs: 40, perItemMs: 10, waitMs: 20 };

describe('simulateBatching (the benchmark\'s ideal batcher)', () => {
  test('a lone request waits for company for waitMs, then runs as a batch of one', () => {
    assert.deepEqual(simulateBatching([0], COST), { latencies: [70], meanBatch: 1 });
  });

  test('a full batch leaves at once; the next one waits for the replica', () => {
    const r = simulateBatching(new Array<number>(16).fill(0), COST);
    assert.deepEqual(r.latencies, [...new Array<number>(8).fill(120), ...new Array<number>(8).fill(240)]);
    assert.equal(r.meanBatch, 8);
  });

  test('two replicas share the queue: the second batch runs beside the first', () => {
    const r = simulateBatching(new Array<number>(16).fill(0), { ...COST, replicas: 2 });
    assert.deepEqual(r.latencies, new Array<number>(16).fill(120));
  });

  test('a request arriving while the replica is busy joins the batch that starts when it frees', () => {
    // Batch 1: the request at 0 (leaves at 20, done at 70). At 70 the two that came at 30 and 60 go together.
    const r = simulateBatching([0, 30, 60], COST);
    assert.deepEqual(r.latencies, [70, 70 + 60 - 30, 70 + 60 - 60]);
  });

  test('overheadMs is added to every batch', () => {
    assert.deepEqual(simulateBatching([0], { ...COST, overheadMs: 3 }).latencies, [73]);
  });
});
