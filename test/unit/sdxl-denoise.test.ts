/**
 * The denoising loop's batching, with a stand-in UNet (a fixed per-row function of its feeds):
 * each item's result must not depend on the batch around it, on which items leave it, or on the
 * feed buffers being reused from step to step.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';

import { denoise, type DenoiseItem, type UnetInfo } from '../../services/stages/sdxl/denoise.js';
import { float32ToHalf, halfToFloat32 } from '../../services/models/onnx/float16.js';
import { halfBitsOf } from '../../services/models/onnx/float16-tensor.js';
import { gaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import { createScheduler, parseSchedulerConfig, type SchedulerKind } from '../../services/stages/sdxl/schedulers/index.js';
import type { Conditioning } from '../../services/stages/sdxl/text-conditioning.js';
import type { FloatType } from '../../services/stages/sdxl/tensors.js';

const SHAPE = { channels: 4, latentHeight: 6, latentWidth: 10, height: 48, width: 80 };
const N = 4 * 6 * 10;
const SEQ = 3;
const HIDDEN = 5;
const POOLED = 4;
const CONFIG = parseSchedulerConfig({
  _class_name: 'EulerDiscreteScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, timestep_spacing: 'leading',
});

/** Prompt p's conditioning row: distinct numbers per prompt and per side (negative or positive). */
function conditioning(side: number, prompts: number): Conditioning {
  return {
    embeds: Array.from({ length: prompts }, (_, p) => Float32Array.from({ length: SEQ * HIDDEN }, (_, j) => Math.sin(side * 7 + p * 3 + j))),
    pooled: Array.from({ length: prompts }, (_, p) => Float32Array.from({ length: POOLED }, (_, j) => Math.cos(side * 5 + p * 2 + j))),
    seqLen: SEQ, hiddenSize: HIDDEN, pooledSize: POOLED,
  };
}

/**
 * A UNet stand-in: each output row depends only on its own sample row, conditioning row and the
 * timestep. Records a copy of every sample feed (as float32) it was given. With `halfValues`
 * it rounds every feed and its output through float16, so a float32 model behaves exactly like
 * the float16 one.
 */
function standInUnet(dtype: FloatType, seen: Float32Array[][] = [], halfValues = false): UnetInfo {
  const viaHalf = (x: Float32Array) => (halfValues ? halfToFloat32(float32ToHalf(x)) : x);
  const asFloat = (t: ort.Tensor) => viaHalf(t.type === 'float16' ? halfToFloat32(halfBitsOf(t)) : Float32Array.from(t.data as Float32Array));
  const session = {
    async run(feeds: Record<string, ort.Tensor>) {
      const sample = asFloat(feeds.sample!);
      const ehs = asFloat(feeds.encoder_hidden_states!);
      const pooled = asFloat(feeds.text_embeds!);
      const t = asFloat(feeds.timestep!)[0]!;
      const rows = feeds.sample!.dims[0]!;
      seen.push(Array.from({ length: rows }, (_, r) => sample.slice(r * N, (r + 1) * N)));
      const out = new Float32Array(rows * N);
      for (let r = 0; r < rows; r++) {
        const c = ehs[r * SEQ * HIDDEN + 1]! + pooled[r * POOLED + 2]!;
        for (let j = 0; j < N; j++) out[r * N + j] = 0.3 * sample[r * N + j]! + 0.1 * Math.sin(c + j * 0.01 + t * 1e-3);
      }
      return { out_sample: dtype === 'float16' ? new ort.Tensor('float16', float32ToHalf(out), feeds.sample!.dims) : new ort.Tensor('float32', viaHalf(out), feeds.sample!.dims) };
    },
  } as unknown as ort.InferenceSession;
  return { session, dtype, timestep: { type: dtype, scalar: true } };
}

interface Request { readonly prompt: number; readonly seed: bigint; readonly guidance: number }

/** Runs the requests as one batch; `cancelAt` aborts item → after that many steps. Returns the latents. */
async function run(dtype: FloatType, requests: readonly Request[], opts: { kind?: SchedulerKind; cancelAt?: ReadonlyMap<number, number>; seen?: Float32Array[][]; halfValues?: boolean } = {}): Promise<Float32Array[]> {
  const positive = conditioning(1, 4);
  const negative = conditioning(2, 4);
  const pick = (c: Conditioning): Conditioning => ({ ...c, embeds: requests.map((r) => c.embeds[r.prompt]!), pooled: requests.map((r) => c.pooled[r.prompt]!) });
  const scheduler = createScheduler(CONFIG, { steps: 6, ...(opts.kind ? { kind: opts.kind } : {}) });
  const items: DenoiseItem[] = requests.map((r, i) => {
    const noise = gaussianSource(r.seed);
    const latents = new Float32Array(N);
    noise.fill(latents);
    const abort = new AbortController();
    return {
      latents, guidanceScale: r.guidance, noise, signal: abort.signal,
      onStep: (step) => { if (opts.cancelAt?.get(i) === step) abort.abort(); },
    };
  });
  await denoise(standInUnet(dtype, opts.seen, opts.halfValues), scheduler, SHAPE, items, pick(positive), pick(negative), new AbortController().signal);
  return items.map((it) => it.latents);
}

const REQUESTS: readonly Request[] = [
  { prompt: 0, seed: 11n, guidance: 5 },
  { prompt: 1, seed: 12n, guidance: 1 },
  { prompt: 2, seed: 13n, guidance: 7.5 },
  { prompt: 3, seed: 14n, guidance: 3 },
];

describe('denoise batching', () => {
  for (const dtype of ['float32', 'float16'] as const) {
    for (const kind of ['euler', 'euler_ancestral', 'ddim'] as const) {
      test(`gives each ${dtype} item of a mixed-guidance batch exactly its result alone (${kind})`, async () => {
        const batch = await run(dtype, REQUESTS, { kind });
        for (const [i, r] of REQUESTS.entries()) {
          // Alone with guidance 1 the batch has no unconditional rows; the item's own rows are the same.
          const [alone] = await run(dtype, [r], { kind });
          assert.deepEqual(batch[i], alone, `item ${i}`);
        }
      });
    }

    test(`keeps the remaining ${dtype} items exact when others leave the batch between steps`, async () => {
      const batch = await run(dtype, REQUESTS, { cancelAt: new Map([[1, 2], [2, 4]]) });
      for (const i of [0, 3]) assert.deepEqual(batch[i], (await run(dtype, [REQUESTS[i]!]))[0], `item ${i}`);
    });
  }

  test('reads an fp16 output\'s noise and guidance mix exactly as from the same values in float32', async () => {
    // The fp16 path reads the half bits through the table; the fp32 path mixes float32 values.
    assert.deepEqual(await run('float16', REQUESTS), await run('float32', REQUESTS, { halfValues: true }));
  });

  test('feeds the guided batch as [negatives…, positives…] with the same scaled latents in both halves', async () => {
    const seen: Float32Array[][] = [];
    await run('float32', REQUESTS.slice(0, 2), { seen });
    assert.equal(seen.length, 6);
    for (const rows of seen) {
      assert.equal(rows.length, 4);
      assert.deepEqual(rows[2], rows[0]);
      assert.deepEqual(rows[3], rows[1]);
      assert.notDeepEqual(rows[0], rows[1]);
    }
    // The buffers are reused from step to step: what the UNet saw earlier was its own copy.
    assert.notDeepEqual(seen[0]![0], seen[1]![0]);
  });
});
