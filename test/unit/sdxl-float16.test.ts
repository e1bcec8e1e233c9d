import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { halfToFloat32, float32ToHalf, fromHalf, halfBits } from '../../services/models/onnx/float16.js';

/**
 * The per-value formulas the table and the bit arithmetic replaced, kept here as the reference
 * they must match bit for bit.
 */
const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
function referenceHalfBits(value: number): number {
  scratch[0] = value;
  const x = scratchBits[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}
/** A half's value as an integer significand times a power of two (not the codec's formula). */
function referenceFromHalf(h: number): number {
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  const magnitude = exp === 0x1f ? (mant ? NaN : Infinity) : (exp === 0 ? mant : 0x400 | mant) * 2 ** (Math.max(exp, 1) - 25);
  return h & 0x8000 ? -magnitude : magnitude;
}

/** Round to the nearest half by value, ties to even, in double arithmetic (an independent oracle). */
function nearestHalfValue(v: number): number {
  if (Number.isNaN(v)) return NaN;
  const a = Math.abs(v);
  if (a >= 65520) return Math.sign(v) * Infinity;
  const step = a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
  const q = a / step;
  let r = Math.round(q);
  if (r - q === 0.5 && r % 2 !== 0) r--;
  return Math.sign(v) * r * step || (Object.is(v, -0) || v < 0 ? -0 : 0);
}

const asFloats = (bits: Uint32Array) => new Float32Array(bits.buffer, bits.byteOffset, bits.length);

/** Floats around every half: the half's own float ± 2 ulp, and each midpoint between halves ± 1 ulp. */
function floatsAroundHalves(): Float32Array {
  const values = halfToFloat32(Uint16Array.from({ length: 65536 }, (_, h) => h));
  const f = new Float32Array(1);
  const fb = new Uint32Array(f.buffer);
  const bits: number[] = [];
  for (let h = 0; h < 65536; h++) {
    if (Number.isNaN(values[h]!)) continue;
    f[0] = values[h]!;
    const v = fb[0]!;
    for (const d of [-2, -1, 0, 1, 2]) bits.push((v + d) >>> 0);
    if ((h & 0x7fff) < 0x7bff) { // the midpoint to the next half of larger magnitude
      f[0] = (values[h]! + values[h + 1]!) / 2;
      const m = fb[0]!;
      bits.push(m, (m - 1) >>> 0, (m + 1) >>> 0);
    }
  }
  return asFloats(Uint32Array.from(bits));
}

describe('float16 codec', () => {
  test('gives the reference formula\'s float for every one of the 65,536 halves', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, h) => h);
    const out = halfToFloat32(all);
    for (let h = 0; h < 65536; h++) {
      assert.ok(Object.is(out[h], Math.fround(referenceFromHalf(h))), `half 0x${h.toString(16)}`);
      assert.ok(Object.is(fromHalf(h), out[h]), `fromHalf 0x${h.toString(16)}`);
    }
  });

  test('decodes zeros, subnormals, the largest half, infinities and NaN', () => {
    const out = halfToFloat32(Uint16Array.of(0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01));
    assert.ok(Object.is(out[0], 0) && Object.is(out[1], -0));
    assert.deepEqual([...out.subarray(2, 9)], [2 ** -24, 1023 * 2 ** -24, 2 ** -14, 1, 65504, Infinity, -Infinity]);
    assert.ok(out.subarray(9).every(Number.isNaN));
  });

  test('encodes ±0, subnormals, ties to even, overflow, ±Inf and NaN as numpy does', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000], [-0, 0x8000], [1e-8, 0x0000], [-1e-8, 0x8000],
      [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [-(3 * 2 ** -25), 0x8002], // subnormal ties go to even
      [2 ** -14 - 2 ** -25, 0x0400], // the largest subnormal's upper tie rounds up into the normals
      [1, 0x3c00], [-2, 0xc000], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], // normal ties go to even
      [65504, 0x7bff], [65519.996, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-1e6, 0xfc00],
      [Infinity, 0x7c00], [-Infinity, 0xfc00], [NaN, 0x7e00],
    ];
    for (const [v, bits] of cases) {
      assert.equal(halfBits(v), bits, `halfBits(${v})`);
      assert.equal(float32ToHalf(Float32Array.of(v))[0], bits, `float32ToHalf(${v})`);
    }
    const negNaN = asFloats(Uint32Array.of(0xffc00000, 0x7f800001, 0xff800001));
    assert.deepEqual([...float32ToHalf(negNaN)], [0xfe00, 0x7e00, 0xfe00]);
  });

  test('encodes every float around every half, and a sweep of all float32 bit patterns, as the reference does', () => {
    const step = 4099; // ~1 M patterns spread over the whole 32-bit range (the exhaustive check ran once, offline)
    const sweep = asFloats(Uint32Array.from({ length: Math.ceil(2 ** 32 / step) }, (_, i) => i * step));
    for (const floats of [floatsAroundHalves(), sweep]) {
      const got = float32ToHalf(floats);
      for (let i = 0; i < floats.length; i++) {
        if (got[i] !== referenceHalfBits(floats[i]!)) assert.fail(`float ${floats[i]} (bits 0x${new Uint32Array(floats.buffer)[i]!.toString(16)}): 0x${got[i]!.toString(16)} vs 0x${referenceHalfBits(floats[i]!).toString(16)}`);
      }
    }
  });

  test('rounds every float around every half to the nearest half by value, ties to even', () => {
    const floats = floatsAroundHalves();
    const halves = float32ToHalf(floats);
    for (let i = 0; i < floats.length; i++) {
      const v = floats[i]!;
      if (!Object.is(fromHalf(halves[i]!), nearestHalfValue(v))) assert.fail(`float ${v}: half value ${fromHalf(halves[i]!)}, nearest ${nearestHalfValue(v)}`);
    }
  });

  test('round-trips every non-NaN half exactly, and writes into a caller\'s buffer', () => {
    const halves = Uint16Array.from({ length: 65536 }, (_, h) => h).filter((h) => (h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0);
    const floats = new Float32Array(halves.length);
    const back = new Uint16Array(halves.length);
    assert.equal(halfToFloat32(halves, floats), floats);
    assert.equal(float32ToHalf(floats, back), back);
    assert.deepEqual(back, halves);
    // A view at an offset converts its own elements.
    const wide = Float32Array.of(9, 1, -2, 9);
    assert.deepEqual([...float32ToHalf(wide.subarray(1, 3))], [0x3c00, 0xc000]);
  });
});
