import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import type { Heartbeat } from '../../services/common/wire.js';
import { ReplicaRegistry } from '../../services/router/replica-registry.js';

function hb(replicaId: string, over: Partial<Heartbeat> = {}): Heartbeat {
  return {
    replicaId,
    deployment: 'synthetic',
    state: 'running',
    loadedModels: [],
    inFlightBatches: [],
    inFlightItems: 0,
    maxOngoingBatches: 1,
    maxModelsPerReplica: 2,
    seq: 1,
    intervalMs: 100,
    loadingModel: '',
    runningSetCapacity: 0,
    runningSetOccupied: 0,
    runningSetWaiting: 0,
    inFlightOnlineItems: 0,
    ...over,
  };
}

const ids = (rs: { id: string }[]) => rs.map((r) => r.id).sort();

describe('ReplicaRegistry.observe', () => {
  test('reports a replica not seen before as new, and later heartbeats as known', () => {
    const reg = new ReplicaRegistry(3);
    assert.equal(reg.observe(hb('r1', { seq: 1 }), 1000), 'new');
    assert.equal(reg.observe(hb('r1', { seq: 2 }), 1100), 'known');
    const r = reg.get('r1')!;
    assert.equal(r.deployment, 'synthetic');
    assert.equal(r.heartbeat.seq, 2);
    assert.equal(r.lastSeenMs, 1100);
  });

  test('reports a known replica that says stopped as gone and forgets it', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1'), 0);
    assert.equal(reg.observe(hb('r1', { seq: 2, state: 'stopped' }), 10), 'gone');
    assert.equal(reg.get('r1'), undefined);
    assert.deepEqual(reg.all(), []);
  });

  test('does not register a replica whose first heartbeat says stopped', () => {
    const reg = new ReplicaRegistry(3);
    assert.notEqual(reg.observe(hb('r1', { state: 'stopped' }), 0), 'new');
    assert.equal(reg.get('r1'), undefined);
  });

  test('ignores an out-of-order older heartbeat: state and last-seen time stay', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 5, loadedModels: ['syn-a'] }), 1000);
    assert.equal(reg.observe(hb('r1', { seq: 4, loadedModels: [], state: 'draining' }), 1050), 'known');
    const r = reg.get('r1')!;
    assert.equal(r.heartbeat.seq, 5);
    assert.deepEqual(r.heartbeat.loadedModels, ['syn-a']);
    assert.equal(r.heartbeat.state, 'running');
    assert.equal(r.lastSeenMs, 1000);
  });

  test('applies a newer heartbeat\'s state, such as draining', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 1 }), 0);
    reg.observe(hb('r1', { seq: 2, state: 'draining', loadedModels: ['syn-b'] }), 100);
    assert.equal(reg.get('r1')!.heartbeat.state, 'draining');
    assert.deepEqual(reg.get('r1')!.heartbeat.loadedModels, ['syn-b']);
  });
});

