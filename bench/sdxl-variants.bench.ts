/**
 * SDXL variants on the tiny bundle (CPU): a LoRA fused vs unfused (per UNet call), and the int8
 * variant vs fp32 (size, UNet session load time, per-step time, PSNR of the final image). The tiny
 * UNet is ~100 k parameters, so the figures show the mechanism's relative costs, not SDXL's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { fuseLoraIntoBundle } from '../services/models/lora/fused-bundle.js';
import { addUnfusedLoraBranches } from '../services/models/lora/unfused-branch.js';
import { decodeModel, encodeModel } from '../services/models/onnx/onnx-model.js';
import { quantizeBundle } from '../services/models/quantize/quantize-bundle.js';
import { randomValues } from '../services/models/tiny-sdxl/net.js';
import { writeTinyLora } from '../services/models/tiny-sdxl/tiny-lora.js';
import { writeTinySdxlBundle } from '../services/models/tiny-sdxl.js';
import type { BenchResult } from './lib/types.js';

const CALLS = 20;

function unetFeeds(): Record<string, Tensor> {
  // The 21:9 bucket's latents (1536x640 → 80x192), classifier-free guidance batch 2.
  const f = (name: string, dims: number[], std = 1) => new Tensor('float32', randomValues(3, name, dims.reduce((a, d) => a * d, 1), std), dims);
  return { sample: f('s', [2, 4, 80, 192]), timestep: new Tensor('float32', Float32Array.of(500), []), encoder_hidden_states: f('e', [2, 77, 96]), text_embeds: f('t', [2, 48]), time_ids: f('i', [2, 6], 300) };
}

async function time(file: string): Promise<{ loadMs: number; callMs: number }> {
  const t0 = performance.now();
  const s = await InferenceSession.create(file, { graphOptimizationLevel: 'all' });
  const loadMs = performance.now() - t0;
  const feeds = unetFeeds();
  await s.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const a = performance.now();
    await s.run(feeds);
    times.push(performance.now() - a);
  }
  await s.release();
  times.sort((x, y) => x - y);
  return { loadMs, callMs: times[Math.floor(times.length / 2)]! };
}

const dirBytes = (dir: string) => fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).reduce((n, e) => n + fs.statSync(path.join(e.parentPath, e.name)).size, 0);

export async function run(): Promise<BenchResult> {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-variants-'));
  try {
    const base = path.join(repo, 'tiny-sdxl');
    await writeTinySdxlBundle(base, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    const loraFile = path.join(repo, 'loras', 'bench.safetensors');
    const modules = writeTinyLora(loraFile, { format: 'kohya', seed: 9 });
    const t0 = performance.now();
    const fused = fuseLoraIntoBundle(base, loraFile, { scale: 1, unmatched: 'error', outDir: path.join(repo, 'fused') });
    const fuseMs = performance.now() - t0;
    const unfusedModel = decodeModel(fs.readFileSync(path.join(base, 'unet', 'model.onnx')));
    addUnfusedLoraBranches(unfusedModel, modules.filter((m) => m.component === 'unet'));
    const unfusedFile = path.join(base, 'unet', 'unfused.onnx');
    fs.writeFileSync(unfusedFile, encodeModel(unfusedModel));

    const plain = await time(path.join(base, 'unet', 'model.onnx'));
    const withFused = await time(fused.modelPaths.unet!);
    const withUnfused = await time(unfusedFile);
    fs.rmSync(unfusedFile);

    const q = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: 'int8', minPsnrDb: 25 });
    const int8 = await time(path.join(q.dir, 'unet', 'model.onnx'));
    const fp32Bytes = dirBytes(base);

    const overhead = withUnfused.callMs / withFused.callMs - 1;
    return {
      name: 'sdxl-variants',
      title: 'SDXL variants on the tiny bundle: fused vs unfused LoRA, int8 vs fp32',
      checks: [
        { name: 'fused LoRA UNet call vs base', measured: withFused.callMs / plain.callMs, unit: '×', target: '≈ 1 (fusion is free per step)', pass: withFused.callMs / plain.callMs < 1.15 },
        { name: 'int8 variant PSNR vs fp32', measured: q.psnrDb, unit: 'dB', target: '≥ 25', pass: q.psnrDb >= 25 },
      ],
      tables: [
        { title: 'UNet call, batch 2 at 80×192 latents (median of 20, CPU)', columns: ['model', 'session load ms', 'ms per call'], rows: [
          ['base', plain.loadMs.toFixed(1), plain.callMs.toFixed(2)],
          ['LoRA fused', withFused.loadMs.toFixed(1), withFused.callMs.toFixed(2)],
          ['LoRA unfused (low-rank branches)', withUnfused.loadMs.toFixed(1), withUnfused.callMs.toFixed(2)],
          ['int8 (weight-only QDQ)', int8.loadMs.toFixed(1), int8.callMs.toFixed(2)],
        ] },
        { title: 'Variants', columns: ['variant', 'bundle bytes', 'PSNR vs fp32 (dB)'], rows: [['fp32', fp32Bytes, '—'], ['int8', q.bytesAfter, q.psnrDb.toFixed(2)]] },
      ],
      notes: [
        `Fusing the ${fused.matched}-module LoRA into the three models took ${fuseMs.toFixed(0)} ms; the unfused branches cost ${(overhead * 100).toFixed(0)}% per UNet call here.`,
        'The optimized-model cache (step 7) is not implemented yet, so there is no cold/warm figure.',
      ],
      data: { plain, withFused, withUnfused, int8, fuseMs, psnrDb: q.psnrDb, fp32Bytes, int8Bytes: q.bytesAfter, matmulsQuantized: q.tensorsRewritten },
    };
  } finally {
    fs.rmSync(repo, { recursive: true, force: true });
  }
}
