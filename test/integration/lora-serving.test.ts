/**
 * LoRA variants served by a real cluster: adapters fused at load, a corrupt adapter failing alone,
 * and three variants multiplexed over two replicas that hold two models each.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { generate, type GenerateResponse, type ListModelsResponse } from '../../services/cli/client.js';
import { readTextChunk } from '../../services/stages/png-parameters.js';
import { eventually, grpcError, metricSum, sleep, startCluster, testConfig, type TestCluster } from './harness.js';

describe('LoRA variants in a cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      lora: { stage: 'sdxl', models: ['tiny-sdxl', 'tiny-sdxl+good', 'tiny-sdxl+corrupt'], default_steps: 2, max_models_per_replica: 3 },
      mux: {
        stage: 'sdxl', models: ['tiny-sdxl+a', 'tiny-sdxl+b', 'tiny-sdxl+c'], replicas: 2, max_models_per_replica: 2,
        max_batch_size: 4, batch_wait_timeout_ms: 5, default_steps: 2,
        // As on a GPU, where a load (seconds) costs far more than a batch: wait for the holder
        // rather than reload, even when this shared 2-core machine makes batches slow.
        affinity_wait_ms: 5000, spill_backlog_batches: 6,
        preload_models: [], // the test counts the loads the mixed stream causes
      },
    }));
    // prepareLocalModels wrote a valid adapter; replace it with one whose header length overruns the file.
    const corrupt = path.join(c.dir, 'models', 'loras', 'corrupt.safetensors');
    const bytes = fs.readFileSync(corrupt);
    bytes.writeBigUInt64LE(BigInt(bytes.length * 2), 0);
    fs.writeFileSync(corrupt, bytes);
  });
  after(() => c?.stop());

  const ask = (pipeline: string, model: string, seed: number) => generate(c.client, { pipeline, model_id: model, prompt: 'a planet', seed: String(seed), width: 64, height: 64 });

  test('a corrupt LoRA gives a clear error naming the file, and the replica keeps serving the base and a good LoRA', async () => {
    const err = await grpcError(ask('lora', 'tiny-sdxl+corrupt', 1));
    assert.equal(err.code, status.INTERNAL);
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_MODEL_LOAD_FAILED');
    assert.match(err.details, /tiny-sdxl\+corrupt: .*loras\/corrupt\.safetensors: bad header length \d+: the file has only \d+ bytes/);
    const [base, good] = await Promise.all([ask('lora', 'tiny-sdxl', 1), ask('lora', 'tiny-sdxl+good', 1)]);
    assert.equal(base.images[0]!.model_id, 'tiny-sdxl');
    assert.equal(good.images[0]!.model_id, 'tiny-sdxl+good');
    assert.notDeepEqual(Buffer.from(good.images[0]!.data), Buffer.from(base.images[0]!.data), 'the fused LoRA changes the image');
    const fused = await metricSum(c.cluster.replicas.find((r) => r.deployment === 'lora')!.metricsUrl, 'orrery_lora_modules_fused_total', { model: 'tiny-sdxl+good' });
    assert.equal(fused, 12, 'the load reports the 12 modules of the tiny LoRA as fused');
    // A second try of the corrupt model fails the same way (failures are not cached as loaded).
    assert.equal((await grpcError(ask('lora', 'tiny-sdxl+corrupt', 2))).code, status.INTERNAL);
  });

  test('ListModels splits each id into base, adapter and variant, with the replicas holding it', async () => {
    await ask('lora', 'tiny-sdxl+good', 1);
    const replica = c.cluster.replicas.find((r) => r.deployment === 'lora')!;
    const listModels = () => new Promise<ListModelsResponse>((resolve, reject) => c.client.ListModels({}, (err, r) => (err ? reject(err) : resolve(r))));
    // The router learns what a replica holds from its heartbeats (every 100 ms here).
    const res = await eventually(async () => {
      const r = await listModels();
      const where = r.models.find((m) => m.model_id === 'tiny-sdxl+good')!.loaded_on;
      return where.length === 1 && where[0] === replica.id ? r : undefined;
    }, 5_000, 'the replica holding tiny-sdxl+good in ListModels');
    const info = (id: string) => res!.models.find((m) => m.model_id === id)!;
    assert.deepEqual([info('tiny-sdxl').base, info('tiny-sdxl').adapter, info('tiny-sdxl').variant], ['tiny-sdxl', '', '']);
    assert.deepEqual([info('tiny-sdxl+good').base, info('tiny-sdxl+good').adapter, info('tiny-sdxl+good').variant], ['tiny-sdxl', 'good', '']);
  });

  test('three LoRA variants over two replicas of two models each: loads stay within variants + replicas and each answer comes from its variant', async () => {
    const variants = ['tiny-sdxl+a', 'tiny-sdxl+b', 'tiny-sdxl+c'];
    // A mixed stream: mostly a and b, c now and then, seeds drawn from a small set.
    const order = [0, 1, 0, 2, 1, 1, 0, 2, 0, 1, 2, 0, 1, 0, 0, 1, 2, 1, 0, 1, 2, 2, 0, 1];
    const pending: Array<Promise<GenerateResponse>> = [];
    for (let i = 0; i < order.length; i++) {
      pending.push(ask('mux', variants[order[i]!]!, i % 3));
      await sleep(20);
    }
    const res = await Promise.all(pending);
    let loads = 0;
    for (const r of c.cluster.replicas.filter((x) => x.deployment === 'mux')) loads += await metricSum(r.metricsUrl, 'orrery_model_loads_total');
    assert.ok(loads <= variants.length + 2, `${loads} loads for 3 variants over 2 replicas`);
    const byKey = new Map<string, Buffer>();
    for (let i = 0; i < res.length; i++) {
      const img = res[i]!.images[0]!;
      const want = variants[order[i]!]!;
      assert.equal(img.model_id, want);
      assert.match(readTextChunk(img.data, 'parameters')!, new RegExp(`Model: ${want.replace('+', '\\+')}(,|$)`));
      // The same variant and seed give the same bytes whichever replica made them.
      const key = `${want}/${i % 3}`;
      const data = Buffer.from(img.data);
      if (byKey.has(key)) assert.deepEqual(data, byKey.get(key), `${key} differs between answers`);
      else byKey.set(key, data);
    }
    for (let seed = 0; seed < 3; seed++) {
      const imgs = variants.map((v) => byKey.get(`${v}/${seed}`)).filter((b): b is Buffer => b !== undefined);
      assert.equal(new Set(imgs.map((b) => b.toString('base64'))).size, imgs.length, `seed ${seed}: different LoRAs give different images`);
    }
  });
});
