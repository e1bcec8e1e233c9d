/**
 * Speed of the converted model in ONNX Runtime against the same weights in TensorFlow.js, on a
 * 1536x640 image (the SDXL bucket the planet pipeline upscales) made of the committed photos.
 * Each runtime runs in its own child process (speed-child.ts), one after the other, so neither
 * competes for the CPU and each peak RSS is its own.
 *
 * TensorFlow.js's pure-JS cpu backend needs ~10 s per 160x160 tile of esrgan-slim, so by default
 * it runs `UPSCALER_BENCH_TFJS_TILES` (default 4) tiles spread over the image rather than all 60;
 * the same tile windows go through ONNX Runtime alone, and the ratio and the exactness check use
 * those. `UPSCALER_BENCH_TFJS_TILES=all` runs every tile (about 10 minutes).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { planTiles } from '../../services/stages/upscaler-tiling.js';
import { PHOTOS, photoPath } from '../../test/integration/upscaler-reference.js';
import type { Check, Table } from '../lib/types.js';
import type { SpeedChildArgs, SpeedChildResult } from './speed-child.js';

export const SPEED = { pkg: 'esrgan-slim', scale: 2, width: 1536, height: 640, tileSize: 128, padding: 16, maxTilesPerRun: 4 } as const;

/** A width × height mosaic of the 128x128 photos (row-major, cycling through them). */
async function mosaic(file: string, width: number, height: number): Promise<void> {
  const cells = [];
  for (let y = 0, k = 0; y < height; y += 128) for (let x = 0; x < width; x += 128, k++) cells.push({ input: photoPath(PHOTOS[k % PHOTOS.length]!), left: x, top: y });
  await sharp({ create: { width, height, channels: 3, background: '#000' } }).composite(cells).png().toFile(file);
}

function runChild(args: SpeedChildArgs): Promise<SpeedChildResult> {
  const child = spawn(process.execPath, [path.join(__dirname, 'speed-child.js'), JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('result '));
      if (code !== 0 || !line) reject(new Error(`speed-child ${args.mode} exited with ${code}`));
      else resolve(JSON.parse(line.slice('result '.length)) as SpeedChildResult);
    });
  });
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const mb = (b: number) => Math.round(b / 2 ** 20);

export async function speedPart(repo: string, tmp: string): Promise<{ checks: Check[]; tables: Table[]; notes: string[]; data: Record<string, unknown> }> {
  const input = path.join(tmp, 'mosaic-1536x640.png');
  await mosaic(input, SPEED.width, SPEED.height);
  const total = planTiles(SPEED.width, SPEED.height, { tileSize: SPEED.tileSize, padding: SPEED.padding }).length;
  const wanted = process.env.UPSCALER_BENCH_TFJS_TILES ?? '4';
  const k = wanted === 'all' ? total : Math.max(1, Math.min(total, Number(wanted) || 4));
  const sample = Array.from({ length: k }, (_, i) => Math.floor(((i + 0.5) * total) / k));
  const common = { repo, pkg: SPEED.pkg, scale: SPEED.scale, input, tileSize: SPEED.tileSize, padding: SPEED.padding, maxTilesPerRun: SPEED.maxTilesPerRun, sample };
  process.stdout.write(`  onnxruntime: whole image through the stage, then ${k} tiles alone\n`);
  const ort = await runChild({ ...common, mode: 'ort', out: path.join(tmp, 'ort.bin') });
  process.stdout.write(`  tensorflow.js: ${k} tiles\n`);
  const tfjs = await runChild({ ...common, mode: 'tfjs', out: path.join(tmp, 'tfjs.bin') });

  const a = fs.readFileSync(path.join(tmp, 'ort.bin'));
  const b = fs.readFileSync(path.join(tmp, 'tfjs.bin'));
  let equal = 0;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d === 0) equal++;
    maxDiff = Math.max(maxDiff, d);
  }
  const equalPct = (100 * equal) / a.length;
  const ortTile = mean(ort.tileMs);
  const ortTile1 = mean(ort.tileMsOneThread ?? []);
  const tfTile = mean(tfjs.tileMs);
  const ratio = tfTile / ortTile;
  const stageTilesPerS = (ort.stageTiles ?? 0) / ((ort.stageMs ?? 1) / 1000);
  const win = `${SPEED.tileSize + 2 * SPEED.padding}x${SPEED.tileSize + 2 * SPEED.padding}`;
  return {
    checks: [
      { name: `ONNX Runtime speed-up over TensorFlow.js (${SPEED.pkg} x${SPEED.scale}, model time per ${win} tile)`, measured: Math.round(ratio * 10) / 10, unit: '×', target: '≥ 3×', pass: ratio >= 3 },
      {
        name: `Identical output: 8-bit values equal on the ${k} sampled tiles`, measured: Math.round(equalPct * 1000) / 1000, unit: '%', target: '≥ 99.9 %, none off by > 1',
        pass: equalPct >= 99.9 && maxDiff <= 1, note: `${a.length} values, max difference ${maxDiff}/255`,
      },
    ],
    tables: [{
      title: `Speed: ${SPEED.width}x${SPEED.height} → ${ort.outWidth}x${ort.outHeight}, ${SPEED.pkg} x${SPEED.scale}, ${total} tiles of ${win} (tile ${SPEED.tileSize}, padding ${SPEED.padding})`,
      columns: ['runtime', 'ms per tile (model only)', 'tiles/s', 'whole image s', 'peak RSS MiB'],
      rows: [
        ['ONNX Runtime, upscaler stage (decode, batched runs, blend, PNG)', '', stageTilesPerS.toFixed(2), ((ort.stageMs ?? 0) / 1000).toFixed(2), mb(ort.stagePeakRssBytes ?? 0)],
        ['ONNX Runtime, one tile per run, all cores', ortTile.toFixed(1), (1000 / ortTile).toFixed(2), ((total * ortTile) / 1000).toFixed(2) + ' (est.)', ''],
        ['ONNX Runtime, one tile per run, 1 thread', ortTile1.toFixed(1), (1000 / ortTile1).toFixed(2), ((total * ortTile1) / 1000).toFixed(2) + ' (est.)', ''],
        ['TensorFlow.js cpu backend (pure JS, 1 thread)', tfTile.toFixed(1), (1000 / tfTile).toFixed(3), ((total * tfTile) / 1000).toFixed(0) + (k < total ? ' (est.)' : ''), mb(tfjs.peakRssBytes)],
      ],
      note: `Stage run: ${ort.stageRuns} session runs for ${ort.stageTiles} tiles (max_tiles_per_run ${SPEED.maxTilesPerRun}). Sampled tiles: ${sample.join(', ')} of ${total}. Peak RSS: each runtime's child process's maximum resident set — for ONNX Runtime, measured right after the whole-image stage run (decoded image, blend buffer, session arena, PNG encode); TensorFlow.js's covers model, weights and one tile at a time.`,
    }],
    notes: [
      `Single-threaded ONNX Runtime vs TensorFlow.js: ${(tfTile / ortTile1).toFixed(1)}× — the speed-up is mostly ONNX Runtime's MLAS convolution kernels (vectorised, blocked GEMM), not threads.`,
      'TensorFlow.js with tfjs-node (libtensorflow) or the wasm backend would be faster than its pure-JS cpu backend; neither is installed (tfjs-node downloads native binaries at install time).',
    ],
    data: { sample, totalTiles: total, ort, tfjs, equalValues: equal, comparedValues: a.length, maxDiff, ratio, ratioOneThread: tfTile / ortTile1, stageTilesPerS },
  };
}
