/**
 * Stage `sdxl`: SDXL text-to-image and img2img on an Optimum ONNX export, in the replica's
 * executor thread. One load = the bundle's five sessions, both tokenizers and the scheduler
 * config; one batch = one text-encoder run per encoder, one UNet call per step for every item
 * (classifier-free guidance doubles the UNet batch), one VAE decode, then sharp encodes each image.
 *
 * Deployment options: `mode` (`text-to-image` | `image-to-image`), `scheduler` (`euler` |
 * `euler_ancestral` | `ddim`; default: the bundle's scheduler_config.json), `karras_sigmas`,
 * and the ONNX Runtime session options (`execution_provider`, `device_id`, `intra_op_threads`,
 * `graph_optimization_level`). A `base+lora` model id fuses `<repository>/loras/<lora>.safetensors`
 * into the weights at load: `lora_scale` (default 1), `lora_unmatched` (`error` default | `warn`),
 * `fused_model_dir` (where fused models are written while loaded; default `<tmp>/orrery-fused`).
 * A `base+lora@variant` id served from its pre-fused folder (model-files.ts) fuses nothing; a
 * `lora_scale` other than the one it was fused at is refused.
 * PNG outputs: `png_compression_level` and `png_adaptive_filtering` (output-encoder.ts `PngOptions`).
 * `tokenizer_mode`: `transformers` (default: prompts tokenized exactly as diffusers does, `!` split
 * out as tokenizer_2's pad token) or `open_clip` (OpenAI's reference tokenizer); see clip-tokenizer.ts.
 * Every output carries its parameters text, continuing the input image's history in img2img
 * (generation-parameters.ts).
 *
 * With `batching: continuous` (StageContext.batching) the model loads a UNet rewritten for
 * per-row timesteps and keeps a running set (../running-set.ts, sdxl-step-model.ts): run() puts
 * its items into it — each with its own scheduler and noise stream, so batches need not share
 * steps — and returns when they have all left; concurrent runs share the set's UNet calls.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, InvalidArgumentError, OrreryError } from '../../common/errors.js';
import { fuseLoraIntoBundle, type FusedBundle, type UnmatchedPolicy } from '../../models/lora/fused-bundle.js';
import { readFusedLoraRecord } from '../../models/lora/fused-lora-record.js';
import { resolveModelFiles } from '../../models/model-files.js';
import { perRowTimestepUnet } from '../../models/per-row-timestep-unet.js';
import { inspectSdxlBundle, openSdxlBundle, type OpenOverrides, type SdxlBundle } from '../../models/sdxl-bundle.js';
import { parseSessionOptions, type SessionOptions } from '../../models/session-options.js';
import { appendStageParameters, float32Text, type StageField } from '../generation-parameters.js';
import { compilePngOptions, encodeRgb, readParameters, type PngOptions } from '../output-encoder.js';
import { publishRunningSet, RunningSet } from '../running-set.js';
import type { LoadedModel, LoadReport, RunContext, Stage, StageContext, StageItem, StageOutput } from '../stage.js';
import { ClipTokenizer, type ClipTokenizerMode } from './clip-tokenizer.js';
import { denoise, type DenoiseItem } from './denoise.js';
import { gaussianSource } from './gaussian-noise.js';
import { SdxlImage, SdxlStepModel } from './sdxl-step-model.js';
import { createScheduler, defaultKind, parseSchedulerConfig, type SchedulerConfig, type SchedulerKind } from './schedulers/index.js';
import { conditionBatch } from './text-conditioning.js';
import { decodeLatents, encodePixels, imageToPixels } from './vae.js';

type Mode = 'text-to-image' | 'image-to-image';

interface SdxlOptions {
  readonly mode: Mode;
  readonly scheduler?: SchedulerKind;
  /** Unset: the bundle's scheduler_config.json decides (use_karras_sigmas). */
  readonly karras?: boolean;
  readonly png: PngOptions;
  readonly tokenizerMode: ClipTokenizerMode;
}

const SAMPLER_NAMES: Record<SchedulerKind, string> = { euler: 'Euler', euler_ancestral: 'Euler a', ddim: 'DDIM' };

