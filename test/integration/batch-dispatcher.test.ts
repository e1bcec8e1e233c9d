/**
 * The router's batch dispatcher against a real nats-server: replies and progress come back on the
 * router's one inbox subscription and reach the right batch and unit; a batch nobody receives,
 * one whose reply never comes and one whose replica is lost end as 'lost' with the right `ran`.
 * The "replica" here is a plain NATS subscription answering as a replica would (wire codecs).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { createLogger } from '../../services/common/logger.js';
import { outputPayloadName, PayloadStore } from '../../services/common/payload-store.js';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type Payload } from '../../services/common/wire.js';
import { BatchDispatcher } from '../../services/router/batch-dispatcher.js';
import { ReplicaHandle } from '../../services/router/replica-handle.js';
import { batchKey, WorkUnit } from '../../services/router/work-unit.js';
import { workItem } from '../support/work-items.js';
import { eventually } from './harness.js';

const subjects = makeSubjects('orrery');

function unit(requestId: string, deadlineMs: number, progress?: (step: number, total: number) => void, initImage?: Uint8Array): WorkUnit {
  const input = workItem({ requestId, prompt: 'p', steps: 3, ...(initImage ? { initImage } : {}) });
  return new WorkUnit('dep', 'm', batchKey('m', input), input, deadlineMs, new AbortController().signal, Date.now(), progress ? { progress } : {});
}

/** A replica as the router's registry knows it after one heartbeat. */
function replica(id: string): ReplicaHandle {
  return new ReplicaHandle({
    replicaId: id, deployment: 'dep', state: 'running', loadedModels: ['m'], inFlightBatches: [], inFlightItems: 0,
    maxOngoingBatches: 2, maxModelsPerReplica: 1, seq: 1, intervalMs: 100, loadingModel: '',
    runningSetCapacity: 0, runningSetOccupied: 0, runningSetWaiting: 0, inFlightOnlineItems: 0,
  }, Date.now());
}

/** Puts a batch of `units` on `r` (as the scheduler does), sends it, and takes it off when it ends. */
async function sendOn(d: BatchDispatcher, r: ReplicaHandle, units: WorkUnit[]) {
  const slot = r.begin('m', units.length, Number.NaN, Date.now());
  try {
    return await d.send(r, slot, units, 1);
  } finally {
    r.end(slot, Date.now());
  }
}

