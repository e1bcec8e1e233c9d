/**
 * Moving float data in and out of ONNX Runtime in the bundle's dtype: fp32 exports take
 * Float32Array, fp16 exports raw half bits (float16-tensor.ts makes and reads those tensors on
 * every runtime). The pipeline computes in float32 and converts at the session boundary only.
 */
import * as ort from 'onnxruntime-node';
import { float32ToHalf, halfToFloat32 } from '../../models/onnx/float16.js';
import { halfBitsOf, halfTensor } from '../../models/onnx/float16-tensor.js';

export type FloatType = 'float32' | 'float16';

/** A float tensor in the session's dtype from float32 data. */
export function floatTensor(type: FloatType, data: Float32Array, dims: readonly number[]): ort.Tensor {
  return type === 'float16' ? halfTensor(float32ToHalf(data), dims) : new ort.Tensor('float32', data, dims);
}

/** A session output as float32 (converting fp16; fp32 data is returned without a copy). */
export function toFloat32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return halfToFloat32(halfBitsOf(t));
  throw new Error(`expected a float tensor, got ${t.type}`);
}

/** Concatenates per-item arrays of equal length into one batch array. */
export function stack(parts: readonly Float32Array[]): Float32Array {
  const n = parts[0]?.length ?? 0;
  const out = new Float32Array(n * parts.length);
  parts.forEach((p, i) => out.set(p, i * n));
  return out;
}

/** Item `i` of a batch array with `n` elements per item (a view, no copy). */
export function item(batch: Float32Array, i: number, n: number): Float32Array {
  return batch.subarray(i * n, (i + 1) * n);
}