function compileOptions(o: Readonly<Record<string, unknown>>): SdxlOptions {
  const mode = o.mode ?? 'text-to-image';
  if (mode !== 'text-to-image' && mode !== 'image-to-image') throw new ConfigError('options.mode', `must be text-to-image or image-to-image, got ${JSON.stringify(mode)}`);
  const scheduler = o.scheduler;
  if (scheduler !== undefined && !(typeof scheduler === 'string' && scheduler in SAMPLER_NAMES)) {
    throw new ConfigError('options.scheduler', `must be one of ${Object.keys(SAMPLER_NAMES).join(', ')}, got ${JSON.stringify(scheduler)}`);
  }
  const karras = o.karras_sigmas;
  if (karras !== undefined && typeof karras !== 'boolean') throw new ConfigError('options.karras_sigmas', 'must be true or false');
  if (karras && scheduler === 'ddim') throw new ConfigError('options.karras_sigmas', 'DDIM has no Karras sigmas; use euler or euler_ancestral');
  const tokenizerMode = o.tokenizer_mode ?? 'transformers';
  if (tokenizerMode !== 'transformers' && tokenizerMode !== 'open_clip') throw new ConfigError('options.tokenizer_mode', `must be transformers or open_clip, got ${JSON.stringify(tokenizerMode)}`);
  return {
    mode, ...(scheduler ? { scheduler: scheduler as SchedulerKind } : {}), ...(karras !== undefined ? { karras } : {}),
    png: compilePngOptions(o), tokenizerMode,
  };
}

class SdxlModel implements LoadedModel {
  constructor(
    readonly modelId: string,
    private readonly bundle: SdxlBundle,
    private readonly tokenizer: ClipTokenizer,
    private readonly tokenizer2: ClipTokenizer,
    private readonly schedulerConfig: SchedulerConfig,
    private readonly opts: SdxlOptions,
    readonly loadReport: LoadReport | undefined,
    private readonly cleanup: () => void,
    /** Continuous batching: the model's running set; absent for request-level batching. */
    private readonly runningSet?: RunningSet<SdxlImage>,
  ) {}

  get sizeBytes(): number {
    return this.bundle.sizeBytes;
  }

  async run(items: readonly StageItem[], ctx: RunContext): Promise<Array<StageOutput | Error>> {
    if (this.runningSet) return this.runContinuous(this.runningSet, items, ctx);
    const first = items[0]!;
    const { width, height, steps, strength } = first;
    for (const it of items) {
      if (it.width !== width || it.height !== height || it.steps !== steps) throw new OrreryError('ORRERY_ERR_INTERNAL', 'a batch must share size and steps (the router batches by them)');
    }
    if (width % 8 || height % 8) throw new InvalidArgumentError('width', `${width}x${height} is not on the 8-pixel latent grid`);
    const img2img = this.checkInitImages(items);
    const kind = this.opts.scheduler ?? defaultKind(this.schedulerConfig);
    const scheduler = createScheduler(this.schedulerConfig, { kind, steps, strength: img2img ? strength : 1, karras: this.opts.karras });
    const b = this.bundle;
    const shape = { channels: b.latentChannels, latentHeight: height / 8, latentWidth: width / 8, height, width };
    const n = shape.channels * shape.latentHeight * shape.latentWidth;
    const noise = items.map((it) => gaussianSource(it.seed));

    const { positive, negative } = await conditionBatch(
      { textEncoder: b.textEncoder, textEncoder2: b.textEncoder2, tokenizer: this.tokenizer, tokenizer2: this.tokenizer2, forceZerosForEmptyPrompt: b.forceZerosForEmptyPrompt },
      items.map((it) => it.prompt), items.map((it) => it.negativePrompt),
    );
    if (ctx.signal.aborted) throw ctx.signal.reason;

    const vae = { decoder: b.vaeDecoder, encoder: b.vaeEncoder, encoderOutput: b.vaeEncoderOutput, dtype: b.dtype, scalingFactor: b.scalingFactor };
    let latents: Float32Array[];
    if (img2img) {
      const pixels = await Promise.all(items.map((it) => imageToPixels(it.initImage!, width, height)));
      latents = await encodePixels(vae, pixels, height, width, noise);
      if (scheduler.plan.timesteps.length > 0) {
        for (let i = 0; i < items.length; i++) {
          const eps = new Float32Array(n);
          noise[i]!.fill(eps);
          scheduler.addNoise(latents[i]!, eps);
        }
      }
    } else {
      latents = noise.map((src) => {
        const x = new Float32Array(n);
        src.fill(x);
        const s = scheduler.plan.initNoiseSigma;
        for (let j = 0; j < n; j++) x[j]! *= s;
        return x;
      });
    }

    const work: DenoiseItem[] = items.map((it, i) => ({
      latents: latents[i]!, guidanceScale: it.guidanceScale, noise: noise[i]!, signal: ctx.itemSignal(i),
      onStep: (step, total) => ctx.progress(i, step, total),
    }));
    const unet = { session: b.unet, dtype: b.dtype, timestep: b.timestepInput };
    await denoise(unet, scheduler, shape, work, positive, negative, ctx.signal);
    if (ctx.signal.aborted) throw ctx.signal.reason;

    const live = items.map((_, i) => i).filter((i) => !ctx.itemSignal(i).aborted);
    const images = live.length ? await decodeLatents(vae, live.map((i) => latents[i]!), shape.channels, shape.latentHeight, shape.latentWidth) : [];
    // The rest is encoding: the next batch may use the device meanwhile.
    ctx.computeDone?.();
    return Promise.all(items.map(async (it, i): Promise<StageOutput | Error> => {
      const k = live.indexOf(i);
      const reason: unknown = ctx.itemSignal(i).reason;
      if (k < 0) return reason instanceof Error ? reason : new OrreryError('ORRERY_ERR_CANCELLED', 'cancelled');
      return this.encode(it, images[k]!, kind);
    }));
  }

