/**
 * float32 → IEEE 754 half-precision bits, for writing FLOAT16 tensors (ONNX stores them as raw
 * little-endian half bits; Node 20 has no Float16Array). Round to nearest even, like numpy's
 * `astype(float16)` that Optimum's `--fp16` export goes through.
 *
 * The one implementation is the SDXL stage's codec (services/stages/sdxl/float16.ts), which
 * converts every tensor at an fp16 export's session boundary: the model tools write initializers
 * with the same bits the stage feeds at run time.
 */
import { float32ToHalf, fromHalf, halfBits, halfToFloat32 } from '../../stages/sdxl/float16.js';

/**
 * halfBits: the half-precision bits of a value (overflow → ±Inf, NaN stays NaN); fromHalf and
 * halfToFloat32: half bits → values (exact: every half is a float32).
 */
export { fromHalf, halfBits, halfToFloat32 };

/** Half-precision bits of every element (a new array). */
export function toFloat16Bits(data: Float32Array): Uint16Array {
  return float32ToHalf(data);
}
