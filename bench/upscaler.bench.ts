/**
 * The upscaler issue's benchmarks: the converted ESRGAN models in ONNX Runtime against the same
 * weights in TensorFlow.js (speed, peak memory, identical output), and their quality against
 * sharp's bicubic and lanczos3 on real photographs. Converts all nine models (three packages ×
 * scales 2, 3, 4) into a temporary model repository first.
 * `BENCH_PARTS=speed` or `quality` runs one part.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { convertUpscaler } from '../services/models/upscaler/convert-upscaler.js';
import { UPSCALER_PACKAGES, upscalerPackageDir } from '../test/integration/upscaler-reference.js';
import type { BenchResult } from './lib/types.js';
import { qualityPart } from './upscaler/quality.js';
import { speedPart } from './upscaler/speed.js';

export async function run(): Promise<BenchResult> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-upscaler-'));
  try {
    const repo = path.join(tmp, 'models');
    for (const pkg of UPSCALER_PACKAGES) {
      for (const scale of [2, 3, 4]) {
        await convertUpscaler({ from: upscalerPackageDir(pkg), scale, out: path.join(repo, `${pkg}-x${scale}`, 'model.onnx') });
      }
    }
    const parts = { speed: () => speedPart(repo, tmp), quality: () => qualityPart(repo) };
    const wanted = process.env.BENCH_PARTS?.split(',') ?? Object.keys(parts);
    const results = [];
    for (const [name, part] of Object.entries(parts)) {
      if (!wanted.includes(name)) continue;
      process.stdout.write(`  part: ${name}\n`);
      results.push([name, await part()] as const);
    }
    return {
      name: 'upscaler',
      title: 'Upscaler: converted ESRGAN in ONNX Runtime vs TensorFlow.js, and quality vs interpolation',
      checks: results.flatMap(([, r]) => r.checks),
      tables: results.flatMap(([, r]) => r.tables),
      notes: results.flatMap(([, r]) => r.notes),
      data: Object.fromEntries(results.map(([name, r]) => [name, r.data])),
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
