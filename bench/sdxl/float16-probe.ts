/**
 * The float16 conversions the fp16 path pays at the ONNX Runtime boundary, timed for the current
 * implementation (services/stages/sdxl/float16.ts) and the proposed one (float16-fast.ts), on
 * data shaped like one denoising step's UNet input and output, with a bit-exactness check of the
 * proposal: every half → float, and float → half over every half's float, its neighbours, the
 * midpoints between halves ± 1 ulp, and 2^21 random bit patterns.
 */
import { float32ToHalf, halfToFloat32 } from '../../services/stages/sdxl/float16.js';
import { float32ToHalfFast, halfToFloat32Fast } from './float16-fast.js';

export interface Float16Probe {
  readonly values: number;
  /** ms per conversion of `values` values (median of 5). */
  readonly toHalfMs: number;
  readonly toHalfFastMs: number;
  readonly toFloatMs: number;
  readonly toFloatFastMs: number;
  readonly checkedHalves: number;
  readonly checkedFloats: number;
  readonly mismatches: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function time(fn: () => void): number {
  fn(); // warm-up (JIT, the table)
  const ms: number[] = [];
  for (let k = 0; k < 5; k++) {
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  return median(ms);
}

/** `values`: the number of floats converted per step each way (e.g. batch × 2 × 4 × h/8 × w/8). */
export function probeFloat16(values: number): Float16Probe {
  // Latent-like data: roughly N(0, σ) for a range of σ, as the UNet sees across a schedule.
  const x = new Float32Array(values);
  for (let i = 0; i < values; i++) x[i] = (Math.random() + Math.random() + Math.random() - 1.5) * 2 * (1 + (i % 14));
  const h = float32ToHalf(x);
  const out16 = new Uint16Array(values);
  const out32 = new Float32Array(values);
  const toHalfMs = time(() => float32ToHalf(x, out16));
  const toHalfFastMs = time(() => float32ToHalfFast(x, out16));
  const toFloatMs = time(() => halfToFloat32(h, out32));
  const toFloatFastMs = time(() => halfToFloat32Fast(h, out32));

  let mismatches = 0;
  const halves = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const a = halfToFloat32(halves);
  const b = halfToFloat32Fast(halves);
  for (let i = 0; i < 65536; i++) if (!Object.is(a[i], b[i])) mismatches++;
  const bits = new Uint32Array(65536 * 8 + 2 ** 21);
  const f = new Float32Array(1);
  const fb = new Uint32Array(f.buffer);
  let k = 0;
  for (let i = 0; i < 65536; i++) {
    f[0] = a[i]!;
    const v = fb[0]!;
    for (const d of [-2, -1, 0, 1, 2]) bits[k++] = (v + d) >>> 0;
    if ((i & 0x7fff) < 0x7bff) {
      f[0] = (a[i]! + a[i + 1]!) / 2;
      const m = fb[0]!;
      bits[k++] = m;
      bits[k++] = (m - 1) >>> 0;
      bits[k++] = (m + 1) >>> 0;
    } else k += 3;
  }
  for (; k < bits.length; k++) bits[k] = (Math.random() * 2 ** 32) >>> 0;
  const floats = new Float32Array(bits.buffer);
  const p = float32ToHalf(floats);
  const q = float32ToHalfFast(floats);
  for (let i = 0; i < p.length; i++) if (p[i] !== q[i]) mismatches++;
  return { values, toHalfMs, toHalfFastMs, toFloatMs, toFloatFastMs, checkedHalves: 65536, checkedFloats: floats.length, mismatches };
}
