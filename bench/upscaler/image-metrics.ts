/**
 * Image quality metrics as the super-resolution literature computes them: PSNR over RGB and SSIM
 * (Wang et al. 2004: 11x11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255) over BT.601
 * luma, both with `shave` pixels cut from every border (the scale factor, by convention).
 */

/** Interleaved 8-bit RGB. */
export interface Rgb { readonly data: Uint8Array; readonly width: number; readonly height: number }

function checkSame(a: Rgb, b: Rgb): void {
  if (a.width !== b.width || a.height !== b.height) throw new RangeError(`size mismatch: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
}

/** PSNR in dB over all RGB values inside the shaved border (Infinity if identical). */
export function psnr(a: Rgb, b: Rgb, shave: number): number {
  checkSame(a, b);
  let se = 0;
  let n = 0;
  for (let y = shave; y < a.height - shave; y++) {
    for (let x = shave; x < a.width - shave; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * a.width + x) * 3 + c;
        const d = a.data[i]! - b.data[i]!;
        se += d * d;
        n++;
      }
    }
  }
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / n));
}

/** BT.601 luma (the "Y" of YCbCr), full range, of the shaved image. */
function luma(img: Rgb, shave: number): { y: Float64Array; width: number; height: number } {
  const width = img.width - 2 * shave;
  const height = img.height - 2 * shave;
  const y = new Float64Array(width * height);
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      const i = ((r + shave) * img.width + c + shave) * 3;
      y[r * width + c] = 0.299 * img.data[i]! + 0.587 * img.data[i + 1]! + 0.114 * img.data[i + 2]!;
    }
  }
  return { y, width, height };
}

const WINDOW = (() => {
  const k = new Float64Array(11);
  let sum = 0;
  for (let i = 0; i < 11; i++) sum += (k[i] = Math.exp(-((i - 5) ** 2) / (2 * 1.5 * 1.5)));
  return k.map((v) => v / sum);
})();

/** Separable Gaussian filter, 'valid' region only: (w−10) × (h−10). */
function filter(src: Float64Array, width: number, height: number): Float64Array {
  const ow = width - 10;
  const oh = height - 10;
  const tmp = new Float64Array(ow * height);
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < ow; c++) {
      let s = 0;
      for (let k = 0; k < 11; k++) s += WINDOW[k]! * src[r * width + c + k]!;
      tmp[r * ow + c] = s;
    }
  }
  const out = new Float64Array(ow * oh);
  for (let r = 0; r < oh; r++) {
    for (let c = 0; c < ow; c++) {
      let s = 0;
      for (let k = 0; k < 11; k++) s += WINDOW[k]! * tmp[(r + k) * ow + c]!;
      out[r * ow + c] = s;
    }
  }
  return out;
}

/** Mean SSIM of the luma of `a` and `b` inside the shaved border. */
export function ssim(a: Rgb, b: Rgb, shave: number): number {
  checkSame(a, b);
  const { y: x, width, height } = luma(a, shave);
  const { y } = luma(b, shave);
  if (width < 11 || height < 11) throw new RangeError('SSIM needs at least 11x11 pixels after shaving');
  const prod = (p: Float64Array, q: Float64Array) => p.map((v, i) => v * q[i]!);
  const mx = filter(x, width, height);
  const my = filter(y, width, height);
  const sxx = filter(prod(x, x), width, height);
  const syy = filter(prod(y, y), width, height);
  const sxy = filter(prod(x, y), width, height);
  const c1 = (0.01 * 255) ** 2;
  const c2 = (0.03 * 255) ** 2;
  let total = 0;
  for (let i = 0; i < mx.length; i++) {
    const ux = mx[i]!, uy = my[i]!;
    const vx = sxx[i]! - ux * ux;
    const vy = syy[i]! - uy * uy;
    const cxy = sxy[i]! - ux * uy;
    total += ((2 * ux * uy + c1) * (2 * cxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2));
  }
  return total / mx.length;
}
