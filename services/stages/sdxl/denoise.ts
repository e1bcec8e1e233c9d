/**
 * The UNet loop (diffusers StableDiffusionXLPipeline.__call__): classifier-free guidance with the
 * batch ordered [negatives…, positives…], noise = uncond + g·(text − uncond) per item, SDXL's
 * micro-conditioning time_ids, one UNet call per step for the whole batch. Items whose request is
 * cancelled leave the batch between steps; the whole batch's signal is checked between steps.
 */
import * as ort from 'onnxruntime-node';
import { CancelledError } from '../../common/errors.js';
import { float32ToHalf, halfToFloat32, halfValues } from '../../models/onnx/float16.js';
import { halfBitsOf, halfTensor } from '../../models/onnx/float16-tensor.js';
import type { GaussianSource } from './gaussian-noise.js';
import type { DiffusionScheduler } from './schedulers/index.js';
import type { Conditioning } from './text-conditioning.js';
import { floatTensor, stack, toFloat32, type FloatType } from './tensors.js';

export interface UnetInfo {
  readonly session: ort.InferenceSession;
  readonly dtype: FloatType;
  /** Newer exports take a float scalar timestep; older ones int64 [B]. */
  readonly timestep: { readonly type: 'float32' | 'float16' | 'int64'; readonly scalar: boolean };
}

export interface DenoiseItem {
  /** This item's latents [C·h·w]; updated in place. */
  readonly latents: Float32Array;
  readonly guidanceScale: number;
  readonly noise: GaussianSource;
  readonly signal: AbortSignal;
  /** Called after each step with the 1-based step number. */
  readonly onStep: (step: number, total: number) => void;
}

export interface DenoiseShape {
  readonly channels: number;
  readonly latentHeight: number;
  readonly latentWidth: number;
  /** Pixel size, for time_ids = [orig_h, orig_w, crop_top, crop_left, target_h, target_w]. */
  readonly height: number;
  readonly width: number;
}

function timestepTensor(info: UnetInfo['timestep'], t: number, batch: number): ort.Tensor {
  if (info.type === 'int64') {
    const v = BigInt(Math.round(t));
    return new ort.Tensor('int64', info.scalar ? BigInt64Array.of(v) : new BigInt64Array(batch).fill(v), info.scalar ? [] : [batch]);
  }
  const data = info.scalar ? Float32Array.of(t) : new Float32Array(batch).fill(t);
  return floatTensor(info.type, data, info.scalar ? [] : [batch]);
}

/**
 * What one set of active items feeds the UNet, allocated once per set (it changes only when an
 * item leaves the batch) and refilled in place at every step: no per-step arrays of the batch's
 * size. Rows are [negatives…, positives…] under classifier-free guidance, else the items.
 * The running set's step model (sdxl-step-model.ts) uses the same feeds.
 */
export interface BatchFeeds {
  readonly key: string;
  /** encoder_hidden_states, text_embeds, time_ids (on a real export 77 × 2048 values per row). */
  readonly conditioning: Record<string, ort.Tensor>;
  /** The `sample` feed [rows, C, h, w], whose data is rewritten every step. */
  readonly sample: ort.Tensor;
  /** The active items' scaled latents, item k at k·n (fp32: the first rows of the sample's own data). */
  readonly scaled: Float32Array;
  /** fp16: the sample's half bits (the memory the `sample` tensor feeds), rewritten every step. */
  readonly sampleHalves?: Uint16Array;
  /** fp16: each active item's noise prediction in float32, item k at k·n. */
  readonly eps?: Float32Array;
}

export function batchFeeds(
  unet: UnetInfo, shape: DenoiseShape, key: string, active: readonly number[], cfg: boolean,
  positive: Conditioning, negative: Conditioning, timeIds: Float32Array,
): BatchFeeds {
  const rows = cfg ? [...active, ...active] : active;
  const b = rows.length;
  const n = shape.channels * shape.latentHeight * shape.latentWidth;
  const embeds = rows.map((i, r) => (cfg && r < active.length ? negative : positive).embeds[i]!);
  const pooled = rows.map((i, r) => (cfg && r < active.length ? negative : positive).pooled[i]!);
  const conditioning = {
    encoder_hidden_states: floatTensor(unet.dtype, stack(embeds), [b, positive.seqLen, positive.hiddenSize]),
    text_embeds: floatTensor(unet.dtype, stack(pooled), [b, positive.pooledSize]),
    time_ids: floatTensor(unet.dtype, stack(rows.map(() => timeIds)), [b, 6]),
  };
  const dims = [b, shape.channels, shape.latentHeight, shape.latentWidth];
  if (unet.dtype === 'float32') {
    const data = new Float32Array(b * n);
    return { key, conditioning, sample: new ort.Tensor('float32', data, dims), scaled: data };
  }
  const sampleHalves = new Uint16Array(b * n);
  return {
    key, conditioning, sample: halfTensor(sampleHalves, dims), sampleHalves,
    scaled: new Float32Array(active.length * n), eps: new Float32Array(active.length * n),
  };
}

