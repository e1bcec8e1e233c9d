/**
 * The per-model rewrite behind each variant, applied to a copied bundle folder in place:
 *
 * | variant | models | rewrite |
 * |---|---|---|
 * | `int8` | unet, text_encoder, text_encoder_2 | MatMul weights → int8 + DequantizeLinear (quantize-int8.ts) |
 * | `q4` | unet, text_encoder, text_encoder_2 | MatMul → com.microsoft MatMulNBits, 4 bits, blocks of 32 (quantize-q4.ts) |
 * | `fp16` | all five models | float16 export (onnx/convert-float16.ts); `torch_dtype` in config.json → `float16` |
 *
 * A model that kept its weights in `model.onnx_data` keeps them there (initializers of ≥ 1 KiB).
 */
import fs from 'node:fs';
import path from 'node:path';
import { convertModelToFloat16 } from '../onnx/convert-float16.js';
import { writeInitializersToExternalFile } from '../onnx/external-data.js';
import { DataType, decodeModel, encodeModel, type ModelProto } from '../onnx/onnx-model.js';
import type { ModelVariant } from '../../common/model-id.js';
import { quantizeMatMulWeightsInt8 } from './quantize-int8.js';
import { quantizeMatMulWeightsQ4 } from './quantize-q4.js';

/** The variants `orrery models quantize` writes (`fp32` is the base bundle itself). */
export type WrittenVariant = Exclude<ModelVariant, 'fp32'>;

const MATMUL_MODELS = ['text_encoder', 'text_encoder_2', 'unet'] as const;
const ALL_MODELS = ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder'] as const;

export interface VariantRewrite {
  /** MatMul weights rewritten (int8, q4) or FLOAT initializers stored as FLOAT16 (fp16). */
  readonly tensors: number;
  /** Models rewritten. */
  readonly models: readonly string[];
}

export interface VariantOptions {
  /** q4 block size along K (default 32). */
  readonly blockSize?: number;
}

/** The float type of a model's first float graph input or output (how the SDXL loader tells the bundle's dtype). */
export function floatTypeOf(model: ModelProto): 'float32' | 'float16' | undefined {
  for (const v of [...(model.graph?.input ?? []), ...(model.graph?.output ?? [])]) {
    const t = v.type?.tensor_type?.elem_type;
    if (t === DataType.FLOAT) return 'float32';
    if (t === DataType.FLOAT16) return 'float16';
  }
  return undefined;
}

/**
 * Rewrites the models of bundle folder `dir` for `variant`. Throws when the bundle cannot take it
 * (an fp16 variant of a bundle that is already float16).
 */
export function rewriteBundleModels(dir: string, variant: WrittenVariant, options: VariantOptions = {}): VariantRewrite {
  const names = variant === 'fp16' ? ALL_MODELS : MATMUL_MODELS;
  let tensors = 0;
  const models: string[] = [];
  for (const name of names) {
    const modelDir = path.join(dir, name);
    const file = path.join(modelDir, 'model.onnx');
    if (!fs.existsSync(file)) continue; // only vae_encoder is optional; the loader checks the rest
    const model = decodeModel(fs.readFileSync(file));
    if (variant === 'fp16') {
      if (floatTypeOf(model) === 'float16') throw new Error(`${name}/model.onnx is already float16: the base is an fp16 export`);
      tensors += convertModelToFloat16(model, modelDir).initializers;
      setTorchDtype(path.join(modelDir, 'config.json'), 'float16');
    } else if (variant === 'int8') {
      tensors += quantizeMatMulWeightsInt8(model, modelDir).quantized;
    } else {
      tensors += quantizeMatMulWeightsQ4(model, modelDir, { blockSize: options.blockSize }).quantized;
    }
    writeModel(modelDir, model);
    models.push(name);
  }
  if (tensors === 0) {
    const what = variant === 'int8' ? 'FLOAT MatMul weights of ≥ 1024 elements (int8 does not take float16 exports; q4 does)' : 'MatMul weights of ≥ 1024 elements with K ≥ the block size';
    throw new Error(`nothing to rewrite: ${names.join(', ')} have no ${what}`);
  }
  return { tensors, models };
}

/** Writes model.onnx (+ model.onnx_data when the folder had one), replacing the old files. */
function writeModel(modelDir: string, model: ModelProto): void {
  const dataFile = path.join(modelDir, 'model.onnx_data');
  if (fs.existsSync(dataFile)) {
    fs.writeFileSync(path.join(modelDir, 'model.onnx'), encodeModel(writeInitializersToExternalFile(model, dataFile)));
  } else {
    fs.writeFileSync(path.join(modelDir, 'model.onnx'), encodeModel(model));
  }
}

/** Sets `torch_dtype` in a transformers/diffusers config.json that has one (as an fp16 export's do). */
function setTorchDtype(configFile: string, dtype: string): void {
  if (!fs.existsSync(configFile)) return;
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  if (!('torch_dtype' in config)) return;
  config['torch_dtype'] = dtype;
  fs.writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
}
