import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import type { QueuedItem } from '../../services/router/batch-policy.js';
import { decideByRoom, replicaRoom, type RoomDecision, type RoomInputs, type RoomPolicyOptions, type RoomView } from '../../services/router/room-policy.js';
import { lcg, sequence } from '../support/rng.js';

const opts: RoomPolicyOptions = { maxBatchSize: 4, affinityWaitMs: 500, spillBacklogBatches: 3 };

function item(modelId: string, enqueuedAtMs: number, over: Partial<QueuedItem> = {}): QueuedItem {
  return { key: `${modelId}|1536x640|30`, modelId, enqueuedAtMs, deadlineMs: 0, ...over };
}

function replica(id: string, loadedModels: string[], room: number, onlineRoom = room): RoomView {
  return { id, loadedModels, room, onlineRoom };
}

function dispatched(d: RoomDecision): Extract<RoomDecision, { kind: 'dispatch' }> {
  assert.equal(d.kind, 'dispatch', `expected dispatch, got ${JSON.stringify(d)}`);
  return d;
}

describe('replicaRoom', () => {
  const base: RoomInputs = {
    capacity: 4, heldItems: 0, inFlightItems: 0, inFlightOnlineItems: 0, releasedItems: 0, releasedOnlineItems: 0, unreportedItems: 0, unreportedOnlineItems: 0,
    outstandingItems: 0, outstandingOnlineItems: 0, defaultCapacity: 4, waitingImages: 0,
  };

  test('is capacity − occupied − waiting − images sent that no heartbeat reported', () => {
    assert.deepEqual(replicaRoom({ ...base, capacity: 8, heldItems: 3, unreportedItems: 2, outstandingItems: 5 }), { room: 3, onlineRoom: 8 });
  });

  test('gives back the images of listed batches answered since the heartbeat', () => {
    assert.equal(replicaRoom({ ...base, heldItems: 4, releasedItems: 3, outstandingItems: 1 }).room, 3);
    // More released than the heartbeat held (another router's count went down meanwhile): never negative load.
    assert.equal(replicaRoom({ ...base, heldItems: 1, releasedItems: 3 }).room, 4);
  });

  test('counts the images of listed batches that have not reached the running set\'s counts yet', () => {
    // The replica lists 3 images' batches, but its set says 0 occupied, 0 waiting: they are on their way in.
    assert.equal(replicaRoom({ ...base, heldItems: 0, inFlightItems: 3, outstandingItems: 3 }).room, 1);
    // Once answered, they are given back.
    assert.equal(replicaRoom({ ...base, heldItems: 0, inFlightItems: 3, releasedItems: 3 }).room, 4);
  });

  test('is never negative, even when the replica holds more than it can step', () => {
    assert.equal(replicaRoom({ ...base, heldItems: 6, unreportedItems: 2 }).room, 0);
  });

  test('counts only online images against the capacity for online room', () => {
    // The set is full: 3 bulk images and one online image (all this router's).
    const r = replicaRoom({ ...base, heldItems: 4, inFlightItems: 4, inFlightOnlineItems: 1, outstandingItems: 4, outstandingOnlineItems: 1 });
    assert.equal(r.room, 0);
    assert.equal(r.onlineRoom, 3);
  });

  test('counts every router\'s online images against online room, from the heartbeat, corrected like the images', () => {
    // The set holds 4 images, 3 of them online (2 another router's); this router's online one is listed.
    const r = { ...base, heldItems: 4, inFlightItems: 4, inFlightOnlineItems: 3, outstandingItems: 1, outstandingOnlineItems: 1 };
    assert.deepEqual(replicaRoom(r), { room: 0, onlineRoom: 1 });
    // One of them answered since; one more of ours sent since.
    assert.equal(replicaRoom({ ...r, releasedItems: 1, releasedOnlineItems: 1, unreportedItems: 1, unreportedOnlineItems: 1, outstandingItems: 2, outstandingOnlineItems: 2 }).onlineRoom, 1);
    // Never below this router's own online images (a replica that does not report them says 0).
    assert.equal(replicaRoom({ ...r, inFlightOnlineItems: 0, outstandingOnlineItems: 3 }).onlineRoom, 1);
  });

  test('reaches waitingImages past the capacity, for images and online images alike', () => {
    assert.deepEqual(replicaRoom({ ...base, heldItems: 4, outstandingItems: 4, waitingImages: 1 }), { room: 1, onlineRoom: 5 });
    assert.deepEqual(replicaRoom({ ...base, heldItems: 5, inFlightOnlineItems: 5, outstandingItems: 5, outstandingOnlineItems: 5, waitingImages: 1 }), { room: 0, onlineRoom: 0 });
  });

  test('falls back to max_batch_size less this router\'s images in flight when the replica reports no running set', () => {
    assert.deepEqual(replicaRoom({ ...base, capacity: 0, heldItems: 0, unreportedItems: 3, outstandingItems: 3, outstandingOnlineItems: 3, defaultCapacity: 4 }), { room: 1, onlineRoom: 1 });
  });
});

