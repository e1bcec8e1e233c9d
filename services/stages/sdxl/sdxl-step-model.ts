/**
 * The SDXL stage's model work under step-level continuous batching (running-set.ts): each image
 * is an {@link SdxlImage} carrying everything it needs between steps — its own scheduler (steps
 * addressed by index), step index, latents, noise stream and text conditioning — so it can share
 * a UNet call with images at any other step, pause, and resume.
 *
 * One UNet call per step for the images of one size: rows [negatives…, positives…] under
 * classifier-free guidance, as in denoise.ts, and a `timestep` of one value per row, which needs a
 * UNet that takes per-row timesteps (the per-row rewrite, per-row-timestep-unet.ts). The feeds
 * (conditioning, sample, timestep) are allocated once per composition of the call and refilled in
 * place at every step. Joining images are text-encoded together (and, for img2img, VAE-encoded);
 * finished images are VAE-decoded together. Both are done exactly as the request-level path does
 * them, draw for draw from each image's noise stream, so an image's latents do not depend on the
 * images it shared calls with.
 */
import * as ort from 'onnxruntime-node';
import { float32ToHalf } from '../../models/onnx/float16.js';
import { halfTensor } from '../../models/onnx/float16-tensor.js';
import type { Priority } from '../../common/work-item.js';
import type { StepMember, StepModel } from '../running-set.js';
import type { StageItem } from '../stage.js';
import { batchFeeds, noisePrediction, type BatchFeeds, type DenoiseShape, type UnetInfo } from './denoise.js';
import type { GaussianSource } from './gaussian-noise.js';
import type { DiffusionScheduler } from './schedulers/index.js';
import { conditionBatch, type Conditioning, type TextEncoders } from './text-conditioning.js';
import { decodeLatents, encodePixels, type VaeInfo } from './vae.js';

let nextImageId = 0;

/** One image in the SDXL running set. */
export class SdxlImage implements StepMember {
  /** Identifies the image in a feeds composition. */
  readonly id = nextImageId++;
  readonly key: string;
  readonly shape: DenoiseShape;
  /** Steps done. */
  step = 0;
  /** Set when it joins (txt2img noise, or the encoded init image noised to the first step); updated in place. */
  latents: Float32Array | undefined;
  /** Text conditioning rows, set when it joins. */
  positive: { embeds: Float32Array; pooled: Float32Array } | undefined;
  negative: { embeds: Float32Array; pooled: Float32Array } | undefined;
  /** Decoded RGB (width × height × 3), set when it leaves after its last step. */
  rgb: Uint8Array | undefined;

  constructor(
    readonly item: StageItem,
    readonly scheduler: DiffusionScheduler,
    readonly noise: GaussianSource,
    readonly priority: Priority,
    readonly signal: AbortSignal,
    readonly latentChannels: number,
    /** Called after each step with the 1-based step number. */
    readonly onStep: (step: number, total: number) => void,
    /**
     * img2img: the init image already decoded and resized (vae.ts imageToPixels), done before the
     * image is handed to the set so that a bad input fails its own batch, not the images it would
     * have joined with, and sharp's decoding never holds up a step.
     */
    readonly pixels?: Float32Array,
  ) {
    const { width, height } = item;
    this.shape = { channels: latentChannels, latentHeight: height / 8, latentWidth: width / 8, height, width };
    this.key = `${width}x${height}`;
  }

  get finished(): boolean {
    return this.latents !== undefined && this.step >= this.scheduler.plan.timesteps.length;
  }
}

export interface SdxlStepModelParts {
  readonly encoders: TextEncoders;
  readonly unet: UnetInfo;
  readonly vae: VaeInfo;
  readonly img2img: boolean;
}

/** A call's feeds plus its per-row timestep tensor (refilled every step). */
interface StepFeeds extends BatchFeeds {
  readonly timestep: ort.Tensor;
  /** One float32 timestep per row; copied into the tensor's own data (halves, int64) for the other types. */
  readonly times: Float32Array;
}

export class SdxlStepModel implements StepModel<SdxlImage> {
  /** Last feeds per image size; rebuilt when the composition of that size's call changes. */
  private readonly feeds = new Map<string, StepFeeds>();
  /** The text encoders' output sizes (the same for every prompt), known after the first join. */
  private textDims: Pick<Conditioning, 'seqLen' | 'hiddenSize' | 'pooledSize'> | undefined;

  constructor(private readonly parts: SdxlStepModelParts) {}