describe('batch dispatcher on a real nats-server', () => {
  let nats: NatsServerProcess;
  let routerNc: NatsConnection;
  let replicaNc: NatsConnection;
  let dispatcher: BatchDispatcher;

  before(async () => {
    nats = await NatsServerProcess.start();
    routerNc = await connect({ servers: nats.url });
    replicaNc = await connect({ servers: nats.url });
    const payloads = new PayloadStore(routerNc, { bucket: subjects.payloadBucket, maxInlineBytes: 1 << 20 });
    dispatcher = new BatchDispatcher(routerNc, subjects, 'router-1', payloads, createLogger('test', 'silent'), { maxBatchWaitMs: 60_000 });
  });
  after(async () => {
    dispatcher.close();
    await routerNc.close();
    await replicaNc.close();
    await nats.close();
  });

  test('the reply reaches its batch and progress reaches the unit it is about, over one inbox subscription', async () => {
    // Two batches in flight at once to the same replica: each gets its own reply.
    const sub = replicaNc.subscribe(subjects.batch('r1'), {
      callback: (_err, msg) => {
        const req = wire.batchRequest.decode(msg.data);
        assert.match(msg.reply!, /^orrery\.router\.router-1\.reply\./);
        for (const it of req.items) {
          for (let step = 1; step <= it.steps; step++) {
            if (req.progressSubject) replicaNc.publish(req.progressSubject, wire.progress.encode({ batchId: req.batchId, requestId: it.requestId, imageIndex: 0, step, totalSteps: it.steps }));
          }
        }
        const results = req.items.map((it) => ({
          requestId: it.requestId, imageIndex: it.imageIndex, width: 64, height: 64, mimeType: 'text/plain',
          image: { inline: new TextEncoder().encode(`image of ${it.requestId}`), size: 0 }, error: null,
        }));
        msg.respond(wire.batchReply.encode({ batchId: req.batchId, attempt: req.attempt, replicaId: 'r1', runSeconds: 0.01, loadSeconds: 0, error: null, results }));
      },
    });
    await replicaNc.flush();
    const seen: string[] = [];
    const a = unit('a', Date.now() + 10_000, (s, t) => seen.push(`a ${s}/${t}`));
    const b = unit('b', Date.now() + 10_000);
    const r1 = replica('r1');
    const [ra, rb] = await Promise.all([sendOn(dispatcher, r1, [a]), sendOn(dispatcher, r1, [b])]);
    sub.unsubscribe();
    assert.equal(ra.kind, 'replied');
    assert.equal(rb.kind, 'replied');
    assert.equal(new TextDecoder().decode(ra.kind === 'replied' ? ra.items[0]!.data : undefined), 'image of a');
    assert.equal(new TextDecoder().decode(rb.kind === 'replied' ? rb.items[0]!.data : undefined), 'image of b');
    assert.deepEqual(seen, ['a 1/3', 'a 2/3', 'a 3/3'], 'progress only for the unit that asked, in order');
    assert.equal(r1.ongoingBatches, 0);
  });

  test('a batch for a replica nobody subscribes to is lost at once and did not run (no responders)', async () => {
    const t0 = Date.now();
    const out = await sendOn(dispatcher, replica('gone'), [unit('c', Date.now() + 30_000)]);
    assert.equal(out.kind, 'lost');
    assert.equal(out.kind === 'lost' && out.ran, false);
    assert.ok(Date.now() - t0 < 5_000, 'answered by the server, not by a timeout');
  });

  test('a batch whose reply never comes is lost after its deadline plus a second, having maybe run', async () => {
    const sub = replicaNc.subscribe(subjects.batch('silent'), { callback: () => undefined });
    await replicaNc.flush();
    const out = await sendOn(dispatcher, replica('silent'), [unit('d', Date.now() + 200)]);
    sub.unsubscribe();
    assert.equal(out.kind, 'lost');
    assert.equal(out.kind === 'lost' && out.ran, true);
    assert.match(out.kind === 'lost' ? out.reason : '', /no reply within/);
  });

  test('a batch on a replica declared lost ends as lost; its late reply changes nothing', async () => {
    let respond: (() => void) | undefined;
    const sub = replicaNc.subscribe(subjects.batch('slow'), {
      callback: (_err, msg) => {
        const req = wire.batchRequest.decode(msg.data);
        respond = () => msg.respond(wire.batchReply.encode({ batchId: req.batchId, attempt: 1, replicaId: 'slow', runSeconds: 0, loadSeconds: 0, error: null, results: [] }));
      },
    });
    await replicaNc.flush();
    const slow = replica('slow');
    const pending = sendOn(dispatcher, slow, [unit('e', Date.now() + 10_000)]);
    while (!respond) await new Promise((r) => setTimeout(r, 5));
    assert.equal(slow.ongoingBatches, 1);
    slow.lose('test says so');
    const out = await pending;
    assert.deepEqual(out, { kind: 'lost', reason: 'test says so', ran: true });
    respond();
    await replicaNc.flush();
    await routerNc.flush();
    assert.equal(slow.ongoingBatches, 0);
    sub.unsubscribe();
  });

  test('a batch declared lost whose replica had stored its output image (its reply lost in a NATS restart): the image is deleted', async () => {
    const replicaPayloads = new PayloadStore(replicaNc, { bucket: subjects.payloadBucket, maxInlineBytes: 1000 });
    let stored: Payload | undefined;
    const sub = replicaNc.subscribe(subjects.batch('mute'), {
      callback: (_err, msg) => {
        // Stores the image as a replica does, and its reply never reaches the router.
        const req = wire.batchRequest.decode(msg.data);
        void replicaPayloads.put(new Uint8Array(5000).fill(3), 'out', outputPayloadName(req.batchId, 0)).then((p) => { stored = p; });
      },
    });
    await replicaNc.flush();
    const mute = replica('mute');
    const pending = sendOn(dispatcher, mute, [unit('h', Date.now() + 10_000)]);
    while (!stored) await new Promise((r) => setTimeout(r, 5));
    mute.lose('its heartbeats stopped listing the batch');
    assert.equal((await pending).kind, 'lost');
    sub.unsubscribe();
    const os = await new Objm(routerNc).open(subjects.payloadBucket);
    await eventually(async () => (await os.info(stored!.objectName!))?.deleted !== false, 5000, 'the lost batch\'s output image deleted');
  });

  test('a replica lost while the batch\'s input image is being stored: the batch is not sent, and its retry does not count', async () => {
    let received = 0;
    const sub = replicaNc.subscribe(subjects.batch('storing'), { callback: () => { received++; } });
    await replicaNc.flush();
    // 2 MB: above the 1 MB inline limit, so it goes to the object store first.
    const storing = replica('storing');
    const pending = sendOn(dispatcher, storing, [unit('f', Date.now() + 10_000, undefined, new Uint8Array(2 * 1024 * 1024).fill(7))]);
    storing.lose('gone while storing');
    const out = await pending;
    await routerNc.flush();
    await replicaNc.flush();
    sub.unsubscribe();
    assert.deepEqual(out, { kind: 'lost', reason: 'gone while storing', ran: false });
    assert.equal(received, 0, 'the batch never reached the replica');
  });

  test('a deadline past the timer range (30 days) waits for the reply instead of timing out at once', async () => {
    const sub = replicaNc.subscribe(subjects.batch('patient'), { callback: () => undefined });
    await replicaNc.flush();
    const patient = replica('patient');
    const pending = sendOn(dispatcher, patient, [unit('g', Date.now() + 30 * 24 * 3600 * 1000)]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(patient.ongoingBatches, 1, 'still waiting for its reply');
    patient.lose('test ends it');
    assert.equal((await pending).kind, 'lost');
    sub.unsubscribe();
  });

  test('close() ends the batches in flight as lost and refuses new ones', async () => {
    const own = new BatchDispatcher(routerNc, subjects, 'router-2', new PayloadStore(routerNc, { bucket: subjects.payloadBucket, maxInlineBytes: 1 << 20 }), createLogger('test', 'silent'), { maxBatchWaitMs: 60_000 });
    const sub = replicaNc.subscribe(subjects.batch('never-answers'), { callback: () => undefined });
    await replicaNc.flush();
    const never = replica('never-answers');
    const pending = sendOn(own, never, [unit('h', 0)]);
    await new Promise((r) => setTimeout(r, 50)); // published and waiting for its reply
    own.close();
    assert.deepEqual(await pending, { kind: 'lost', reason: 'the router is closing', ran: true });
    assert.deepEqual(await sendOn(own, never, [unit('i', 0)]), { kind: 'lost', reason: 'the router is closing', ran: true });
    sub.unsubscribe();
  });
});
