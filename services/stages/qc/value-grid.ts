/**
 * The planet detector's working image: a box-filtered, downscaled grid of cell means (red, green,
 * blue) and "value" (HSV value: the largest of the three). Pure.
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
  /** Row-major cell means of red, green and blue (grey images: all three hold the grey mean). */
  readonly r: Float32Array;
  readonly g: Float32Array;
  readonly b: Float32Array;
}

/** Grid cells across the image width: fine enough for a ~2%-area planet (~20 cells wide), cheap enough for a few ms. */
export const GRID_TARGET_WIDTH = 384;

/** The cell edge (pixels) for an image `width` pixels wide. */
export function cellSizeFor(width: number): number {
  return Math.max(1, Math.ceil(width / GRID_TARGET_WIDTH));
}

/** Downscales `img` into cells of `cell` x `cell` pixels in one pass: each cell's mean R, G, B and their max. */
export function valueGrid(img: RawImage, cell: number = cellSizeFor(img.width)): ValueGrid {
  const { data, width, height, channels } = img;
  if (data.length < width * height * channels) throw new RangeError(`image buffer holds ${data.length} bytes, expected ${width * height * channels}`);
  const w = Math.ceil(width / cell);
  const h = Math.ceil(height / cell);
  const v = new Float32Array(w * h);
  const rr = new Float32Array(w * h);
  const gg = new Float32Array(w * h);
  const bb = new Float32Array(w * h);
  const colour = channels >= 3 ? 3 : 1;
  const sums = new Uint32Array(w * colour); // 255 × cell² per cell fits easily
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
      const i = gy * w + gx;
      const r = sums[s]! / count;
      const g = colour === 3 ? sums[s + 1]! / count : r;
      const b = colour === 3 ? sums[s + 2]! / count : r;
      rr[i] = r;
      gg[i] = g;
      bb[i] = b;
      v[i] = Math.max(r, g, b);
    }
  }
  return { w, h, cell, v, r: rr, g: gg, b: bb };
}
