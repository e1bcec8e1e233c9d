/**
 * A spatially varying background (sky plus nebula haze) for the planet detector, and each
 * cell's distance from it. Pure.
 *
 * The grid is cut into square blocks of BLOCK_CELLS cells; a block's background colour is the
 * per-channel median of its cells (every other one in each direction) that are not excluded (stars, moons and the planet are a
 * minority of most blocks, and excluding a first foreground mask takes them out entirely). A
 * block with too few usable cells takes the mean of its known neighbours, spreading inward until
 * every block is known, so the sky under a large planet is inferred from the haze around it.
 * Cells get the bilinear interpolation of the block centres.
 */
import { maxNonNegative } from './branchless.js';
import type { ValueGrid } from './value-grid.js';

/** Block edge, in grid cells: ~64 px at 1536 wide, short enough to follow the haze's clouds. */
export const BLOCK_CELLS = 16;
/** A block's median is taken over every SAMPLE_STEP-th cell in both directions (64 of 256 cells). */
const SAMPLE_STEP = 2;
/** A block's median needs at least this share of its sampled cells usable. */
const MIN_USABLE = 0.25;

export interface Background {
  /** Per-cell background red, green and blue. */
  readonly r: Float32Array;
  readonly g: Float32Array;
  readonly b: Float32Array;
}

