/**
 * The planet detector's working image: a box-filtered, downscaled "value" grid (HSV value: the
 * largest of the cell's mean red, green and blue), and the sky statistics read from it. Pure.
 *
 * Value rather than luminance: a saturated deep-blue planet has a low luminance (~48 of 255)
 * but a high value (~160), so value catches both bright and saturated bodies in one measure.
 * The box filter (a cell's mean) also averages single-pixel stars down to faint specks.
 */

/** A raw image as sharp's `.raw()` gives it: rows top to bottom, `channels` bytes per pixel. */
export interface RawImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** 3 (RGB) or 4 (RGBA; alpha ignored); 1 (grey) and 2 (grey + alpha) also work. */
  readonly channels: number;
}

export interface ValueGrid {
  /** Grid size in cells. */
  readonly w: number;
  readonly h: number;
  /** Cell edge in full-resolution pixels (the last row/column of cells may be partial). */
  readonly cell: number;
  /** Row-major cell values, 0..255. */
  readonly v: Float32Array;
}

/** Grid cells across the image width: fine enough for a ~2%-area planet (~20 cells wide), cheap enough for a few ms. */
export const GRID_TARGET_WIDTH = 384;

/** The cell edge (pixels) for an image `width` pixels wide. */
export function cellSizeFor(width: number): number {
  return Math.max(1, Math.ceil(width / GRID_TARGET_WIDTH));
}

/** Downscales `img` into cells of `cell` x `cell` pixels, each holding max(mean R, mean G, mean B). */
export function valueGrid(img: RawImage, cell: number = cellSizeFor(img.width)): ValueGrid {
  const { data, width, height, channels } = img;
  if (data.length < width * height * channels) throw new RangeError(`image buffer holds ${data.length} bytes, expected ${width * height * channels}`);
  const w = Math.ceil(width / cell);
  const h = Math.ceil(height / cell);
  const v = new Float32Array(w * h);
  const colour = channels >= 3 ? 3 : 1;
  const sums = new Float64Array(w * colour);
  for (let gy = 0; gy < h; gy++) {
    sums.fill(0);
    const y0 = gy * cell;
    const y1 = Math.min(height, y0 + cell);
    for (let y = y0; y < y1; y++) {
      let p = y * width * channels;
      for (let gx = 0; gx < w; gx++) {
        const x1 = Math.min(width, (gx + 1) * cell);
        const n = x1 - gx * cell;
        if (colour === 3) {
          let r = 0;
          let g = 0;
          let b = 0;
          for (let i = 0; i < n; i++, p += channels) {
            r += data[p]!;
            g += data[p + 1]!;
            b += data[p + 2]!;
          }
          const s = gx * 3;
          sums[s]! += r;
          sums[s + 1]! += g;
          sums[s + 2]! += b;
        } else {
          let r = 0;
          for (let i = 0; i < n; i++, p += channels) r += data[p]!;
          sums[gx]! += r;
        }
      }
    }
    for (let gx = 0; gx < w; gx++) {
      const count = (Math.min(width, (gx + 1) * cell) - gx * cell) * (y1 - y0);
      const s = gx * colour;
      const m = colour === 3 ? Math.max(sums[s]!, sums[s + 1]!, sums[s + 2]!) : sums[s]!;
      v[gy * w + gx] = m / count;
    }
  }
  return { w, h, cell, v };
}

/** The sky's level and spread on a value grid. */
export interface SkyStats {
  /** Typical sky value (the grid's 20th percentile). */
  readonly level: number;
  /** Cell-to-cell noise, as a Gaussian sigma (from horizontal neighbour differences). */
  readonly sigma: number;
}

/** The q-quantile of `n` values histogrammed into `hist` with `perUnit` bins per unit. */
function histQuantile(hist: Uint32Array, n: number, q: number, perUnit: number): number {
  const target = q * n;
  let acc = 0;
  for (let b = 0; b < hist.length; b++) {
    acc += hist[b]!;
    if (acc >= target) return (b + 0.5) / perUnit;
  }
  return hist.length / perUnit;
}

/**
 * Sky statistics. Level: the darkest fifth of the cells is sky unless a body covers more than
 * ~80% of the frame (such an image fails max_area whatever is found). Noise: the median absolute
 * difference of horizontally adjacent cells — smooth haze gradients, large bodies and dark
 * planet silhouettes barely move it, unlike percentile spreads.
 */
export function skyStats(grid: ValueGrid): SkyStats {
  const { v, w } = grid;
  const levels = new Uint32Array(1024); // quarter-level bins: percentiles without sorting
  for (let i = 0; i < v.length; i++) levels[Math.min(1023, (v[i]! * 4) | 0)]!++;
  const diffs = new Uint32Array(1024); // 1/32-level bins up to 32
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    if ((i + 1) % w === 0) continue;
    diffs[Math.min(1023, (Math.abs(v[i + 1]! - v[i]!) * 32) | 0)]!++;
    n++;
  }
  // For Gaussian noise, median |a − b| = 0.954 sigma (a − b has sigma √2, median |x| = 0.674 of that).
  const sigma = histQuantile(diffs, n, 0.5, 32) / 0.954;
  return { level: histQuantile(levels, v.length, 0.2, 4), sigma: Math.max(0.25, sigma) };
}
