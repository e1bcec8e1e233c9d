/**
 * The denoising loop's own JS cost per step, without ONNX Runtime's time and the noise of other
 * load on the cores ONNX Runtime uses: services/stages/sdxl/denoise.ts driven with a stand-in
 * UNet session whose run() answers at once with a freshly allocated output of the right shape
 * (as ONNX Runtime allocates one per run). What remains is exactly the production code's work
 * per step: scaling the latents, stacking the batch feeds, float16 conversion for fp16 exports,
 * the guidance mix, the scheduler step — and the garbage collection they cause.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { denoise, type DenoiseItem } from '../../services/stages/sdxl/denoise.js';
import { gaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import { createScheduler, parseSchedulerConfig } from '../../services/stages/sdxl/schedulers/index.js';
import type { Conditioning } from '../../services/stages/sdxl/text-conditioning.js';
import type { FloatType } from '../../services/stages/sdxl/tensors.js';

export interface DenoiseProbeCase {
  readonly label: string;
  readonly dtype: FloatType;
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  /** Text-encoder widths: the tiny bundle's 32 + 64 (pooled 48), SDXL's 768 + 1280 (pooled 1280). */
  readonly hiddenSize: number;
  readonly pooledSize: number;
}

export interface DenoiseProbeResult extends DenoiseProbeCase {
  readonly steps: number;
  /** Median over repetitions of the whole loop ÷ steps. */
  readonly msPerStep: number;
}

function conditioning(batch: number, hiddenSize: number, pooledSize: number): Conditioning {
  const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));
  return {
    embeds: Array.from({ length: batch }, (_, i) => fill(77 * hiddenSize, i)),
    pooled: Array.from({ length: batch }, (_, i) => fill(pooledSize, i)),
    seqLen: 77, hiddenSize, pooledSize,
  };
}

export async function probeDenoise(bundleDir: string, cases: readonly DenoiseProbeCase[], steps = 30, reps = 5): Promise<DenoiseProbeResult[]> {
  const config = parseSchedulerConfig(JSON.parse(fs.readFileSync(path.join(bundleDir, 'scheduler', 'scheduler_config.json'), 'utf8')));
  const results: DenoiseProbeResult[] = [];
  for (const c of cases) {
    const shape = { channels: 4, latentHeight: c.height / 8, latentWidth: c.width / 8, height: c.height, width: c.width };
    const n = 4 * shape.latentHeight * shape.latentWidth;
    const positive = conditioning(c.batch, c.hiddenSize, c.pooledSize);
    const negative = conditioning(c.batch, c.hiddenSize, c.pooledSize);
    const session = {
      async run(feeds: Record<string, ort.Tensor>) {
        const dims = feeds.sample!.dims;
        const size = dims.reduce((a, b) => a * b, 1);
        const data = c.dtype === 'float16' ? new Uint16Array(size).fill(0x3c00) : new Float32Array(size).fill(0.5);
        return { out_sample: new ort.Tensor(c.dtype, data, dims) };
      },
    } as unknown as ort.InferenceSession;
    const unet = { session, dtype: c.dtype, timestep: { type: c.dtype, scalar: true } as const };
    const times: number[] = [];
    for (let rep = -1; rep < reps; rep++) { // rep −1 warms the JIT up
      const scheduler = createScheduler(config, { steps });
      const items: DenoiseItem[] = Array.from({ length: c.batch }, (_, i) => {
        const noise = gaussianSource(BigInt(i + 1));
        const latents = new Float32Array(n);
        noise.fill(latents);
        return { latents, guidanceScale: 5, noise, signal: new AbortController().signal, onStep: () => undefined };
      });
      const t = performance.now();
      await denoise(unet, scheduler, shape, items, positive, negative, new AbortController().signal);
      if (rep >= 0) times.push((performance.now() - t) / steps);
    }
    times.sort((a, b) => a - b);
    results.push({ ...c, steps, msPerStep: times[times.length >> 1]! });
  }
  return results;
}
