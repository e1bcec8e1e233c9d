/**
 * A replica process with max_model_bytes_per_replica and an optimized-model cache, in a real
 * cluster: bytes per loaded model on /metrics, LRU eviction by bytes, and cache hits on reload.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate } from '../../services/cli/client.js';
import { buildTextureModel, writeDemoModels } from '../../services/models/demo-models.js';
import { eventually, metricSum, startCluster, testConfig, type TestCluster } from './harness.js';

describe('a replica under max_model_bytes_per_replica, with optimized_model_cache_dir', () => {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-budget-repo-'));
  const cacheDir = path.join(repo, '.optimized');
  writeDemoModels(repo);
  fs.mkdirSync(path.join(repo, 'texture-b'));
  fs.writeFileSync(path.join(repo, 'texture-b', 'model.onnx'), buildTextureModel(0xb));
  const bytesA = fs.statSync(path.join(repo, 'texture', 'model.onnx')).size;
  const bytesB = fs.statSync(path.join(repo, 'texture-b', 'model.onnx')).size;
  // Room for either model, not both (the count alone would keep both).
  const budget = Math.max(bytesA, bytesB) + 100;

  let c: TestCluster;
  let metrics: string;
  before(async () => {
    c = await startCluster(testConfig({
      tex: {
        stage: 'texture', models: ['texture', 'texture-b'], max_models_per_replica: 2, max_model_bytes_per_replica: budget,
        preload_models: [], // the test loads the models in its own order
        options: { optimized_model_cache_dir: cacheDir, intra_op_threads: 1 },
      },
    }, { model_repository: repo }));
    metrics = c.cluster.replicas.find((r) => r.deployment === 'tex')!.metricsUrl;
  });
  after(async () => {
    await c?.stop();
    fs.rmSync(repo, { recursive: true, force: true });
  });

  const ask = (model: string) => generate(c.client, { pipeline: 'tex', model_id: model, prompt: 'a planet', seed: '1', width: 64, height: 64 });
  const bytesOf = (model: string) => metricSum(metrics, 'orrery_model_bytes', { deployment: 'tex', model });
  const loads = (outcome: string) => metricSum(metrics, 'orrery_optimized_model_cache_loads_total', { deployment: 'tex', outcome });

  test('reports each loaded model\'s bytes and the budget, evicts by bytes, and reloads from the optimized-model cache', async () => {
    assert.equal(await metricSum(metrics, 'orrery_model_bytes_limit', { deployment: 'tex' }), budget);

    const first = await ask('texture');
    assert.equal(first.images[0]!.model_id, 'texture');
    assert.equal(await bytesOf('texture'), bytesA);

    await ask('texture-b');
    await eventually(async () => (await metricSum(metrics, 'orrery_model_evictions_total', { model: 'texture' })) === 1, 10_000, 'texture evicted for bytes');
    assert.equal(await bytesOf('texture-b'), bytesB);
    assert.ok(!(await (await fetch(metrics)).text()).includes('orrery_model_bytes{deployment="tex",model="texture"}'), 'an evicted model leaves the gauge');
    assert.equal(await loads('miss'), 2);

    const again = await ask('texture');
    assert.deepEqual(Buffer.from(again.images[0]!.data), Buffer.from(first.images[0]!.data), 'the cached graph gives the same image');
    await eventually(async () => (await metricSum(metrics, 'orrery_model_evictions_total', { model: 'texture-b' })) === 1, 10_000, 'texture-b evicted');
    assert.equal(await loads('hit'), 1);
    assert.equal(await metricSum(metrics, 'orrery_model_loads_total', { deployment: 'tex' }), 3);
    assert.equal(fs.readdirSync(cacheDir).filter((f) => !f.startsWith('.')).length, 2);
  });
});
