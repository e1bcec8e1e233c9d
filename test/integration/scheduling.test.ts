/**
 * Scheduling against real processes: model affinity and multiplexing over two replicas,
 * backpressure, deadlines (and shedding what cannot meet them) and cancellation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { generate, type GenerateResponse } from '../../services/cli/client.js';
import { eventually, grpcError, metricSum, sleep, startCluster, testConfig, type TestCluster } from './harness.js';

describe('scheduling', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      mux: {
        stage: 'synthetic', models: ['m-a', 'm-b'], replicas: 2, max_models_per_replica: 1, max_batch_size: 4,
        batch_wait_timeout_ms: 10, max_ongoing_batches: 1, options: { fixed_ms: 40, load_ms: 100 },
        // Nothing preloaded: the affinity tests watch where each model gets loaded.
        preload_models: [],
      },
      small: { stage: 'synthetic', models: ['s'], max_queued_requests: 3, max_batch_size: 1, max_ongoing_batches: 1, options: { fixed_ms: 600 } },
      slow: { stage: 'synthetic', models: ['slow'], max_batch_size: 1, max_ongoing_batches: 1, options: { fixed_ms: 2500 } },
      shed: { stage: 'synthetic', models: ['shed'], max_batch_size: 1, max_ongoing_batches: 1, options: { fixed_ms: 600 } },
      // Its first model cannot load: the replica must still start and serve the other one.
      preloadfail: { stage: 'synthetic', models: ['broken', 'fine'], options: { fail_models: ['broken'] } },
    }));
  });
  after(() => c?.stop());

  const loads = async (model?: string) => {
    let n = 0;
    for (const r of c.cluster.replicas.filter((x) => x.deployment === 'mux')) n += await metricSum(r.metricsUrl, 'orrery_model_loads_total', model ? { model } : {});
    return n;
  };

  test('a replica loads its deployment\'s first model before it joins: the first request does not wait for a load', async () => {
    for (const r of c.cluster.replicas.filter((x) => x.deployment === 'slow')) {
      assert.equal(await metricSum(r.metricsUrl, 'orrery_model_loads_total', { model: 'slow' }), 1, `${r.id} preloaded slow`);
    }
    for (const r of c.cluster.replicas.filter((x) => x.deployment === 'mux')) {
      assert.equal(await metricSum(r.metricsUrl, 'orrery_model_loads_total', {}), 0, `${r.id}: preload_models [] loads nothing at start`);
    }
  });

  test('a model that fails to preload leaves the replica serving its other models; its own requests get the load error', async () => {
    const ok = await generate(c.client, { pipeline: 'preloadfail', model_id: 'fine', prompt: 'x' });
    assert.equal(ok.images[0]!.model_id, 'fine');
    const err = await grpcError(generate(c.client, { pipeline: 'preloadfail', model_id: 'broken', prompt: 'x' }));
    assert.equal(err.code, status.INTERNAL);
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_MODEL_LOAD_FAILED');
    assert.match(err.details, /broken is configured to fail/);
  });

  test('a mixed two-model stream over two replicas loads each model once and keeps each model on its replica', async () => {
    const replies: Array<Promise<GenerateResponse>> = [];
    // A paced stream (about half of capacity): A, B, A, B, ... every 15 ms.
    for (let i = 0; i < 40; i++) {
      replies.push(generate(c.client, { pipeline: 'mux', model_id: i % 2 ? 'm-b' : 'm-a', prompt: `p${i}`, seed: String(i) }));
      await sleep(15);
    }
    const res = await Promise.all(replies);
    assert.equal(await loads('m-a'), 1, 'm-a loaded once');
    assert.equal(await loads('m-b'), 1, 'm-b loaded once');
    const where = (m: string) => new Set(res.filter((r) => r.images[0]!.model_id === m).map((r) => r.images[0]!.replica_id));
    assert.equal(where('m-a').size, 1);
    assert.equal(where('m-b').size, 1);
    assert.notDeepEqual([...where('m-a')], [...where('m-b')], 'the two models live on different replicas');
  });

  test('requests for a model land on the replica that holds it', async () => {
    const first = await generate(c.client, { pipeline: 'mux', model_id: 'm-b', prompt: 'x' });
    const holder = first.images[0]!.replica_id;
    for (let i = 0; i < 5; i++) {
      const r = await generate(c.client, { pipeline: 'mux', model_id: 'm-b', prompt: `x${i}` });
      assert.equal(r.images[0]!.replica_id, holder);
    }
    const hits = await metricSum(c.cluster.metricsUrl, 'orrery_batches_total', { deployment: 'mux', affinity: 'hit' });
    assert.ok(hits >= 5, `${hits} affinity hits`);
  });

  test('rejects with RESOURCE_EXHAUSTED when the queue is full, and serves the queued requests', async () => {
    const running = generate(c.client, { pipeline: 'small', prompt: 'run' });
    await eventually(async () => (await metricSum(c.cluster.metricsUrl, 'orrery_batches_total', { deployment: 'small' })) >= 1, 5000, 'the first batch');
    const queued = [1, 2, 3].map((i) => generate(c.client, { pipeline: 'small', prompt: `q${i}` }));
    await eventually(async () => (await metricSum(c.cluster.metricsUrl, 'orrery_queue_depth', { deployment: 'small' })) === 3, 5000, 'three queued');
    const err = await grpcError(generate(c.client, { pipeline: 'small', prompt: 'one too many' }));
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /small.*max_queued_requests=3/);
    const ok = await Promise.all([running, ...queued]);
    assert.equal(ok.length, 4);
  });

  test('a request past its gRPC deadline gets DEADLINE_EXCEEDED promptly', async () => {
    const t0 = Date.now();
    const err = await grpcError(generate(c.client, { pipeline: 'slow', prompt: 'late' }, 400));
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - t0 < 2000, `answered after ${Date.now() - t0} ms`);
  });

  test('timeout_ms in the request gives DEADLINE_EXCEEDED with Orrery\'s error code', async () => {
    const err = await grpcError(generate(c.client, { pipeline: 'slow', prompt: 'late', timeout_ms: 300 }));
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_DEADLINE_EXCEEDED');
  });

  test('a queued request its batch can no longer finish in time fails at once and is never run', async () => {
    // The router learns what a batch of this deployment takes (about 600 ms).
    await generate(c.client, { pipeline: 'shed', prompt: 'warm-up' });
    const batches = () => metricSum(c.cluster.metricsUrl, 'orrery_batches_total', { deployment: 'shed' });
    const before = await batches();
    const running = generate(c.client, { pipeline: 'shed', prompt: 'running' });
    await eventually(async () => (await batches()) === before + 1, 5000, 'the first batch');
    // Queued behind the running batch with 700 ms to live: when the replica frees up it has about
    // 100 ms left (plus however long the poll above took), less than the 600 ms a batch takes.
    const doomed = grpcError(generate(c.client, { pipeline: 'shed', prompt: 'doomed', timeout_ms: 700 }));
    const patient = generate(c.client, { pipeline: 'shed', prompt: 'patient', timeout_ms: 10_000 });
    const err = await doomed;
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_DEADLINE_EXCEEDED');
    assert.match(err.details, /ms were left and answering it takes at least \d+ ms .*, so it was not run/);
    const served = await Promise.all([running, patient]);
    assert.deepEqual(served.map((r) => r.images.length), [1, 1], 'the requests that could make it were served');
    assert.equal(await batches(), before + 2, 'the doomed request never reached the replica');
    assert.equal(await metricSum(c.cluster.metricsUrl, 'orrery_deadline_shed_images_total', { deployment: 'shed' }), 1);
  });

  test('cancelling a running request frees the replica\'s slot for the next request', async () => {
    const slowReplica = c.cluster.replicas.find((x) => x.deployment === 'slow')!;
    const inFlight = () => metricSum(slowReplica.metricsUrl, 'orrery_replica_in_flight_batches', {});
    // The deadline tests' batches were cancelled too; the replica is idle again.
    await eventually(async () => (await inFlight()) === 0, 5000, 'the slow replica to be idle');
    const call = c.client.Generate({ pipeline: 'slow', prompt: 'to cancel' }, new Metadata(), {}, () => undefined);
    await eventually(async () => (await inFlight()) === 1, 5000, 'the batch to start');
    const t0 = Date.now();
    call.cancel();
    const next = await generate(c.client, { pipeline: 'slow', prompt: 'next' });
    const waited = Date.now() - t0;
    // Without cancellation reaching the replica the next request would wait ~2.5 s for the slot, then run 2.5 s.
    assert.ok(waited < 4000, `next request finished ${waited} ms after the cancel`);
    assert.ok(next.timings[0]!.queue_seconds < 1, `queued ${next.timings[0]!.queue_seconds} s`);
  });
});
