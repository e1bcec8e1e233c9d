/**
 * Stage `texture`: the real ONNX Runtime stage. Serves models with the demo `texture` interface
 * (services/models/demo-models.ts): inputs `noise` [B,3,H,W] and `tint` [B,3], output `image`
 * [B,3,H,W] in [0,1]. Noise comes from each item's 64-bit seed, the tint from colour words in the
 * prompt; one session.run covers the whole batch, then sharp encodes each image.
 *
 * Deployment options read: the ONNX Runtime session options of services/models/session-options.ts
 * (`execution_provider`, `device_id`, `intra_op_threads`, `graph_optimization_level`,
 * `optimized_model_cache_dir`); a provider
 * whose libraries are missing fails the load with ORRERY_ERR_MODEL_LOAD_FAILED.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type InferenceSession, Tensor } from 'onnxruntime-node';
import {
  CancelledError, InvalidArgumentError, ModelNotFoundError, OrreryError,
} from '../common/errors.js';
import { createCachedSession } from '../models/optimized-model-cache.js';
import { parseSessionOptions, type SessionOptions } from '../models/session-options.js';
import { appendStageParameters } from './generation-parameters.js';
import { compilePngOptions, encodeRgb, type PngOptions } from './output-encoder.js';
import type { LoadedModel, RunContext, Stage, StageContext, StageItem, StageOutput } from './stage.js';

/** Model ids this stage accepts; checked before any file system access (no `/`, no `..`). */
export const MODEL_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Largest width or height accepted; bounds the float tensors one batch allocates. */
const MAX_SIDE = 8192;

interface TextureOptions {
  readonly sessionOptions: SessionOptions;
  /** `png_compression_level`, `png_adaptive_filtering` (output-encoder.ts). */
  readonly png: PngOptions;
}

function compileOptions(options: Readonly<Record<string, unknown>>): TextureOptions {
  return { sessionOptions: parseSessionOptions(options), png: compilePngOptions(options) };
}

/**
 * Fills `out` with uniform noise of unit variance from a 64-bit seed: splitmix64 (BigInt, four
 * calls) seeds xoshiro128** (32-bit integer math), because BigInt in the per-element loop would
 * cost ~100 ns per value.
 */
export function fillNoise(seed: bigint, out: Float32Array): void {
  const mask = (1n << 64n) - 1n;
  let s = seed & mask;
  const state = new Uint32Array(4);
  for (let i = 0; i < 2; i++) {
    s = (s + 0x9e3779b97f4a7c15n) & mask;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
    z ^= z >> 31n;
    state[2 * i] = Number(z & 0xffffffffn);
    state[2 * i + 1] = Number(z >> 32n);
  }
  let a = state[0]!, b = state[1]!, c = state[2]!, d = state[3]!;
  if ((a | b | c | d) === 0) a = 1; // xoshiro's one forbidden state
  const scale = (2 * Math.sqrt(3)) / 4294967296;
  for (let i = 0; i < out.length; i++) {
    const r = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)), 9) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t;
    d = (d << 11) | (d >>> 21);
    out[i] = r * scale - Math.sqrt(3);
  }
}

const COLOURS: Readonly<Record<string, readonly [number, number, number]>> = {
  red: [0.85, 0.15, 0.1], crimson: [0.7, 0.05, 0.15], orange: [0.95, 0.5, 0.1], amber: [0.95, 0.65, 0.1],
  yellow: [0.95, 0.85, 0.2], gold: [0.9, 0.7, 0.2], golden: [0.9, 0.7, 0.2], green: [0.2, 0.7, 0.25],
  emerald: [0.1, 0.6, 0.35], teal: [0.1, 0.55, 0.55], cyan: [0.2, 0.8, 0.85], turquoise: [0.25, 0.8, 0.75],
  blue: [0.12, 0.3, 0.9], azure: [0.25, 0.55, 0.95], navy: [0.08, 0.12, 0.45], indigo: [0.3, 0.15, 0.6],
  purple: [0.5, 0.2, 0.7], violet: [0.55, 0.3, 0.85], magenta: [0.85, 0.15, 0.7], pink: [0.95, 0.5, 0.7],
  brown: [0.45, 0.28, 0.15], rust: [0.6, 0.25, 0.1], white: [0.92, 0.92, 0.92], silver: [0.75, 0.77, 0.8],
  grey: [0.5, 0.5, 0.5], gray: [0.5, 0.5, 0.5], black: [0.08, 0.08, 0.08],
};

/**
 * The tint of a prompt: the mean of the colour words it contains ("deep blue planet" → blue),
 * darkened by deep/dark, lightened by pale/light; with no colour word, a hue hashed from the
 * prompt (FNV-1a), so every prompt still gets its own stable colour.
 */
export function promptTint(prompt: string): [number, number, number] {
  const words = prompt.toLowerCase().split(/[^a-z]+/);
  const rgb: [number, number, number] = [0, 0, 0];
  let n = 0;
  for (const w of words) {
    const c = COLOURS[w];
    if (!c) continue;
    rgb[0] += c[0];
    rgb[1] += c[1];
    rgb[2] += c[2];
    n++;
  }
  if (n === 0) {
    let h = 0x811c9dc5;
    for (let i = 0; i < prompt.length; i++) h = Math.imul(h ^ prompt.charCodeAt(i), 0x01000193);
    const hue = ((h >>> 0) / 4294967296) * 2 * Math.PI;
    return [0, 2, 4].map((k) => 0.5 + 0.35 * Math.cos(hue - (k * Math.PI) / 3)) as [number, number, number];
  }
  const dark = words.some((w) => w === 'deep' || w === 'dark');
  const pale = words.some((w) => w === 'pale' || w === 'light');
  return rgb.map((v) => {
    let x = v / n;
    if (dark) x *= 0.65;
    if (pale) x = x * 0.6 + 0.4;
    return x;
  }) as [number, number, number];
}

