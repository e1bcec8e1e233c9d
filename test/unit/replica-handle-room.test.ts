import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import type { Heartbeat } from '../../services/common/wire.js';
import { ReplicaHandle } from '../../services/router/replica-handle.js';

function hb(seq: number, over: Partial<Heartbeat> = {}): Heartbeat {
  return {
    replicaId: 'r1', deployment: 'sdxl', state: 'running', loadedModels: ['m'], inFlightBatches: [], inFlightItems: 0,
    maxOngoingBatches: 2, maxModelsPerReplica: 2, seq, intervalMs: 100, loadingModel: '',
    runningSetCapacity: 4, runningSetOccupied: 0, runningSetWaiting: 0, inFlightOnlineItems: 0, ...over,
  };
}

/** Puts a batch of `items` on the handle as the scheduler and dispatcher do (begin, then the id on sending). */
function send(r: ReplicaHandle, batchId: string, items: number, online = 0) {
  const slot = r.begin('m', items, Number.NaN, 0, online);
  slot.batchId = batchId;
  return slot;
}

describe('ReplicaHandle.roomView (continuous batching)', () => {
  test('counts a batch as soon as it is put on the replica, before any heartbeat reports it', () => {
    const r = new ReplicaHandle(hb(1), 0);
    assert.equal(r.roomView(4, 0).room, 4);
    r.begin('m', 3, Number.NaN, 0);
    assert.equal(r.roomView(4, 0).room, 1);
  });

  test('counts a reported batch once: in the heartbeat\'s running set, no longer as unreported', () => {
    const r = new ReplicaHandle(hb(1), 0);
    send(r, 'b1', 3);
    r.observe(hb(2, { inFlightBatches: ['b1'], runningSetOccupied: 2, runningSetWaiting: 1 }), 10);
    assert.equal(r.roomView(4, 0).room, 1);
    // Another router's images in the set count too.
    r.observe(hb(3, { inFlightBatches: ['b1'], runningSetOccupied: 4, runningSetWaiting: 1 }), 20);
    assert.equal(r.roomView(4, 0).room, 0);
  });

  test('counts a listed batch whose images the replica has not yet put in its running set', () => {
    const r = new ReplicaHandle(hb(1), 0);
    send(r, 'b1', 3);
    r.observe(hb(2, { inFlightBatches: ['b1'], inFlightItems: 3, runningSetOccupied: 0, runningSetWaiting: 0 }), 10);
    assert.equal(r.roomView(4, 0).room, 1);
  });

  test('gives the room of an answered batch back at once, without waiting for the next heartbeat', () => {
    const r = new ReplicaHandle(hb(1), 0);
    const a = send(r, 'b1', 2);
    send(r, 'b2', 2);
    r.observe(hb(2, { inFlightBatches: ['b1', 'b2'], runningSetOccupied: 4 }), 10);
    assert.equal(r.roomView(4, 0).room, 0);
    r.end(a, 20);
    assert.equal(r.roomView(4, 0).room, 2);
    // The next heartbeat no longer counts b1's images: nothing is given back twice.
    r.observe(hb(3, { inFlightBatches: ['b2'], runningSetOccupied: 2 }), 30);
    assert.equal(r.roomView(4, 0).room, 2);
  });

  test('leaves online room where bulk images fill the set', () => {
    const r = new ReplicaHandle(hb(1), 0);
    send(r, 'bulk', 4, 0);
    send(r, 'online', 1, 1);
    r.observe(hb(2, { inFlightBatches: ['bulk', 'online'], runningSetOccupied: 4, runningSetWaiting: 1 }), 10);
    assert.deepEqual([r.roomView(4, 0).room, r.roomView(4, 0).onlineRoom], [0, 3]);
  });

  test('falls back to max_batch_size less its own images for a replica that reports no running set', () => {
    const r = new ReplicaHandle(hb(1, { runningSetCapacity: 0 }), 0);
    send(r, 'b1', 3);
    r.observe(hb(2, { runningSetCapacity: 0, inFlightBatches: ['b1'] }), 10);
    assert.equal(r.roomView(4, 0).room, 1);
  });

  test('lists the models of batches in flight among those the replica holds', () => {
    const r = new ReplicaHandle(hb(1, { loadedModels: [] }), 0);
    r.begin('other', 1, Number.NaN, 0);
    assert.deepEqual(r.roomView(4, 0).loadedModels, ['other']);
  });

  test('takes max_waiting_images beyond the running set: images that join as rows free', () => {
    const r = new ReplicaHandle(hb(1, { runningSetOccupied: 4 }), 0);
    assert.equal(r.roomView(4, 0).room, 0);
    assert.equal(r.roomView(4, 1).room, 1);
  });

  test('has no room after refusing a batch for want of it, until a newer heartbeat', () => {
    const r = new ReplicaHandle(hb(1), 0);
    r.refused();
    assert.deepEqual([r.roomView(4, 1).room, r.roomView(4, 1).onlineRoom], [0, 0]);
    r.observe(hb(1), 10);
    assert.equal(r.roomView(4, 1).room, 0, 'the same heartbeat again says nothing new');
    r.observe(hb(2, { runningSetOccupied: 2 }), 20);
    assert.equal(r.roomView(4, 1).room, 3);
  });
});
