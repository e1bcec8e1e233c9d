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
      const err = (f).reason as unknown;
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

/** A model of `sizeBytes` that records its disposal. */
function sized(sizes: Record<string, number>, disposed: string[] = []) {
  return async (id: string): Promise<LoadedModel> => ({
    modelId: id,
    sizeBytes: sizes[id] ?? 0,
    run: async () => [],
    dispose: async () => { disposed.push(id); },
  });
}

const GB = 1024 ** 3;

describe('ModelCache with max_model_bytes_per_replica', () => {
  test('evicts least recently used models once a load passes the byte budget', async () => {
    const disposed: string[] = [];
    const { cache, evicted } = cacheOver(sized({ a: 3 * GB, b: 3 * GB, c: 3 * GB }, disposed), 10, { maxBytes: 7 * GB });
    await cache.get('a');
    await cache.get('b');
    assert.equal(cache.loadedBytes(), 6 * GB);
    await cache.get('a'); // b is now the least recently used
    await cache.get('c');
    assert.deepEqual(evicted, ['b']);
    assert.deepEqual(cache.loadedModels(), ['c', 'a']);
    assert.equal(cache.loadedBytes(), 6 * GB);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(disposed, ['b']);
    await cache.close();
  });

  test('makes room before loading a model whose size it knows from an earlier load', async () => {
    const order: string[] = [];
    const sizes = { a: 4 * GB, b: 4 * GB };
    const { cache } = cacheOver(async (id) => {
      order.push(`load ${id}`);
      return { ...(await sized(sizes)(id)), dispose: async () => { order.push(`dispose ${id}`); } };
    }, 10, { maxBytes: 6 * GB });
    await cache.get('a');
    await cache.get('b'); // a is evicted after b's load (b's size was unknown)
    await new Promise((r) => setImmediate(r));
    await cache.get('a'); // a's size is known now: b is disposed before a loads
    assert.deepEqual(order, ['load a', 'load b', 'dispose a', 'dispose b', 'load a']);
    await cache.close();
  });

  test('a model larger than the budget still loads, alone, and stays loaded across uses', async () => {
    const { cache, loads, evicted } = cacheOver(sized({ small: GB, huge: 10 * GB }), 4, { maxBytes: 4 * GB });
    await cache.get('small');
    const lease = await cache.acquire('huge');
    assert.equal(lease.model.sizeBytes, 10 * GB);
    assert.deepEqual(evicted, ['small']);
    lease.release();
    const again = await cache.acquire('huge');
    again.release();
    assert.deepEqual(loads, ['small', 'huge']);
    assert.deepEqual(cache.loadedModels(), ['huge']);
    await cache.close();
  });

  test('never evicts a model in use for bytes; trims when it is released', async () => {
    const { cache, evicted } = cacheOver(sized({ a: 3 * GB, b: 3 * GB }), 4, { maxBytes: 4 * GB });
    const a = await cache.acquire('a');
    const b = await cache.acquire('b');
    assert.deepEqual(evicted, []);
    assert.equal(cache.loadedBytes(), 6 * GB);
    a.release();
    assert.deepEqual(evicted, ['a']);
    b.release();
    assert.deepEqual(cache.loadedModels(), ['b']);
    await cache.close();
  });

  test('keeps a model loaded while another runs, over budget; at release the least recently used goes', async () => {
    const { cache, evicted } = cacheOver(sized({ a: 3 * GB, b: 3 * GB }), 4, { maxBytes: 4 * GB });
    const a = await cache.acquire('a');
    await cache.get('b'); // preloaded while a runs: not evicted right after its own load
    assert.deepEqual(evicted, []);
    assert.deepEqual(cache.loadedModels(), ['b', 'a']);
    a.release(); // the end of a batch is a use: a is now the most recent
    assert.deepEqual(evicted, ['b']);
    assert.deepEqual(cache.loadedModels(), ['a']);
    await cache.close();
  });
});