describe('decideByRoom', () => {
  test('is idle for an empty queue and when no replica has room', () => {
    assert.deepEqual(decideByRoom([], [replica('r1', ['a'], 4)], opts, 0, lcg(1)), { kind: 'idle' });
    assert.deepEqual(decideByRoom([item('a', 0), item('a', 0)], [replica('r1', ['a'], 0)], opts, 10_000, lcg(1)), { kind: 'idle' });
    assert.deepEqual(decideByRoom([item('a', 0)], [], opts, 0, lcg(1)), { kind: 'idle' });
  });

  test('sends a single image at once: no batch-forming wait', () => {
    const d = dispatched(decideByRoom([item('a', 100)], [replica('r1', ['a'], 4)], opts, 100, lcg(1)));
    assert.deepEqual(d, { kind: 'dispatch', replicaId: 'r1', key: 'a|1536x640|30', modelId: 'a', indexes: [0], affinity: 'hit' });
  });

  test('sends at most the replica\'s room, oldest first', () => {
    const queue = Array.from({ length: 5 }, (_, i) => item('a', i));
    assert.deepEqual(dispatched(decideByRoom(queue, [replica('r1', ['a'], 2)], opts, 10, lcg(1))).indexes, [0, 1]);
  });

  test('prefers the holder with the most room', () => {
    const rs = [replica('r1', ['a'], 1), replica('r2', ['a'], 3), replica('r3', ['a'], 2), replica('r4', ['b'], 4)];
    for (let seed = 1; seed <= 20; seed++) {
      const d = dispatched(decideByRoom([item('a', 0), item('a', 0)], rs, opts, 0, lcg(seed)));
      assert.equal(d.replicaId, 'r2');
      assert.equal(d.affinity, 'hit');
    }
  });

  test('breaks a tie in room with the rng', () => {
    const rs = [replica('r1', ['a'], 2), replica('r2', ['a'], 2)];
    assert.equal(dispatched(decideByRoom([item('a', 0)], rs, opts, 0, sequence(0))).replicaId, 'r1');
    assert.equal(dispatched(decideByRoom([item('a', 0)], rs, opts, 0, sequence(0.99))).replicaId, 'r2');
  });

  test('sends online images before bulk ones, and bulk ones only into the room left', () => {
    // Queue order as the scheduler keeps it: online first.
    const queue = [item('a', 50), item('a', 60), item('a', 0, { priority: 'bulk' }), item('a', 0, { priority: 'bulk' })];
    assert.deepEqual(dispatched(decideByRoom(queue, [replica('r1', ['a'], 3)], opts, 100, lcg(1))).indexes, [0, 1, 2]);
  });

  test('tries a group holding an online image before an older bulk-only group', () => {
    const queue = [item('a', 50), item('b', 0, { priority: 'bulk' })];
    const rs = [replica('r1', ['a', 'b'], 1)];
    assert.equal(dispatched(decideByRoom(queue, rs, opts, 100, lcg(1))).modelId, 'a');
  });

  test('sends online images into the room bulk images leave, but keeps bulk images queued', () => {
    // The replica's set is full of bulk images: no room, yet online room (the replica lets online overtake bulk).
    const rs = [replica('r1', ['a'], 0, 4)];
    assert.deepEqual(decideByRoom([item('a', 0, { priority: 'bulk' })], rs, opts, 100, lcg(1)), { kind: 'idle' });
    const queue = [item('a', 90), item('a', 0, { priority: 'bulk' })];
    assert.deepEqual(dispatched(decideByRoom(queue, rs, opts, 100, lcg(1))).indexes, [0]);
  });

  test('waits for a full replica holding the model instead of loading it elsewhere, until affinity_wait_ms', () => {
    const queue = [item('a', 100)];
    const rs = [replica('holder', ['a'], 0), replica('other', ['b'], 4)];
    assert.deepEqual(decideByRoom(queue, rs, opts, 200, lcg(1)), { kind: 'wait', untilMs: 600 });
    const d = dispatched(decideByRoom(queue, rs, opts, 600, lcg(1)));
    assert.equal(d.replicaId, 'other');
    assert.equal(d.affinity, 'miss');
  });

  test('spills at once when the backlog exceeds spill_backlog_batches running sets per holder', () => {
    const rs = [replica('holder', ['a'], 0), replica('other', [], 4)];
    const backlog = Array.from({ length: 13 }, () => item('a', 100));
    assert.equal(decideByRoom(backlog.slice(0, 12), rs, opts, 100, lcg(1)).kind, 'wait');
    const d = dispatched(decideByRoom(backlog, rs, opts, 100, lcg(1)));
    assert.equal(d.replicaId, 'other');
    assert.deepEqual(d.indexes, [0, 1, 2, 3]);
  });

  test('puts a model no replica holds on the replica with room holding the fewest models', () => {
    const rs = [replica('r1', ['a', 'b'], 4), replica('r2', ['c'], 1), replica('r3', ['a'], 0)];
    const d = dispatched(decideByRoom([item('z', 0), item('z', 0)], rs, opts, 0, lcg(1)));
    assert.equal(d.replicaId, 'r2');
    assert.deepEqual(d.indexes, [0]);
    assert.equal(d.affinity, 'miss');
  });

  test('sends another group when the first one waits for its holder', () => {
    const queue = [item('a', 0), item('b', 10)];
    const rs = [replica('r1', ['a'], 0), replica('r2', ['b'], 2)];
    const d = dispatched(decideByRoom(queue, rs, opts, 100, lcg(1)));
    assert.equal(d.modelId, 'b');
    assert.deepEqual(d.indexes, [1]);
  });

  test('keeps images of different batch keys in different batches', () => {
    const queue = [item('a', 0), item('a', 1, { key: 'a|1024x1024|30' }), item('a', 2)];
    assert.deepEqual(dispatched(decideByRoom(queue, [replica('r1', ['a'], 4)], opts, 10, lcg(1))).indexes, [0, 2]);
  });
});