/**
 * Writes step `step`'s UNet input into `feeds.sample`: each item's latents scaled once (and, for
 * fp16, converted once); under guidance the positive rows are a copy of the negative rows.
 */
function fillSample(feeds: BatchFeeds, scheduler: DiffusionScheduler, step: number, latents: readonly Float32Array[], cfg: boolean): void {
  const n = latents[0]!.length;
  latents.forEach((x, k) => scheduler.scaleModelInput(x, step, feeds.scaled.subarray(k * n, (k + 1) * n)));
  const m = latents.length * n;
  // fp32: the scaled latents already are the sample's first rows.
  const data = feeds.sampleHalves ?? feeds.scaled;
  if (feeds.sampleHalves) float32ToHalf(feeds.scaled, feeds.sampleHalves.subarray(0, m));
  if (cfg) data.copyWithin(m, 0, m);
}

/** Runs every step of `scheduler` on the items. Throws CancelledError if `batchSignal` aborts. */
export async function denoise(
  unet: UnetInfo, scheduler: DiffusionScheduler, shape: DenoiseShape,
  items: readonly DenoiseItem[], positive: Conditioning, negative: Conditioning, batchSignal: AbortSignal,
): Promise<void> {
  const { timesteps } = scheduler.plan;
  const n = shape.channels * shape.latentHeight * shape.latentWidth;
  const timeIds = Float32Array.of(shape.height, shape.width, 0, 0, shape.height, shape.width);
  let feeds: BatchFeeds | undefined;
  for (let step = 0; step < timesteps.length; step++) {
    if (batchSignal.aborted) throw new CancelledError('batch, between denoising steps');
    const active = items.map((it, i) => ({ it, i })).filter(({ it }) => !it.signal.aborted);
    if (active.length === 0) return;
    // Guidance ≤ 1 means no classifier-free guidance (diffusers' do_classifier_free_guidance).
    const cfg = active.some(({ it }) => it.guidanceScale > 1);
    const key = `${cfg}:${active.map(({ i }) => i).join(',')}`;
    if (feeds?.key !== key) feeds = batchFeeds(unet, shape, key, active.map(({ i }) => i), cfg, positive, negative, timeIds);
    const set = feeds;
    fillSample(set, scheduler, step, active.map(({ it }) => it.latents), cfg);
    const result = await unet.session.run({
      sample: set.sample,
      timestep: timestepTensor(unet.timestep, timesteps[step]!, set.sample.dims[0]!),
      ...set.conditioning,
    }, ['out_sample']);
    const out = result.out_sample!;
    active.forEach(({ it }, k) => {
      const eps = noisePrediction(out, set, k, active.length, cfg, it.guidanceScale, n);
      scheduler.step(eps, step, it.latents, it.noise);
      it.onStep(step + 1, timesteps.length);
    });
  }
}

/**
 * Item k's noise prediction from the UNet output: its text row, or with guidance
 * uncond + g·(text − uncond). fp32: the mix is written over the item's unconditional row (ONNX
 * Runtime's fresh output buffer). fp16: the rows used are read from the half bits through the
 * table into the set's buffer — the same float32 values a full conversion gives, without
 * writing and re-reading the whole output.
 */
export function noisePrediction(out: ort.Tensor, feeds: BatchFeeds, k: number, count: number, cfg: boolean, g: number, n: number): Float32Array {
  const row = (r: number) => [r * n, (r + 1) * n] as const;
  const text = row(cfg ? count + k : k);
  const guided = cfg && g > 1;
  if (out.type === 'float16') {
    const h = halfBitsOf(out);
    const eps = feeds.eps!.subarray(...row(k));
    if (guided) guideHalves(eps, h.subarray(...row(k)), h.subarray(...text), g);
    else halfToFloat32(h.subarray(...text), eps);
    return eps;
  }
  const x = toFloat32(out);
  if (!guided) return x.subarray(...text);
  const eps = x.subarray(...row(k));
  guide(eps, x.subarray(...text), g);
  return eps;
}

/** uncond ← uncond + g·(text − uncond), in place. */
function guide(uncond: Float32Array, text: Float32Array, g: number): void {
  for (let j = 0; j < uncond.length; j++) {
    const u = uncond[j]!;
    uncond[j] = u + g * (text[j]! - u);
  }
}

/** out ← uncond + g·(text − uncond) from half bits, with the arithmetic of {@link guide}. */
function guideHalves(out: Float32Array, uncond: Uint16Array, text: Uint16Array, g: number): void {
  const value = halfValues();
  for (let j = 0; j < out.length; j++) {
    const u = value[uncond[j]!]!;
    out[j] = u + g * (value[text[j]!]! - u);
  }
}
