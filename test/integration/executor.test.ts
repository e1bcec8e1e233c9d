import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';

import { ConfigError, OrreryError } from '../../services/common/errors.js';
import { writeDemoModels } from '../../services/models/demo-models.js';
import type { StageItem, StageOutput } from '../../services/stages/stage.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { Executor, type ExecutorItemResult } from '../../services/worker/executor.js';
import { workItem } from '../support/work-items.js';

const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-executor-'));
writeDemoModels(repo);
after(() => fs.rmSync(repo, { recursive: true, force: true }));

function item(seed: bigint, over: Partial<StageItem> = {}): StageItem {
  return workItem({ requestId: `req-${seed}`, seed, guidanceScale: 0, width: 64, height: 48, strength: 0, ...over });
}

function image(r: ExecutorItemResult | undefined): StageOutput {
  if (!r || 'error' in r) assert.fail(`expected an image, got ${JSON.stringify(r?.error)}`);
  return r;
}

function expectCode(code: string) {
  return (err: unknown) => {
    assert.ok(err instanceof OrreryError, `expected an OrreryError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

let batchSeq = 0;
const batchId = () => `batch-${++batchSeq}`;

describe('Executor with the texture stage in a real thread', () => {
  let executor: Executor;
  const loadedEvents: string[] = [];
  before(async () => {
    executor = await Executor.start({
      stage: 'texture', maxModels: 2,
      stageContext: { options: { intra_op_threads: 1 }, modelRepository: repo },
    });
    executor.on('model-loaded', (e) => loadedEvents.push(e.modelId));
  });
  after(() => executor.close());

  test('gives the same PNG for the same seed and different images for different seeds', async () => {
    const progress: string[] = [];
    const a = await executor.run({ batchId: batchId(), modelId: 'texture', items: [item(42n)] }, (i, step, total) => progress.push(`${i}:${step}/${total}`));
    const b = await executor.run({ batchId: batchId(), modelId: 'texture', items: [item(42n)] });
    const c = await executor.run({ batchId: batchId(), modelId: 'texture', items: [item(43n)] });
    const [ia, ib, ic] = [image(a.results[0]), image(b.results[0]), image(c.results[0])];
    assert.equal(ia.mimeType, 'image/png');
    assert.deepEqual(await sharp(ia.data).metadata().then((m) => [m.format, m.width, m.height]), ['png', 64, 48]);
    assert.ok(Buffer.from(ia.data).equals(Buffer.from(ib.data)), 'same seed, same bytes');
    assert.ok(!Buffer.from(ia.data).equals(Buffer.from(ic.data)), 'another seed, another image');
    assert.deepEqual(progress, ['0:1/1']);
    assert.ok(a.loadSeconds > 0 && b.loadSeconds < a.loadSeconds, 'only the first run loaded the model');
    assert.ok(a.runSeconds > 0);
    assert.deepEqual(loadedEvents, ['texture']);
    assert.deepEqual(executor.loadedModels(), ['texture']);
    assert.equal(executor.loadingModel(), undefined);
  });

  test('writes an intermediate image (the next stage\'s input) as a stored PNG whatever the format, with the same pixels', async () => {
    const res = await executor.run({ batchId: batchId(), modelId: 'texture', items: [item(5n), item(5n, { intermediate: true, outputFormat: 'jpeg', requestId: 'req-5b' })] });
    const [final, intermediate] = [image(res.results[0]), image(res.results[1])];
    assert.equal(intermediate.mimeType, 'image/png');
    assert.ok(intermediate.data.byteLength >= 64 * 48 * 3, `stored: ${intermediate.data.byteLength} bytes`);
    const raw = (png: Uint8Array) => sharp(png).raw().toBuffer();
    assert.ok((await raw(final.data)).equals(await raw(intermediate.data)));
  });

  test('makes a batch of three byte-for-byte equal to three single runs', async () => {
    const items = [item(7n, { requestId: 'r1' }), item(8n, { requestId: 'r2', outputFormat: 'webp' }), item(2n ** 64n - 1n, { requestId: 'r3', outputFormat: 'jpeg' })];
    const batch = await executor.run({ batchId: batchId(), modelId: 'texture', items });
    const singles = await Promise.all(items.map((it) => executor.run({ batchId: batchId(), modelId: 'texture', items: [it] })));
    assert.deepEqual(batch.results.map((r) => image(r).mimeType), ['image/png', 'image/webp', 'image/jpeg']);
    batch.results.forEach((r, i) => {
      assert.ok(Buffer.from(image(r).data).equals(Buffer.from(image(singles[i]?.results[0]).data)), `item ${i} differs`);
    });
  });

  test('cancels one request of a batch and still delivers the others', async () => {
    const items = [item(1n, { requestId: 'keep-1' }), item(2n, { requestId: 'drop' }), item(3n, { requestId: 'keep-2' })];
    const id = batchId();
    const running = executor.run({ batchId: id, modelId: 'texture', items });
    executor.cancel(id, ['drop']);
    const { results } = await running;
    assert.equal(image(results[0]).width, 64);
    const dropped = results[1];
    assert.ok(dropped && 'error' in dropped && dropped.error.code === 'ORRERY_ERR_CANCELLED', JSON.stringify(dropped));
    const single = await executor.run({ batchId: batchId(), modelId: 'texture', items: items.slice(2) });
    assert.ok(Buffer.from(image(results[2]).data).equals(Buffer.from(image(single.results[0]).data)));
  });

  test('rejects a whole cancelled batch with ORRERY_ERR_CANCELLED', async () => {
    const id = batchId();
    const running = executor.run({ batchId: id, modelId: 'texture', items: [item(5n, { width: 256, height: 256 })] });
    executor.cancel(id);
    await assert.rejects(running, expectCode('ORRERY_ERR_CANCELLED'));
  });

  test('rejects a missing model with ORRERY_ERR_MODEL_NOT_FOUND naming its path, and keeps serving', async () => {
    await assert.rejects(executor.run({ batchId: batchId(), modelId: 'no-such-model', items: [item(1n)] }), (err: unknown) => {
      expectCode('ORRERY_ERR_MODEL_NOT_FOUND')(err);
      assert.match((err as Error).message, /no-such-model[/\\]model\.onnx/);
      return true;
    });
    await assert.rejects(executor.run({ batchId: batchId(), modelId: '../texture', items: [item(1n)] }), expectCode('ORRERY_ERR_MODEL_NOT_FOUND'));
    const ok = await executor.run({ batchId: batchId(), modelId: 'texture', items: [item(1n)] });
    image(ok.results[0]);
  });

  test('keeps the main thread responsive while the thread runs a heavy ONNX batch', async () => {
    const items = [1n, 2n, 3n, 4n].map((s) => item(s, { requestId: `heavy-${s}`, width: 640, height: 512 }));
    let last = performance.now();
    let maxLagMs = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxLagMs = Math.max(maxLagMs, now - last - 5);
      last = now;
    }, 5);
    try {
      const res = await executor.run({ batchId: batchId(), modelId: 'texture', items });
      assert.equal(res.results.length, 4);
      const runMs = res.runSeconds * 1000;
      assert.ok(runMs > 150, `the batch must be heavy enough to show a stall (ran ${runMs.toFixed(0)} ms)`);
      assert.ok(maxLagMs < Math.min(100, runMs / 3), `timer lag ${maxLagMs.toFixed(1)} ms during a ${runMs.toFixed(0)} ms batch`);
    } finally {
      clearInterval(timer);
    }
  });
});

describe('Executor lifecycle', () => {
  test('refuses an unknown stage before starting a thread, naming the known ones', async () => {
    await assert.rejects(Executor.start({ stage: 'nope', maxModels: 1, stageContext: { options: {}, modelRepository: repo } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /unknown stage "nope" \(known: [a-z, -]*\bsynthetic, texture\b/);
      return true;
    });
  });

  test('loads neither onnxruntime-node nor sharp in the process that holds the executor', () => {
    // A fresh process, so this test's own imports do not count.
    const script = `
      require(${JSON.stringify(require.resolve('../../services/worker/executor.js'))});
      require(${JSON.stringify(require.resolve('../../services/stages/registry.js'))}).loadStage('synthetic');
      const heavy = Object.keys(require.cache).filter((f) => /onnxruntime|[\\/]sharp[\\/]/.test(f));
      process.stdout.write(JSON.stringify(heavy));`;
    const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), []);
  });

  test('transfers whole init-image buffers to the thread and copies views of shared ones', async () => {
    const executor = await Executor.start({ stage: 'synthetic', maxModels: 1, stageContext: { options: {}, modelRepository: repo } });
    try {
      const whole = new Uint8Array(4096).fill(7);
      const shared = new Uint8Array(8192).fill(9);
      const view = shared.subarray(100, 200);
      const res = await executor.run({ batchId: batchId(), modelId: 'm', items: [item(1n, { initImage: whole }), item(2n, { initImage: view })] });
      assert.equal(res.results.length, 2);
      assert.equal(whole.byteLength, 0, 'the whole buffer was transferred (detached here)');
      assert.equal(view.byteLength, 100, 'a view of a shared buffer is copied, not detached');
      assert.equal(shared[0], 9);
      // A Node Buffer view (what protobufjs gives for bytes decoded from a NATS message): its
      // slice() shares memory, so a careless copy would detach the whole message.
      const message = Buffer.alloc(1088, 3);
      const bufferView = message.subarray(249, 249 + 762);
      await executor.run({ batchId: batchId(), modelId: 'm', items: [item(3n, { initImage: bufferView })] });
      assert.equal(message.byteLength, 1088, 'the message buffer is not detached');
      assert.equal(bufferView.byteLength, 762);
    } finally {
      await executor.close();
    }
  });

  test('moves a 12 MB synthetic payload out of the thread and evicts at the cap', async () => {
    const executor = await Executor.start({
      stage: 'synthetic', maxModels: 1,
      stageContext: { options: { image_bytes: 12 * 1024 * 1024, progress: true }, modelRepository: repo },
    });
    const evicted: string[] = [];
    executor.on('model-evicted', (e) => evicted.push(e.modelId));
    try {
      const steps: number[] = [];
      const res = await executor.run({ batchId: batchId(), modelId: 'm1', items: [item(9n, { steps: 3 })] }, (_i, step) => steps.push(step));
      const out = image(res.results[0]);
      assert.equal(out.data.byteLength, 12 * 1024 * 1024);
      assert.deepEqual(parseSyntheticPayload(out.data), { modelId: 'm1', seed: '9', requestId: 'req-9', imageIndex: 0, prompt: item(9n).prompt });
      assert.deepEqual(steps, [1, 2, 3]);
      await executor.load('m2');
      assert.deepEqual(evicted, ['m1']);
      assert.deepEqual(executor.loadedModels(), ['m2']);
    } finally {
      await executor.close();
    }
    assert.equal(executor.state, 'stopped');
    await assert.rejects(executor.run({ batchId: batchId(), modelId: 'm1', items: [item(1n)] }), expectCode('ORRERY_ERR_REPLICA_DRAINING'));
  });

  test('times synthetic batches by the cost model and fails configured models with ORRERY_ERR_MODEL_LOAD_FAILED', async () => {
    const executor = await Executor.start({
      stage: 'synthetic', maxModels: 2,
      stageContext: { options: { fixed_ms: 40, per_item_ms: 30, fail_models: ['bad'] }, modelRepository: repo },
    });
    try {
      const res = await executor.run({ batchId: batchId(), modelId: 'good', items: [item(1n), item(2n)] });
      assert.ok(res.runSeconds >= 0.095 && res.runSeconds < 0.5, `40 + 2 × 30 ms, took ${res.runSeconds} s`);
      await assert.rejects(executor.run({ batchId: batchId(), modelId: 'bad', items: [item(1n)] }), expectCode('ORRERY_ERR_MODEL_LOAD_FAILED'));
      assert.deepEqual(executor.loadedModels(), ['good']);
    } finally {
      await executor.close();
    }
  });

  test('batches take turns on the device for their model work and overlap the previous batch\'s encoding', async () => {
    const executor = await Executor.start({
      stage: 'synthetic', maxModels: 2,
      stageContext: { options: { fixed_ms: 150, encode_ms: 300, progress: true }, modelRepository: repo },
    });
    try {
      const events: string[] = [];
      const run = (name: string) => executor.run({ batchId: batchId(), modelId: 'm', items: [item(1n, { steps: 3 })] }, (_i, step) => events.push(`${name} step ${step}`))
        .then((r) => { events.push(`${name} done`); return r; });
      await executor.load('m');
      const [a, b] = await Promise.all([run('a'), run('b')]);
      image(a.results[0]);
      image(b.results[0]);
      // b's model work starts only when a's is over (no interleaved steps), and runs while a
      // encodes (150 ms of work inside a's 300 ms of encoding), so b's steps come before a is done.
      assert.deepEqual(events, ['a step 1', 'a step 2', 'a step 3', 'b step 1', 'b step 2', 'b step 3', 'a done', 'b done']);
    } finally {
      await executor.close();
    }
  });

  test('a batch cancelled while it waits for the device leaves the queue; the next one runs', async () => {
    const executor = await Executor.start({
      stage: 'synthetic', maxModels: 2,
      stageContext: { options: { fixed_ms: 300 }, modelRepository: repo },
    });
    try {
      await executor.load('m');
      const first = executor.run({ batchId: 'holds-device', modelId: 'm', items: [item(1n)] });
      const waiting = executor.run({ batchId: 'waits', modelId: 'm', items: [item(2n)] });
      const third = executor.run({ batchId: 'third', modelId: 'm', items: [item(3n)] });
      await new Promise((r) => setTimeout(r, 50));
      executor.cancel('waits');
      await assert.rejects(waiting, expectCode('ORRERY_ERR_CANCELLED'));
      image((await first).results[0]);
      const t = await third;
      image(t.results[0]);
      assert.ok(t.runSeconds < 0.5, `the third batch ran alone once it had the device (${t.runSeconds} s)`);
    } finally {
      await executor.close();
    }
  });

  test('rejects pending runs with ORRERY_ERR_STAGE_FAILED and emits crashed when the thread dies', async () => {
    const executor = await Executor.start({
      stage: 'synthetic', maxModels: 2,
      stageContext: { options: { crash_models: ['boom'], fixed_ms: 2000 }, modelRepository: repo },
    });
    const crashed = new Promise<OrreryError>((resolve) => executor.once('crashed', resolve));
    const slow = executor.run({ batchId: batchId(), modelId: 'fine', items: [item(1n)] });
    const boom = executor.run({ batchId: batchId(), modelId: 'boom', items: [item(2n)] });
    await assert.rejects(slow, expectCode('ORRERY_ERR_STAGE_FAILED'));
    await assert.rejects(boom, expectCode('ORRERY_ERR_STAGE_FAILED'));
    const err = await crashed;
    assert.match(err.message, /crashes the executor/);
    assert.equal(executor.state, 'failed');
    await executor.close();
  });
});
