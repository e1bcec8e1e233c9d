/**
 * Stage `upscaler`: a trained super-resolution network (UpscalerJS's ESRGAN weights converted by
 * `orrery models convert-upscaler`) run with ONNX Runtime over tiles. Each item's input image
 * (`init_image`) is decoded strictly, cut into overlapping tiles (upscaler-tiling.ts), and the
 * tiles of ALL items of the batch go through the session together, as few runs as possible
 * (tiles of one window size per run, at most `max_tiles_per_run`); outputs are cross-faded back
 * into each image, optionally resized, and encoded per item.outputFormat.
 *
 * Model: `<modelRepository>/<modelId>/model.onnx` with input `input` [B,3,H,W], output `output`
 * [B,3,H·s,W·s] and the metadata convert-upscaler writes (scale, value ranges).
 *
 * Deployment options (all optional): `execution_provider` (cpu | cuda | tensorrt), `device_id`,
 * `intra_op_threads`, `graph_optimization_level`, `optimized_model_cache_dir`, as for the texture
 * stage; and
 * - `tile_size`: largest tile core side in input pixels (default 128);
 * - `tile_padding`: context around each core, ≤ tile_size / 2 (default 16); more padding → seams
 *   closer to the whole-image result, more compute;
 * - `max_tiles_per_run`: tiles per session.run (default 8);
 * - `max_input_pixels` (default 16 777 216) and `max_output_pixels` (default 37 748 736, 6144²):
 *   larger images are refused with INVALID_ARGUMENT before their pixels are decoded. The output
 *   bound also caps memory: the blend buffer holds 12 bytes per output pixel.
 *
 * Item params (from the pipeline definition): `scale` — if given, must equal the model's scale;
 * `resize` — after upscaling, resize with sharp's lanczos3 to `{width, height, fit?}` or to the
 * item's `width`×`height` (`resize: request`, also what happens when `resize` is unset and the
 * item has a size: the router asks each stage for its output size); `fit` is `cover` (default:
 * scale to cover, crop the centre — exact size, aspect kept) or `fill` (stretch).
 */
import fs from 'node:fs';
import path from 'node:path';
import { type InferenceSession, Tensor } from 'onnxruntime-node';
import { CancelledError, ConfigError, InvalidArgumentError, ModelNotFoundError, OrreryError } from '../common/errors.js';
import { createCachedSession } from '../models/optimized-model-cache.js';
import { parseSessionOptions, type SessionOptions } from '../models/session-options.js';
import { parseUpscalerInfo, readModelMetadata, type UpscalerModelInfo } from '../models/upscaler/upscaler-metadata.js';
import type { LoadedModel, RunContext, Stage, StageContext, StageItem, StageOutput } from './stage.js';
import { appendStageParameters } from './generation-parameters.js';
import { compilePngOptions, encodeOutput, readParameters, type PngOptions } from './output-encoder.js';
import { decodeImage, resizedImage, type ResizeSpec, type RgbImage } from './upscaler-image.js';
import { axisWeights, checkTilingOptions, planRuns, planTiles, rampFor, type Tile, type TileJob } from './upscaler-tiling.js';

/** Model ids this stage accepts; checked before any file system access (no `/`, no `..`). */
export const MODEL_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const MAX_RESIZE_SIDE = 16384;

export interface UpscalerOptions {
  readonly sessionOptions: SessionOptions;
  readonly tileSize: number;
  readonly tilePadding: number;
  readonly maxTilesPerRun: number;
  readonly maxInputPixels: number;
  readonly maxOutputPixels: number;
  /** PNG outputs for the client: `png_compression_level`, `png_adaptive_filtering` (output-encoder.ts). */
  readonly png: PngOptions;
}

