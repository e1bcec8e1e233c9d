/**
 * The planet detector's working image: a box-filtered, downscaled grid of cell means (red, green,
 * blue) and "value" (HSV value: the largest of the three). Pure.
 *
 * Value rather than luminance: a saturated deep-blue planet has a low luminance (~48 of 255)
 * but a high value (~160), so value catches both bright and saturated bodies in one measure.
 * The box filter (a cell's mean) also averages single-pixel stars down to faint specks.
 */
import { maxNonNegative } from './branchless.js';

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

/** Whether a Uint32 holds its bytes lowest first (the word-at-a-time path assumes it). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** Adds each cell's red, green and blue over pixel rows y0..y1 into `sums` (3 per cell): one pixel at a time. */
function sumRowsBytes(img: RawImage, cell: number, y0: number, y1: number, sums: Uint32Array): void {
  const { data, width, channels } = img;
  const colour = channels >= 3;
  const cells3 = Math.ceil(width / cell) * 3;
  for (let y = y0; y < y1; y++) {
    let p = y * width * channels;
    let x = 0;
    for (let s = 0; s < cells3; s += 3) {
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
}

/** Largest cell the word-at-a-time path takes: a 16-bit lane sums 255 × cell × cell/4 at most (65,280 at 32). */
const MAX_WORDS_CELL = 32;

/**
 * sumRowsBytes for RGB with the width and the cell multiples of 4, a 32-bit word (4 bytes) at a
 * time: about twice as fast, and the grid is most of the detector's cost. Every 3 words are 4
 * pixels (r g b r | g b r g | b r g b); a cell's words are summed down its rows and across it in
 * two 16-bit lanes per word position (bytes 0 and 2 masked out of the word, bytes 1 and 3 of the
 * word shifted by 8), then the twelve lanes give their sums to red, green and blue.
 */
function sumRowsRgbWords(words: Int32Array, width: number, cell: number, y0: number, y1: number, sums: Uint32Array): void {
  const rowWords = (width * 3) >> 2;
  const groupsPerCell = cell >> 2;
  for (let s = 0, x = 0, j = 0; x < width; s += 3, x += cell) {
    const groups = Math.min(groupsPerCell, (width - x) >> 2);
    let e0 = 0;
    let o0 = 0;
    let e1 = 0;
    let o1 = 0;
    let e2 = 0;
    let o2 = 0;
    // Down the rows innermost: a 4-pixel cell is one group, and a one-iteration inner loop costs more than its body.
    for (let k = 0; k < groups; k++) {
      for (let y = y0, p = y0 * rowWords + j + 3 * k; y < y1; y++, p += rowWords) {
        const a = words[p]!;
        const b = words[p + 1]!;
        const c = words[p + 2]!;
        e0 += a & 0xff00ff;
        o0 += (a >>> 8) & 0xff00ff;
        e1 += b & 0xff00ff;
        o1 += (b >>> 8) & 0xff00ff;
        e2 += c & 0xff00ff;
        o2 += (c >>> 8) & 0xff00ff;
      }
    }
    j += 3 * groups;
    sums[s] = (e0 & 0xffff) + (o0 >>> 16) + (e1 >>> 16) + (o2 & 0xffff);
    sums[s + 1] = (o0 & 0xffff) + (e1 & 0xffff) + (o1 >>> 16) + (e2 >>> 16);
    sums[s + 2] = (e0 >>> 16) + (o1 & 0xffff) + (e2 & 0xffff) + (o2 >>> 16);
  }
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
  // Per grid row: the sums of each cell's red, green and blue over its pixel rows (255 × cell² fits).
  const sums = new Uint32Array(w * 3);
  const byWords = LITTLE_ENDIAN && channels === 3 && width % 4 === 0 && cell % 4 === 0 && cell <= MAX_WORDS_CELL && data.byteOffset % 4 === 0;
  const words = byWords ? new Int32Array(data.buffer, data.byteOffset, (width * height * 3) >> 2) : undefined;
  for (let gy = 0; gy < h; gy++) {
    const y0 = gy * cell;
    const y1 = Math.min(height, y0 + cell);
    if (words) sumRowsRgbWords(words, width, cell, y0, y1, sums);
    else {
      sums.fill(0);
      sumRowsBytes(img, cell, y0, y1, sums);
    }
    // A whole cell's pixel count: when it is a power of two (4x4 cells), dividing by it is
    // multiplying by its exact inverse, several times cheaper than a division per cell.
    const whole = cell * (y1 - y0);
    const inverse = (whole & (whole - 1)) === 0 ? 1 / whole : 0;
    for (let gx = 0; gx < w; gx++) {
      const count = (Math.min(width, (gx + 1) * cell) - gx * cell) * (y1 - y0);
      const s = gx * 3;
      const i = gy * w + gx;
      const byInverse = inverse !== 0 && count === whole;
      const r = Math.fround(byInverse ? sums[s]! * inverse : sums[s]! / count);
      const g = Math.fround(byInverse ? sums[s + 1]! * inverse : sums[s + 1]! / count);
      const b = Math.fround(byInverse ? sums[s + 2]! * inverse : sums[s + 2]! / count);
      rr[i] = r;
      gg[i] = g;
      bb[i] = b;
      v[i] = maxNonNegative(maxNonNegative(r, g), b);
    }
  }
  return { w, h, cell, v: v.subarray(0, n), r: rr.subarray(0, n), g: gg.subarray(0, n), b: bb.subarray(0, n) };
}