  /**
   * Continuous batching: the items join the model's running set (each with its own scheduler and
   * noise stream) and this resolves when all of them have left it.
   */
  private async runContinuous(set: RunningSet<SdxlImage>, items: readonly StageItem[], ctx: RunContext): Promise<Array<StageOutput | Error>> {
    for (const it of items) {
      if (it.width % 8 || it.height % 8) throw new InvalidArgumentError('width', `${it.width}x${it.height} is not on the 8-pixel latent grid`);
    }
    const img2img = this.checkInitImages(items);
    const kind = this.opts.scheduler ?? defaultKind(this.schedulerConfig);
    const schedulers = items.map((it) => createScheduler(this.schedulerConfig, { kind, steps: it.steps, strength: img2img ? it.strength : 1, karras: this.opts.karras }));
    const pixels = img2img ? await Promise.all(items.map((it) => imageToPixels(it.initImage!, it.width, it.height))) : [];
    const images = items.map((it, i) => new SdxlImage(
      it, schedulers[i]!, gaussianSource(it.seed), it.priority ?? 'online', ctx.itemSignal(i), this.bundle.latentChannels,
      (step, total) => ctx.progress(i, step, total), pixels[i],
    ));
    const left = await set.run(images);
    if (ctx.signal.aborted) throw ctx.signal.reason;
    return Promise.all(items.map(async (it, i): Promise<StageOutput | Error> => {
      const image = left[i]!;
      return image instanceof Error ? image : this.encode(it, image.rgb!, kind);
    }));
  }

  /** Whether this is an img2img deployment, after checking that items carry an init image exactly then. */
  private checkInitImages(items: readonly StageItem[]): boolean {
    const img2img = this.opts.mode === 'image-to-image';
    if (img2img && items.some((it) => !it.initImage)) throw new InvalidArgumentError('init_image', 'is required by the image-to-image deployment');
    if (!img2img && items.some((it) => it.initImage)) throw new InvalidArgumentError('init_image', 'is not used by the text-to-image deployment; use an img2img pipeline');
    return img2img;
  }

