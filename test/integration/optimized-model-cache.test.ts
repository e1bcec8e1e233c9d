/**
 * The optimized-model cache against real ONNX Runtime sessions: the texture model (one file) and
 * the tiny SDXL bundle (a UNet with external data), cold and warm, changed, corrupted, raced.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildTextureModel } from '../../services/models/demo-models.js';
import { createCachedSession, SESSION_LOAD_CHANNEL, type SessionLoadReport } from '../../services/models/optimized-model-cache.js';
import { openSdxlBundle } from '../../services/models/sdxl-bundle.js';
import type { SessionOptions } from '../../services/models/session-options.js';
import { TINY_CROSS_ATTENTION_DIM, TINY_SDXL_DIMS as D, writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';
import { textureStage } from '../../services/stages/texture.js';

let root: string;
let n = 0;
/** A fresh directory under the test's root. */
const fresh = (name: string) => fs.mkdtempSync(path.join(root, `${name}-${++n}-`));

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-optimized-cache-'));
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** A texture model folder (model.onnx + config.json) with weights from `seed`. */
function textureModel(seed: number): string {
  const dir = fresh('texture');
  fs.writeFileSync(path.join(dir, 'model.onnx'), buildTextureModel(seed));
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_id":"texture"}\n');
  return path.join(dir, 'model.onnx');
}

const options = (cacheDir: string): SessionOptions => ({ executionProvider: 'cpu', intraOpThreads: 1, graphOptimizationLevel: 'all', optimizedModelCacheDir: cacheDir });

/** Deterministic values of roughly unit variance. */
const values = (count: number, phase: number) => Float32Array.from({ length: count }, (_, i) => Math.sin(i * 12.9898 + phase) * 1.7);

async function runTexture(session: ort.InferenceSession): Promise<Float32Array> {
  const out = await session.run({
    noise: new ort.Tensor('float32', values(2 * 3 * 24 * 32, 1), [2, 3, 24, 32]),
    tint: new ort.Tensor('float32', Float32Array.of(0.1, 0.3, 0.9, 0.8, 0.2, 0.1), [2, 3]),
  });
  return out['image']!.data as Float32Array;
}

async function runUnet(session: ort.InferenceSession): Promise<Float32Array> {
  const out = await session.run({
    sample: new ort.Tensor('float32', values(2 * 4 * 8 * 8, 1), [2, 4, 8, 8]),
    timestep: new ort.Tensor('float32', Float32Array.of(500), []),
    encoder_hidden_states: new ort.Tensor('float32', values(2 * 77 * TINY_CROSS_ATTENTION_DIM, 2), [2, 77, TINY_CROSS_ATTENTION_DIM]),
    text_embeds: new ort.Tensor('float32', values(2 * D.projectionDim, 3), [2, D.projectionDim]),
    time_ids: new ort.Tensor('float32', Float32Array.of(64, 64, 0, 0, 64, 64, 64, 64, 0, 0, 64, 64), [2, 6]),
  });
  return out['out_sample']!.data as Float32Array;
}

/** Loads `model` through the cache, runs it with `run`, releases it. */
async function loadAndRun(model: string, cacheDir: string, run: (s: ort.InferenceSession) => Promise<Float32Array>): Promise<{ report: SessionLoadReport; out: Float32Array }> {
  const { session, report } = await createCachedSession({ path: model }, options(cacheDir));
  try {
    return { report, out: await run(session) };
  } finally {
    await session.release();
  }
}

/** Loads `model` with no cache at all (ORT's default optimization) and runs it. */
async function plainRun(model: string, run: (s: ort.InferenceSession) => Promise<Float32Array>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    return await run(session);
  } finally {
    await session.release();
  }
}

const entries = (cacheDir: string) => fs.readdirSync(cacheDir).filter((f) => !f.startsWith('.'));

