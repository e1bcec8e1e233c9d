/**
 * Nothing lost, nothing answered twice: a replica killed mid-batch, a replica drained while busy,
 * and nats-server restarted under the cluster.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generate, type GenerateResponse } from '../../services/cli/client.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { eventually, metricSum, sleep, startCluster, testConfig, type TestCluster } from './harness.js';

describe('resilience', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      drain: { stage: 'synthetic', models: ['d'], replicas: 2, max_batch_size: 2, batch_wait_timeout_ms: 20, max_ongoing_batches: 1, options: { fixed_ms: 800 } },
      crash: { stage: 'synthetic', models: ['k'], replicas: 2, max_batch_size: 4, batch_wait_timeout_ms: 50, max_ongoing_batches: 1, options: { fixed_ms: 1500 } },
      // The default two slots: each replica runs one batch and holds the next, waiting for its device.
      crash2: { stage: 'synthetic', models: ['k2'], replicas: 2, max_batch_size: 2, batch_wait_timeout_ms: 0, max_ongoing_batches: 2, options: { fixed_ms: 1500 } },
      steady: { stage: 'synthetic', models: ['s'], replicas: 1, options: { fixed_ms: 5 } },
    }));
  });
  after(() => c?.stop());

  const replicasOf = (d: string) => c.cluster.replicas.filter((r) => r.deployment === d);
  const busy = async (d: string) => {
    const n = await Promise.all(replicasOf(d).map((r) => metricSum(r.metricsUrl, 'orrery_replica_in_flight_batches', {})));
    return n.filter((x) => x > 0).length;
  };
  const retries = (d: string, reason: string) => metricSum(c.cluster.metricsUrl, 'orrery_batch_retries_total', { deployment: d, reason });

  /** Every request answered once, with its own images (request ids and seeds match). */
  function assertIntact(res: GenerateResponse[], seeds: string[]): void {
    assert.equal(res.length, seeds.length);
    res.forEach((r, i) => {
      assert.equal(r.images.length, 1);
      const h = parseSyntheticPayload(r.images[0]!.data);
      assert.equal(h.requestId, r.request_id);
      assert.equal(h.seed, seeds[i]);
    });
  }

  test('SIGTERM on a busy replica drains it: its batches finish there and nothing is dropped', async () => {
    const seeds = Array.from({ length: 6 }, (_, i) => String(100 + i));
    const pending = seeds.map((seed) => generate(c.client, { pipeline: 'drain', prompt: 'p', seed }));
    await eventually(async () => (await busy('drain')) === 2, 5000, 'both replicas busy');
    const victim = replicasOf('drain')[0]!;
    const exitCode = await c.cluster.stopReplica(victim, 'SIGTERM');
    assert.equal(exitCode, 0, 'the drained replica exits cleanly');
    assertIntact(await Promise.all(pending), seeds);
    assert.equal(await retries('drain', 'replica_lost'), 0, 'no batch had to be retried');
  });

  test('a replica killed with SIGKILL mid-batch: its requests complete on the other replica, none lost, none twice', async () => {
    const seeds = Array.from({ length: 8 }, (_, i) => String(200 + i));
    const pending = seeds.map((seed) => generate(c.client, { pipeline: 'crash', prompt: 'p', seed }, 30_000));
    await eventually(async () => (await busy('crash')) === 2, 5000, 'both replicas busy');
    const [victim, survivor] = replicasOf('crash');
    await c.cluster.stopReplica(victim!, 'SIGKILL');
    const res = await Promise.all(pending);
    assertIntact(res, seeds);
    const lost = await retries('crash', 'replica_lost');
    assert.ok(lost >= 1 && lost <= 4, `${lost} images retried after the kill`);
    assert.ok(res.every((r) => r.images[0]!.replica_id === survivor!.id), 'the killed replica answered nothing');
    assert.equal(await metricSum(survivor!.metricsUrl, 'orrery_replica_images_total', {}), 8, 'the survivor made each image once');
    assert.equal(await metricSum(c.cluster.metricsUrl, 'orrery_images_total', { deployment: 'crash' }), 8, 'eight images delivered, no duplicates');
  });

  test('SIGKILL on a replica running one batch and holding the next: both complete on the other replica, none lost, none twice', async () => {
    const seeds = Array.from({ length: 8 }, (_, i) => String(300 + i));
    const pending = seeds.map((seed) => generate(c.client, { pipeline: 'crash2', prompt: 'p', seed }, 30_000));
    const inFlight = (r: (typeof c.cluster.replicas)[number]) => metricSum(r.metricsUrl, 'orrery_replica_in_flight_batches', {});
    await eventually(async () => (await Promise.all(replicasOf('crash2').map(inFlight))).every((n) => n === 2), 5000, 'two batches on each replica');
    const [victim, survivor] = replicasOf('crash2');
    const held = await metricSum(victim!.metricsUrl, 'orrery_replica_in_flight_images', {});
    await c.cluster.stopReplica(victim!, 'SIGKILL');
    const res = await Promise.all(pending);
    assertIntact(res, seeds);
    assert.equal(await retries('crash2', 'replica_lost'), held, `the images of both batches the killed replica held (${held}) were retried`);
    assert.ok(res.every((r) => r.images[0]!.replica_id === survivor!.id), 'the killed replica answered nothing');
    assert.equal(await metricSum(survivor!.metricsUrl, 'orrery_replica_images_total', {}), 8, 'the survivor made each image once');
    assert.equal(await metricSum(c.cluster.metricsUrl, 'orrery_images_total', { deployment: 'crash2' }), 8, 'eight images delivered, no duplicates');
  });

  test('nats-server restarted: router and replicas reconnect and serve again within 10 s', async () => {
    assert.equal((await generate(c.client, { pipeline: 'steady', prompt: 'before', seed: '1' })).images.length, 1);
    await c.cluster.nats!.stop();
    await sleep(500);
    await c.cluster.nats!.restart();
    const t0 = Date.now();
    const res = await eventually(async () => {
      try {
        return await generate(c.client, { pipeline: 'steady', prompt: 'after', seed: '2' }, 2000);
      } catch {
        return undefined;
      }
    }, 10_000, 'a request to succeed after the restart');
    assert.equal(res!.images.length, 1);
    assert.ok(Date.now() - t0 < 10_000);
  });
});
