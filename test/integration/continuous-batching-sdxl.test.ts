/**
 * Step-level continuous batching on the tiny SDXL bundle in real ONNX Runtime sessions (issue 12):
 * an image computed inside a running set — joining while others are at steps 0, 7 and 19, with
 * other seeds, prompts, guidance scales and step counts — has the latents of the same image
 * computed alone by the request-level loop (within 1e-4); a bulk image paused for an online one
 * resumes where it stopped and still equals itself alone; and the stage in `batching: continuous`
 * merges concurrent batches, drops cancelled items at the next step, and makes the request-level
 * images.
 */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { CancelledError, InvalidArgumentError } from '../../services/common/errors.js';
import type { Priority } from '../../services/common/work-item.js';
import { perRowTimestepUnet } from '../../services/models/per-row-timestep-unet.js';
import { SESSION_LOAD_CHANNEL, type SessionLoadReport } from '../../services/models/session-load-report.js';
import { openSdxlBundle, type SdxlBundle } from '../../services/models/sdxl-bundle.js';
import { writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';
import { writeTinyLora } from '../../services/models/tiny-sdxl/tiny-lora.js';
import { loadStage } from '../../services/stages/registry.js';
import { RUNNING_SET_CHANNEL, RunningSet, type RunningSetEvent, type RunningSetReport } from '../../services/stages/running-set.js';
import { ClipTokenizer } from '../../services/stages/sdxl/clip-tokenizer.js';
import { denoise } from '../../services/stages/sdxl/denoise.js';
import { gaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import { createScheduler, parseSchedulerConfig, type SchedulerConfig, type SchedulerKind } from '../../services/stages/sdxl/schedulers/index.js';
import { SdxlImage, SdxlStepModel } from '../../services/stages/sdxl/sdxl-step-model.js';
import { conditionBatch, type TextEncoders } from '../../services/stages/sdxl/text-conditioning.js';
import type { LoadedModel, StageOutput } from '../../services/stages/stage.js';
import { runContext, workItem } from '../support/work-items.js';

const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-continuous-'));
after(() => fs.rmSync(repo, { recursive: true, force: true }));

const W = 128;
const H = 64;
const N = 4 * (H / 8) * (W / 8);

interface Spec { readonly prompt: string; readonly negative: string; readonly seed: bigint; readonly g: number; readonly steps: number }

const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe('continuous batching on the tiny SDXL bundle', () => {
  let plain: SdxlBundle;
  let perRow: SdxlBundle;
  let encoders: TextEncoders;
  let config: SchedulerConfig;

  before(async () => {
    const dir = path.join(repo, 'base');
    await writeTinySdxlBundle(dir, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    plain = await openSdxlBundle(dir, { executionProvider: 'cpu' });
    const rewritten = await perRowTimestepUnet(path.join(dir, 'unet/model.onnx'), path.join(repo, 'cache'));
    perRow = await openSdxlBundle(dir, { executionProvider: 'cpu' }, { cachedModelPaths: { unet: rewritten.path } });
    assert.equal(perRow.timestepPerRow, true);
    encoders = {
      textEncoder: plain.textEncoder, textEncoder2: plain.textEncoder2, forceZerosForEmptyPrompt: plain.forceZerosForEmptyPrompt,
      tokenizer: ClipTokenizer.fromDirectory(plain.tokenizerDirs[1]), tokenizer2: ClipTokenizer.fromDirectory(plain.tokenizerDirs[2]),
    };
    config = parseSchedulerConfig(plain.schedulerConfigJson);
  });
  after(async () => {
    await plain?.dispose();
    await perRow?.dispose();
  });

  /** The image computed alone by the request-level loop (denoise.ts) on the source UNet. */
  async function alone(s: Spec, kind: SchedulerKind): Promise<Float32Array> {
    const scheduler = createScheduler(config, { kind, steps: s.steps });
    const { positive, negative } = await conditionBatch(encoders, [s.prompt], [s.negative]);
    const noise = gaussianSource(s.seed);
    const latents = new Float32Array(N);
    noise.fill(latents);
    latents.forEach((v, i) => (latents[i] = v * scheduler.plan.initNoiseSigma));
    const shape = { channels: 4, latentHeight: H / 8, latentWidth: W / 8, height: H, width: W };
    await denoise({ session: plain.unet, dtype: plain.dtype, timestep: plain.timestepInput }, scheduler, shape,
      [{ latents, guidanceScale: s.g, noise, signal: new AbortController().signal, onStep: () => undefined }], positive, negative, new AbortController().signal);
    return latents;
  }

  function runningSet(capacity: number, reports: RunningSetReport[] = []): RunningSet<SdxlImage> {
    const model = new SdxlStepModel({
      encoders,
      unet: { session: perRow.unet, dtype: perRow.dtype, timestep: perRow.timestepInput },
      vae: { decoder: perRow.vaeDecoder, encoder: perRow.vaeEncoder, encoderOutput: perRow.vaeEncoderOutput, dtype: perRow.dtype, scalingFactor: perRow.scalingFactor },
      img2img: false,
    });
    return new RunningSet(model, { capacity, onReport: (r) => reports.push(r) });
  }

  function image(s: Spec, kind: SchedulerKind, priority: Priority, onStep: (step: number) => void = () => undefined, signal = new AbortController().signal): SdxlImage {
    const item = workItem({ prompt: s.prompt, negativePrompt: s.negative, seed: s.seed, guidanceScale: s.g, steps: s.steps, width: W, height: H });
    return new SdxlImage(item, createScheduler(config, { kind, steps: s.steps }), gaussianSource(s.seed), priority, signal, 4, (step) => onStep(step));
  }

  for (const kind of ['euler', 'euler_ancestral'] as const) {
    test(`an image joining while others are at steps 0, 7 and 19 equals itself alone within 1e-4 (${kind})`, async () => {
      const first: Spec = { prompt: 'pale green planet', negative: '', seed: 1n, g: 5, steps: 30 };
      const second: Spec = { prompt: 'burnt orange planet', negative: 'dark', seed: 2n, g: 1, steps: 25 };
      const third: Spec = { prompt: 'a', negative: '', seed: 3n, g: 9, steps: 20 };
      const target: Spec = { prompt: 'violet planet, three moons', negative: 'blurry', seed: 7n, g: 6, steps: 24 };
      const set = runningSet(4);
      const pending: Array<Promise<Array<SdxlImage | Error>>> = [];
      /** Steps done by the others when the target took its first step. */
      let seenAtJoin: number[] = [];
      const images: SdxlImage[] = [];
      const join = (s: Spec) => {
        const img = image(s, kind, 'online', (step) => {
          if (img === images[3] && step === 1) seenAtJoin = images.slice(0, 3).map((m) => m.step);
          if (img === images[0] && step === 12) join(second);
          if (img === images[0] && step === 19) {
            join(third);
            join(target);
          }
        });
        images.push(img);
        pending.push(set.run([img]));
      };
      join(first);
      // The first image finishes after the others joined (at its step 19).
      await pending[0];
      assert.equal(pending.length, 4);
      for (const r of (await Promise.all(pending)).flat()) assert.ok(!(r instanceof Error), r instanceof Error ? r.message : '');
      // The others were at steps 0 (joining with it), 7 and 19, counted after the shared call.
      assert.deepEqual(seenAtJoin, [20, 8, 1]);
      for (const [i, s] of [first, second, third, target].entries()) {
        const want = await alone(s, kind);
        const d = maxDiff(images[i]!.latents!, want);
        assert.ok(d < 1e-4, `image ${i} (seed ${s.seed}): max latent difference ${d}`);
        assert.equal(images[i]!.step, s.steps);
        assert.equal(images[i]!.rgb?.length, W * H * 3);
      }
      assert.ok(maxDiff(images[3]!.latents!, images[0]!.latents!) > 1e-2, 'the images really differ');
    });
  }

  test('a bulk image paused for an online one resumes where it stopped and equals itself alone (euler_ancestral)', async () => {
    const kind = 'euler_ancestral';
    const reports: RunningSetReport[] = [];
    const set = runningSet(2, reports);
    const log: string[] = [];
    const bulk1: Spec = { prompt: 'grey planet', negative: '', seed: 21n, g: 5, steps: 12 };
    const bulk2: Spec = { prompt: 'teal planet, rings', negative: 'noise', seed: 22n, g: 7, steps: 12 };
    const online: Spec = { prompt: 'red planet', negative: '', seed: 23n, g: 4, steps: 6 };
    let onlineRun: Promise<Array<SdxlImage | Error>> | undefined;
    const o = image(online, kind, 'online', (step) => log.push(`o${step}`));
    const b1 = image(bulk1, kind, 'bulk', (step) => {
      log.push(`a${step}`);
      if (step === 4) onlineRun = set.run([o]);
    });
    const b2 = image(bulk2, kind, 'bulk', (step) => log.push(`b${step}`));
    const bulkRun = set.run([b1, b2]);
    const [r1, r2] = await bulkRun;
    const [ro] = await onlineRun!;
    for (const r of [r1, r2, ro]) assert.ok(!(r instanceof Error), r instanceof Error ? r.message : '');
    // The online image's first step is the very next call; the later bulk image pauses meanwhile.
    const at = log.indexOf('o1');
    assert.deepEqual(log.slice(at - 2, at + 2), ['a4', 'b4', 'o1', 'a5']);
    const during = log.slice(at, log.indexOf('o6') + 1);
    assert.ok(!during.some((e) => e.startsWith('b')), `bulk 2 stepped while paused: ${during.join(' ')}`);
    // Resumed, not restarted: each of its steps ran exactly once, in order.
    assert.deepEqual(log.filter((e) => e.startsWith('b')), Array.from({ length: 12 }, (_, i) => `b${i + 1}`));
    assert.equal(reports.reduce((n, r) => n + r.preemptions, 0), 1);
    assert.equal(reports.reduce((n, r) => n + r.joins, 0), 3);
    assert.equal(reports.reduce((n, r) => n + r.leaves, 0), 3);
    assert.ok(reports.filter((r) => r.stepped).every((r) => r.occupied <= 2));
    for (const [img, s] of [[b1, bulk1], [b2, bulk2], [o, online]] as const) {
      const d = maxDiff(img.latents!, await alone(s, kind));
      assert.ok(d < 1e-4, `seed ${s.seed}: max latent difference ${d}`);
    }
  });
});

describe('the sdxl stage with batching: continuous', () => {
  let continuous: LoadedModel;
  let request: LoadedModel;
  const events: RunningSetEvent[] = [];
  const listen = (e: unknown) => events.push(e as RunningSetEvent);
  const loads: SessionLoadReport[] = [];
  const listenLoads = (r: unknown) => loads.push(r as SessionLoadReport);
  const options = { optimized_model_cache_dir: path.join(repo, 'optimized') };

  before(async () => {
    diagnostics.subscribe(SESSION_LOAD_CHANNEL, listenLoads);
    await writeTinySdxlBundle(path.join(repo, 'stage'), { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    const stage = loadStage('sdxl');
    continuous = await stage.load('stage', { options, modelRepository: repo, batching: 'continuous', maxBatchSize: 3 });
    request = await stage.load('stage', { options, modelRepository: repo });
    diagnostics.subscribe(RUNNING_SET_CHANNEL, listen);
  });
  after(async () => {
    diagnostics.unsubscribe(RUNNING_SET_CHANNEL, listen);
    diagnostics.unsubscribe(SESSION_LOAD_CHANNEL, listenLoads);
    await continuous?.dispose();
    await request?.dispose();
  });

  const ok = (r: StageOutput | Error | undefined): StageOutput => {
    if (!r || r instanceof Error) throw r ?? new Error('missing');
    return r;
  };
  const pixels = async (png: Uint8Array) => sharp(png).removeAlpha().raw().toBuffer();

  test('the per-row UNet is rewritten once and loads through the optimized-model cache: optimized on the first load, reused on the next', async () => {
    const perRowLoads = () => loads.filter((r) => r.modelPath.includes(`${path.sep}per-row-timestep${path.sep}`));
    assert.deepEqual(perRowLoads().map((r) => r.outcome), ['miss']);
    const again = await loadStage('sdxl').load('stage', { options, modelRepository: repo, batching: 'continuous', maxBatchSize: 3 });
    await again.dispose();
    assert.deepEqual(perRowLoads().map((r) => r.outcome), ['miss', 'hit']);
  });

  test('concurrent batches share the running set, and each image matches the request-level one', async () => {
    events.length = 0;
    const a = workItem({ requestId: 'a', seed: 5n, steps: 8, width: W, height: H });
    const b = workItem({ requestId: 'b', seed: 6n, steps: 5, width: W, height: H, guidanceScale: 1, prompt: 'ochre planet' });
    const progress: Array<[number, number, number]> = [];
    const [ra, rb] = await Promise.all([continuous.run([a], runContext({ progress })), continuous.run([b], runContext())]);
    assert.deepEqual(progress.map((p) => p[1]), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.ok(events.some((e) => e.stepped && e.occupied === 2 && e.modelId === 'stage'), 'the two batches stepped together');
    for (const [item, got] of [[a, ra], [b, rb]] as const) {
      const want = ok((await request.run([item], runContext()))[0]);
      const [x, y] = [await pixels(ok(got?.[0]).data), await pixels(want.data)];
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
      assert.ok(worst <= 2, `pixel difference ${worst} of 255`);
    }
  });

  test('img2img joins with its init image encoded and noised to its first step: the same images as request-level img2img, strength 0 included; a bad init image fails its own batch only', async () => {
    const stage = loadStage('sdxl');
    const img2img = { ...options, mode: 'image-to-image' };
    const cont = await stage.load('stage', { options: img2img, modelRepository: repo, batching: 'continuous', maxBatchSize: 4 });
    const req = await stage.load('stage', { options: img2img, modelRepository: repo });
    try {
      const initImage = await sharp({ create: { width: 16, height: 8, channels: 3, background: { r: 40, g: 90, b: 200 } } }).resize(W, H).png().toBuffer();
      const items = [0, 0.5, 1].map((strength, i) => workItem({ requestId: `i${i}`, seed: BigInt(30 + i), steps: 6, width: W, height: H, strength, initImage }));
      // A batch with an unreadable init image fails alone; the batch beside it is not touched.
      const [together, bad] = await Promise.allSettled([cont.run(items, runContext()), cont.run([workItem({ steps: 6, width: W, height: H, initImage: new Uint8Array([1, 2, 3]) })], runContext())]);
      assert.equal(bad.status, 'rejected');
      assert.ok(bad.reason instanceof InvalidArgumentError && bad.reason.field === 'init_image', String(bad.reason));
      assert.equal(together.status, 'fulfilled');
      for (const [i, it] of items.entries()) {
        const want = await pixels(ok((await req.run([it], runContext()))[0]).data);
        const got = await pixels(ok(together.value[i]).data);
        let worst = 0;
        for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!));
        assert.ok(worst <= 2, `strength ${it.strength}: pixel difference ${worst} of 255`);
      }
    } finally {
      await cont.dispose();
      await req.dispose();
    }
  });

  test('an older export whose int64 timestep is already per row is used as it is: the same image as request-level', async () => {
    await writeTinySdxlBundle(path.join(repo, 'legacy'), { dtype: 'float32', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: false });
    const stage = loadStage('sdxl');
    const cont = await stage.load('legacy', { options: {}, modelRepository: repo, batching: 'continuous', maxBatchSize: 2 });
    const req = await stage.load('legacy', { options: {}, modelRepository: repo });
    try {
      const a = workItem({ seed: 3n, steps: 7, width: W, height: H });
      const b = workItem({ requestId: 'b', seed: 4n, steps: 4, width: W, height: H, guidanceScale: 8 });
      const [together, wantA, wantB] = await Promise.all([cont.run([a, b], runContext()), req.run([a], runContext()), req.run([b], runContext())]);
      for (const [got, want] of [[together[0], wantA[0]], [together[1], wantB[0]]] as const) {
        const [x, y] = [await pixels(ok(got).data), await pixels(ok(want).data)];
        let worst = 0;
        for (let j = 0; j < x.length; j++) worst = Math.max(worst, Math.abs(x[j]! - y[j]!));
        assert.ok(worst <= 2, `pixel difference ${worst} of 255`);
      }
    } finally {
      await cont.dispose();
      await req.dispose();
    }
  });

  test('a base+lora model fuses its LoRA and then gets the per-row rewrite of the fused UNet: the same image as request-level', async () => {
    writeTinyLora(path.join(repo, 'loras', 'glow.safetensors'), { format: 'kohya', seed: 9 });
    const stage = loadStage('sdxl');
    const cont = await stage.load('stage+glow', { options: { ...options, fused_model_dir: path.join(repo, 'fused') }, modelRepository: repo, batching: 'continuous', maxBatchSize: 2 });
    const req = await stage.load('stage+glow', { options: { fused_model_dir: path.join(repo, 'fused') }, modelRepository: repo });
    try {
      assert.ok((cont.loadReport?.loraModulesFused ?? 0) > 0);
      const it = workItem({ seed: 11n, steps: 6, width: W, height: H });
      const [got, want, plain] = await Promise.all([cont.run([it], runContext()), req.run([it], runContext()), continuous.run([it], runContext())]);
      const [x, y, z] = [await pixels(ok(got[0]).data), await pixels(ok(want[0]).data), await pixels(ok(plain[0]).data)];
      let worst = 0;
      let fromBase = 0;
      for (let j = 0; j < x.length; j++) {
        worst = Math.max(worst, Math.abs(x[j]! - y[j]!));
        fromBase = Math.max(fromBase, Math.abs(x[j]! - z[j]!));
      }
      assert.ok(worst <= 2, `pixel difference ${worst} of 255`);
      assert.ok(fromBase > 2, 'the LoRA changes the image');
    } finally {
      await cont.dispose();
      await req.dispose();
    }
    // The fused folders, the rewritten fused UNet included, go with their models.
    assert.deepEqual(fs.readdirSync(path.join(repo, 'fused')), []);
  });

  test('a cancelled item leaves at the next step while its batch mate finishes; a cancelled batch rejects', async () => {
    const cancel = new AbortController();
    const progress: Array<[number, number, number]> = [];
    const ctx = runContext({ items: [cancel] });
    const results = await continuous.run([workItem({ seed: 1n, steps: 20, width: W, height: H }), workItem({ imageIndex: 1, seed: 2n, steps: 20, width: W, height: H })], {
      ...ctx,
      progress: (i, step, total) => {
        progress.push([i, step, total]);
        if (i === 0 && step === 3) cancel.abort(new CancelledError('request req-1'));
      },
    });
    assert.ok(results[0] instanceof CancelledError);
    ok(results[1]);
    assert.equal(Math.max(...progress.filter((p) => p[0] === 0).map((p) => p[1])), 3);
    assert.equal(Math.max(...progress.filter((p) => p[0] === 1).map((p) => p[1])), 20);

    const batch = new AbortController();
    let steps = 0;
    await assert.rejects(continuous.run([workItem({ steps: 50, width: W, height: H })], {
      signal: batch.signal, itemSignal: () => batch.signal,
      progress: () => {
        if (++steps === 2) batch.abort(new CancelledError('batch'));
      },
    }), CancelledError);
    assert.equal(steps, 2);
  });
});
