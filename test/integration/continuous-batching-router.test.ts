/**
 * Continuous batching end to end (issue 12; needs the replica half, branch cb-worker): a real in-process Router dispatching by room to two
 * real replicas of a `batching: continuous` synthetic deployment (per-step cost model, executor
 * threads), on a real nats-server. Every image comes back once and was stepped once (the
 * replicas' join counters), both replicas take work, and no heartbeat ever shows a replica
 * holding more images than its running set can step plus max_waiting_images (1): the router sent
 * only into room.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { generate, imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type Heartbeat } from '../../services/common/wire.js';
import { Router } from '../../services/router/router.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { Replica } from '../../services/worker/replica.js';
import { eventually, metricSum } from './harness.js';

describe('continuous batching: router and replicas', () => {
  let nats: NatsServerProcess;
  let nc: NatsConnection;
  let router: Router;
  let client: ImageServiceClient;
  const replicas: Replica[] = [];
  const heartbeats: Heartbeat[] = [];
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-cb-router-'));

  before(async () => {
    nats = await NatsServerProcess.start();
    nc = await connect({ servers: nats.url });
    nc.subscribe(makeSubjects('orrery').heartbeat('cont'), { callback: (_err, msg) => { heartbeats.push(wire.heartbeat.decode(msg.data)); } });
    const config = compileConfig({
      nats: { url: nats.url, prefix: 'orrery' },
      router: { replica_timeout_intervals: 50 },
      worker: { heartbeat_interval_ms: 50 },
      model_repository: repo,
      deployments: {
        // 15 ms a step whatever the rows; max_ongoing_batches 1 must not limit a continuous deployment.
        cont: { stage: 'synthetic', models: ['m'], batching: 'continuous', max_batch_size: 3, max_ongoing_batches: 1, options: { step_cost_ms: [[1, 15], [16, 15]] } },
      },
    });
    for (const id of ['cont-1', 'cont-2']) replicas.push(await Replica.start({ config, deployment: 'cont', log: createLogger('replica', 'warn'), replicaId: id, metricsPort: 0 }));
    router = await Router.start({ config, log: createLogger('router', 'warn'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
    client = imageServiceClient(router.grpcAddress);
    await eventually(async () => (await metricSum(router.metricsUrl, 'orrery_replicas', { deployment: 'cont', state: 'running' })) === 2, 20_000, 'the router to see both replicas');
  });
  after(async () => {
    client?.close();
    await router?.stop(1000);
    for (const r of replicas) await r.drain();
    await nc?.close();
    await nats?.close();
    fs.rmSync(repo, { recursive: true, force: true });
  });

  test('every image comes back once, stepped once, and no replica is sent more than its running set and waiting list hold', async () => {
    const replies = await Promise.all(Array.from({ length: 24 }, (_, i) => generate(client, { pipeline: 'cont', model_id: 'm', prompt: `p${i}`, seed: String(1000 + i), steps: 12, width: 64, height: 64 })));
    for (const [i, rep] of replies.entries()) {
      assert.equal(rep.images.length, 1);
      const header = parseSyntheticPayload(rep.images[0]!.data);
      assert.equal(header.seed, String(1000 + i), 'each request gets its own image');
    }
    let joins = 0;
    for (const r of replicas) {
      const n = await metricSum(r.metricsUrl, 'orrery_running_set_joins_total', { deployment: 'cont' });
      assert.ok(n > 0, `${r.id} took work`);
      joins += n;
    }
    assert.equal(joins, 24, 'each image joined a running set once: nothing ran twice');
    const sets = heartbeats.map((h) => ({ id: h.replicaId, capacity: h.runningSetCapacity ?? 0, occupied: h.runningSetOccupied ?? 0, waiting: h.runningSetWaiting ?? 0 })).filter((h) => h.capacity > 0);
    assert.ok(sets.length > 0, 'the replicas report their running sets');
    for (const h of sets) assert.ok(h.occupied + h.waiting <= h.capacity + 1, `${h.id} held ${h.occupied} + ${h.waiting} images in a set of ${h.capacity} with 1 waiting place`);
    assert.ok(sets.some((h) => h.occupied > 1), 'images shared a running set');
  });
});
