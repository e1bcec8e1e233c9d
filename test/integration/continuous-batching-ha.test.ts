/**
 * Two routers dispatching by room to the same continuous-batching replicas (issue 12): each reads
 * room from the same heartbeats, so both send into the same room; the replica holds at most
 * max_batch_size + max_waiting_images images and refuses the extra batches unrun with
 * ORRERY_ERR_REPLICA_FULL, which the routers put back at the head of their queues. Real
 * nats-server, two in-process routers, two in-process replicas (synthetic stage, per-step cost).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate, imageServiceClient, type GenerateResponse, type ImageServiceClient } from '../../services/cli/client.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { Router } from '../../services/router/router.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { Replica } from '../../services/worker/replica.js';
import { eventually, metricSum } from './harness.js';

const MAX_BATCH = 2;
const MAX_WAITING = 1;

describe('continuous batching: two routers on the same replicas', () => {
  let nats: NatsServerProcess;
  const routers: Router[] = [];
  const clients: ImageServiceClient[] = [];
  const replicas: Replica[] = [];
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-cb-ha-'));

  before(async () => {
    nats = await NatsServerProcess.start();
    const config = compileConfig({
      nats: { url: nats.url, prefix: 'orrery' },
      router: { replica_timeout_intervals: 50 },
      // Heartbeats far apart: between two of them both routers see the same room, and both fill it.
      worker: { heartbeat_interval_ms: 300 },
      model_repository: repo,
      deployments: {
        cont: {
          stage: 'synthetic', models: ['m'], batching: 'continuous', max_batch_size: MAX_BATCH, max_waiting_images: MAX_WAITING,
          max_queued_requests: 1000, options: { step_cost_ms: [[1, 10], [16, 10]] },
        },
      },
    });
    for (const id of ['cont-1', 'cont-2']) replicas.push(await Replica.start({ config, deployment: 'cont', log: createLogger('replica', 'warn'), replicaId: id, metricsPort: 0 }));
    for (let i = 0; i < 2; i++) {
      const router = await Router.start({ config, log: createLogger(`router-${i}`, 'warn'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
      routers.push(router);
      clients.push(imageServiceClient(router.grpcAddress));
      await eventually(async () => (await metricSum(router.metricsUrl, 'orrery_replicas', { deployment: 'cont', state: 'running' })) === 2, 20_000, `router ${i} to see both replicas`);
    }
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const r of routers) await r.stop(1000);
    for (const r of replicas) await r.drain();
    await nats?.close();
    fs.rmSync(repo, { recursive: true, force: true });
  });

  /** `n` requests at once through `client`; each answer must carry its own request's image. */
  async function load(client: ImageServiceClient, tag: string, n: number): Promise<GenerateResponse[]> {
    const answers = await Promise.all(Array.from({ length: n }, (_, i) =>
      generate(client, { pipeline: 'cont', model_id: 'm', prompt: `planet ${tag}-${i}`, seed: String(5000 + i), steps: 8, width: 64, height: 64 }, 60_000)));
    answers.forEach((res, i) => {
      assert.equal(res.images.length, 1);
      const header = parseSyntheticPayload(res.images[0]!.data);
      assert.equal(header.prompt, `planet ${tag}-${i}`);
    });
    return answers;
  }

  test('sending into the same room at once, they lose nothing, run nothing twice, never overfill a replica, and requeue what it refused', async () => {
    const perRouter = 30;
    const [a, b] = await Promise.all([load(clients[0]!, 'a', perRouter), load(clients[1]!, 'b', perRouter)]);
    assert.equal(new Set([...a, ...b].map((r) => r.request_id)).size, 2 * perRouter, 'every answer is a distinct request');

    let images = 0;
    let joins = 0;
    let refused = 0;
    for (const r of replicas) {
      const peak = await metricSum(r.metricsUrl, 'orrery_replica_in_flight_images_peak');
      assert.ok(peak >= 1 && peak <= MAX_BATCH + MAX_WAITING, `replica ${r.id} held ${peak} images at once (max_batch_size + max_waiting_images = ${MAX_BATCH + MAX_WAITING})`);
      images += await metricSum(r.metricsUrl, 'orrery_replica_images_total');
      joins += await metricSum(r.metricsUrl, 'orrery_running_set_joins_total', { deployment: 'cont' });
      refused += await metricSum(r.metricsUrl, 'orrery_replica_batches_refused_total');
    }
    let requeued = 0;
    let lostRetries = 0;
    for (const r of routers) {
      requeued += await metricSum(r.metricsUrl, 'orrery_batch_retries_total', { reason: 'replica_full' });
      lostRetries += await metricSum(r.metricsUrl, 'orrery_batch_retries_total', { reason: 'replica_lost' });
    }
    // An image runs twice only when a router declared its batch lost (a replica starved of CPU past its heartbeats): never for a refusal.
    assert.ok(images >= 2 * perRouter && images <= 2 * perRouter + lostRetries, `${images} images ran for ${2 * perRouter} requests (${lostRetries} retried after a lost batch)`);
    assert.equal(joins, images, 'each image that ran joined a running set once');
    process.stderr.write(`batches refused: ${refused}; images requeued: ${requeued}\n`);
    assert.ok(refused > 0, 'the routers sent into the same room at least once (the replicas refused the extra batches)');
    assert.ok(requeued >= refused, `${refused} refused batches, ${requeued} images requeued`);
  });
});
