/**
 * The file layout of an SDXL bundle: what `optimum-cli export onnx` writes for an SDXL pipeline,
 * checked before any ONNX Runtime session is created (cheap, and the errors are precise).
 *
 * ```
 * model_index.json                      _class_name StableDiffusionXL…, force_zeros_for_empty_prompt
 * text_encoder/{model.onnx,config.json}   hidden_size
 * text_encoder_2/{model.onnx,config.json} hidden_size, projection_dim
 * unet/{model.onnx[,model.onnx_data],config.json}  in_channels, cross_attention_dim, addition_embed_type "text_time"
 * vae_decoder/{model.onnx,config.json}  scaling_factor, latent_channels
 * vae_encoder/{model.onnx,config.json}  optional as a folder (img2img needs it)
 * tokenizer/, tokenizer_2/              vocab.json, merges.txt[, special_tokens_map.json, tokenizer_config.json]
 * scheduler/scheduler_config.json       _class_name, num_train_timesteps
 * ```
 * Every failure is an {@link SdxlBundleError} naming the file (relative to the bundle) and what was expected.
 */
import fs from 'node:fs';
import path from 'node:path';
import { OrreryError } from '../common/errors.js';

/** A bundle file is missing or does not hold what an Optimum SDXL export holds. */
export class SdxlBundleError extends OrreryError {
  /** The offending file, relative to the bundle directory (`/` separators), e.g. `unet/model.onnx`. */
  readonly file: string;
  readonly bundleDir: string;
  constructor(bundleDir: string, file: string, why: string, options?: { cause?: unknown }) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', `${file}: ${why} (SDXL bundle ${bundleDir})`, options);
    this.file = file;
    this.bundleDir = bundleDir;
  }
}

/** One model folder: absolute paths. */
export interface ComponentFiles {
  /** Relative folder name, e.g. `unet` (used in error messages). */
  readonly name: string;
  readonly model: string;
  readonly config: string;
  /** `model.onnx_data` beside the model, when present. */
  readonly externalData?: string;
  /** model.onnx plus external data, in bytes. */
  readonly bytes: number;
}

export interface BundleLayout {
  readonly dir: string;
  readonly textEncoder: ComponentFiles;
  readonly textEncoder2: ComponentFiles;
  readonly unet: ComponentFiles;
  readonly vaeDecoder: ComponentFiles;
  /** Absent when the bundle has no vae_encoder/ folder (text-to-image only). */
  readonly vaeEncoder?: ComponentFiles;
  readonly tokenizerDirs: { readonly 1: string; readonly 2: string };
  /** scheduler/scheduler_config.json as parsed (the scheduler validates its own keys). */
  readonly schedulerConfigJson: unknown;
  /** model_index.json's force_zeros_for_empty_prompt (diffusers' default, true, when absent). */
  readonly forceZerosForEmptyPrompt: boolean;
  /** vae_decoder/config.json scaling_factor (SDXL: 0.13025). */
  readonly scalingFactor: number;
  /** unet/config.json in_channels = vae latent_channels (SDXL: 4). */
  readonly latentChannels: number;
  /** text_encoder hidden_size (SDXL: 768), text_encoder_2 hidden_size (1280) and projection_dim (1280). */
  readonly hiddenSize1: number;
  readonly hiddenSize2: number;
  readonly pooledSize: number;
  /** unet cross_attention_dim = hiddenSize1 + hiddenSize2 (SDXL: 2048). */
  readonly crossAttentionDim: number;
  /** All model files (model.onnx and external data), in bytes. */
  readonly sizeBytes: number;
}

type Json = Record<string, unknown>;

class Reader {
  constructor(readonly dir: string) {}

  fail(file: string, why: string, cause?: unknown): never {
    throw new SdxlBundleError(this.dir, file, why, cause === undefined ? undefined : { cause });
  }

  abs(file: string): string {
    return path.join(this.dir, ...file.split('/'));
  }

  isFile(file: string): boolean {
    return fs.statSync(this.abs(file), { throwIfNoEntry: false })?.isFile() ?? false;
  }

  size(file: string): number {
    return fs.statSync(this.abs(file)).size;
  }

  requireFile(file: string, what: string): string {
    if (!this.isFile(file)) this.fail(file, `missing (an Optimum SDXL export has ${what})`);
    return this.abs(file);
  }

