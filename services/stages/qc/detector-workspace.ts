/**
 * The typed arrays one planet detection needs for a grid of `w` x `h` cells, kept between
 * detections so that checking an image allocates (and later collects) almost nothing: a replica
 * checks image after image of the same size. Each thread has its own (module state is per
 * thread), and a detection is synchronous, so two detections never share one.
 */
import { BLOCK_CELLS, type Background } from './background.js';
import { fillHolesScratchSize } from './binary-mask.js';
import type { GridPlanes } from './value-grid.js';

export class DetectorWorkspace {
  /** The cell-mean grid's planes. */
  readonly grid: GridPlanes;
  /** The background estimate (the first pass's, then the second's). */
  readonly bg: Background;
  /** The first background estimate's block values (red, green, blue), for the second to start from. */
  readonly blocks: readonly Float32Array[];
  /** Each cell's distance from the background. */
  readonly score: Float32Array;
  /** The block-median field of `score` (the local noise). */
  readonly local: Float32Array;
  /** Masks: the thresholded cells and the stages of their clean-up. */
  readonly above: Uint8Array;
  readonly specks: Uint8Array;
  readonly closed: Uint8Array;
  readonly filled: Uint8Array;
  /** The first pass's foreground, grown: left out of the second background estimate. */
  readonly exclude: Uint8Array;
  /** Scratch for the separable morphology passes. */
  readonly tmp: Uint8Array;
  readonly mid: Uint8Array;
  /** Hole filling's runs and their union-find. */
  readonly runs: Int32Array;
  /** Component labels and the union-find of provisional labels. */
  readonly labels: Int32Array;
  readonly parent: Int32Array;

  constructor(
    readonly w: number,
    readonly h: number,
  ) {
    const n = w * h;
    const f32 = (): Float32Array => new Float32Array(n);
    const u8 = (): Uint8Array => new Uint8Array(n);
    this.grid = { r: f32(), g: f32(), b: f32(), v: f32() };
    this.bg = { r: f32(), g: f32(), b: f32() };
    const blockCount = Math.ceil(w / BLOCK_CELLS) * Math.ceil(h / BLOCK_CELLS);
    this.blocks = [0, 1, 2].map(() => new Float32Array(blockCount));
    this.score = f32();
    this.local = f32();
    this.above = u8();
    this.specks = u8();
    this.closed = u8();
    this.filled = u8();
    this.exclude = u8();
    this.tmp = u8();
    this.mid = u8();
    this.runs = new Int32Array(fillHolesScratchSize(w, h));
    this.labels = new Int32Array(n);
    this.parent = new Int32Array(Math.ceil(n / 2) + 2);
  }
}

/** Grid sizes kept at once: a replica checks one or two output sizes; more evict the oldest. */
const KEPT_SIZES = 4;
const workspaces = new Map<string, DetectorWorkspace>();

/** The workspace for a `w` x `h` grid: the one kept from an earlier detection of that size, or a new one. */
export function workspaceFor(w: number, h: number): DetectorWorkspace {
  const key = `${w}x${h}`;
  let ws = workspaces.get(key);
  if (ws) return ws;
  ws = new DetectorWorkspace(w, h);
  if (workspaces.size >= KEPT_SIZES) workspaces.delete(workspaces.keys().next().value!);
  workspaces.set(key, ws);
  return ws;
}
