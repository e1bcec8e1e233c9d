/**
 * The SDXL stage on the tiny SDXL-shaped bundle, in real ONNX Runtime sessions: all four export
 * variants, determinism, batching invariance, img2img at strength 0 and 1, the parameters chunk,
 * and cancellation between steps.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { CancelledError, ConfigError, InvalidArgumentError } from '../../services/common/errors.js';
import { openSdxlBundle, type SdxlBundle } from '../../services/models/sdxl-bundle.js';
import { writeTinySdxlBundle, type TinySdxlOptions } from '../../services/models/tiny-sdxl.js';
import { loadStage } from '../../services/stages/registry.js';
import { ClipTokenizer } from '../../services/stages/sdxl/clip-tokenizer.js';
import { denoise } from '../../services/stages/sdxl/denoise.js';
import { gaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import { readTextChunk } from '../../services/stages/png-parameters.js';
import { createScheduler, parseSchedulerConfig } from '../../services/stages/sdxl/schedulers/index.js';
import { conditionBatch } from '../../services/stages/sdxl/text-conditioning.js';
import type { LoadedModel, RunContext, StageItem, StageOutput } from '../../services/stages/stage.js';
import { runContext, workItem } from '../support/work-items.js';

const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-sdxl-'));
after(() => fs.rmSync(repo, { recursive: true, force: true }));

const VARIANTS: Record<string, TinySdxlOptions> = {
  base: { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true },
  legacy: { dtype: 'float32', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: false },
  fp16: { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true },
  'fp16-legacy': { dtype: 'float16', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: false },
};

function item(over: Partial<StageItem> = {}): StageItem {
  return workItem({ requestId: 'r1', seed: 42n, steps: 8, width: 128, height: 64, ...over });
}

function context(progress: Array<[number, number, number]> = [], itemSignals: AbortSignal[] = []): RunContext {
  return runContext({ progress, items: itemSignals });
}

const ok = (r: StageOutput | Error): StageOutput => {
  if (r instanceof Error) throw r;
  return r;
};

async function pixels(png: Uint8Array): Promise<Buffer> {
  return sharp(png).removeAlpha().raw().toBuffer();
}

function meanAbsDiff(a: Buffer, b: Buffer): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length / 255;
}

describe('sdxl stage on the tiny bundle', () => {
  const models: Record<string, LoadedModel> = {};
  before(async () => {
    for (const [name, v] of Object.entries(VARIANTS)) await writeTinySdxlBundle(path.join(repo, name), v);
    const stage = loadStage('sdxl');
    for (const name of Object.keys(VARIANTS)) models[name] = await stage.load(name, { options: {}, modelRepository: repo });
    models.img2img = await stage.load('base', { options: { mode: 'image-to-image' }, modelRepository: repo });
  });
  after(async () => {
    for (const m of Object.values(models)) await m.dispose();
  });

  for (const name of Object.keys(VARIANTS)) {
    test(`text-to-image works on the ${name} export variant: a PNG of the requested size with one progress event per step`, async () => {
      const progress: Array<[number, number, number]> = [];
      const [out] = await models[name]!.run([item()], context(progress));
      const img = ok(out!);
      assert.equal(img.mimeType, 'image/png');
      const meta = await sharp(img.data).metadata();
      assert.deepEqual([meta.width, meta.height], [128, 64]);
      assert.deepEqual(progress.map((p) => p[1]), [1, 2, 3, 4, 5, 6, 7, 8]);
      const px = await pixels(img.data);
      assert.ok(new Set(px).size > 16, 'not a flat image');
    });
  }

  test('the same request and seed give a byte-identical PNG; another seed differs', async () => {
    const a = ok((await models.base!.run([item()], context()))[0]!);
    const b = ok((await models.base!.run([item()], context()))[0]!);
    const c = ok((await models.base!.run([item({ seed: 43n })], context()))[0]!);
    assert.ok(Buffer.from(a.data).equals(Buffer.from(b.data)));
    assert.ok(!Buffer.from(a.data).equals(Buffer.from(c.data)));
  });

  test('the PNG carries the generation parameters in a tEXt chunk named parameters', async () => {
    const out = ok((await models.base!.run([item({ negativePrompt: 'blurry' })], context()))[0]!);
    assert.equal(readTextChunk(out.data, 'parameters'),
      'deep blue planet with frosted cloudy zones\nNegative prompt: blurry\nSteps: 8, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 128x64, Model: base');
  });

  test('PNG options set the size of images for the client, not their pixels; intermediate images are always stored PNGs, whatever the format; bad values are ConfigErrors', async () => {
    const stage = loadStage('sdxl');
    const stored = await stage.load('base', { options: { png_compression_level: 0, png_adaptive_filtering: false }, modelRepository: repo });
    try {
      const byDefault = ok((await models.base!.run([item()], context()))[0]!);
      const level0 = ok((await stored.run([item()], context()))[0]!);
      // The next pipeline stage's input: a stored PNG even when the deployment compresses and the
      // request asked for JPEG.
      const intermediate = ok((await models.base!.run([item({ intermediate: true, outputFormat: 'jpeg' })], context()))[0]!);
      for (const out of [byDefault, level0, intermediate]) {
        assert.equal(out.mimeType, 'image/png');
        const meta = await sharp(out.data).metadata();
        assert.deepEqual([meta.format, meta.width, meta.height], ['png', 128, 64]);
      }
      // Level 0 stores the pixels: 3 bytes a pixel plus a filter byte a row, and headers.
      for (const out of [level0, intermediate]) assert.ok(out.data.length >= 128 * 64 * 3 + 64, `stored: ${out.data.length} bytes`);
      assert.ok(byDefault.data.length < level0.data.length, `default (level 3, filtered): ${byDefault.data.length} of ${level0.data.length} bytes`);
      for (const out of [level0, intermediate]) assert.ok((await pixels(byDefault.data)).equals(await pixels(out.data)));
      assert.equal(readTextChunk(level0.data, 'parameters'), readTextChunk(byDefault.data, 'parameters'));
    } finally {
      await stored.dispose();
    }
    for (const [key, value] of [['png_compression_level', 10], ['png_compression_level', 1.5], ['png_compression_level', '6'], ['png_adaptive_filtering', 'yes']] as const) {
      await assert.rejects(stage.load('base', { options: { [key]: value }, modelRepository: repo }),
        (err: unknown) => err instanceof ConfigError && err.key === `options.${key}` && err.code === 'ORRERY_ERR_CONFIG', `${key}: ${value}`);
    }
  });

  test('webp and jpeg outputs come from sharp', async () => {
    const [w, j] = await models.base!.run([item({ outputFormat: 'webp' }), item({ outputFormat: 'jpeg', imageIndex: 1 })], context());
    assert.equal(ok(w!).mimeType, 'image/webp');
    assert.equal((await sharp(ok(w!).data).metadata()).format, 'webp');
    assert.equal((await sharp(ok(j!).data).metadata()).format, 'jpeg');
  });

  test('a request generated alone equals the same request inside a batch of 4 (latents within 1e-4)', async () => {
    const bundle: SdxlBundle = await openSdxlBundle(path.join(repo, 'base'), { executionProvider: 'cpu' });
    try {
      const enc = {
        textEncoder: bundle.textEncoder, textEncoder2: bundle.textEncoder2, forceZerosForEmptyPrompt: bundle.forceZerosForEmptyPrompt,
        tokenizer: ClipTokenizer.fromDirectory(bundle.tokenizerDirs[1]), tokenizer2: ClipTokenizer.fromDirectory(bundle.tokenizerDirs[2]),
      };
      const config = parseSchedulerConfig(bundle.schedulerConfigJson);
      const shape = { channels: bundle.latentChannels, latentHeight: 8, latentWidth: 16, height: 64, width: 128 };
      const run = async (specs: Array<{ prompt: string; negative: string; seed: bigint; g: number }>) => {
        const scheduler = createScheduler(config, { steps: 10 });
        const { positive, negative } = await conditionBatch(enc, specs.map((s) => s.prompt), specs.map((s) => s.negative));
        const items = specs.map((s) => {
          const noise = gaussianSource(s.seed);
          const latents = new Float32Array(4 * 8 * 16);
          noise.fill(latents);
          latents.forEach((v, i) => (latents[i] = v * scheduler.plan.initNoiseSigma));
          return { latents, guidanceScale: s.g, noise, signal: new AbortController().signal, onStep: () => undefined };
        });
        await denoise({ session: bundle.unet, dtype: bundle.dtype, timestep: bundle.timestepInput }, scheduler, shape, items, positive, negative, new AbortController().signal);
        return items.map((it) => it.latents);
      };
      const target = { prompt: 'violet planet, three moons', negative: 'blurry', seed: 7n, g: 6 };
      const [alone] = await run([target]);
      const batch = await run([
        { prompt: 'pale green planet', negative: '', seed: 1n, g: 5 }, target,
        { prompt: 'burnt orange planet', negative: 'dark', seed: 2n, g: 1 }, { prompt: 'a', negative: '', seed: 3n, g: 9 },
      ]);
      let max = 0;
      for (let i = 0; i < alone!.length; i++) max = Math.max(max, Math.abs(alone![i]! - batch[1]![i]!));
      assert.ok(max < 1e-4, `max latent difference ${max}`);
      assert.ok(Math.abs(alone![0]! - batch[0]![0]!) > 1e-3, 'other items really differ');
    } finally {
      await bundle.dispose();
    }
  });

  test('img2img at strength 0 returns the input up to the VAE round trip; at strength 1 it ignores the input', async () => {
    const smooth = (r: number, g: number, b: number) => sharp({ create: { width: 16, height: 8, channels: 3, background: { r, g, b } } })
      .resize(128, 64, { kernel: 'cubic' }).png().toBuffer();
    // A smooth two-colour image: the tiny VAE reproduces colour fields, not 1-pixel detail.
    const input = await sharp(await smooth(30, 60, 200)).composite([{ input: await sharp(await smooth(220, 120, 40)).extract({ left: 0, top: 0, width: 64, height: 64 }).toBuffer(), left: 64, top: 0 }]).png().toBuffer();
    const other = await smooth(200, 200, 30);
    const run = async (initImage: Buffer, strength: number) => ok((await models.img2img!.run([item({ initImage, strength, steps: 10 })], context()))[0]!);
    const inPx = await pixels(input);
    const zero = await pixels((await run(input, 0)).data);
    assert.ok(meanAbsDiff(zero, inPx) < 0.08, `strength 0 differs from the input by ${meanAbsDiff(zero, inPx)}`);
    const full1 = await pixels((await run(input, 1)).data);
    const full2 = await pixels((await run(other, 1)).data);
    const between = meanAbsDiff(inPx, await pixels(other));
    assert.ok(meanAbsDiff(full1, full2) < between / 4, `strength 1 outputs differ by ${meanAbsDiff(full1, full2)} for inputs ${between} apart`);
    const part = await pixels((await run(input, 0.5)).data);
    assert.ok(meanAbsDiff(part, inPx) > meanAbsDiff(zero, inPx), 'strength 0.5 changes more than strength 0');
  });

  test('the text-to-image deployment refuses an init image and the img2img one requires it, naming init_image', async () => {
    await assert.rejects(models.base!.run([item({ initImage: new Uint8Array([1]) })], context()), (e: unknown) => e instanceof InvalidArgumentError && e.field === 'init_image');
    await assert.rejects(models.img2img!.run([item()], context()), (e: unknown) => e instanceof InvalidArgumentError && e.field === 'init_image');
  });

  test('cancelling one request mid-denoise drops it at the next step and finishes the others', async () => {
    const ac = new AbortController();
    const progress: Array<[number, number, number]> = [];
    const ctx = context(progress, [ac.signal]);
    const results = await models.base!.run([item({ steps: 20 }), item({ imageIndex: 1, steps: 20 })], {
      ...ctx,
      progress: (i, step, total) => {
        ctx.progress(i, step, total);
        if (i === 0 && step === 3) ac.abort(new CancelledError('request r1'));
      },
    });
    assert.ok(results[0] instanceof CancelledError);
    ok(results[1]!);
    assert.equal(Math.max(...progress.filter((p) => p[0] === 0).map((p) => p[1])), 3, 'no step after the cancel');
    assert.equal(Math.max(...progress.filter((p) => p[0] === 1).map((p) => p[1])), 20);
  });

  test('cancelling the batch stops it between steps', async () => {
    const ac = new AbortController();
    let steps = 0;
    await assert.rejects(models.base!.run([item({ steps: 50 })], {
      signal: ac.signal, itemSignal: () => new AbortController().signal,
      progress: () => {
        if (++steps === 2) ac.abort(new CancelledError('batch'));
      },
    }), CancelledError);
    assert.equal(steps, 2);
  });
});
