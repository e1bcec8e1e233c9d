/**
 * Slots shared by several routers: the replica admits at most max_ongoing_batches batches, or
 * with continuous batching max_batch_size + max_waiting_images images (services/worker/admission.ts), and a router's ReplicaHandle counts the batches other routers
 * have there (from heartbeats) and a refusal against the replica's free slots.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Heartbeat } from '../../services/common/wire.js';
import { ReplicaHandle } from '../../services/router/replica-handle.js';
import { hasFreeSlot } from '../../services/router/replica-picker.js';
import { admitsBatch } from '../../services/worker/admission.js';

function hb(seq: number, inFlightBatches: string[] = []): Heartbeat {
  return {
    replicaId: 'r1', deployment: 'd', state: 'running', loadedModels: ['m'], inFlightBatches, inFlightItems: inFlightBatches.length,
    maxOngoingBatches: 2, maxModelsPerReplica: 1, seq, intervalMs: 100, loadingModel: '',
    runningSetCapacity: 0, runningSetOccupied: 0, runningSetWaiting: 0, inFlightOnlineItems: 0,
  };
}

/** Puts a batch on `h` as the scheduler and the dispatcher do (begin, then the wire id). */
function send(h: ReplicaHandle, batchId: string, nowMs: number) {
  const slot = h.begin('m', 1, 10, nowMs);
  slot.batchId = batchId;
  slot.sentAtMs = nowMs;
  return slot;
}

describe('admission at the replica', () => {
  const none = { items: 0, online: 0 };
  const one = { items: 1, online: 0 };
  const req = (maxOngoingBatches: number) => ({ maxOngoingBatches, batching: 'request' as const, maxBatchSize: 4, maxWaitingImages: 1 });
  /** A running set of 4 images and 1 waiting: 5 images in all. */
  const cont = { maxOngoingBatches: 1, batching: 'continuous' as const, maxBatchSize: 4, maxWaitingImages: 1 };

  test('admits batches while fewer than max_ongoing_batches run, and refuses the next', () => {
    assert.equal(admitsBatch(req(2), 0, none, one), true);
    assert.equal(admitsBatch(req(2), 1, one, one), true);
    assert.equal(admitsBatch(req(2), 2, one, one), false);
    assert.equal(admitsBatch(req(1), 1, one, one), false);
  });

  test('a continuous deployment takes batches, however many, while its images fit max_batch_size + max_waiting_images', () => {
    assert.equal(admitsBatch(cont, 9, { items: 3, online: 0 }, { items: 2, online: 0 }), true);
    assert.equal(admitsBatch(cont, 1, { items: 4, online: 0 }, { items: 2, online: 0 }), false);
    assert.equal(admitsBatch(cont, 1, { items: 5, online: 1 }, one), false);
  });

  test('a continuous deployment takes an online-only batch while the online images fit: they take bulk images\' places', () => {
    assert.equal(admitsBatch(cont, 2, { items: 5, online: 0 }, { items: 2, online: 2 }), true);
    assert.equal(admitsBatch(cont, 2, { items: 5, online: 4 }, { items: 2, online: 2 }), false);
    // Bulk images riding along count against every image held.
    assert.equal(admitsBatch(cont, 2, { items: 5, online: 0 }, { items: 2, online: 1 }), false);
  });

  test('an idle continuous replica takes a batch larger than its limit (a router configured otherwise is not refused forever)', () => {
    assert.equal(admitsBatch(cont, 0, none, { items: 9, online: 0 }), true);
  });
});

describe('a replica handle shared with other routers', () => {
  test("counts other routers' batches listed in the heartbeat as taken slots", () => {
    const h = new ReplicaHandle(hb(1), 0);
    assert.equal(h.view(0, 2).ongoingBatches, 0);
    h.observe(hb(2, ['theirs-1']), 100);
    assert.equal(h.otherBatches, 1);
    assert.equal(h.view(0, 2).ongoingBatches, 1);
    send(h, 'mine-1', 100);
    const v = h.view(0, 2);
    assert.equal(v.ongoingBatches, 2);
    assert.equal(hasFreeSlot(v), false);
  });

  test('does not count its own batches that the heartbeat lists as anyone else\'s', () => {
    const h = new ReplicaHandle(hb(1), 0);
    send(h, 'mine-1', 0);
    h.observe(hb(2, ['mine-1']), 100);
    assert.equal(h.otherBatches, 0);
    assert.equal(h.view(0, 2).ongoingBatches, 1);
  });

  test('an answered batch still listed by a heartbeat sent before the reply frees its slot at once', () => {
    const h = new ReplicaHandle(hb(1), 0);
    const slot = send(h, 'mine-1', 0);
    h.observe(hb(2, ['mine-1']), 50);
    slot.settle({ kind: 'reply', data: new Uint8Array() });
    h.end(slot, 60);
    assert.equal(h.view(0, 2).ongoingBatches, 0);
    // A later heartbeat no longer lists it; one listing it again would be another router's (ids are unique).
    h.observe(hb(3), 200);
    h.observe(hb(4, ['mine-1']), 300);
    assert.equal(h.otherBatches, 1);
  });

  test('a batch declared lost that the replica still lists keeps its slot taken', () => {
    const h = new ReplicaHandle(hb(1), 0);
    const slot = send(h, 'mine-1', 0);
    slot.settle({ kind: 'lost', reason: 'no reply in time', ran: true });
    h.end(slot, 10);
    h.observe(hb(2, ['mine-1']), 100);
    assert.equal(h.view(0, 2).ongoingBatches, 1);
  });

  test('counts a replica that refused a batch as full until its next heartbeat', () => {
    const h = new ReplicaHandle(hb(1), 0);
    h.refused();
    assert.equal(hasFreeSlot(h.view(0, 2)), false);
    h.observe(hb(1), 50); // the same (older or equal) heartbeat changes nothing
    h.observe(hb(0), 60);
    assert.equal(hasFreeSlot(h.view(0, 2)), false);
    h.observe(hb(2, ['theirs-1']), 100);
    const v = h.view(0, 2);
    assert.equal(v.ongoingBatches, 1);
    assert.equal(hasFreeSlot(v), true);
  });
});
