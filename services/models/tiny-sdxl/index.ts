/**
 * Writes the tiny SDXL-shaped bundle: the file layout, tensor names, dtypes and dynamic axes of
 * `optimum-cli export onnx --model stabilityai/stable-diffusion-xl-base-1.0` (with `--fp16` for
 * the float16 variant), tiny sizes, deterministic weights. Its images are noise by design: it
 * exists so that loading, batching, scheduling and serving run against real ONNX Runtime sessions
 * of the real interfaces without downloading 7 GB.
 */
import fs from 'node:fs';
import path from 'node:path';
import { moveInitializersToExternalData } from '../onnx/external-data.js';
import { encodeModel, type ModelProto } from '../onnx/onnx-model.js';
import { tinyClipVocab, TINY_CLIP_VOCAB_SIZE } from '../tiny-vocab.js';
import * as cfg from './configs.js';
import { TINY_CROSS_ATTENTION_DIM, TINY_SDXL_DIMS as D } from './dims.js';
import { buildTextEncoder } from './text-encoder.js';
import { buildUnet } from './unet.js';
import { buildVaeDecoder, buildVaeEncoder } from './vae.js';

export interface TinySdxlOptions {
  /** 'float16' writes every float initializer, input and output as FLOAT16 (as `--fp16`). */
  readonly dtype: 'float32' | 'float16';
  /** 'float-scalar': `timestep` is a float scalar [] (newer exports); 'int64-batch': int64 [steps] (older). */
  readonly timestep: 'float-scalar' | 'int64-batch';
  /** The vae_encoder output: 'latent_parameters' (mean ‖ logvar, newer) or 'latent_sample' (older). */
  readonly vaeEncoderOutput: 'latent_parameters' | 'latent_sample';
  /** Store the UNet's initializers in unet/model.onnx_data (as exports over 2 GB do). */
  readonly externalData: boolean;
  /** Weight seed (default {@link TINY_SDXL_DEFAULT_SEED}); the same options write byte-identical files. */
  readonly seed?: number;
}

export const TINY_SDXL_DEFAULT_SEED = 0x5d1;

export interface WrittenFile {
  /** Relative to the bundle directory, with `/` separators. */
  readonly path: string;
  readonly bytes: number;
}

export interface TinySdxlBundleInfo {
  readonly dir: string;
  readonly files: readonly WrittenFile[];
  readonly totalBytes: number;
}

/** A per-component seed, so equally named tensors in two components get different weights. */
function componentSeed(seed: number, component: string): number {
  let h = seed >>> 0;
  for (let i = 0; i < component.length; i++) h = Math.imul(h ^ component.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const json = (value: object): string => `${JSON.stringify(value, null, 2)}\n`;

/**
 * Writes the bundle into `dir` (created if needed; files of the bundle are overwritten, a stale
 * unet/model.onnx_data is removed when `externalData` is false). Resolves to what was written.
 */
export async function writeTinySdxlBundle(dir: string, options: TinySdxlOptions): Promise<TinySdxlBundleInfo> {
  const seed = (options.seed ?? TINY_SDXL_DEFAULT_SEED) >>> 0;
  const { dtype } = options;
  const files = new Map<string, string | Uint8Array>();
  const model = (component: string, m: ModelProto) => files.set(`${component}/model.onnx`, encodeModel(m));

  files.set('model_index.json', json(cfg.modelIndex()));
  files.set('scheduler/scheduler_config.json', json(cfg.schedulerConfig()));

  const common = { vocabSize: TINY_CLIP_VOCAB_SIZE, maxPositions: D.maxPositions };
  files.set('text_encoder/model.onnx', buildTextEncoder({ ...common, kind: 'clip-text', hiddenSize: D.hiddenSize1, layers: D.layers1 }, dtype, componentSeed(seed, 'text_encoder')));
  files.set('text_encoder/config.json', json(cfg.textEncoderConfig(1, dtype)));
  files.set('text_encoder_2/model.onnx', buildTextEncoder({
    ...common, kind: 'clip-text-with-projection', hiddenSize: D.hiddenSize2, layers: D.layers2, projectionDim: D.projectionDim,
  }, dtype, componentSeed(seed, 'text_encoder_2')));
  files.set('text_encoder_2/config.json', json(cfg.textEncoderConfig(2, dtype)));

  const unet = buildUnet({
    timestep: options.timestep, latentChannels: D.latentChannels, channels: D.unetChannels, groups: D.unetGroups, heads: D.unetHeads,
    timeEmbedDim: D.timeEmbedDim, additionTimeEmbedDim: D.additionTimeEmbedDim,
    crossAttentionDim: TINY_CROSS_ATTENTION_DIM, pooledDim: D.projectionDim,
  }, dtype, componentSeed(seed, 'unet'));
  if (options.externalData) {
    const moved = moveInitializersToExternalData(unet, { location: 'model.onnx_data' });
    model('unet', moved.model);
    files.set('unet/model.onnx_data', moved.data);
  } else {
    model('unet', unet);
  }
  files.set('unet/config.json', json(cfg.unetConfig()));

  const vae = { latentChannels: D.latentChannels, scalingFactor: cfg.SDXL_SCALING_FACTOR, encoderOutput: options.vaeEncoderOutput };
  // One seed for both halves: the encoder is built as the decoder's inverse.
  model('vae_decoder', buildVaeDecoder(vae, dtype, componentSeed(seed, 'vae')));
  files.set('vae_decoder/config.json', json(cfg.vaeConfig()));
  model('vae_encoder', buildVaeEncoder(vae, dtype, componentSeed(seed, 'vae')));
  files.set('vae_encoder/config.json', json(cfg.vaeConfig()));

  const vocab = tinyClipVocab();
  for (const which of [1, 2] as const) {
    const folder = which === 1 ? 'tokenizer' : 'tokenizer_2';
    files.set(`${folder}/vocab.json`, vocab.vocabJson);
    files.set(`${folder}/merges.txt`, vocab.mergesTxt);
    files.set(`${folder}/special_tokens_map.json`, json(cfg.specialTokensMap(which)));
    files.set(`${folder}/tokenizer_config.json`, json(cfg.tokenizerConfig(which)));
  }

  const written: WrittenFile[] = [];
  for (const [rel, content] of files) {
    const file = path.join(dir, ...rel.split('/'));
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    await fs.promises.writeFile(file, content);
    written.push({ path: rel, bytes: typeof content === 'string' ? Buffer.byteLength(content) : content.length });
  }
  if (!options.externalData) await fs.promises.rm(path.join(dir, 'unet', 'model.onnx_data'), { force: true });
  return { dir: path.resolve(dir), files: written, totalBytes: written.reduce((a, f) => a + f.bytes, 0) };
}