/** The k-th smallest (0-based) of buf[0..n) (reorders it): quickselect, no allocation. */
export function selectInPlace(buf: Float32Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = buf[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (buf[i]! < pivot) i++;
      while (buf[j]! > pivot) j--;
      if (i <= j) {
        const t = buf[i]!;
        buf[i] = buf[j]!;
        buf[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return buf[k]!;
  }
  return buf[k]!;
}

/** The median of buf[0..n) (the upper one for even n; reorders it): quickselect, no allocation. */
export function medianInPlace(buf: Float32Array, n: number): number {
  return selectInPlace(buf, n, n >> 1);
}

/** Histogram bins per grey level in binnedMedian. */
const BINS_PER_LEVEL = 4;
/** Bins over 0..256 levels (a cell mean or a colour distance); anything beyond lands in the end bins. */
export const MEDIAN_BINS = 256 * BINS_PER_LEVEL;

/**
 * The same value as medianInPlace(buf, n), found with fewer unpredictable branches (quickselect's
 * comparisons on noisy sky mispredict about half the time): a quarter-level histogram finds the
 * bin that holds the median (scanning up from the lowest bin used), and a quickselect among that
 * bin's few values picks it exactly. `hist` (MEDIAN_BINS, all zero) is left all zero; `bins` and
 * `within` hold n entries each.
 */
export function binnedMedian(buf: Float32Array, n: number, hist: Uint16Array, bins: Uint16Array, within: Float32Array): number {
  let lowest = MEDIAN_BINS - 1;
  for (let i = 0; i < n; i++) {
    const raw = (buf[i]! * BINS_PER_LEVEL) | 0;
    const b = raw < 0 ? 0 : raw >= MEDIAN_BINS ? MEDIAN_BINS - 1 : raw;
    bins[i] = b;
    hist[b]!++;
    lowest = Math.min(lowest, b);
  }
  const k = n >> 1;
  let below = 0;
  let median = lowest;
  while (below + hist[median]! <= k) below += hist[median++]!;
  let m = 0;
  for (let i = 0; i < n; i++) {
    const b = bins[i]!;
    if (b === median) within[m++] = buf[i]!;
    hist[b] = 0;
  }
  return selectInPlace(within, m, k - below);
}

/** Fills unknown blocks with the mean of their known 8-neighbours, wave by wave from the known ones. */
function fillUnknown(vals: readonly Float32Array[], known: Uint8Array, bw: number, bh: number): void {
  const next = new Uint8Array(known.length);
  const sums = new Float64Array(vals.length);
  let missing = 0;
  for (const k of known) if (!k) missing++;
  while (missing > 0) {
    next.set(known);
    let filled = 0;
    for (let y = 0; y < bh; y++) {
      for (let x = 0; x < bw; x++) {
        const i = y * bw + x;
        if (known[i]) continue;
        let n = 0;
        sums.fill(0);
        for (let yy = Math.max(0, y - 1); yy <= Math.min(bh - 1, y + 1); yy++) {
          for (let xx = Math.max(0, x - 1); xx <= Math.min(bw - 1, x + 1); xx++) {
            if (!known[yy * bw + xx]) continue;
            n++;
            for (let c = 0; c < vals.length; c++) sums[c]! += vals[c]![yy * bw + xx]!;
          }
        }
        if (!n) continue;
        for (let c = 0; c < vals.length; c++) vals[c]![i] = sums[c]! / n;
        next[i] = 1;
        filled++;
      }
    }
    // No known block at all (everything excluded): the field stays 0.
    if (!filled) return;
    known.set(next);
    missing -= filled;
  }
}

/**
 * Each block's per-plane median over its sampled cells not set in `exclude`; `known` marks the
 * blocks with enough of them. With `unexcluded` (the block medians of an estimate that excluded
 * nothing), a block none of whose sampled cells is excluded takes its medians from there: the
 * same samples give the same medians.
 */
function blockMedians(planes: readonly Float32Array[], w: number, h: number, exclude: Uint8Array | undefined, block: number, vals: readonly Float32Array[], known: Uint8Array, unexcluded?: readonly Float32Array[]): void {
  const bw = Math.ceil(w / block);
  const bh = Math.ceil(h / block);
  const perBlock = Math.ceil(block / SAMPLE_STEP) ** 2;
  const scratch = planes.map(() => new Float32Array(perBlock));
  const hist = new Uint16Array(MEDIAN_BINS);
  const bins = new Uint16Array(perBlock);
  const within = new Float32Array(perBlock);
  for (let by = 0; by < bh; by++) {
    for (let bx = 0; bx < bw; bx++) {
      const x0 = bx * block;
      const y0 = by * block;
      const x1 = Math.min(w, x0 + block);
      const y1 = Math.min(h, y0 + block);
      const at = by * bw + bx;
      if (exclude && unexcluded) {
        let any = 0;
        for (let y = y0; y < y1; y += SAMPLE_STEP) for (let i = y * w + x0, end = y * w + x1; i < end; i += SAMPLE_STEP) any |= exclude[i]!;
        if (!any) {
          for (let c = 0; c < planes.length; c++) vals[c]![at] = unexcluded[c]![at]!;
          known[at] = 1;
          continue;
        }
      }
      const need = Math.max(1, MIN_USABLE * Math.ceil((x1 - x0) / SAMPLE_STEP) * Math.ceil((y1 - y0) / SAMPLE_STEP));
      let n = 0;
      for (let c = 0; c < planes.length; c++) {
        const plane = planes[c]!;
        const buf = scratch[c]!;
        n = 0;
        for (let y = y0; y < y1; y += SAMPLE_STEP) {
          const end = y * w + x1;
          if (exclude) {
            for (let i = y * w + x0; i < end; i += SAMPLE_STEP) if (!exclude[i]) buf[n++] = plane[i]!;
          } else {
            for (let i = y * w + x0; i < end; i += SAMPLE_STEP) buf[n++] = plane[i]!;
          }
        }
        if (n < need) break;
      }
      if (n < need) continue;
      for (let c = 0; c < planes.length; c++) vals[c]![at] = binnedMedian(scratch[c]!, n, hist, bins, within);
      known[at] = 1;
    }
  }
}

/** Bilinear interpolation between block centres on a `w` x `h` grid: per column and per row, the two blocks and the weight. */
interface Bilinear {
  readonly bw: number;
  readonly bh: number;
  readonly xa: Int32Array;
  readonly xb: Int32Array;
  readonly tx: Float32Array;
  readonly ya: Int32Array;
  readonly yb: Int32Array;
  readonly ty: Float64Array;
}

function bilinear(w: number, h: number, block: number): Bilinear {
  const bw = Math.ceil(w / block);
  const bh = Math.ceil(h / block);
  const xa = new Int32Array(w);
  const xb = new Int32Array(w);
  const tx = new Float32Array(w);
  for (let x = 0; x < w; x++) {
    const f = Math.max(0, Math.min(bw - 1, (x + 0.5) / block - 0.5));
    xa[x] = Math.min(Math.floor(f), Math.max(0, bw - 2));
    xb[x] = Math.min(bw - 1, xa[x]! + 1);
    tx[x] = f - xa[x]!;
  }
  const ya = new Int32Array(h);
  const yb = new Int32Array(h);
  const ty = new Float64Array(h);
  for (let y = 0; y < h; y++) {
    const f = Math.max(0, Math.min(bh - 1, (y + 0.5) / block - 0.5));
    ya[y] = Math.min(Math.floor(f), Math.max(0, bh - 2));
    yb[y] = Math.min(bh - 1, ya[y]! + 1);
    ty[y] = f - ya[y]!;
  }
  return { bw, bh, xa, xb, tx, ya, yb, ty };
}

/** Each block row of `v` interpolated across the grid's columns (double precision), into `across` (bh·w). */
function interpolateAcross(v: Float32Array, lerp: Bilinear, w: number, across: Float64Array): void {
  const { bw, bh, xa, xb, tx } = lerp;
  for (let by = 0; by < bh; by++) {
    const rv = by * bw;
    const ra = by * w;
    for (let x = 0; x < w; x++) {
      const t = tx[x]!;
      across[ra + x] = v[rv + xa[x]!]! * (1 - t) + v[rv + xb[x]!]! * t;
    }
  }
}

/** Cells x0..x1 of row y of the field: the two interpolated block rows around it, mixed. */
function interpolateRow(field: Float32Array, across: Float64Array, lerp: Bilinear, w: number, y: number, x0: number, x1: number): void {
  const ra = lerp.ya[y]! * w;
  const rb = lerp.yb[y]! * w;
  const ty = lerp.ty[y]!;
  const row = y * w;
  for (let x = x0; x < x1; x++) {
    const top = across[ra + x]!;
    field[row + x] = top + (across[rb + x]! - top) * ty;
  }
}

/**
 * The smoothed block values (medians, unknown blocks filled from their neighbours) of each plane
 * over the cells not set in `exclude`; into `blocks` (bw·bh each) when given.
 */
function blockValues(planes: readonly Float32Array[], w: number, h: number, exclude: Uint8Array | undefined, block: number, blocks?: readonly Float32Array[], unexcluded?: readonly Float32Array[]): Float32Array[] {
  const bw = Math.ceil(w / block);
  const bh = Math.ceil(h / block);
  const vals = planes.map((_, c) => blocks?.[c] ?? new Float32Array(bw * bh));
  for (const v of vals) v.fill(0, 0, bw * bh);
  const known = new Uint8Array(bw * bh);
  blockMedians(planes, w, h, exclude, block, vals, known, unexcluded);
  fillUnknown(vals, known, bw, bh);
  return vals;
}

/**
 * A smooth field per input plane (row-major, `w` x `h`): block medians over the cells not set in
 * `exclude`, unknown blocks filled from their neighbours, bilinear between block centres. Writes
 * into `out` (one w·h plane per input plane) when given, and the block values into `blocks`.
 */
export function blockMedianField(planes: readonly Float32Array[], w: number, h: number, exclude?: Uint8Array, block = BLOCK_CELLS, out?: readonly Float32Array[], blocks?: readonly Float32Array[]): Float32Array[] {
  const vals = blockValues(planes, w, h, exclude, block, blocks);
  const lerp = bilinear(w, h, block);
  const across = new Float64Array(lerp.bh * w);
  return vals.map((v, c) => {
    interpolateAcross(v, lerp, w, across);
    const field = out?.[c] ?? new Float32Array(w * h);
    for (let y = 0; y < h; y++) interpolateRow(field, across, lerp, w, y, 0, w);
    return field;
  });
}

/**
 * The background colour on `grid`, ignoring cells set in `exclude` (same layout as the grid); into
 * `out` when given, and its block values (bw·bh each: r, g, b) into `blocks`.
 */
export function estimateBackground(grid: ValueGrid, exclude?: Uint8Array, block = BLOCK_CELLS, out?: Background, blocks?: readonly Float32Array[]): Background {
  const [r, g, b] = blockMedianField([grid.r, grid.g, grid.b], grid.w, grid.h, exclude, block, out ? [out.r, out.g, out.b] : undefined, blocks);
  return { r: r!, g: g!, b: b! };
}

/**
 * Turns a background estimated from every cell (`bg`, block values `first`) and its residual
 * (`score`) into the estimate without the cells set in `exclude` and its residual, in place —
 * equal to estimateBackground(grid, exclude) and residual(grid, it, visibleMin), at a fraction of
 * the cost: a block's medians are taken again only when one of its sampled cells is excluded, and
 * a cell's background and score are computed again only when one of the four blocks it is
 * interpolated from changed. Most of the sky is far from the planet.
 */
export function reestimateWithout(grid: ValueGrid, exclude: Uint8Array, first: readonly Float32Array[], bg: Background, score: Float32Array, visibleMin: number, block = BLOCK_CELLS): void {
  const { w, h } = grid;
  const planes = [grid.r, grid.g, grid.b];
  const vals = blockValues(planes, w, h, exclude, block, undefined, first);
  const lerp = bilinear(w, h, block);
  const { bw, bh } = lerp;
  const changed = new Uint8Array(bw * bh);
  let anyChanged = false;
  for (let i = 0; i < bw * bh; i++) {
    if (vals[0]![i] !== first[0]![i] || vals[1]![i] !== first[1]![i] || vals[2]![i] !== first[2]![i]) {
      changed[i] = 1;
      anyChanged = true;
    }
  }
  if (!anyChanged) return;
  const fields = [bg.r, bg.g, bg.b];
  const across = vals.map((v) => {
    const a = new Float64Array(bh * w);
    interpolateAcross(v, lerp, w, a);
    return a;
  });
  // Columns with the same left block form a run: [start, end) per left block.
  const runStart: number[] = [];
  const runEnd: number[] = [];
  for (let x = 0; x < w; x++) {
    const k = lerp.xa[x]!;
    if (runStart[k] === undefined) runStart[k] = x;
    runEnd[k] = x + 1;
  }
  for (let y = 0; y < h; y++) {
    const ra = lerp.ya[y]! * bw;
    const rb = lerp.yb[y]! * bw;
    for (let k = 0; k < runStart.length; k++) {
      if (runStart[k] === undefined) continue;
      const kb = Math.min(bw - 1, k + 1);
      if (!(changed[ra + k]! | changed[ra + kb]! | changed[rb + k]! | changed[rb + kb]!)) continue;
      const x0 = runStart[k]!;
      const x1 = runEnd[k]!;
      for (let c = 0; c < 3; c++) interpolateRow(fields[c]!, across[c]!, lerp, w, y, x0, x1);
      residualRange(grid, bg, visibleMin, score, y * w + x0, y * w + x1);
    }
  }
}

/** residual over cells from..to (exclusive) only. */
function residualRange(grid: ValueGrid, bg: Background, visibleMin: number, out: Float32Array, from: number, to: number): void {
  const { r, g, b, v } = grid;
  const { r: br, g: bgg, b: bb } = bg;
  for (let i = from; i < to; i++) {
    const dr = r[i]! - br[i]!;
    const dg = g[i]! - bgg[i]!;
    const db = b[i]! - bb[i]!;
    // Rounded to float32 first (as the result is stored): the same result, and the max is exact.
    const largest = maxNonNegative(maxNonNegative(Math.fround(Math.abs(dr)), Math.fround(Math.abs(dg))), Math.fround(Math.abs(db)));
    // 1 for a cell darker than the background in every channel and not visible itself. Unary plus
    // turns a comparison into 0/1 without a branch (a `? 1 : 0` branches).
    const hidden = +(dr <= 0) & +(dg <= 0) & +(db <= 0) & +(v[i]! < visibleMin);
    out[i] = largest * (1 - hidden);
  }
}

/**
 * Per cell: the largest absolute difference of its red, green or blue from the background. A
 * cell darker than the background in every channel counts only when its own value is at least
 * `visibleMin`: a body's dim limb in front of bright haze is seen, a black silhouette (a
 * crescent's night side against the stars) is not. Into `out` when given.
 */
export function residual(grid: ValueGrid, bg: Background, visibleMin: number, out: Float32Array = new Float32Array(grid.w * grid.h)): Float32Array {
  residualRange(grid, bg, visibleMin, out, 0, grid.w * grid.h);
  return out;
}