  /** One item's image (RGB, its width × height) as its output, with its parameters text. */
  private async encode(it: StageItem, rgb: Uint8Array, kind: SchedulerKind): Promise<StageOutput> {
    const img2img = this.opts.mode === 'image-to-image';
    // As in diffusers: Euler reads use_karras_sigmas from the config, Euler Ancestral only when asked.
    const karras = kind === 'euler' ? (this.opts.karras ?? this.schedulerConfig.useKarrasSigmas) : kind === 'euler_ancestral' && this.opts.karras === true;
    const sampler = `${SAMPLER_NAMES[kind]}${karras ? ' Karras' : ''}`;
    const { width, height } = it;
    const fields: StageField[] = [
      ['Steps', String(it.steps)], ['Sampler', sampler], ['CFG scale', float32Text(it.guidanceScale)], ['Seed', String(it.seed)],
      ['Size', ''], ['Model', this.modelId], ...(img2img ? [{ field: ['Denoising strength', float32Text(it.strength)] as const, perStage: true as const }] : []),
    ];
    // img2img continues the history of an input made by an earlier stage of the same request.
    const history = img2img ? await readParameters(it.initImage) : undefined;
    const parameters = appendStageParameters(history, {
      prompt: it.prompt, negativePrompt: it.negativePrompt, fields, width, height, pipeline: it.pipeline ?? '',
    }, 'same-generation');
    return encodeRgb(rgb, width, height, { format: it.outputFormat, intermediate: it.intermediate ?? false, png: this.opts.png, parameters, ...(it.qc ? { qc: it.qc } : {}) });
  }

  async dispose(): Promise<void> {
    await this.bundle.dispose();
    this.cleanup();
  }
}

/** The `sdxl` stage. */
export const sdxlStage: Stage = {
  name: 'sdxl',
  async load(modelId: string, ctx: StageContext): Promise<LoadedModel> {
    const opts = compileOptions(ctx.options);
    const lora = compileLoraOptions(ctx.options);
    const files = resolveModelFiles(ctx.modelRepository, modelId);
    if (files.id.lora !== undefined && !files.loraFile) checkPrefusedScale(modelId, files.bundleDir, ctx.options.lora_scale);
    let fused: FusedBundle | undefined;
    let fusedDir: string | undefined;
    if (files.loraFile) {
      fusedDir = fs.mkdtempSync(path.join(lora.fusedModelDir, `${files.id.base}+${files.id.lora}-`));
      try {
        fused = fuseLoraIntoBundle(files.bundleDir, files.loraFile, { scale: lora.scale, unmatched: lora.unmatched, outDir: fusedDir });
      } catch (err) {
        fs.rmSync(fusedDir, { recursive: true, force: true });
        if (err instanceof OrreryError) throw new OrreryError(err.code, `model ${modelId}: ${err.message}`, { cause: err });
        throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `model ${modelId}: LoRA ${files.loraFile}: ${(err as Error).message}`, { cause: err });
      }
    }
    const removeFused = () => { if (fusedDir) fs.rmSync(fusedDir, { recursive: true, force: true }); };
    const continuous = ctx.batching === 'continuous';
    const sessionOptions = parseSessionOptions(ctx.options);
    let bundle: SdxlBundle;
    try {
      const overrides = continuous ? await perRowOverrides(files.bundleDir, fused && fusedDir ? { paths: fused.modelPaths, dir: fusedDir } : undefined, sessionOptions) : { modelPaths: fused?.modelPaths ?? {} };
      bundle = await openSdxlBundle(files.bundleDir, sessionOptions, overrides);
    } catch (err) {
      removeFused();
      throw err;
    }
    try {
      if (continuous && !bundle.timestepPerRow) throw new Error('its UNet does not take one timestep per row after the per-row rewrite');
      const tokenizer = ClipTokenizer.fromDirectory(bundle.tokenizerDirs[1], { mode: opts.tokenizerMode });
      const tokenizer2 = ClipTokenizer.fromDirectory(bundle.tokenizerDirs[2], { mode: opts.tokenizerMode });
      const report = fused ? { loraFile: files.loraFile!, loraModulesFused: fused.matched, loraModulesUnmatched: fused.unmatched } : undefined;
      const set = continuous ? sdxlRunningSet(modelId, bundle, tokenizer, tokenizer2, opts.mode === 'image-to-image', ctx) : undefined;
      return new SdxlModel(modelId, bundle, tokenizer, tokenizer2, parseSchedulerConfig(bundle.schedulerConfigJson), opts, report, removeFused, set);
    } catch (err) {
      await bundle.dispose();
      removeFused();
      throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `model ${modelId}: ${(err as Error).message}`, { cause: err });
    }
  },
};

