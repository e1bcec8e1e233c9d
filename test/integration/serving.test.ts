/**
 * The serving path end to end: gRPC client → router → NATS → replica processes → client, on a
 * real nats-server, with the synthetic cost-model deployment and the real ONNX `texture` stage.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { connect } from '@nats-io/transport-node';
import { Objm } from '@nats-io/obj';
import sharp from 'sharp';
import { checkHealth, generate, healthClient, type GenerateEvent, type ListModelsResponse } from '../../services/cli/client.js';
import { subjects } from '../../services/common/subjects.js';
import { parseSyntheticPayload, syntheticPayload } from '../../services/stages/synthetic.js';
import { metricSum, startCluster, testConfig, type TestCluster } from './harness.js';

const BIG = 12 * 1024 * 1024;

describe('serving path', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      synthetic: {
        stage: 'synthetic', models: ['syn-a', 'syn-b'], max_batch_size: 8, batch_wait_timeout_ms: 30, max_ongoing_batches: 1,
        default_steps: 4, options: { fixed_ms: 150, per_item_ms: 5, progress: true },
      },
      big: { stage: 'synthetic', models: ['blob'], max_batch_size: 2, options: { image_bytes: BIG } },
      texture: { stage: 'texture', models: ['texture'], max_batch_size: 4, batch_wait_timeout_ms: 20, default_steps: 1 },
    }, { max_inline_payload_bytes: 512 * 1024 }));
  });
  after(() => c?.stop());

  test('Generate returns num_images images, each with its own seed, from the requested model', async () => {
    const res = await generate(c.client, { model_id: 'syn-b', prompt: 'a ringed planet', num_images: 3, seed: '41', pipeline: 'synthetic' });
    assert.equal(res.images.length, 3);
    res.images.forEach((img, i) => {
      const h = parseSyntheticPayload(img.data);
      assert.equal(h.modelId, 'syn-b');
      assert.equal(h.seed, String(41 + i));
      assert.equal(img.seed, String(41 + i));
      assert.equal(h.imageIndex, i);
      assert.equal(h.requestId, res.request_id);
      assert.equal(h.prompt, 'a ringed planet');
      assert.equal(img.model_id, 'syn-b');
      assert.match(img.replica_id, /^synthetic-/);
    });
    assert.equal(res.timings.length, 1);
    assert.equal(res.timings[0]!.deployment, 'synthetic');
    assert.ok(res.timings[0]!.run_seconds >= 0.15, `run_seconds ${res.timings[0]!.run_seconds} covers the 150 ms cost model`);
  });

  test('a planet prompt reaches the replica built in the fixed order', async () => {
    const res = await generate(c.client, {
      pipeline: 'synthetic', seed: '7',
      planet: { color: 'deep blue', atmosphere: 'frosted cloudy zones', moons: 'no moons', sky: 'distant stars dark sky', extras: ['realistic'] },
    });
    assert.equal(parseSyntheticPayload(res.images[0]!.data).prompt, 'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky, realistic');
    assert.equal(res.images[0]!.prompt, 'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky, realistic');
  });

  test('concurrent requests are micro-batched into fewer batches', async () => {
    const labels = { deployment: 'synthetic' };
    const count0 = await metricSum(c.cluster.metricsUrl, 'orrery_batch_size_count', labels);
    const sum0 = await metricSum(c.cluster.metricsUrl, 'orrery_batch_size_sum', labels);
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => generate(c.client, { model_id: 'syn-a', prompt: `p${i}`, seed: String(i), pipeline: 'synthetic' })));
    assert.equal(replies.length, 8);
    const batches = (await metricSum(c.cluster.metricsUrl, 'orrery_batch_size_count', labels)) - count0;
    const images = (await metricSum(c.cluster.metricsUrl, 'orrery_batch_size_sum', labels)) - sum0;
    assert.equal(images, 8);
    assert.ok(batches <= 3, `8 concurrent requests ran in ${batches} batches`);
  });

  test('GenerateStream reports queued, stage started, per-step progress, image chunks and done, in that order', async () => {
    const events: GenerateEvent[] = await new Promise((resolve, reject) => {
      const out: GenerateEvent[] = [];
      const call = c.client.GenerateStream({ model_id: 'syn-a', prompt: 'stream me', num_images: 2, steps: 4, pipeline: 'synthetic' });
      call.on('data', (e: GenerateEvent) => out.push(e));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });
    const kinds = events.map((e) => e.event);
    assert.equal(kinds[0], 'queued');
    assert.equal(kinds[1], 'stage_started');
    assert.equal(kinds.at(-1), 'done');
    const progress = events.filter((e) => e.progress).map((e) => e.progress!);
    for (const img of [0, 1]) {
      assert.deepEqual(progress.filter((p) => p.image_index === img).map((p) => p.step), [1, 2, 3, 4], `steps of image ${img}`);
    }
    const chunks = events.filter((e) => e.image_chunk).map((e) => e.image_chunk!);
    assert.equal(chunks.filter((ch) => ch.last).length, 2);
    assert.ok(kinds.lastIndexOf('progress') < kinds.indexOf('image_chunk'));
    assert.equal(events.at(-1)!.done!.num_images, 2);
  });

  test('a 12 MB image travels through the NATS object store intact, and the store is cleaned up', async () => {
    const res = await generate(c.client, { model_id: 'blob', prompt: 'big', seed: '5', pipeline: 'big' });
    const img = res.images[0]!;
    assert.equal(img.data.byteLength, BIG);
    const h = parseSyntheticPayload(img.data);
    assert.ok(Buffer.from(syntheticPayload(h, BIG)).equals(img.data), 'bytes equal the replica\'s payload');
    // Streamed in chunks too.
    const chunks: Buffer[] = await new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      const call = c.client.GenerateStream({ model_id: 'blob', prompt: 'big', seed: '5', pipeline: 'big' });
      call.on('data', (e: GenerateEvent) => e.image_chunk && parts.push(e.image_chunk.data));
      call.on('error', reject);
      call.on('end', () => resolve(parts));
    });
    assert.ok(chunks.length >= 12, `${chunks.length} chunks`);
    const streamed = Buffer.concat(chunks);
    assert.equal(streamed.byteLength, BIG);
    // Another request id, so other bytes: compare with what the replica made for that request.
    assert.ok(Buffer.from(syntheticPayload(parseSyntheticPayload(streamed), BIG)).equals(streamed), 'streamed chunks reassemble exactly');
    const nc = await connect({ servers: c.cluster.natsUrl });
    try {
      const os = await new Objm(nc).open(subjects('orrery').payloadBucket);
      const left = (await os.list()).filter((o) => !o.deleted);
      assert.deepEqual(left.map((o) => o.name), [], 'no payload objects left behind');
      const status = await os.status();
      assert.ok(status.size < 1024 * 1024, `bucket holds ${status.size} bytes after cleanup`);
    } finally {
      await nc.close();
    }
  });

  test('the texture deployment runs the ONNX model: PNGs of the requested size, identical for the same seed', async () => {
    const req = { pipeline: 'texture', prompt: 'deep blue planet', width: 256, height: 128, seed: '99', num_images: 2 };
    const [a, b] = await Promise.all([generate(c.client, req), generate(c.client, req)]);
    assert.equal(a.images.length, 2);
    for (const img of a.images) {
      assert.equal(img.mime_type, 'image/png');
      const meta = await sharp(img.data).metadata();
      assert.equal(meta.width, 256);
      assert.equal(meta.height, 128);
    }
    assert.ok(a.images[0]!.data.equals(b.images[0]!.data), 'same seed, same bytes');
    assert.ok(!a.images[0]!.data.equals(a.images[1]!.data), 'seed + 1 differs');
  });

  test('ListModels lists models with where they are loaded, the pipelines and the deployments', async () => {
    const res: ListModelsResponse = await new Promise((resolve, reject) => c.client.ListModels({}, (err, r) => (err ? reject(err) : resolve(r))));
    const synB = res.models.find((m) => m.model_id === 'syn-b')!;
    assert.equal(synB.deployment, 'synthetic');
    const synReplica = c.cluster.replicas.find((r) => r.deployment === 'synthetic')!;
    assert.deepEqual(synB.loaded_on, [synReplica.id]);
    assert.deepEqual(res.pipelines.map((p) => p.name).sort(), ['big', 'synthetic', 'texture']);
    assert.deepEqual(res.deployments.map((d) => [d.name, d.ready_replicas]).sort(), [['big', 1], ['synthetic', 1], ['texture', 1]]);
  });

  test('gRPC health answers SERVING overall and per deployment, NOT_FOUND for an unknown service', async () => {
    const h = healthClient(c.cluster.grpcAddress);
    try {
      assert.equal(await checkHealth(h, ''), 'SERVING');
      assert.equal(await checkHealth(h, 'orrery.v1.ImageService'), 'SERVING');
      assert.equal(await checkHealth(h, 'synthetic'), 'SERVING');
      assert.equal(await checkHealth(h, 'texture'), 'SERVING');
      assert.match(await checkHealth(h, 'no-such-deployment'), /error/);
    } finally {
      h.close();
    }
  });

  test('server reflection lists the ImageService and the health service', async () => {
    const protoFile = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');
    const def = protoLoader.loadSync(protoFile, { keepCase: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };
    const client = new pkg.grpc.reflection.v1.ServerReflection(c.cluster.grpcAddress, grpc.credentials.createInsecure()) as unknown as {
      ServerReflectionInfo(): grpc.ClientDuplexStream<object, { list_services_response?: { service: Array<{ name: string }> } }>;
      close(): void;
    };
    try {
      const names: string[] = await new Promise((resolve, reject) => {
        const call = client.ServerReflectionInfo();
        call.on('data', (r: { list_services_response?: { service: Array<{ name: string }> } }) => {
          resolve((r.list_services_response?.service ?? []).map((s) => s.name));
          call.end();
        });
        call.on('error', reject);
        call.write({ list_services: '' });
      });
      assert.ok(names.includes('orrery.v1.ImageService'), names.join(','));
      assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
    } finally {
      client.close();
    }
  });
});