/** Planar float [3,H,W] at `offset` → interleaved RGB bytes (the layout change needs one copy). */
function toRgb(data: Float32Array, offset: number, plane: number): Uint8ClampedArray {
  const rgb = new Uint8ClampedArray(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    // Uint8ClampedArray rounds and clamps, so no Math calls per pixel.
    for (let p = 0, q = c; p < plane; p++, q += 3) rgb[q] = data[base + p]! * 255;
  }
  return rgb;
}

/** Encodes one image with its parameters: the prompt (its tint), seed (its noise), size and model. */
function encode(rgb: Uint8ClampedArray, item: StageItem, modelId: string, png: PngOptions): Promise<StageOutput> {
  const parameters = appendStageParameters(undefined, {
    prompt: item.prompt, negativePrompt: item.negativePrompt, fields: [['Seed', String(item.seed)], ['Size', ''], ['Model', modelId]],
    width: item.width, height: item.height, pipeline: item.pipeline ?? '',
  }, 'always');
  const pixels = new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return encodeRgb(pixels, item.width, item.height, { format: item.outputFormat, intermediate: item.intermediate ?? false, png, parameters, ...(item.qc ? { qc: item.qc } : {}) });
}

class TextureModel implements LoadedModel {
  constructor(readonly modelId: string, readonly sizeBytes: number, private readonly session: InferenceSession, private readonly png: PngOptions) {}

  async run(items: readonly StageItem[], ctx: RunContext): Promise<Array<StageOutput | Error>> {
    if (ctx.signal.aborted) throw new CancelledError(`batch of ${this.modelId} before run`);
    const first = items[0];
    if (first === undefined) return [];
    const { width: w, height: h } = first;
    for (const it of items) {
      if (it.width !== w || it.height !== h) throw new InvalidArgumentError('width', `items of one batch must share a size (${w}x${h} vs ${it.width}x${it.height})`);
    }
    if (!Number.isInteger(w) || w < 1 || w > MAX_SIDE) throw new InvalidArgumentError('width', `must be an integer in [1, ${MAX_SIDE}], got ${w}`);
    if (!Number.isInteger(h) || h < 1 || h > MAX_SIDE) throw new InvalidArgumentError('height', `must be an integer in [1, ${MAX_SIDE}], got ${h}`);

    const results = new Array<StageOutput | Error | undefined>(items.length);
    // Items cancelled before the run are left out: each image is computed independently, so the
    // others' pixels do not depend on the batch composition.
    const live: Array<[number, StageItem]> = [];
    items.forEach((item, i) => {
      if (ctx.itemSignal(i).aborted) results[i] = new CancelledError(`item ${i} of ${this.modelId} batch`);
      else live.push([i, item]);
    });
    if (live.length > 0) {
      const plane = w * h;
      const noise = new Float32Array(live.length * 3 * plane);
      const tint = new Float32Array(live.length * 3);
      live.forEach(([, item], b) => {
        fillNoise(item.seed, noise.subarray(b * 3 * plane, (b + 1) * 3 * plane));
        tint.set(promptTint(item.prompt), b * 3);
      });
      const out = await this.session.run({
        noise: new Tensor('float32', noise, [live.length, 3, h, w]),
        tint: new Tensor('float32', tint, [live.length, 3]),
      });
      if (ctx.signal.aborted) throw new CancelledError(`batch of ${this.modelId} during run`);
      // The rest is encoding: the next batch may use the device meanwhile.
      ctx.computeDone?.();
      const image = out['image']?.data;
      if (!(image instanceof Float32Array)) throw new OrreryError('ORRERY_ERR_STAGE_FAILED', `${this.modelId}: the model gave no float32 "image" output`);
      await Promise.all(live.map(async ([i, item], b) => {
        if (ctx.itemSignal(i).aborted) {
          results[i] = new CancelledError(`item ${i} of ${this.modelId} batch`);
          return;
        }
        ctx.progress(i, 1, 1);
        try {
          results[i] = await encode(toRgb(image, b * 3 * plane, plane), item, this.modelId, this.png);
        } catch (err) {
          results[i] = new OrreryError('ORRERY_ERR_STAGE_FAILED', `encoding item ${i} as ${item.outputFormat}: ${(err as Error).message}`, { cause: err });
        }
      }));
    }
    return results as Array<StageOutput | Error>;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** The `texture` stage. */
export const textureStage: Stage = {
  name: 'texture',
  async load(modelId: string, ctx: StageContext): Promise<LoadedModel> {
    if (!MODEL_ID_PATTERN.test(modelId)) {
      throw new ModelNotFoundError(modelId, `invalid model id: must match ${MODEL_ID_PATTERN.source}`);
    }
    const { sessionOptions, png } = compileOptions(ctx.options);
    const file = path.join(ctx.modelRepository, modelId, 'model.onnx');
    let size: number;
    try {
      size = (await fs.promises.stat(file)).size;
    } catch {
      throw new ModelNotFoundError(modelId, `no model file at ${file}`);
    }
    let session: InferenceSession;
    try {
      ({ session } = await createCachedSession({ path: file }, sessionOptions));
    } catch (err) {
      throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `loading ${file}: ${(err as Error).message}`, { cause: err });
    }
    const missing = [
      ...['noise', 'tint'].filter((n) => !session.inputNames.includes(n)).map((n) => `input ${n}`),
      ...(session.outputNames.includes('image') ? [] : ['output image']),
    ];
    if (missing.length > 0) {
      await session.release();
      throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `${file} is not a texture model: missing ${missing.join(', ')}`);
    }
    return new TextureModel(modelId, size, session, png);
  },
};