  json(file: string, what: string): Json {
    this.requireFile(file, what);
    let value: unknown;
    try {
      value = JSON.parse(fs.readFileSync(this.abs(file), 'utf8'));
    } catch (err) {
      this.fail(file, `is not valid JSON (${(err as Error).message})`, err);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(file, 'must hold a JSON object');
    return value as Json;
  }

  positiveInt(file: string, obj: Json, key: string, example: string): number {
    const v = obj[key];
    if (v === undefined) this.fail(file, `missing key "${key}" (a positive integer; SDXL's is ${example})`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(file, `"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  component(name: string): ComponentFiles {
    const model = this.requireFile(`${name}/model.onnx`, `${name}/model.onnx`);
    const config = this.requireFile(`${name}/config.json`, `${name}/config.json beside ${name}/model.onnx`);
    const data = `${name}/model.onnx_data`;
    const externalData = this.isFile(data) ? this.abs(data) : undefined;
    const bytes = this.size(`${name}/model.onnx`) + (externalData ? this.size(data) : 0);
    return { name, model, config, ...(externalData ? { externalData } : {}), bytes };
  }

  tokenizer(folder: string): string {
    this.json(`${folder}/vocab.json`, `${folder}/vocab.json (the CLIP vocabulary)`);
    this.requireFile(`${folder}/merges.txt`, `${folder}/merges.txt (the CLIP BPE merges)`);
    for (const f of ['special_tokens_map.json', 'tokenizer_config.json']) {
      if (this.isFile(`${folder}/${f}`)) this.json(`${folder}/${f}`, f);
    }
    return this.abs(folder);
  }
}

/**
 * Checks the layout and configs of the bundle in `dir` and returns its paths and sizes.
 * Throws {@link SdxlBundleError} (ORRERY_ERR_MODEL_LOAD_FAILED) naming the first bad file.
 */
export function inspectSdxlBundle(dir: string): BundleLayout {
  const r = new Reader(path.resolve(dir));
  const index = r.json('model_index.json', 'model_index.json at its root');
  const cls = index['_class_name'];
  if (typeof cls !== 'string' || !cls.startsWith('StableDiffusionXL')) {
    r.fail('model_index.json', `_class_name is ${JSON.stringify(cls)}; expected an SDXL pipeline such as "StableDiffusionXLPipeline"`);
  }
  const fz = index['force_zeros_for_empty_prompt'] ?? true;
  if (typeof fz !== 'boolean') r.fail('model_index.json', `force_zeros_for_empty_prompt must be true or false, got ${JSON.stringify(fz)}`);

  const textEncoder = r.component('text_encoder');
  const te1 = r.json('text_encoder/config.json', 'text_encoder/config.json');
  const hiddenSize1 = r.positiveInt('text_encoder/config.json', te1, 'hidden_size', '768');
  const textEncoder2 = r.component('text_encoder_2');
  const te2 = r.json('text_encoder_2/config.json', 'text_encoder_2/config.json');
  const hiddenSize2 = r.positiveInt('text_encoder_2/config.json', te2, 'hidden_size', '1280');
  const pooledSize = r.positiveInt('text_encoder_2/config.json', te2, 'projection_dim', '1280');

  const unet = r.component('unet');
  const uc = r.json('unet/config.json', 'unet/config.json');
  const latentChannels = r.positiveInt('unet/config.json', uc, 'in_channels', '4');
  const crossAttentionDim = r.positiveInt('unet/config.json', uc, 'cross_attention_dim', '2048');
  if (uc['addition_embed_type'] !== 'text_time') {
    r.fail('unet/config.json', `addition_embed_type is ${JSON.stringify(uc['addition_embed_type'])}; an SDXL UNet has "text_time" (text_embeds and time_ids inputs)`);
  }
  if (crossAttentionDim !== hiddenSize1 + hiddenSize2) {
    r.fail('unet/config.json', `cross_attention_dim is ${crossAttentionDim}, but the text encoders' hidden sizes add up to ${hiddenSize1} + ${hiddenSize2} = ${hiddenSize1 + hiddenSize2}`);
  }
  const projIn = uc['projection_class_embeddings_input_dim'];
  const timeDim = uc['addition_time_embed_dim'];
  if (typeof projIn === 'number' && typeof timeDim === 'number' && projIn !== pooledSize + 6 * timeDim) {
    r.fail('unet/config.json', `projection_class_embeddings_input_dim is ${projIn}, expected text_encoder_2's projection_dim + 6 × addition_time_embed_dim = ${pooledSize} + 6 × ${timeDim}`);
  }

  const vaeDecoder = r.component('vae_decoder');
  const vc = r.json('vae_decoder/config.json', 'vae_decoder/config.json');
  const sf = vc['scaling_factor'];
  if (typeof sf !== 'number' || !(sf > 0)) r.fail('vae_decoder/config.json', `"scaling_factor" must be a positive number (SDXL's is 0.13025), got ${JSON.stringify(sf)}`);
  const vaeLatent = r.positiveInt('vae_decoder/config.json', vc, 'latent_channels', '4');
  if (vaeLatent !== latentChannels) r.fail('vae_decoder/config.json', `latent_channels is ${vaeLatent}, but unet/config.json in_channels is ${latentChannels}`);
  const hasEncoder = fs.statSync(r.abs('vae_encoder'), { throwIfNoEntry: false })?.isDirectory() ?? false;
  const vaeEncoder = hasEncoder ? r.component('vae_encoder') : undefined;
  if (vaeEncoder) r.json('vae_encoder/config.json', 'vae_encoder/config.json');

  const tokenizerDirs = { 1: r.tokenizer('tokenizer'), 2: r.tokenizer('tokenizer_2') } as const;
  const sched = r.json('scheduler/scheduler_config.json', 'scheduler/scheduler_config.json');
  if (typeof sched['_class_name'] !== 'string') r.fail('scheduler/scheduler_config.json', 'missing "_class_name" (e.g. "EulerDiscreteScheduler")');
  r.positiveInt('scheduler/scheduler_config.json', sched, 'num_train_timesteps', '1000');

  const parts = [textEncoder, textEncoder2, unet, vaeDecoder, ...(vaeEncoder ? [vaeEncoder] : [])];
  return Object.freeze({
    dir: r.dir, textEncoder, textEncoder2, unet, vaeDecoder, ...(vaeEncoder ? { vaeEncoder } : {}),
    tokenizerDirs, schedulerConfigJson: sched, forceZerosForEmptyPrompt: fz as boolean, scalingFactor: sf as number,
    latentChannels, hiddenSize1, hiddenSize2, pooledSize, crossAttentionDim,
    sizeBytes: parts.reduce((a, p) => a + p.bytes, 0),
  });
}
