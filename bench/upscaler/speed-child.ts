/**
 * One side of the upscaler speed benchmark, in its own process so its peak RSS is its own:
 * `node speed-child.js '<json SpeedChildArgs>'` prints `result <json SpeedChildResult>`.
 *
 * - `ort`: the whole image through the upscaler stage (decode, tiles, batched runs, blend, PNG
 *   encode), then each sampled tile window alone through an ONNX Runtime session (all cores, then
 *   one thread), writing the 8-bit outputs of the sampled tiles to `out`;
 * - `tfjs`: each sampled tile window through the original model in TensorFlow.js (cpu backend),
 *   writing its 8-bit outputs to `out`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import { loadStage } from '../../services/stages/registry.js';
import type { RunContext, StageItem } from '../../services/stages/stage.js';
import type { UpscalerModel } from '../../services/stages/upscaler.js';
import { planTiles, type Tile } from '../../services/stages/upscaler-tiling.js';
import { loadTfjsUpscaler, type RgbImage, toByte, toNchw } from '../../test/integration/upscaler-reference.js';

export interface SpeedChildArgs {
  readonly mode: 'ort' | 'tfjs';
  readonly repo: string;
  readonly pkg: string;
  readonly scale: number;
  readonly input: string;
  readonly tileSize: number;
  readonly padding: number;
  readonly maxTilesPerRun: number;
  /** Indices (row-major) of the tiles run one by one on both sides. */
  readonly sample: readonly number[];
  readonly out: string;
}

export interface SpeedChildResult {
  readonly stageMs?: number;
  readonly stageRuns?: number;
  readonly stageTiles?: number;
  readonly outWidth?: number;
  readonly outHeight?: number;
  /** Model time per sampled tile (ms), default threads. */
  readonly tileMs: number[];
  /** ONNX Runtime with intraOpNumThreads = 1. */
  readonly tileMsOneThread?: number[];
  readonly peakRssBytes: number;
  /** Peak RSS right after the whole-image stage run (before the per-tile sessions). */
  readonly stagePeakRssBytes?: number;
}

/** Tile `i` of `tiles`; the sample indices come from the parent process's arguments. */
function tileAt(tiles: readonly Tile[], i: number | undefined): Tile {
  const t = i === undefined ? undefined : tiles[i];
  if (!t) throw new Error(`no tile ${i} among ${tiles.length}`);
  return t;
}

function window(img: RgbImage, t: Tile): RgbImage {
  const data = new Uint8Array(t.width * t.height * 3);
  for (let y = 0; y < t.height; y++) data.set(img.data.subarray(((t.y + y) * img.width + t.x) * 3, ((t.y + y) * img.width + t.x + t.width) * 3), y * t.width * 3);
  return { data, width: t.width, height: t.height };
}

async function ort(a: SpeedChildArgs, img: RgbImage, tiles: Tile[]): Promise<{ result: SpeedChildResult; bytes: Uint8Array[] }> {
  const png = fs.readFileSync(a.input);
  const model = await loadStage('upscaler').load(`${a.pkg}-x${a.scale}`, {
    options: { tile_size: a.tileSize, tile_padding: a.padding, max_tiles_per_run: a.maxTilesPerRun }, modelRepository: a.repo,
  }) as UpscalerModel;
  const never = new AbortController().signal;
  const ctx: RunContext = { signal: never, itemSignal: () => never, progress: () => {} };
  const item = (initImage: Uint8Array): StageItem => ({
    requestId: 'bench', imageIndex: 0, seed: 0n, prompt: '', negativePrompt: '', steps: 1, guidanceScale: 1,
    width: 0, height: 0, strength: 0, initImage, outputFormat: 'png', params: {},
  });
  const t0 = tileAt(tiles, 0);
  await model.run([item(await sharp(png).extract({ left: 0, top: 0, width: t0.width, height: t0.height }).png().toBuffer())], ctx); // warm-up
  model.stats.sessionRuns = model.stats.tilesRun = 0;
  const started = performance.now();
  const [res] = await model.run([item(png)], ctx);
  const stageMs = performance.now() - started;
  if (res === undefined) throw new Error('the stage returned no result');
  if (res instanceof Error) throw res;
  const stagePeakRssBytes = process.resourceUsage().maxRSS * 1024;
  await model.dispose();

  const file = path.join(a.repo, `${a.pkg}-x${a.scale}`, 'model.onnx');
  const { info } = model;
  const bytes: Uint8Array[] = [];
  const timings: number[][] = [];
  for (const threads of [0, 1]) {
    const session = await InferenceSession.create(file, threads ? { intraOpNumThreads: threads } : {});
    const ms: number[] = [];
    for (const [k, idx] of [a.sample[0], ...a.sample].entries()) { // the first is a warm-up
      const w = window(img, tileAt(tiles, idx));
      const t = performance.now();
      const out = await session.run({ input: new Tensor('float32', toNchw(w, info.inputRange), [1, 3, w.height, w.width]) });
      if (k === 0) continue;
      ms.push(performance.now() - t);
      if (threads === 0) {
        const y = out['output']?.data;
        if (!(y instanceof Float32Array)) throw new Error(`${file}: no float32 output`);
        const plane = y.length / 3;
        const b = new Uint8Array(y.length);
        for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) b[p * 3 + c] = toByte(y[c * plane + p]!, info.outputRange);
        bytes.push(b);
      }
    }
    timings.push(ms);
    await session.release();
  }
  return {
    result: {
      stageMs, stageRuns: model.stats.sessionRuns, stageTiles: model.stats.tilesRun, outWidth: res.width, outHeight: res.height,
      tileMs: timings[0] ?? [], tileMsOneThread: timings[1] ?? [], peakRssBytes: process.resourceUsage().maxRSS * 1024, stagePeakRssBytes,
    },
    bytes,
  };
}

async function tfjs(a: SpeedChildArgs, img: RgbImage, tiles: Tile[]): Promise<{ result: SpeedChildResult; bytes: Uint8Array[] }> {
  const model = await loadTfjsUpscaler(a.pkg, a.scale);
  await model.predict(window(img, { ...tileAt(tiles, 0), width: 16, height: 16 })); // warm-up
  const bytes: Uint8Array[] = [];
  const ms: number[] = [];
  for (const idx of a.sample) {
    const t = performance.now();
    const y = await model.predict(window(img, tileAt(tiles, idx)));
    ms.push(performance.now() - t);
    bytes.push(Uint8Array.from(y, (v) => toByte(v, model.info.outputRange)));
  }
  return { result: { tileMs: ms, peakRssBytes: process.resourceUsage().maxRSS * 1024 }, bytes };
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? 'null') as SpeedChildArgs;
  const { data, info } = await sharp(a.input).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const img = { data: new Uint8Array(data), width: info.width, height: info.height };
  const tiles = planTiles(img.width, img.height, { tileSize: a.tileSize, padding: a.padding });
  const { result, bytes } = await (a.mode === 'ort' ? ort : tfjs)(a, img, tiles);
  fs.writeFileSync(a.out, Buffer.concat(bytes));
  process.stdout.write(`result ${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`speed-child: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
