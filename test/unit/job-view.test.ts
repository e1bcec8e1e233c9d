import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ackWaitFor, retryBackoffMs, shouldUpdateAckWait } from '../../services/router/jobs/ack-wait-policy.js';
import type { ItemRecord, JobRecord } from '../../services/router/jobs/job-store.js';
import { countsAfterRetry, JobView } from '../../services/router/jobs/job-view.js';

const job = (over: Partial<JobRecord> = {}): JobRecord => ({
  id: 'j1', jobKey: '', name: '', state: 'in_progress', outputUri: 'file:///tmp/x', total: 10, itemsFollow: false, cursor: 10, generation: 0,
  retryPending: false, createdAtMs: 0, message: '', spec: { template: {}, pipeline: 'p', modelId: '', seed: '1', ext: 'png', width: 64, height: 64, maxAttempts: 3 }, ...over,
});
const rec = (state: ItemRecord['state'], totalAttempts = 1, finishedAtMs?: number): ItemRecord => ({
  state, customId: 'x', gen: 0, attempts: totalAttempts, totalAttempts, seed: '1', ...(finishedAtMs !== undefined ? { finishedAtMs } : {}),
});

describe('job view', () => {
  test('counts follow each item\'s latest record; items without one are queued; a failure is never done', () => {
    const v = new JobView();
    v.apply(0, rec('running'), 0);
    v.apply(1, rec('running'), 0);
    v.apply(0, rec('succeeded', 1, 0), 0);
    v.apply(1, rec('queued', 1), 0);
    v.apply(1, rec('running', 2), 0);
    v.apply(1, rec('failed', 3, 0), 0);
    v.apply(2, rec('running'), 0);
    const c = v.counts(job());
    assert.deepEqual(c, { total: 10, queued: 7, running: 1, succeeded: 1, failed: 1, cancelled: 0, expired: 0, attempts: 5, qcFlagged: 0, qcRerolls: 0 });
    assert.equal(v.stateOf(1), 'failed');
    assert.equal(v.stateOf(9), 'none');
    assert.equal(v.allFinal(10), false);
    assert.equal(v.allFinal(2), true);
  });

  test('items of a cancelled job that never ran count as cancelled', () => {
    const v = new JobView();
    v.apply(0, rec('succeeded', 1, 0), 0);
    const c = v.counts(job({ state: 'cancelling' }));
    assert.equal(c.cancelled, 9);
    assert.equal(c.queued, 0);
  });

  test('items of an expiring job that never finished count as expired, never as done or cancelled', () => {
    const v = new JobView();
    v.apply(0, rec('succeeded', 1, 0), 0);
    v.apply(1, rec('expired', 1, 0), 0);
    v.apply(2, rec('running'), 0);
    const c = v.counts(job({ state: 'expiring' }));
    assert.equal(c.expired, 8, 'the expired record and the 7 never started');
    assert.equal(c.running, 1);
    assert.equal(c.cancelled, 0);
    assert.equal(c.queued, 0);
    assert.equal(c.succeeded, 1);
    assert.equal(v.allFinal(2), true, 'an expired record is final');
  });

  test('items per second counts only finishes within the last minute; ETA is what is left at that rate', () => {
    const v = new JobView();
    const now = 1_000_000;
    for (let i = 0; i < 6; i++) v.apply(i, rec('succeeded', 1, now - 1000), now);
    v.apply(6, rec('succeeded', 1, now - 120_000), now);
    assert.equal(v.itemsPerSecond(now), 6 / 60);
    assert.equal(v.etaSeconds(job(), now), 3 / (6 / 60));
    assert.equal(v.itemsPerSecond(now + 61_000), 0);
  });

  test('memory is allocated only for pages of items that have records', () => {
    const v = new JobView();
    v.apply(9_999_999, rec('succeeded', 1, 0), 0);
    assert.equal(v.counts(job({ total: 10_000_000 })).succeeded, 1);
    assert.equal((v as unknown as { statePages: Map<number, Uint8Array> }).statePages.size, 1);
  });
});

describe('counts after RetryJob', () => {
  test('failed, cancelled and expired items count as queued again; successes and attempts stay', () => {
    const c = countsAfterRetry({ total: 12, queued: 0, running: 0, succeeded: 6, failed: 3, cancelled: 1, expired: 2, attempts: 14 });
    assert.deepEqual(c, { total: 12, queued: 6, running: 0, succeeded: 6, failed: 0, cancelled: 0, expired: 0, attempts: 14 });
  });
});

describe('ack wait policy', () => {
  const bounds = { defaultMs: 60_000, minMs: 30_000, maxMs: 600_000 };
  test('the default until anything is measured, then 4 × p99 clamped', () => {
    assert.equal(ackWaitFor([], bounds), 60_000);
    assert.equal(ackWaitFor([100, 200], bounds), 30_000);
    assert.equal(ackWaitFor(Array.from({ length: 100 }, (_, i) => (i === 99 ? 50_000 : 10_000)), bounds), 40_000);
    assert.equal(ackWaitFor([1_000_000], bounds), 600_000);
  });
  test('updates only on a change of more than a quarter; backoff doubles up to a minute', () => {
    assert.equal(shouldUpdateAckWait(60_000, 70_000), false);
    assert.equal(shouldUpdateAckWait(60_000, 30_000), true);
    assert.deepEqual([1, 2, 3, 10].map((a) => retryBackoffMs(1000, a)), [1000, 2000, 4000, 60_000]);
  });
});
