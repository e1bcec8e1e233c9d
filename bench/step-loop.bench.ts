/**
 * Issue 12's overhead target: the continuous-batching step loop (running set + SDXL step model)
 * must not add more than 0.1 ms of JS per image-step outside ONNX Runtime over the request-level
 * loop. Both loops run on the tiny bundle's shapes with a stand-in UNet that answers at once
 * (bench/sdxl/denoise-probe.ts, bench/sdxl/step-loop-probe.ts), so only their own JS is timed:
 * batch 4 with guidance, 30 steps, at 1536x640 and at a small size where the loop's fixed costs
 * dominate. Continuous is measured with all four images joining at once and with them joining one
 * step apart (the feeds are rebuilt at each of the first four steps).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTinySdxlBundle } from '../services/models/tiny-sdxl.js';
import type { BenchResult, Check } from './lib/types.js';
import { probeDenoise } from './sdxl/denoise-probe.js';
import { probeStepLoop } from './sdxl/step-loop-probe.js';

const SIZES = [[1536, 640], [128, 64]] as const;
const BATCH = 4;
const TARGET_MS = 0.1;
/** Four decimals: the figures are fractions of the 0.1 ms target. */
const round4 = (x: number): number => Number(x.toFixed(4));

export async function run(): Promise<BenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-step-loop-'));
  try {
    await writeTinySdxlBundle(dir, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: false });
    const rows: Array<Array<string | number>> = [];
    const checks: Check[] = [];
    const data: Record<string, unknown> = {};
    for (const [width, height] of SIZES) {
      const [request] = await probeDenoise(dir, [{ label: 'request', dtype: 'float32', width, height, batch: BATCH, hiddenSize: 96, pooledSize: 48 }]);
      const continuous = await probeStepLoop(dir, [
        { label: 'all join at once', width, height, batch: BATCH, staggered: false },
        { label: 'one joins per step', width, height, batch: BATCH, staggered: true },
      ]);
      const requestMs = request!.msPerStep / BATCH;
      rows.push([`${width}x${height}`, 'request-level', round4(requestMs), '']);
      for (const c of continuous) {
        const extra = c.msPerImageStep - requestMs;
        rows.push([`${width}x${height}`, `continuous, ${c.label}`, round4(c.msPerImageStep), round4(extra)]);
        checks.push({ name: `JS added per image-step by the step loop, ${width}x${height}, ${c.label}`, measured: round4(extra), unit: 'ms', target: `≤ ${TARGET_MS} ms`, pass: extra <= TARGET_MS });
      }
      data[`${width}x${height}`] = { request, continuous };
    }
    return {
      name: 'step-loop',
      title: 'Continuous batching: JS time of the step loop per image-step (tiny SDXL bundle, stand-in UNet)',
      checks,
      tables: [{ title: `Median JS time per image-step, batch ${BATCH}, guidance 5, 30 steps`, columns: ['size', 'loop', 'ms per image-step', 'added vs request-level (ms)'], rows }],
      notes: ['ONNX Runtime is not timed: the UNet is a stand-in that returns a fresh output at once; joining (text encoding) and decoding are left out of the continuous figure.'],
      data,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
