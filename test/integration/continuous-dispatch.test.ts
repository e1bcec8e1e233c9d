/**
 * The router's dispatch by room (batching: continuous, issue 12) against a real nats-server and a
 * real in-process Router, with replicas that keep a running set and report it in their
 * heartbeats (test/support/running-set-replica.ts): an image goes to a replica as soon as its set
 * has room, while other images are stepping there, and no replica is given more images than its
 * set and its waiting list (max_waiting_images, default 1) hold.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { imageServiceClient, generate, type ImageServiceClient } from '../../services/cli/client.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { Router } from '../../services/router/router.js';
import { RunningSetReplica } from '../support/running-set-replica.js';
import { eventually, metricSum } from './harness.js';

describe('continuous batching: dispatch by room', () => {
  let nats: NatsServerProcess;
  let router: Router;
  let client: ImageServiceClient;
  let replicas: RunningSetReplica[] = [];

  before(async () => {
    nats = await NatsServerProcess.start();
    const config = compileConfig({
      nats: { url: nats.url },
      router: { replica_timeout_intervals: 50 },
      worker: { heartbeat_interval_ms: 100 },
      // max_ongoing_batches 1 and a long batch wait: neither may hold back a continuous deployment.
      deployments: { cont: { stage: 'synthetic', models: ['m'], batching: 'continuous', max_batch_size: 4, max_ongoing_batches: 1, batch_wait_timeout_ms: 60_000 } },
    });
    router = await Router.start({ config, log: createLogger('router', 'warn'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
    client = imageServiceClient(router.grpcAddress);
  });
  afterEach(async () => {
    for (const r of replicas) await r.stop();
    replicas = [];
    // The router drops the stopped replicas once they are silent; wait for it so tests do not share them.
    await eventually(async () => (await fetch(router.metricsUrl)).text().then((t) => !/orrery_replicas\{deployment="cont",state="running"\} [1-9]/.test(t)), 30_000, 'the replicas to be dropped');
  });
  after(async () => {
    client.close();
    await router.stop(1000);
    await nats.close();
  });

  const image = (i: number, steps: number) => generate(client, { pipeline: 'cont', model_id: 'm', prompt: `p${i}`, seed: String(i), steps, width: 64, height: 64 });

  test('sends an image to a replica while another image steps there, without waiting for it to finish', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const r = await RunningSetReplica.start({ natsUrl: nats.url, id: 'gated', deployment: 'cont', models: ['m'], capacity: 4, stepMs: 10, heartbeatMs: 100, gate });
    replicas.push(r);
    await eventually(async () => (await fetch(router.metricsUrl)).text().then((t) => /orrery_replicas\{deployment="cont",state="running"\} 1/.test(t)), 10_000, 'the router to see the replica');
    const first = image(1, 5);
    await eventually(() => r.occupied === 1, 10_000, 'the first image to join the set');
    // The set holds the first image and takes no step until the second one has arrived: a router
    // that waited for the first image (request-level batching, max_ongoing_batches 1) never sends it.
    const second = image(2, 5);
    await eventually(() => r.received.length === 2, 10_000, 'the second image to be sent');
    open();
    const [a, b] = await Promise.all([first, second]);
    assert.deepEqual(r.received.map((x) => [x.items, x.occupiedAtArrival]), [[1, 0], [1, 1]]);
    assert.equal(new TextDecoder().decode(a.images[0]!.data), `gated:${r.itemsReceived[0]}`);
    assert.equal(new TextDecoder().decode(b.images[0]!.data), `gated:${r.itemsReceived[1]}`);
  });

  test('gives no replica more images than its running set and waiting list hold, and every image comes back once', async () => {
    for (const id of ['r1', 'r2']) replicas.push(await RunningSetReplica.start({ natsUrl: nats.url, id, deployment: 'cont', models: ['m'], capacity: 3, stepMs: 5, heartbeatMs: 50 }));
    await eventually(async () => (await fetch(router.metricsUrl)).text().then((t) => /orrery_replicas\{deployment="cont",state="running"\} 2/.test(t)), 10_000, 'the router to see both replicas');
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => image(i, 8)));
    assert.equal(replies.length, 30);
    const received = replicas.flatMap((r) => r.itemsReceived);
    assert.equal(received.length, 30, 'each image sent exactly once');
    assert.equal(new Set(received).size, 30);
    for (const r of replicas) {
      assert.ok(r.maxHeld <= 3 + 1, `replica held ${r.maxHeld} images at once; its set holds 3 and 1 waits`);
      assert.ok(r.itemsReceived.length > 0, 'both replicas took work');
    }
    // Each reply is the image its replica made for that request.
    for (const rep of replies) assert.match(new TextDecoder().decode(rep.images[0]!.data), /^r[12]:/);
    // With the work done, the router sees both sets empty again: room for 2 × (3 + 1) images.
    await eventually(async () => (await metricSum(router.metricsUrl, 'orrery_running_set_room_images', { deployment: 'cont' })) === 8, 10_000, 'the room gauge to show two empty sets');
  });
});