/**
 * Continuous batching needs a UNet that takes one timestep per row: the bundle's UNet rewritten
 * once into `optimized_model_cache_dir` (default: `<tmp>/orrery-per-row-timestep`) and loaded
 * through the optimized-model cache (per-row-timestep-unet.ts); a fused UNet is rewritten into its
 * fused folder (removed with it) and loaded without the cache, as the fused model would be.
 */
async function perRowOverrides(bundleDir: string, fused: { paths: Readonly<Record<string, string | undefined>>; dir: string } | undefined, options: SessionOptions): Promise<OpenOverrides> {
  const fusedUnet = fused?.paths['unet'];
  if (fused && fusedUnet) return { modelPaths: { ...fused.paths, unet: (await perRowTimestepUnet(fusedUnet, fused.dir)).path } };
  const cacheDir = options.optimizedModelCacheDir ?? path.join(os.tmpdir(), 'orrery-per-row-timestep');
  const perRow = await perRowTimestepUnet(inspectSdxlBundle(bundleDir).unet.model, cacheDir);
  return { modelPaths: fused?.paths ?? {}, cachedModelPaths: { unet: perRow.path } };
}

/** The running set of a continuous deployment's model, reporting on RUNNING_SET_CHANNEL, taking turns on the replica's device. */
function sdxlRunningSet(modelId: string, b: SdxlBundle, tokenizer: ClipTokenizer, tokenizer2: ClipTokenizer, img2img: boolean, ctx: StageContext): RunningSet<SdxlImage> {
  const step = new SdxlStepModel({
    encoders: { textEncoder: b.textEncoder, textEncoder2: b.textEncoder2, tokenizer, tokenizer2, forceZerosForEmptyPrompt: b.forceZerosForEmptyPrompt },
    unet: { session: b.unet, dtype: b.dtype, timestep: b.timestepInput },
    vae: { decoder: b.vaeDecoder, encoder: b.vaeEncoder, encoderOutput: b.vaeEncoderOutput, dtype: b.dtype, scalingFactor: b.scalingFactor },
    img2img,
  });
  return new RunningSet(step, { capacity: ctx.maxBatchSize ?? 1, onReport: publishRunningSet(modelId), ...(ctx.device ? { device: ctx.device } : {}) });
}

/** A pre-fused folder has its LoRA strength in its weights: a deployment asking for another one is a config error. */
function checkPrefusedScale(modelId: string, bundleDir: string, asked: unknown): void {
  const record = readFusedLoraRecord(bundleDir);
  if (asked === undefined || !record || asked === record.loraScale) return;
  throw new ConfigError('options.lora_scale', `is ${JSON.stringify(asked)}, but model ${modelId} is served from ${bundleDir}, which has the LoRA fused in at lora_scale ${record.loraScale}; rebuild it with orrery models quantize --lora-scale ${JSON.stringify(asked)}, or drop the option`);
}

interface LoraOptions {
  readonly scale: number;
  readonly unmatched: UnmatchedPolicy;
  readonly fusedModelDir: string;
}

/** `lora_scale` (default 1), `lora_unmatched` (`error` | `warn`), `fused_model_dir` (default: the OS temp folder). */
function compileLoraOptions(o: Readonly<Record<string, unknown>>): LoraOptions {
  const scale = o.lora_scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new ConfigError('options.lora_scale', `must be a number, got ${JSON.stringify(scale)}`);
  const unmatched = o.lora_unmatched ?? 'error';
  if (unmatched !== 'error' && unmatched !== 'warn') throw new ConfigError('options.lora_unmatched', `must be error or warn, got ${JSON.stringify(unmatched)}`);
  const dir = o.fused_model_dir ?? path.join(os.tmpdir(), 'orrery-fused');
  if (typeof dir !== 'string' || !dir) throw new ConfigError('options.fused_model_dir', 'must be a folder path');
  fs.mkdirSync(dir, { recursive: true });
  return { scale, unmatched, fusedModelDir: dir };
}
