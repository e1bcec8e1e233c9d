/** The VAE decode's conversion to 8-bit RGB, with a stand-in decoder that answers fixed pixels. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';

import { float32ToHalf, halfToFloat32 } from '../../services/models/onnx/float16.js';
import type { FloatType } from '../../services/stages/sdxl/tensors.js';
import { decodeLatents } from '../../services/stages/sdxl/vae.js';

const W = 16;
const H = 8;

/** A decoder whose output is `pixels` ([B, 3, H, W] as float32 values) in the given dtype. */
function standInDecoder(dtype: FloatType, pixels: Float32Array, batch: number): ort.InferenceSession {
  const dims = [batch, 3, H, W];
  return {
    async run() {
      return { sample: dtype === 'float16' ? new ort.Tensor('float16', float32ToHalf(pixels), dims) : new ort.Tensor('float32', pixels, dims) };
    },
  } as unknown as ort.InferenceSession;
}

async function decode(dtype: FloatType, pixels: Float32Array, batch: number): Promise<Uint8Array[]> {
  const latents = Array.from({ length: batch }, () => new Float32Array(4 * (H / 8) * (W / 8)));
  return decodeLatents({ decoder: standInDecoder(dtype, pixels, batch), dtype, scalingFactor: 0.13025, encoderOutput: 'latent_parameters' }, latents, 4, H / 8, W / 8);
}

/** The rounding the stage promises: round(clamp(x/2 + 0.5, 0, 1) · 255), NaN → 0. */
const expectedByte = (x: number) => (Number.isNaN(x) ? 0 : Math.round(Math.min(Math.max(x / 2 + 0.5, 0), 1) * 255));

describe('decodeLatents', () => {
  const batch = 3;
  const n = batch * 3 * H * W;
  // Values across and beyond [−1, 1], the exact byte midpoints, ±0, ±Inf and NaN.
  const special = [-2, -1, -0, 0, 1, 2, Infinity, -Infinity, NaN, 1 / 255, -1 / 255, 0.5 / 127.5 - 1, 1.5 / 127.5 - 1];
  const pixels = Float32Array.from({ length: n }, (_, i) => (i < special.length ? special[i]! : Math.sin(i * 0.37) * 1.3));

  test('writes interleaved RGB rows, item by item, with the promised rounding (fp32)', async () => {
    const images = await decode('float32', pixels, batch);
    const plane = H * W;
    for (let b = 0; b < batch; b++) {
      assert.equal(images[b]!.length, plane * 3);
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) assert.equal(images[b]![p * 3 + c], expectedByte(pixels[(b * 3 + c) * plane + p]!), `item ${b} pixel ${p} channel ${c}`);
      }
    }
  });

  test('gives an fp16 decoder\'s output the bytes of the same values in float32', async () => {
    const asHalfValues = halfToFloat32(float32ToHalf(pixels));
    assert.deepEqual(await decode('float16', pixels, batch), await decode('float32', asHalfValues, batch));
  });
});