describe('ReplicaRegistry.expire', () => {
  test('keeps a replica up to timeoutIntervals × its interval and drops it just after', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { intervalMs: 100 }), 1000);
    assert.deepEqual(reg.expire(1300), []);
    assert.ok(reg.get('r1'));
    const lost = reg.expire(1301);
    assert.deepEqual(ids(lost), ['r1']);
    assert.equal(reg.get('r1'), undefined);
    assert.deepEqual(reg.expire(5000), [], 'an expired replica is reported once');
  });

  test('uses each replica\'s own heartbeat interval', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('fast', { intervalMs: 100 }), 0);
    reg.observe(hb('slow', { intervalMs: 1000 }), 0);
    assert.deepEqual(ids(reg.expire(301)), ['fast']);
    assert.deepEqual(ids(reg.all()), ['slow']);
    assert.deepEqual(reg.expire(3000), []);
    assert.deepEqual(ids(reg.expire(3001)), ['slow']);
  });

  test('scales the timeout with timeoutIntervals', () => {
    const reg = new ReplicaRegistry(5);
    reg.observe(hb('r1', { intervalMs: 100 }), 0);
    assert.deepEqual(reg.expire(500), []);
    assert.deepEqual(ids(reg.expire(501)), ['r1']);
  });

  test('counts from the latest accepted heartbeat', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 1, intervalMs: 100 }), 0);
    reg.observe(hb('r1', { seq: 2, intervalMs: 100 }), 250);
    assert.deepEqual(reg.expire(550), []);
    assert.deepEqual(ids(reg.expire(551)), ['r1']);
  });

  test('does not let an out-of-order old heartbeat keep a silent replica alive', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 9, intervalMs: 100 }), 0);
    reg.observe(hb('r1', { seq: 3, intervalMs: 100 }), 250);
    assert.deepEqual(ids(reg.expire(301)), ['r1']);
  });

  test('treats a zero interval as 1 ms rather than expiring at once', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { intervalMs: 0 }), 0);
    assert.deepEqual(reg.expire(3), []);
    assert.deepEqual(ids(reg.expire(4)), ['r1']);
  });
});

describe('ReplicaRegistry.serving', () => {
  test('lists running replicas of the deployment only, excluding draining, starting and other deployments', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('run-1'), 0);
    reg.observe(hb('run-2'), 0);
    reg.observe(hb('drain', { state: 'draining' }), 0);
    reg.observe(hb('start', { state: 'starting' }), 0);
    reg.observe(hb('other', { deployment: 'texture' }), 0);
    assert.deepEqual(ids(reg.serving('synthetic')), ['run-1', 'run-2']);
    assert.deepEqual(ids(reg.serving('texture')), ['other']);
    assert.deepEqual(reg.serving('none'), []);
    assert.equal(reg.all().length, 5);
  });

  test('drops a replica from serving once it reports draining', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 1 }), 0);
    assert.deepEqual(ids(reg.serving('synthetic')), ['r1']);
    reg.observe(hb('r1', { seq: 2, state: 'draining' }), 10);
    assert.deepEqual(reg.serving('synthetic'), []);
  });
});

describe('ReplicaRegistry.remove', () => {
  test('a removed replica that goes silent expires and loses the batches it still had', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { intervalMs: 100 }), 0);
    const slot = reg.get('r1')!.begin('m', 1, 10, 0);
    reg.remove('r1');
    assert.deepEqual(reg.serving('synthetic'), []);
    assert.deepEqual(reg.expire(301).map((r) => r.id), ['r1']);
    assert.equal(slot.settlement?.kind, 'lost', 'not left waiting for a reply that will never come');
  });

  test('a removed replica that heartbeats again comes back with its batches still running', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1'), 0);
    const r = reg.get('r1')!;
    const slot = r.begin('m', 1, 10, 0);
    reg.remove('r1');
    assert.equal(reg.observe(hb('r1', { seq: 2 }), 10), 'new');
    assert.equal(reg.get('r1'), r, 'the same handle');
    assert.equal(r.ongoingBatches, 1);
    assert.equal(slot.settlement, undefined);
  });

  test('forgets a replica at once and returns it', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1'), 0);
    assert.equal(reg.remove('r1')?.id, 'r1');
    assert.equal(reg.get('r1'), undefined);
    assert.equal(reg.remove('r1'), undefined);
    assert.equal(reg.observe(hb('r1', { seq: 2 }), 10), 'new', 'a removed replica that heartbeats again is new');
  });
});

