/**
 * The float16 conversions the fp16 path pays at the ONNX Runtime boundary
 * (services/models/onnx/float16.ts), timed on data shaped like one denoising step's UNet input
 * and output. Their bit-exactness against the per-value formulas they replaced is a unit test
 * (test/unit/sdxl-float16.test.ts).
 */
import { float32ToHalf, halfToFloat32 } from '../../services/models/onnx/float16.js';

export interface Float16Probe {
  readonly values: number;
  /** ms per conversion of `values` values (median of 5). */
  readonly toHalfMs: number;
  readonly toFloatMs: number;
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
  return { values, toHalfMs: time(() => float32ToHalf(x, out16)), toFloatMs: time(() => halfToFloat32(h, out32)) };
}
