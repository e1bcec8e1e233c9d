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

/** The grid's size in cells for an image of `width` x `height` pixels and cells of `cell` pixels. */
export function gridSize(width: number, height: number, cell: number): { w: number; h: number } {
  return { w: Math.ceil(width / cell), h: Math.ceil(height / cell) };
}

/** Per-cell planes to fill: each w·h long or longer (w, h from gridSize; the grid uses the first w·h). */
export interface GridPlanes {
  readonly r: Float32Array;
  readonly g: Float32Array;
  readonly b: Float32Array;
  readonly v: Float32Array;
}

/**
 * Downscales `img` into cells of `cell` x `cell` pixels in one pass: each cell's mean R, G, B and
 * their max. Writes into `into` when given (the detector reuses its planes across images).
 */
export function valueGrid(img: RawImage, cell: number = cellSizeFor(img.width), into?: GridPlanes): ValueGrid {
  const { data, width, height, channels } = img;
  if (data.length < width * height * channels) throw new RangeError(`image buffer holds ${data.length} bytes, expected ${width * height * channels}`);
  const { w, h } = gridSize(width, height, cell);
  const n = w * h;
  const planes = into ?? { r: new Float32Array(n), g: new Float32Array(n), b: new Float32Array(n), v: new Float32Array(n) };
  const { r: rr, g: gg, b: bb, v } = planes;
  if (Math.min(rr.length, gg.length, bb.length, v.length) < n) throw new RangeError(`grid planes hold fewer than ${n} cells`);
  const colour = channels >= 3;
  // Per grid row: the sums of each cell's red, green and blue over its pixel rows (255 × cell² fits).
  const sums = new Uint32Array(w * 3);
  const rowBytes = width * channels;
  for (let gy = 0; gy < h; gy++) {
    sums.fill(0);
    const y0 = gy * cell;
    const y1 = Math.min(height, y0 + cell);
    for (let y = y0; y < y1; y++) {
      let p = y * rowBytes;
      let x = 0;
      for (let s = 0; s < w * 3; s += 3) {
        const x1 = Math.min(width, x + cell);
        let r = 0;
        let g = 0;
        let b = 0;
        if (colour) {
          for (; x < x1; x++, p += channels) {
            r += data[p]!;
            g += data[p + 1]!;
            b += data[p + 2]!;
          }
        } else {
          for (; x < x1; x++, p += channels) r += data[p]!;
          g = r;
          b = r;
        }
        sums[s]! += r;
        sums[s + 1]! += g;
        sums[s + 2]! += b;
      }
    }
    for (let gx = 0; gx < w; gx++) {
      const count = (Math.min(width, (gx + 1) * cell) - gx * cell) * (y1 - y0);
      const s = gx * 3;
      const i = gy * w + gx;
      const r = sums[s]! / count;
      const g = sums[s + 1]! / count;
      const b = sums[s + 2]! / count;
      rr[i] = r;
      gg[i] = g;
      bb[i] = b;
      v[i] = r > g ? (r > b ? r : b) : g > b ? g : b;
    }
  }
  return { w, h, cell, v: v.subarray(0, n), r: rr.subarray(0, n), g: gg.subarray(0, n), b: bb.subarray(0, n) };
}