  async start(images: readonly SdxlImage[]): Promise<void> {
    const { positive, negative } = await conditionBatch(this.parts.encoders, images.map((m) => m.item.prompt), images.map((m) => m.item.negativePrompt));
    this.textDims = { seqLen: positive.seqLen, hiddenSize: positive.hiddenSize, pooledSize: positive.pooledSize };
    images.forEach((m, i) => {
      m.positive = { embeds: positive.embeds[i]!, pooled: positive.pooled[i]! };
      m.negative = { embeds: negative.embeds[i]!, pooled: negative.pooled[i]! };
    });
    for (const group of bySize(images)) {
      const { height, width, channels, latentHeight, latentWidth } = group[0]!.shape;
      const n = channels * latentHeight * latentWidth;
      if (this.parts.img2img) {
        const latents = await encodePixels(this.parts.vae, group.map((m) => m.pixels!), height, width, group.map((m) => m.noise));
        group.forEach((m, i) => {
          const x = latents[i]!;
          if (m.scheduler.plan.timesteps.length > 0) {
            const eps = new Float32Array(n);
            m.noise.fill(eps);
            m.scheduler.addNoise(x, eps);
          }
          m.latents = x;
        });
      } else {
        for (const m of group) {
          const x = new Float32Array(n);
          m.noise.fill(x);
          const s = m.scheduler.plan.initNoiseSigma;
          for (let j = 0; j < n; j++) x[j]! *= s;
          m.latents = x;
        }
      }
    }
  }

  async step(images: readonly SdxlImage[]): Promise<void> {
    const { shape, key: size } = images[0]!;
    const n = shape.channels * shape.latentHeight * shape.latentWidth;
    // Guidance ≤ 1 means no classifier-free guidance (diffusers' do_classifier_free_guidance).
    const cfg = images.some((m) => m.item.guidanceScale > 1);
    const key = `${cfg}:${images.map((m) => m.id).join(',')}`;
    let feeds = this.feeds.get(size);
    if (feeds?.key !== key) {
      feeds = this.stepFeeds(shape, key, images, cfg);
      this.feeds.set(size, feeds);
    }
    const count = images.length;
    images.forEach((m, k) => {
      m.scheduler.scaleModelInput(m.latents!, m.step, feeds.scaled.subarray(k * n, (k + 1) * n));
      const t = m.scheduler.plan.timesteps[m.step]!;
      feeds.times[k] = t;
      if (cfg) feeds.times[count + k] = t;
    });
    const m = count * n;
    if (feeds.sampleHalves) float32ToHalf(feeds.scaled, feeds.sampleHalves.subarray(0, m));
    if (cfg) (feeds.sampleHalves ?? feeds.scaled).copyWithin(m, 0, m);
    writeTimesteps(feeds);
    const result = await this.parts.unet.session.run({ sample: feeds.sample, timestep: feeds.timestep, ...feeds.conditioning }, ['out_sample']);
    const out = result.out_sample!;
    images.forEach((img, k) => {
      const eps = noisePrediction(out, feeds, k, count, cfg, img.item.guidanceScale, n);
      img.scheduler.step(eps, img.step, img.latents!, img.noise);
      img.step++;
      img.onStep(img.step, img.scheduler.plan.timesteps.length);
    });
  }

  async finish(images: readonly SdxlImage[]): Promise<void> {
    for (const group of bySize(images)) {
      const { channels, latentHeight, latentWidth } = group[0]!.shape;
      const rgb = await decodeLatents(this.parts.vae, group.map((m) => m.latents!), channels, latentHeight, latentWidth);
      group.forEach((m, i) => { m.rgb = rgb[i]; });
    }
  }

  idle(): void {
    this.feeds.clear();
  }

  private stepFeeds(shape: DenoiseShape, key: string, images: readonly SdxlImage[], cfg: boolean): StepFeeds {
    const dims = this.textDims!;
    const side = (pick: (m: SdxlImage) => { embeds: Float32Array; pooled: Float32Array }): Conditioning =>
      ({ ...dims, embeds: images.map((m) => pick(m).embeds), pooled: images.map((m) => pick(m).pooled) });
    const active = images.map((_, i) => i);
    const timeIds = Float32Array.of(shape.height, shape.width, 0, 0, shape.height, shape.width);
    const base = batchFeeds(this.parts.unet, shape, key, active, cfg, side((m) => m.positive!), side((m) => m.negative!), timeIds);
    const rows = base.sample.dims[0]!;
    const times = new Float32Array(rows);
    const type = this.parts.unet.timestep.type;
    const timestep = type === 'int64' ? new ort.Tensor('int64', new BigInt64Array(rows), [rows])
      : type === 'float16' ? halfTensor(new Uint16Array(rows), [rows]) : new ort.Tensor('float32', times, [rows]);
    return { ...base, timestep, times };
  }
}

/** The per-row times into the timestep tensor's own data (float32 shares it already). */
function writeTimesteps(feeds: StepFeeds): void {
  const data = feeds.timestep.data;
  if (data === feeds.times) return;
  if (data instanceof BigInt64Array) {
    for (let r = 0; r < data.length; r++) data[r] = BigInt(Math.round(feeds.times[r]!));
    return;
  }
  float32ToHalf(feeds.times, data as Uint16Array);
}

/** Images grouped by size, in order. */
function bySize(images: readonly SdxlImage[]): SdxlImage[][] {
  const groups = new Map<string, SdxlImage[]>();
  for (const m of images) {
    const g = groups.get(m.key);
    if (g) g.push(m);
    else groups.set(m.key, [m]);
  }
  return [...groups.values()];
}