describe('ReplicaHandle: batches in flight', () => {
  test('counts the batches begun and not ended, with their models and images, in its view', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { loadedModels: ['syn-a'], maxOngoingBatches: 2 }), 0);
    const r = reg.get('r1')!;
    const a = r.begin('syn-b', 3, 100, 0);
    r.begin('syn-a', 2, 100, 0);
    const v = r.view(0, 1);
    assert.equal(v.ongoingBatches, 2);
    assert.equal(v.inFlightItems, 5);
    assert.deepEqual([...v.loadedModels].sort(), ['syn-a', 'syn-b'], 'a model of a batch in flight counts as held before a heartbeat says so');
    r.end(a, 50);
    assert.equal(r.view(0, 1).ongoingBatches, 1);
    assert.deepEqual(r.view(0, 1).loadedModels, ['syn-a']);
  });

  test('expects to be free after the expected run times of its batches, and opens its spare slot one overhead earlier', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { maxOngoingBatches: 2 }), 0);
    const r = reg.get('r1')!;
    assert.equal(r.aheadMs(0), 0, 'idle: free now');
    assert.equal(r.view(10, 1).partialFromMs, undefined);
    const a = r.begin('m', 4, 200, 1000);
    r.begin('m', 4, 300, 1100);
    assert.equal(r.aheadMs(1100), 400, 'both batches: 1000 + 200 + 300 = 1500');
    assert.equal(r.view(30, 1).partialFromMs, 1470);
    r.end(a, 1250);
    assert.equal(r.aheadMs(1250), 300, 'what is left runs from now');
  });

  test('an unknown run time makes the busy time unknown: no prefetch time and no wait counted', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1'), 0);
    const r = reg.get('r1')!;
    r.begin('m', 1, Number.NaN, 0);
    assert.equal(r.view(0, 1).partialFromMs, undefined);
    assert.equal(r.aheadMs(10), 0);
  });

  test('a batch its heartbeats stop listing ends as lost after two such heartbeats well after it was sent', async () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 1, intervalMs: 100 }), 0);
    const r = reg.get('r1')!;
    const slot = r.begin('m', 1, 10, 0);
    slot.batchId = 'b1';
    slot.sentAtMs = 1000;
    reg.observe(hb('r1', { seq: 2, intervalMs: 100 }), 1100); // too soon after sending to count
    reg.observe(hb('r1', { seq: 3, intervalMs: 100, inFlightBatches: ['b1'] }), 1250); // listed: misses reset
    reg.observe(hb('r1', { seq: 4, intervalMs: 100 }), 1350);
    assert.equal(slot.settlement, undefined, 'one miss is not enough');
    reg.observe(hb('r1', { seq: 5, intervalMs: 100 }), 1450);
    assert.deepEqual(await slot.settled(), { kind: 'lost', reason: 'the replica no longer reports the batch (message lost)', ran: true });
  });

  test('a batch still being sent (payloads being stored) is never declared lost by heartbeats', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 1, intervalMs: 100 }), 0);
    const slot = reg.get('r1')!.begin('m', 1, 10, 0);
    for (let seq = 2; seq < 10; seq++) reg.observe(hb('r1', { seq, intervalMs: 100 }), seq * 1000);
    assert.equal(slot.settlement, undefined);
  });

  test('a replica that stops loses only the batches its last heartbeat still lists', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { seq: 1 }), 0);
    const r = reg.get('r1')!;
    const done = r.begin('m', 1, 10, 0);
    done.batchId = 'answered';
    const cut = r.begin('m', 1, 10, 0);
    cut.batchId = 'cut-off';
    assert.equal(reg.observe(hb('r1', { seq: 2, state: 'stopped', inFlightBatches: ['cut-off'] }), 10), 'gone');
    assert.equal(done.settlement, undefined, 'its reply came before the stop');
    assert.equal(cut.settlement?.kind, 'lost');
  });

  test('an expired replica loses every batch in flight; the first settlement of a batch wins', () => {
    const reg = new ReplicaRegistry(3);
    reg.observe(hb('r1', { intervalMs: 100 }), 0);
    const slot = reg.get('r1')!.begin('m', 1, 10, 0);
    assert.deepEqual(reg.expire(301).map((r) => r.id), ['r1']);
    assert.deepEqual(slot.settlement, { kind: 'lost', reason: 'replica stopped heartbeating', ran: true });
    assert.equal(slot.settle({ kind: 'reply', data: new Uint8Array(1) }), false);
  });
});
