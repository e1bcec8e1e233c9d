/**
 * Tiling for the upscaler, as pure functions: which input windows to run, how to blend their
 * outputs, and how to group tiles of several images into session runs.
 *
 * The image is cut into a grid of cores (balanced, each at most `tileSize` on a side). Each core
 * is run inside a window that adds up to `padding` pixels of real image context on every side
 * (shifted inward at the image edges, so every window of an image has the same size and windows
 * at an edge see the true edge, as the whole-image run does). Neighbouring outputs are
 * cross-faded over a band of `2·ramp` pixels centred on the core boundary, where both tiles still
 * have at least `padding − ramp` pixels of context; the weights of all tiles sum to exactly 1 at
 * every output pixel, and an image that fits one window is one tile with weight 1 (bit-identical
 * to the untiled run).
 */

export interface TilingOptions {
  /** Largest core side, in input pixels. */
  readonly tileSize: number;
  /** Context added around each core, in input pixels; at most tileSize / 2. */
  readonly padding: number;
}

/** A half-open interval [start, end) on one axis, in input pixels. */
export interface Span { readonly start: number; readonly end: number }

/** One tile: the window the model sees and the core it is responsible for. */
export interface Tile {
  /** Window position (input pixels); its size is the image's window size, shared by all its tiles. */
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly coreX: Span;
  readonly coreY: Span;
}

/** One axis of the grid: the window length and, per cell, its core and window start. */
export interface AxisPlan {
  readonly window: number;
  readonly cells: ReadonlyArray<{ readonly core: Span; readonly start: number }>;
}

/** Throws RangeError unless the options are positive integers with padding ≤ tileSize / 2. */
export function checkTilingOptions(o: TilingOptions): void {
  if (!Number.isInteger(o.tileSize) || o.tileSize < 1) throw new RangeError(`tile size must be a positive integer, got ${o.tileSize}`);
  if (!Number.isInteger(o.padding) || o.padding < 0 || 2 * o.padding > o.tileSize) {
    throw new RangeError(`tile padding must be an integer in [0, tile size / 2 = ${Math.floor(o.tileSize / 2)}], got ${o.padding}`);
  }
}

/**
 * Plans one axis of `length` pixels. A length that fits one window (≤ tileSize + 2·padding) is a
 * single cell covering everything; otherwise ceil(length / tileSize) balanced cores, each window
 * `tileSize + 2·padding` long. With padding ≤ tileSize / 2 every core is ≥ padding long, so each
 * interior core boundary has ≥ padding pixels of context inside both neighbouring windows.
 */
export function planAxis(length: number, o: TilingOptions): AxisPlan {
  checkTilingOptions(o);
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`image side must be a positive integer, got ${length}`);
  const full = o.tileSize + 2 * o.padding;
  if (length <= full) return { window: length, cells: [{ core: { start: 0, end: length }, start: 0 }] };
  const n = Math.ceil(length / o.tileSize);
  const cells = [];
  for (let i = 0; i < n; i++) {
    const core = { start: Math.floor((i * length) / n), end: Math.floor(((i + 1) * length) / n) };
    cells.push({ core, start: Math.min(Math.max(core.start - o.padding, 0), length - full) });
  }
  return { window: full, cells };
}

/** All tiles of a width × height image, row by row. */
export function planTiles(width: number, height: number, o: TilingOptions): Tile[] {
  const ax = planAxis(width, o);
  const ay = planAxis(height, o);
  const tiles: Tile[] = [];
  for (const cy of ay.cells) {
    for (const cx of ax.cells) {
      tiles.push({ x: cx.start, y: cy.start, width: ax.window, height: ay.window, coreX: cx.core, coreY: cy.core });
    }
  }
  return tiles;
}

/** The cross-fade half-width used for `padding`: the inner half of the context band. */
export function rampFor(padding: number): number {
  return Math.floor(padding / 2);
}

/**
 * Blend weights along one axis for a tile's output: entry u is the weight of output pixel
 * `start·scale + u` (u < window·scale), evaluated at its centre in input coordinates. 1 inside the
 * core, 0 outside core ± ramp, linear in between; no ramp at the image's own edges (0 and `length`).
 */
export function axisWeights(core: Span, start: number, window: number, length: number, scale: number, ramp: number): Float32Array {
  const w = new Float32Array(window * scale);
  for (let u = 0; u < w.length; u++) {
    const x = start + (u + 0.5) / scale;
    let v = 1;
    if (core.start > 0) v = ramp > 0 ? Math.min(v, clamp01((x - (core.start - ramp)) / (2 * ramp))) : x >= core.start ? v : 0;
    if (core.end < length) v = ramp > 0 ? Math.min(v, clamp01((core.end + ramp - x) / (2 * ramp))) : x < core.end ? v : 0;
    w[u] = v;
  }
  return w;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** A tile to run: item index, tile index within the item, and its window size (the batching key). */
export interface TileJob {
  readonly item: number;
  readonly tile: number;
  readonly width: number;
  readonly height: number;
}

/**
 * Groups jobs into session runs: only windows of one size share a run (one tensor), at most
 * `maxTilesPerRun` per run, sizes in order of first appearance, and a group split into runs of
 * near-equal length (10 tiles with max 8 → 5 + 5, not 8 + 2).
 */
export function planRuns(jobs: readonly TileJob[], maxTilesPerRun: number): TileJob[][] {
  if (!Number.isInteger(maxTilesPerRun) || maxTilesPerRun < 1) throw new RangeError(`max tiles per run must be a positive integer, got ${maxTilesPerRun}`);
  const groups = new Map<string, TileJob[]>();
  for (const j of jobs) {
    const key = `${j.width}x${j.height}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(j);
  }
  const runs: TileJob[][] = [];
  for (const g of groups.values()) {
    const n = Math.ceil(g.length / maxTilesPerRun);
    for (let i = 0; i < n; i++) runs.push(g.slice(Math.floor((i * g.length) / n), Math.floor(((i + 1) * g.length) / n)));
  }
  return runs;
}
