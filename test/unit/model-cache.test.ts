import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { OrreryError } from '../../services/common/errors.js';
import { writeDemoModels } from '../../services/models/demo-models.js';
import type { LoadedModel } from '../../services/stages/stage.js';
import { syntheticStage } from '../../services/stages/synthetic.js';
import { textureStage } from '../../services/stages/texture.js';
import { ModelCache, type ModelCacheOptions } from '../../services/worker/model-cache.js';

const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-model-cache-'));
after(() => fs.rmSync(repo, { recursive: true, force: true }));

/** A cache over a real stage, recording what it loads and evicts. */
function cacheOver(
  load: (id: string) => Promise<LoadedModel>, maxModels: number, extra: Partial<ModelCacheOptions> = {},
): { cache: ModelCache; loads: string[]; loaded: string[]; evicted: string[] } {
  const loads: string[] = [];
  const loaded: string[] = [];
  const evicted: string[] = [];
  let clock = 0;
  const cache = new ModelCache({
    maxModels,
    load: (id) => { loads.push(id); return load(id); },
    now: () => ++clock,
    onLoad: (id, seconds) => { assert.ok(seconds >= 0); loaded.push(id); },
    onEvict: (id) => evicted.push(id),
    ...extra,
  });
  return { cache, loads, loaded, evicted };
}

const synthetic = (options: Record<string, unknown> = {}) => (id: string) =>
  syntheticStage.load(id, { options, modelRepository: repo });

describe('ModelCache', () => {
  test('loads a model once for concurrent gets of the same id (single flight)', async () => {
    const { cache, loads, loaded } = cacheOver(synthetic({ load_ms: 40 }), 2);
    const leases = await Promise.all([cache.acquire('a'), cache.acquire('a'), cache.acquire('a')]);
    const got = await cache.get('a');
    assert.deepEqual(loads, ['a']);
    assert.deepEqual(loaded, ['a']);
    assert.ok(leases.every((l) => l.model === got));
    leases.forEach((l) => l.release());
    await cache.close();
  });

  test('reports the model being loaded while its load runs', async () => {
    const { cache } = cacheOver(synthetic({ load_ms: 40 }), 2);
    const pending = cache.get('slow');
    assert.equal(cache.loadingModel(), 'slow');
    assert.deepEqual(cache.loadedModels(), []);
    await pending;
    assert.equal(cache.loadingModel(), undefined);
    assert.deepEqual(cache.loadedModels(), ['slow']);
    await cache.close();
  });

  test('evicts the least recently used model when a new one would pass the cap', async () => {
    const { cache, evicted } = cacheOver(synthetic(), 2);
    await cache.get('a');
    await cache.get('b');
    await cache.get('a'); // a is now more recent than b
    await cache.get('c');
    assert.deepEqual(evicted, ['b']);
    assert.deepEqual(cache.loadedModels(), ['c', 'a']);
    await cache.close();
  });

  test('never evicts a model in use; exceeds the cap meanwhile and trims on release', async () => {
    const { cache, evicted } = cacheOver(synthetic(), 1);
    const a = await cache.acquire('a');
    const b = await cache.acquire('b');
    assert.deepEqual(evicted, []);
    assert.deepEqual(cache.loadedModels().sort(), ['a', 'b']);
    a.release();
    assert.deepEqual(evicted, ['a']);
    assert.deepEqual(cache.loadedModels(), ['b']);
    a.release(); // idempotent: must not unpin anything else
    assert.deepEqual(cache.loadedModels(), ['b']);
    b.release();
    await cache.close();
  });

  test('does not cache a failed load: waiters share the error and the next get retries', async () => {
    const { cache, loads, evicted } = cacheOver((id) => textureStage.load(id, { options: {}, modelRepository: repo }), 2);
    writeDemoModels(repo);
    const texture = await cache.acquire('texture');
    const failures = await Promise.allSettled([cache.get('later'), cache.get('later')]);
    for (const f of failures) {
      assert.equal(f.status, 'rejected');
      const err = (f as PromiseRejectedResult).reason as unknown;
      assert.ok(err instanceof OrreryError);
      assert.equal(err.code, 'ORRERY_ERR_MODEL_NOT_FOUND');
      assert.match(err.message, /later[/\\]model\.onnx/);
    }
    assert.deepEqual(loads, ['texture', 'later']);
    assert.deepEqual(cache.loadedModels(), ['texture'], 'the failure leaves other models alone');
    assert.equal(cache.loadingModel(), undefined);

    fs.mkdirSync(path.join(repo, 'later'));
    fs.copyFileSync(path.join(repo, 'texture', 'model.onnx'), path.join(repo, 'later', 'model.onnx'));
    const later = await cache.get('later');
    assert.equal(later.modelId, 'later');
    assert.deepEqual(loads, ['texture', 'later', 'later']);
    assert.deepEqual(evicted, []);
    texture.release();
    await cache.close();
  });

  test('disposes every model on close and refuses work afterwards', async () => {
    const disposed: string[] = [];
    const { cache, evicted } = cacheOver(async (id) => {
      const model = await synthetic()(id);
      return { ...model, modelId: model.modelId, run: model.run.bind(model), dispose: async () => { disposed.push(id); } };
    }, 3);
    await cache.get('a');
    await cache.get('b');
    await cache.close();
    assert.deepEqual(disposed.sort(), ['a', 'b']);
    assert.deepEqual(evicted, [], 'closing is not evicting (no eviction metrics at shutdown)');
    assert.deepEqual(cache.loadedModels(), []);
    await assert.rejects(cache.acquire('a'), (err: unknown) => err instanceof OrreryError && err.code === 'ORRERY_ERR_STAGE_FAILED');
  });
});
