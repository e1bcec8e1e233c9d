/**
 * A proposed faster float16 ⇄ float32 conversion for services/stages/sdxl/float16.ts, measured by
 * the sdxl benchmark against the current one and checked bit for bit against it:
 * - half → float: a 65,536-entry Float32Array table filled once from `fromHalf` (exact by
 *   construction);
 * - float → half: round to nearest even with integer arithmetic on the float's bits (F. Giesen's
 *   float_to_half_fast3_rtne); subnormal halves come from one float addition of a magic constant
 *   (exact in double, then rounded once by Math.fround).
 */
import { fromHalf } from '../../services/stages/sdxl/float16.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const DENORM_MAGIC_BITS = ((127 - 15) + (23 - 10) + 1) << 23;
f32[0] = 0;
u32[0] = DENORM_MAGIC_BITS;
const DENORM_MAGIC = f32[0];

let table: Float32Array | undefined;

export function halfToFloat32Fast(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = fromHalf(h);
  }
  const t = table;
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return out;
}

export function float32ToHalfFast(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  // Read the float bits through a Uint32Array view of the same memory.
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    let x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    x &= 0x7fffffff;
    let o: number;
    if (x >= 0x47800000) o = x > 0x7f800000 ? 0x7e00 : 0x7c00; // ≥ 65536 (or Inf) → Inf; NaN → quiet NaN
    else if (x < 0x38800000) { // below 2^-14: a subnormal half (or zero)
      u32[0] = x;
      f32[0] = Math.fround(f32[0]! + DENORM_MAGIC);
      o = (u32[0]! - DENORM_MAGIC_BITS) >>> 0;
    } else {
      const odd = (x >>> 13) & 1;
      o = (x - 0x38000000 + 0xfff + odd) >>> 13; // rebias the exponent (127 → 15), round half to even
    }
    out[i] = sign | o;
  }
  return out;
}

/**
 * Puts the proposed converters in place of float16.ts's in this process (tensors.ts calls them
 * through that module's exports), to project the change's effect; returns the undo.
 */
export function useFastFloat16(): () => void {
  const f16 = require('../../services/stages/sdxl/float16.js') as Record<string, unknown>;
  const saved = { float32ToHalf: f16.float32ToHalf, halfToFloat32: f16.halfToFloat32 };
  Object.assign(f16, { float32ToHalf: float32ToHalfFast, halfToFloat32: halfToFloat32Fast });
  return () => { Object.assign(f16, saved); };
}
