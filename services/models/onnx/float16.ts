/**
 * IEEE 754 half precision ⇄ float32, the project's one float16 codec: the SDXL stage converts
 * every feed and output of an fp16 export with it, and the model tools write FLOAT16 initializers
 * and safetensors F16 data with it, so both sides produce the same bits. It sits in the models layer
 * because the model tools need it and must not import stages; stages import it from here. Raw half
 * bits are always a Uint16Array here; float16-tensor.ts is where they meet ONNX Runtime's tensors.
 *
 * float → half rounds to nearest even, like numpy's `astype(float16)` that Optimum's `--fp16`
 * export goes through: overflow → ±Inf, NaN → the quiet NaN 0x7e00 with its sign.
 *
 * Both directions run once per value per session boundary (at batch 4, 1536x640 that is ~1 M values
 * per denoising step), so they avoid per-value floating-point math: half → float is a lookup in a
 * 65,536-entry table, float → half integer arithmetic on the float's bits (F. Giesen's
 * float_to_half_fast3_rtne). Both give the same bits as the per-value formulas they replaced,
 * checked over every half and every float32 bit pattern (test/unit/sdxl-float16.test.ts keeps
 * a sample of that check); bench/results/sdxl.md has the timings.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** 0.5: adding it to a float below 2^-14 rounds that float to a multiple of 2^-24, the subnormal half's step. */
const DENORM_MAGIC_BITS = ((127 - 15) + (23 - 10) + 1) << 23;
const DENORM_MAGIC = 0.5;

/** The half bits of the float32 whose bits are `x` (an unsigned 32-bit integer). */
function halfOfFloatBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const a = x & 0x7fffffff;
  // ≥ 65536 or Inf → Inf; NaN → quiet NaN. (65520 … 65536 reach Inf by rounding below.)
  if (a >= 0x47800000) return sign | (a > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (a < 0x38800000) {
    // Below 2^-14: a subnormal half (or zero). The store into the float32 rounds x + 0.5 to a
    // multiple of 2^-24, to nearest even; the sum's own rounding in double (only for x < 2^-29)
    // is too fine to change that (checked over every float32).
    u32[0] = a;
    f32[0] = f32[0]! + DENORM_MAGIC;
    return sign | (u32[0] - DENORM_MAGIC_BITS);
  }
  // Rebias the exponent (127 → 15) and round half to even; a carry out of the mantissa bumps the
  // exponent, which is still the right rounding (up to Inf).
  return sign | ((a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13);
}

/** The half-precision bits of `value` (rounded to float32 first, as a Float32Array store does). */
export function halfBits(value: number): number {
  f32[0] = value;
  return halfOfFloatBits(u32[0]!);
}

/** float32 → half bits, element by element, into `out` (default: a new array). */
export function float32ToHalf(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  // The floats' bits through a view of the same memory (a Float32Array is always 4-byte aligned).
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfOfFloatBits(bits[i]!);
  return out;
}

/** The value of half bits `h`, computed (exact: every half is a float32). Builds the table. */
function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let table: Float32Array | undefined;

/** Every half's float32 value, indexed by its bits (256 KiB, built on first use; do not write). */
export function halfValues(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfValue(h);
  }
  return table;
}

/** The value of half bits `h` (0 … 65535). */
export function fromHalf(h: number): number {
  return halfValues()[h & 0xffff]!;
}

/** half bits → float32, element by element, into `out` (default: a new array). */
export function halfToFloat32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = halfValues();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return out;
}
