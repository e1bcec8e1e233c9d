/**
 * Reference interpolation baselines for the quality benchmark: separable, pixel-centre aligned
 * upsampling by an integer factor (output pixel u samples input position (u + ½)/s − ½), edges
 * replicated. sharp's own enlargement samples (u/s − ½) instead — a half output pixel off — which
 * costs it ~2 dB of PSNR at 2x on its own; these baselines do not have that handicap.
 */
import type { Rgb } from './image-metrics.js';

type Kernel = (t: number) => number;

/** Keys' cubic convolution with a = −0.5 (Catmull-Rom; MATLAB's and PIL's "bicubic"). */
export const bicubic: Kernel = (t) => {
  const x = Math.abs(t);
  if (x < 1) return 1.5 * x ** 3 - 2.5 * x ** 2 + 1;
  if (x < 2) return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2;
  return 0;
};

/** Lanczos with a = 3. */
export const lanczos3: Kernel = (t) => (t === 0 ? 1 : Math.abs(t) >= 3 ? 0 : (3 * Math.sin(Math.PI * t) * Math.sin((Math.PI * t) / 3)) / (Math.PI * Math.PI * t * t));

/** For each output index: 6 source indices (enough for both kernels) and normalised weights. */
function taps(n: number, scale: number, kernel: Kernel): Array<{ idx: number[]; w: number[] }> {
  return Array.from({ length: n * scale }, (_, u) => {
    const x = (u + 0.5) / scale - 0.5;
    const first = Math.floor(x) - 2;
    const idx = Array.from({ length: 6 }, (_, k) => Math.min(n - 1, Math.max(0, first + k)));
    const w = Array.from({ length: 6 }, (_, k) => kernel(x - (first + k)));
    const sum = w.reduce((a, b) => a + b, 0);
    return { idx, w: w.map((v) => v / sum) };
  });
}

/** Upsamples `img` by the integer `scale` with `kernel`, rounding and clamping to 8 bits. */
export function upsample(img: Rgb, scale: number, kernel: Kernel): Rgb {
  const tx = taps(img.width, scale, kernel);
  const ty = taps(img.height, scale, kernel);
  const W = img.width * scale;
  const H = img.height * scale;
  const rows = new Float64Array(img.height * W * 3);
  for (let y = 0; y < img.height; y++) {
    tx.forEach((t, u) => {
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let k = 0; k < 6; k++) v += t.w[k]! * img.data[(y * img.width + t.idx[k]!) * 3 + c]!;
        rows[(y * W + u) * 3 + c] = v;
      }
    });
  }
  const out = new Uint8ClampedArray(W * H * 3);
  ty.forEach((t, v) => {
    for (let i = 0; i < W * 3; i++) {
      let acc = 0;
      for (let k = 0; k < 6; k++) acc += t.w[k]! * rows[t.idx[k]! * W * 3 + i]!;
      out[v * W * 3 + i] = acc;
    }
  });
  return { data: new Uint8Array(out.buffer), width: W, height: H };
}

/** Downsampling by an integer factor: the mean of each scale × scale block, or its top-left pixel. */
export function downsample(img: Rgb, scale: number, mode: 'box' | 'subsample'): Rgb {
  const width = Math.floor(img.width / scale);
  const height = Math.floor(img.height / scale);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        const n = mode === 'box' ? scale : 1;
        for (let dy = 0; dy < n; dy++) for (let dx = 0; dx < n; dx++) s += img.data[((y * scale + dy) * img.width + x * scale + dx) * 3 + c]!;
        data[(y * width + x) * 3 + c] = Math.round(s / (n * n));
      }
    }
  }
  return { data, width, height };
}