/** Validates a deployment's `options`, fills defaults, freezes. Throws ConfigError naming the key. */
export function compileUpscalerOptions(options: Readonly<Record<string, unknown>>): UpscalerOptions {
  const int = (key: string, def: number, min: number, max: number): number => {
    const v = options[key] ?? def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new ConfigError(`options.${key}`, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const tileSize = int('tile_size', 128, 8, 4096);
  const tilePadding = int('tile_padding', Math.min(16, tileSize >> 1), 0, 2048);
  try {
    checkTilingOptions({ tileSize, padding: tilePadding });
  } catch (err) {
    throw new ConfigError('options.tile_padding', (err as Error).message);
  }
  return Object.freeze<UpscalerOptions>({
    sessionOptions: parseSessionOptions(options),
    tileSize, tilePadding,
    maxTilesPerRun: int('max_tiles_per_run', 8, 1, 1024),
    maxInputPixels: int('max_input_pixels', 4096 * 4096, 1, 2 ** 31),
    maxOutputPixels: int('max_output_pixels', 6144 * 6144, 1, 2 ** 31),
    png: compilePngOptions(options),
  });
}

/** The item's `resize` param → a ResizeSpec, or undefined. Throws ConfigError / InvalidArgumentError. */
function resizeParam(item: StageItem): ResizeSpec | undefined {
  const r = item.params['resize'];
  if (r === undefined || r === null) {
    // The router asks every stage for an output size (the pipeline's `size`); an upscaler meets
    // it by resizing its output when the model's scale does not land on it exactly.
    return item.width > 0 && item.height > 0 ? { width: item.width, height: item.height, fit: 'cover' } : undefined;
  }
  const side = (field: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_RESIZE_SIDE) {
      throw new InvalidArgumentError(field, `upscaler resize target must be an integer in [1, ${MAX_RESIZE_SIDE}], got ${JSON.stringify(v)}`);
    }
    return v;
  };
  if (r === 'request') return { width: side('width', item.width), height: side('height', item.height), fit: 'cover' };
  if (typeof r !== 'object') throw new ConfigError('params.resize', `must be "request" or {width, height, fit?}, got ${JSON.stringify(r)}`);
  const { width, height, fit = 'cover' } = r as { width?: unknown; height?: unknown; fit?: unknown };
  if (fit !== 'cover' && fit !== 'fill') throw new ConfigError('params.resize.fit', `must be cover or fill, got ${JSON.stringify(fit)}`);
  return { width: side('params.resize.width', width), height: side('params.resize.height', height), fit };
}

/** One item being upscaled: its pixels, tiles, and the blend accumulator (planar RGB, float). */
interface Work {
  readonly img: RgbImage;
  readonly tiles: readonly Tile[];
  readonly acc: Float32Array;
  readonly resize?: ResizeSpec;
  /** The input image's parameters text, which the output continues (undefined: none). */
  readonly history: string | undefined;
  done: number;
}

/** Counters of what the model actually did (tests and benchmarks read them). */
export interface UpscalerStats {
  sessionRuns: number;
  tilesRun: number;
}

export class UpscalerModel implements LoadedModel {
  readonly stats: UpscalerStats = { sessionRuns: 0, tilesRun: 0 };
  /** Input byte value → model input value, as the package maps pixels: lo + v/255·(hi − lo). */
  private readonly inputLut: Float32Array;

  constructor(
    readonly modelId: string, readonly sizeBytes: number, private readonly session: InferenceSession,
    readonly info: UpscalerModelInfo, readonly options: UpscalerOptions,
  ) {
    const [lo, hi] = info.inputRange;
    this.inputLut = Float32Array.from({ length: 256 }, (_, v) => lo + (v / 255) * (hi - lo));
  }

  private async prepare(item: StageItem): Promise<Work> {
    const s = this.info.scale;
    const asked = item.params['scale'];
    if (asked !== undefined && asked !== s) throw new ConfigError('params.scale', `the pipeline asks for ${JSON.stringify(asked)}x, model ${this.modelId} upscales ${s}x`);
    const resize = resizeParam(item);
    const limit = Math.min(this.options.maxInputPixels, Math.floor(this.options.maxOutputPixels / (s * s)));
    const img = await decodeImage(item.initImage, limit);
    const history = await readParameters(item.initImage);
    const tiles = planTiles(img.width, img.height, { tileSize: this.options.tileSize, padding: this.options.tilePadding });
    return { img, tiles, acc: new Float32Array(3 * img.width * img.height * s * s), resize, history, done: 0 };
  }

  async run(items: readonly StageItem[], ctx: RunContext): Promise<Array<StageOutput | Error>> {
    if (ctx.signal.aborted) throw new CancelledError(`batch of ${this.modelId} before run`);
    const results = new Array<StageOutput | Error | undefined>(items.length);
    const works = new Array<Work | undefined>(items.length);
    await Promise.all(items.map(async (item, i) => {
      if (ctx.itemSignal(i).aborted) results[i] = new CancelledError(`item ${i} of ${this.modelId} batch`);
      else works[i] = await this.prepare(item).catch((err: unknown) => { results[i] = itemError(err, i); return undefined; });
    }));

    const jobs: TileJob[] = [];
    works.forEach((w, item) => w?.tiles.forEach((t, tile) => jobs.push({ item, tile, width: t.width, height: t.height })));
    for (const run of planRuns(jobs, this.options.maxTilesPerRun)) {
      if (ctx.signal.aborted) throw new CancelledError(`batch of ${this.modelId} between tile runs`);
      const live = run.filter((j) => {
        if (works[j.item] && ctx.itemSignal(j.item).aborted) {
          results[j.item] = new CancelledError(`item ${j.item} of ${this.modelId} batch`);
          works[j.item] = undefined; // drops its remaining tiles and frees its buffers
        }
        return works[j.item] !== undefined;
      });
      if (live.length > 0) await this.runTiles(live, works, ctx);
    }
    // The rest is encoding: the next batch may use the device meanwhile.
    ctx.computeDone?.();

    await Promise.all(works.map(async (w, i) => {
      const item = items[i];
      if (!w || !item) return;
      works[i] = undefined;
      try {
        results[i] = await this.encode(w, item);
      } catch (err) {
        results[i] = new OrreryError('ORRERY_ERR_STAGE_FAILED', `encoding item ${i} as ${item.outputFormat}: ${(err as Error).message}`, { cause: err });
      }
    }));
    return results as Array<StageOutput | Error>;
  }

  /**
   * The item's output: resized, encoded, its parameters text the input's history (as
   * AUTOMATIC1111's "Extras" keeps it) plus this upscale.
   */
  private encode(w: Work, item: StageItem): Promise<StageOutput> {
    const img = this.toBytes(w);
    const parameters = appendStageParameters(w.history, {
      prompt: item.prompt, negativePrompt: item.negativePrompt,
      fields: [{ field: ['Upscaler', this.modelId], perStage: true }, { field: ['Upscale by', String(this.info.scale)], perStage: true }],
      width: w.resize?.width ?? img.width, height: w.resize?.height ?? img.height, pipeline: item.pipeline ?? '',
    }, 'always');
    return encodeOutput(resizedImage(img, w.resize), { format: item.outputFormat, intermediate: item.intermediate ?? false, png: this.options.png, parameters, ...(item.qc ? { qc: item.qc } : {}) });
  }

  /** One session.run over equal-size tiles (of any items), blended into their items. */
  private async runTiles(jobs: readonly TileJob[], works: ReadonlyArray<Work | undefined>, ctx: RunContext): Promise<void> {
    // Each job with its item's work and tile; run() passes only jobs of items still running.
    const placed = jobs.map((j) => {
      const w = works[j.item];
      const t = w?.tiles[j.tile];
      if (!w || !t) throw new OrreryError('ORRERY_ERR_STAGE_FAILED', `tile ${j.tile} of item ${j.item}: the item is not running`);
      return { j, w, t };
    });
    const first = jobs[0];
    if (!first) return;
    const { width: ww, height: wh } = first;
    const s = this.info.scale;
    const inPlane = ww * wh;
    const input = new Float32Array(jobs.length * 3 * inPlane);
    placed.forEach(({ w: { img }, t }, k) => {
      for (let y = 0; y < wh; y++) {
        let src = ((t.y + y) * img.width + t.x) * 3;
        const dst = k * 3 * inPlane + y * ww;
        for (let x = 0; x < ww; x++, src += 3) {
          input[dst + x] = this.inputLut[img.data[src]!]!;
          input[dst + inPlane + x] = this.inputLut[img.data[src + 1]!]!;
          input[dst + 2 * inPlane + x] = this.inputLut[img.data[src + 2]!]!;
        }
      }
    });
    this.stats.sessionRuns++;
    this.stats.tilesRun += jobs.length;
    const out = (await this.session.run({ input: new Tensor('float32', input, [jobs.length, 3, wh, ww]) }))['output'];
    const want = [jobs.length, 3, wh * s, ww * s];
    if (out?.dims.join() !== want.join()) {
      throw new OrreryError('ORRERY_ERR_STAGE_FAILED', `model ${this.modelId} returned [${out?.dims.join(',') ?? 'no output'}] for [${jobs.length},3,${wh},${ww}], expected [${want.join(',')}] (scale ${s})`);
    }
    const data = out.data as Float32Array;
    placed.forEach(({ j, w, t }, k) => {
      blend(w, t, data.subarray(k * 3 * inPlane * s * s, (k + 1) * 3 * inPlane * s * s), s, rampFor(this.options.tilePadding));
      ctx.progress(j.item, ++w.done, w.tiles.length);
    });
  }

  /** The accumulator as interleaved RGB bytes (output range → 0…255, rounded, clamped). */
  private toBytes(w: Work): RgbImage {
    const s = this.info.scale;
    const width = w.img.width * s;
    const height = w.img.height * s;
    const plane = width * height;
    const [lo, hi] = this.info.outputRange;
    const k = 255 / (hi - lo);
    const rgb = new Uint8ClampedArray(plane * 3); // rounds and clamps on store
    for (let c = 0; c < 3; c++) {
      for (let p = 0, q = c, a = c * plane; p < plane; p++, q += 3, a++) rgb[q] = (w.acc[a]! - lo) * k;
    }
    return { data: new Uint8Array(rgb.buffer), width, height };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** Adds one tile's output (planar [3, h·s, w·s]) into its item's accumulator with its blend weights. */
function blend(w: Work, t: Tile, out: Float32Array, s: number, ramp: number): void {
  const { width, height } = w.img;
  const wx = axisWeights(t.coreX, t.x, t.width, width, s, ramp);
  const wy = axisWeights(t.coreY, t.y, t.height, height, s, ramp);
  const ow = t.width * s;
  const oh = t.height * s;
  const plane = width * s * height * s;
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < oh; v++) {
      const fy = wy[v]!;
      if (fy === 0) continue;
      const dst = c * plane + (t.y * s + v) * width * s + t.x * s;
      const src = (c * oh + v) * ow;
      for (let u = 0; u < ow; u++) {
        const f = wx[u]! * fy;
        if (f !== 0) w.acc[dst + u]! += f * out[src + u]!;
      }
    }
  }
}

function itemError(err: unknown, i: number): OrreryError {
  if (err instanceof OrreryError) return err;
  return new OrreryError('ORRERY_ERR_STAGE_FAILED', `item ${i}: ${(err as Error).message}`, { cause: err });
}

/** The `upscaler` stage. */
export const upscalerStage: Stage = {
  name: 'upscaler',
  async load(modelId: string, ctx: StageContext): Promise<LoadedModel> {
    if (!MODEL_ID_PATTERN.test(modelId)) throw new ModelNotFoundError(modelId, `invalid model id: must match ${MODEL_ID_PATTERN.source}`);
    const options = compileUpscalerOptions(ctx.options);
    const file = path.join(ctx.modelRepository, modelId, 'model.onnx');
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(file);
    } catch {
      throw new ModelNotFoundError(modelId, `no model file at ${file}`);
    }
    let info: UpscalerModelInfo | string;
    try {
      info = parseUpscalerInfo(readModelMetadata(bytes));
    } catch (err) {
      info = `not an ONNX model (${(err as Error).message})`;
    }
    if (typeof info === 'string') throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `${file} is not an upscaler model: ${info}`);
    let session: InferenceSession;
    try {
      ({ session } = await createCachedSession({ path: file, bytes }, options.sessionOptions));
    } catch (err) {
      throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `loading ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (!session.inputNames.includes('input') || !session.outputNames.includes('output')) {
      await session.release();
      throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `${file} is not an upscaler model: needs input "input" and output "output"`);
    }
    return new UpscalerModel(modelId, bytes.length, session, info, options);
  },
};
