/**
 * The UNet loop (diffusers StableDiffusionXLPipeline.__call__): classifier-free guidance with the
 * batch ordered [negatives…, positives…], noise = uncond + g·(text − uncond) per item, SDXL's
 * micro-conditioning time_ids, one UNet call per step for the whole batch. Items whose request is
 * cancelled leave the batch between steps; the whole batch's signal is checked between steps.
 */
import * as ort from 'onnxruntime-node';
import { CancelledError } from '../../common/errors.js';
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

/** Runs every step of `scheduler` on the items. Throws CancelledError if `batchSignal` aborts. */
export async function denoise(
  unet: UnetInfo, scheduler: DiffusionScheduler, shape: DenoiseShape,
  items: readonly DenoiseItem[], positive: Conditioning, negative: Conditioning, batchSignal: AbortSignal,
): Promise<void> {
  const { timesteps } = scheduler.plan;
  const n = shape.channels * shape.latentHeight * shape.latentWidth;
  const timeIds = Float32Array.of(shape.height, shape.width, 0, 0, shape.height, shape.width);
  // The conditioning feeds change only when an item leaves the batch: built once per active set
  // (on a real export they are 77 × 2048 values per row, converted again for fp16).
  let conditioning: { key: string; feeds: Record<string, ort.Tensor> } | undefined;
  for (let step = 0; step < timesteps.length; step++) {
    if (batchSignal.aborted) throw new CancelledError('batch, between denoising steps');
    const active = items.map((it, i) => ({ it, i })).filter(({ it }) => !it.signal.aborted);
    if (active.length === 0) return;
    // Guidance ≤ 1 means no classifier-free guidance (diffusers' do_classifier_free_guidance).
    const cfg = active.some(({ it }) => it.guidanceScale > 1);
    const rows = cfg ? [...active, ...active] : active;
    const b = rows.length;
    const key = `${cfg}:${active.map(({ i }) => i).join(',')}`;
    if (conditioning?.key !== key) {
      const embeds = rows.map(({ i }, r) => (cfg && r < active.length ? negative : positive).embeds[i]!);
      const pooled = rows.map(({ i }, r) => (cfg && r < active.length ? negative : positive).pooled[i]!);
      conditioning = {
        key,
        feeds: {
          encoder_hidden_states: floatTensor(unet.dtype, stack(embeds), [b, positive.seqLen, positive.hiddenSize]),
          text_embeds: floatTensor(unet.dtype, stack(pooled), [b, positive.pooledSize]),
          time_ids: floatTensor(unet.dtype, stack(rows.map(() => timeIds)), [b, 6]),
        },
      };
    }
    const scaled = active.map(({ it }) => scheduler.scaleModelInput(it.latents, step));
    const feeds: Record<string, ort.Tensor> = {
      sample: floatTensor(unet.dtype, stack(cfg ? [...scaled, ...scaled] : scaled), [b, shape.channels, shape.latentHeight, shape.latentWidth]),
      timestep: timestepTensor(unet.timestep, timesteps[step]!, b),
      ...conditioning.feeds,
    };
    // A fresh buffer per run: the guidance mix writes each item's noise over its unconditional half.
    const out = toFloat32((await unet.session.run(feeds, ['out_sample'])).out_sample!);
    active.forEach(({ it }, k) => {
      const text = out.subarray((cfg ? active.length + k : k) * n, (cfg ? active.length + k + 1 : k + 1) * n);
      let eps: Float32Array = text;
      if (cfg && it.guidanceScale > 1) {
        eps = out.subarray(k * n, (k + 1) * n);
        guide(eps, text, it.guidanceScale);
      }
      scheduler.step(eps, step, it.latents, it.noise);
      it.onStep(step + 1, timesteps.length);
    });
  }
}

/** uncond ← uncond + g·(text − uncond), in place. */
function guide(uncond: Float32Array, text: Float32Array, g: number): void {
  for (let j = 0; j < uncond.length; j++) {
    const u = uncond[j]!;
    uncond[j] = u + g * (text[j]! - u);
  }
}