let unetPath: string;
before(async () => {
  const bundle = fresh('tiny-sdxl');
  await writeTinySdxlBundle(bundle, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
  unetPath = path.join(bundle, 'unet', 'model.onnx');
});

describe('optimized-model cache', () => {
  test('a cold load saves the optimized model (weights in external data) and a warm load is created from it', async () => {
    const cache = fresh('cache');
    const cold = await loadAndRun(unetPath, cache, runUnet);
    assert.equal(cold.report.outcome, 'miss');
    assert.ok(cold.report.hashSeconds > 0, 'the first load hashes the source');
    const entry = cold.report.entryDir!;
    assert.deepEqual(entries(cache), [path.basename(entry)]);
    assert.deepEqual(fs.readdirSync(entry).sort(), ['manifest.json', 'model.onnx', 'model.onnx.data']);
    assert.ok(fs.statSync(path.join(entry, 'model.onnx.data')).size > fs.statSync(path.join(entry, 'model.onnx')).size, 'weights sit in the external file');
    const manifest = JSON.parse(fs.readFileSync(path.join(entry, 'manifest.json'), 'utf8')) as { target: { executionProvider: string; ortVersion: string; graphOptimizationLevel: string } };
    assert.deepEqual([manifest.target.executionProvider, manifest.target.ortVersion, manifest.target.graphOptimizationLevel], ['cpu', ort.env.versions.node, 'all']);

    const warm = await loadAndRun(unetPath, cache, runUnet);
    assert.equal(warm.report.outcome, 'hit');
    assert.equal(warm.report.entryDir, entry);
    assert.equal(warm.report.hashSeconds, 0, 'the memoized hash is reused');
    assert.ok(!fs.readdirSync(cache).some((f) => f.startsWith('.tmp-')), 'no temporary entry is left');
  });

  test('cold, warm and uncached sessions give bit-identical outputs (UNet with external data, texture)', async () => {
    const cache = fresh('cache');
    for (const [model, run] of [[unetPath, runUnet], [textureModel(7), runTexture]] as const) {
      const cold = await loadAndRun(model, cache, run);
      const warm = await loadAndRun(model, cache, run);
      assert.deepEqual([cold.report.outcome, warm.report.outcome], ['miss', 'hit']);
      assert.deepEqual(warm.out, cold.out);
      assert.deepEqual(warm.out, await plainRun(model, run));
    }
    // The UNet was hashed by an earlier test: this process's hash is still memoized in this directory, for other replicas.
    assert.equal(fs.readdirSync(path.join(cache, '.sources')).length, 2);
  });

  test('a model given as bytes (as the upscaler reads it) is cached the same way', async () => {
    const cache = fresh('cache');
    const model = textureModel(11);
    const bytes = fs.readFileSync(model);
    const outcomes: string[] = [];
    const outs: Float32Array[] = [];
    for (let i = 0; i < 2; i++) {
      const { session, report } = await createCachedSession({ path: model, bytes }, options(cache));
      outcomes.push(report.outcome);
      outs.push(await runTexture(session));
      await session.release();
    }
    assert.deepEqual(outcomes, ['miss', 'hit']);
    assert.deepEqual(outs[1], outs[0]);
  });

  test('a warm load runs the cached graph, not the source: an entry swapped for another model\'s gives that model\'s outputs', async () => {
    const cache = fresh('cache');
    const a = textureModel(1);
    const b = textureModel(2);
    const entryA = (await loadAndRun(a, cache, runTexture)).report.entryDir!;
    const outB = await loadAndRun(b, cache, runTexture);
    for (const f of fs.readdirSync(outB.report.entryDir!)) {
      if (f !== 'manifest.json') fs.copyFileSync(path.join(outB.report.entryDir!, f), path.join(entryA, f));
    }
    const manifestA = JSON.parse(fs.readFileSync(path.join(entryA, 'manifest.json'), 'utf8')) as { files: Array<{ name: string; size: number }> };
    manifestA.files = manifestA.files.map((f) => ({ name: f.name, size: fs.statSync(path.join(entryA, f.name)).size }));
    fs.writeFileSync(path.join(entryA, 'manifest.json'), JSON.stringify(manifestA));

    const warmA = await loadAndRun(a, cache, runTexture);
    assert.equal(warmA.report.outcome, 'hit');
    assert.deepEqual(warmA.out, outB.out);
    assert.notDeepEqual(warmA.out, await plainRun(a, runTexture));
  });

  test('changed weights get a new key; a touched but unchanged file is re-hashed and keeps its key', async () => {
    const cache = fresh('cache');
    const model = textureModel(3);
    const first = await loadAndRun(model, cache, runTexture);

    const later = new Date(Date.now() + 5000);
    fs.utimesSync(model, later, later);
    const touched = await loadAndRun(model, cache, runTexture);
    assert.equal(touched.report.outcome, 'hit');
    assert.equal(touched.report.entryDir, first.report.entryDir);
    assert.ok(touched.report.hashSeconds > 0, 'new stamps invalidate the memoized hash');

    // Same size, same mtime as before: only the content differs.
    const before = fs.statSync(model);
    const other = buildTextureModel(4);
    assert.equal(other.length, before.size);
    fs.writeFileSync(model, other);
    fs.utimesSync(model, before.atime, before.mtime);
    const changed = await loadAndRun(model, cache, runTexture);
    assert.equal(changed.report.outcome, 'miss');
    assert.notEqual(changed.report.entryDir, first.report.entryDir);
    assert.notDeepEqual(changed.out, first.out);
    assert.deepEqual(changed.out, await plainRun(model, runTexture));
    assert.equal(entries(cache).length, 2);
  });

  test('a file changed beside the model (external data) changes the key too', async () => {
    const cache = fresh('cache');
    const bundle = fresh('tiny-sdxl');
    await writeTinySdxlBundle(bundle, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    const model = path.join(bundle, 'unet', 'model.onnx');
    const first = await loadAndRun(model, cache, runUnet);
    await writeTinySdxlBundle(bundle, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true, seed: 99 });
    const second = await loadAndRun(model, cache, runUnet);
    assert.equal(second.report.outcome, 'miss');
    assert.notEqual(second.report.entryDir, first.report.entryDir);
    assert.notDeepEqual(second.out, first.out);
  });

  // Files that fail the manifest's checks are removed and written again by the same load; whole
  // files that ONNX Runtime refuses are removed only once the source has loaded (so a device
  // failure cannot delete an entry other replicas use), and the next load writes them again.
  for (const [name, damage, reason, nextOutcomes] of [
    ['truncated external data', (entry: string) => fs.truncateSync(path.join(entry, 'model.onnx.data'), 1000), /cached entry unusable/, ['hit']],
    ['garbage of the right size in model.onnx', (entry: string) => fs.writeFileSync(path.join(entry, 'model.onnx'), Buffer.alloc(fs.statSync(path.join(entry, 'model.onnx')).size, 0x5a)), /refused by ONNX Runtime, removed/, ['miss', 'hit']],
    ['a missing manifest', (entry: string) => fs.rmSync(path.join(entry, 'manifest.json')), /cached entry unusable/, ['hit']],
  ] as const) {
    test(`a corrupt entry (${name}) is removed, the model loads from its source, and the entry is written again`, async () => {
      const cache = fresh('cache');
      const cold = await loadAndRun(unetPath, cache, runUnet);
      damage(cold.report.entryDir!);
      const recovered = await loadAndRun(unetPath, cache, runUnet);
      assert.equal(recovered.report.outcome, 'recovered');
      assert.match(recovered.report.reason ?? '', reason);
      assert.deepEqual(recovered.out, cold.out);
      for (const outcome of nextOutcomes) {
        const again = await loadAndRun(unetPath, cache, runUnet);
        assert.equal(again.report.outcome, outcome);
        assert.deepEqual(again.out, cold.out);
      }
      assert.ok(!fs.readdirSync(cache).some((f) => f.startsWith('.trash-') || f.startsWith('.tmp-')));
    });
  }

  test('concurrent cold loads of one model all succeed and leave one whole entry', async () => {
    const cache = fresh('cache');
    const model = textureModel(5);
    const loads = await Promise.all([0, 1, 2, 3].map(() => createCachedSession({ path: model }, options(cache))));
    try {
      assert.deepEqual(loads.map((l) => l.report.outcome), ['miss', 'miss', 'miss', 'miss']);
      assert.equal(entries(cache).length, 1);
      assert.ok(!fs.readdirSync(cache).some((f) => f.startsWith('.tmp-')));
      const warm = await loadAndRun(model, cache, runTexture);
      assert.equal(warm.report.outcome, 'hit');
      assert.deepEqual(warm.out, await runTexture(loads[0]!.session));
    } finally {
      await Promise.all(loads.map((l) => l.session.release()));
    }
  });

  test('an unusable cache directory does not fail the load: write-failed, with the reason', async () => {
    const notADir = path.join(fresh('cache'), 'file');
    fs.writeFileSync(notADir, 'x');
    const { report, out } = await loadAndRun(textureModel(6), notADir, runTexture);
    assert.equal(report.outcome, 'write-failed');
    assert.match(report.reason ?? '', /cannot write in the cache directory/);
    assert.equal(out.length, 2 * 3 * 24 * 32);
  });

  test('bypasses the cache at level disabled and when the caller asks, writing nothing', async () => {
    const cache = fresh('cache');
    const model = textureModel(8);
    const disabled = await createCachedSession({ path: model }, { ...options(cache), graphOptimizationLevel: 'disabled' });
    const asked = await createCachedSession({ path: model }, options(cache), { bypass: 'written at each load' });
    await disabled.session.release();
    await asked.session.release();
    assert.deepEqual([disabled.report.outcome, asked.report.outcome], ['bypass', 'bypass']);
    assert.equal(asked.report.reason, 'written at each load');
    assert.deepEqual(entries(cache), []);
  });

  test('without a cache directory the load is plain and nothing is published', async () => {
    const seen: unknown[] = [];
    const listener = (r: unknown) => seen.push(r);
    diagnostics.subscribe(SESSION_LOAD_CHANNEL, listener);
    try {
      const { session, report } = await createCachedSession({ path: textureModel(9) }, { executionProvider: 'cpu' });
      await session.release();
      assert.equal(report.outcome, 'disabled');
      assert.deepEqual(seen, []);
    } finally {
      diagnostics.unsubscribe(SESSION_LOAD_CHANNEL, listener);
    }
  });
});

describe('stages and the SDXL bundle use the cache', () => {
  test('openSdxlBundle: the first open saves all five models, the second is all hits; an overridden (fused) model bypasses', async () => {
    const cache = fresh('cache');
    const bundle = fresh('tiny-sdxl');
    await writeTinySdxlBundle(bundle, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    const first = await openSdxlBundle(bundle, options(cache));
    await first.dispose();
    assert.deepEqual(first.sessionLoads.map((r) => r.outcome), ['miss', 'miss', 'miss', 'miss', 'miss']);
    assert.equal(entries(cache).length, 5);

    const copy = fresh('fused-unet');
    for (const f of fs.readdirSync(path.join(bundle, 'unet'))) fs.copyFileSync(path.join(bundle, 'unet', f), path.join(copy, f));
    const second = await openSdxlBundle(bundle, options(cache), { modelPaths: { unet: path.join(copy, 'model.onnx') } });
    await second.dispose();
    assert.deepEqual(second.sessionLoads.map((r) => r.outcome), ['hit', 'hit', 'bypass', 'hit', 'hit']);
    assert.match(second.sessionLoads[2]!.reason ?? '', /LoRA-fused/);
  });

  test('the texture stage loads through the cache named by options.optimized_model_cache_dir and publishes each load', async () => {
    const repo = fresh('repo');
    fs.mkdirSync(path.join(repo, 'texture'));
    fs.writeFileSync(path.join(repo, 'texture', 'model.onnx'), buildTextureModel());
    const cache = path.join(repo, '.optimized');
    const seen: SessionLoadReport[] = [];
    const listener = (r: unknown) => seen.push(r as SessionLoadReport);
    diagnostics.subscribe(SESSION_LOAD_CHANNEL, listener);
    try {
      for (let i = 0; i < 2; i++) {
        const m = await textureStage.load('texture', { modelRepository: repo, options: { optimized_model_cache_dir: cache, intra_op_threads: 1 } });
        await m.dispose();
      }
    } finally {
      diagnostics.unsubscribe(SESSION_LOAD_CHANNEL, listener);
    }
    assert.deepEqual(seen.map((r) => [path.relative(repo, r.modelPath), r.outcome]), [['texture/model.onnx', 'miss'], ['texture/model.onnx', 'hit']]);
    assert.equal(entries(cache).length, 1);
  });
});
