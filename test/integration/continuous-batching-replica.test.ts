/**
 * A replica of a `batching: continuous` deployment (synthetic stage, per-step cost model) on a
 * real nats-server, driven by BatchRequests as the router sends them: batches merge in the
 * model's running set (no device lock per batch), an online image overtakes bulk images at a step
 * boundary (its reply comes first), heartbeats carry running_set_capacity / _occupied / _waiting,
 * and the running-set metrics count joins, leaves, preemptions and per-step occupancy.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { PayloadStore } from '../../services/common/payload-store.js';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type BatchReply, type Heartbeat } from '../../services/common/wire.js';
import { encodeWorkItem } from '../../services/common/work-item.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import type { Replica } from '../../services/worker/replica.js';
import { startReplicaOnNats, type ReplicaOnNats } from '../support/replica-on-nats.js';
import { workItem } from '../support/work-items.js';
import { eventually, metricSum } from './harness.js';

const subjects = makeSubjects('orrery');

describe('a continuous-batching replica on a real nats-server', () => {
  let r: ReplicaOnNats;
  let nc: NatsConnection;
  let replica: Replica;
  let payloads: PayloadStore;
  const heartbeats: Heartbeat[] = [];

  before(async () => {
    r = await startReplicaOnNats({
      replicaId: 'syn-1', deployment: 'syn',
      deployments: () => ({
        syn: {
          stage: 'synthetic', models: ['m'], batching: 'continuous', max_batch_size: 2, max_ongoing_batches: 1,
          // 50 ms a step whatever the rows: a 20-step image holds the set for about a second.
          options: { step_cost_ms: [[1, 50], [16, 50]], progress: true },
        },
      }),
    });
    ({ nc, replica } = r);
    payloads = new PayloadStore(nc, { bucket: subjects.payloadBucket, maxInlineBytes: 1 << 20 });
    nc.subscribe(subjects.heartbeat('syn'), { callback: (_err, msg) => { heartbeats.push(wire.heartbeat.decode(msg.data)); } });
  });
  after(() => r?.stop());

  const send = (batchId: string, requestId: string, priority: 'online' | 'bulk', steps: number, deadlineInMs = 60_000): Promise<BatchReply> =>
    nc.request(subjects.batch('syn-1'), wire.batchRequest.encode({
      batchId, attempt: 1, modelId: 'm', deadlineUnixMs: Date.now() + deadlineInMs, progressSubject: '',
      items: [encodeWorkItem(workItem({ requestId, steps, priority }), null)],
    }), { timeout: 60_000 }).then((m) => wire.batchReply.decode(m.data));

  test('an online batch overtakes two running bulk batches at the next step; heartbeats and metrics show the running set', async () => {
    const order: string[] = [];
    const track = (name: string, p: Promise<BatchReply>) => p.then((r) => { order.push(name); return r; });
    // max_ongoing_batches 1 does not hold back a continuous deployment: both bulk batches step at once.
    const bulkA = track('bulk-a', send('b-a', 'ra', 'bulk', 20));
    const bulkB = track('bulk-b', send('b-b', 'rb', 'bulk', 20));
    await eventually(() => heartbeats.some((h) => h.runningSetOccupied === 2), 20_000, 'a heartbeat with two images stepping');
    const online = track('online', send('b-o', 'ro', 'online', 5));
    await eventually(() => heartbeats.some((h) => h.runningSetOccupied === 2 && h.runningSetWaiting === 1), 20_000, 'a heartbeat with the paused bulk image waiting');
    const replies = await Promise.all([bulkA, bulkB, online]);
    assert.equal(order[0], 'online', `reply order ${order.join(', ')}`);
    for (const r of replies) {
      assert.equal(r.error?.code ?? '', '', r.error?.message);
      const header = parseSyntheticPayload(await payloads.take(r.results[0]!.image));
      assert.equal(header.requestId, r.results[0]!.requestId);
    }
    assert.ok(heartbeats.every((h) => h.runningSetCapacity === 2));
    await eventually(() => heartbeats.at(-1)?.runningSetOccupied === 0 && heartbeats.at(-1)?.runningSetWaiting === 0, 10_000, 'an idle heartbeat');
    const url = replica.metricsUrl;
    assert.equal(await metricSum(url, 'orrery_running_set_joins_total', { deployment: 'syn' }), 3);
    assert.equal(await metricSum(url, 'orrery_running_set_leaves_total', { deployment: 'syn' }), 3);
    assert.equal(await metricSum(url, 'orrery_running_set_preemptions_total', { deployment: 'syn' }), 1);
    // 20 + 20 + 5 image-steps in steps of at most 2 images: at least 23 steps observed.
    assert.ok(await metricSum(url, 'orrery_running_set_occupancy_count', { deployment: 'syn' }) >= 23);
    assert.equal(await metricSum(url, 'orrery_running_set_occupancy_sum', { deployment: 'syn' }), 45);
  });

  test('a batch its deadline stops between steps answers DEADLINE_EXCEEDED, not CANCELLED', async () => {
    // 20 steps of 50 ms against a 300 ms deadline. The router's own timer may fire after this
    // reply arrives, so the reply itself must say why the image stopped.
    const r = await send('b-late', 'r-late', 'online', 20, 300);
    const err = r.error ?? r.results[0]?.error;
    assert.equal(err?.code, 'ORRERY_ERR_DEADLINE_EXCEEDED', err?.message);
    assert.match(err.message, /on replica syn-1/);
  });
});
