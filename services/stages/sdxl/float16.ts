/**
 * IEEE 754 half precision ⇄ float32, for fp16 exports: onnxruntime-node takes and gives float16
 * tensors as Uint16Array of raw half bits (Node 20 has no Float16Array). Round to nearest even.
 */
import { halfBits } from '../../models/onnx/float16.js';

/** float32 → half bits, round to nearest even (the converter the model tools also use). */
export const toHalf = halfBits;

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function float32ToHalf(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) out[i] = toHalf(src[i]!);
  return out;
}

export function halfToFloat32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = fromHalf(src[i]!);
  return out;
}
