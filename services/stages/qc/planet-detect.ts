/**
 * Finds the planet against the sky in a raw image: the largest coherent body that clearly
 * differs in colour from the sky and its haze and has a crisp limb — not the stars, the nebula haze
 * or small moons. Pure and deterministic. Cost and accuracy: bench/qc.bench.ts (bench/results/qc.md).
 *
 * How:
 * 1. A grid of cell means (~384 cells across, one pass over the pixels; value-grid.ts): the box
 *    filter averages stars down and makes everything after it cheap.
 * 2. A spatially varying background (background.ts): block medians of red, green and blue,
 *    interpolated, so bright nebula haze is part of the sky rather than a body. Each cell's score
 *    is its largest channel distance from that background — a planet's dim limb in front of
 *    bright haze is darker than the haze and still differs from it (a black silhouette does not
 *    count). The background is estimated twice: the second time without the first pass's
 *    foreground (grown by EXCLUDE_GROW cells), so a large planet does not leak into its own
 *    background; blocks it covers are inferred from the haze around it.
 * 3. Foreground: score above NOISE_K times its median over the background cells (at least
 *    MIN_CONTRAST levels) and above LOCAL_K times the local median score (lumpy haze needs a
 *    higher bar than clean sky). Clean-up: drop specks (averaged stars), close one-cell gaps
 *    (dark bands on dim discs), fill holes; 8-connected components (binary-mask.ts). The largest
 *    component is the candidate; the threshold is then raised to VISIBLE_SHARE of its bright
 *    parts' score if that is higher (a crescent's faint night side is not what a person outlines),
 *    and the largest component at that threshold is the planet if its limb is crisp enough
 *    (CRISP_MIN: one cell step carries much of the fall toward the background; ragged haze
 *    texture ramps evenly). A boundary cut by the frame is not counted, so a planet cut by the
 *    frame is still a planet.
 * 4. The box is refined at full resolution (refineSide): along each side, the first pixel column
 *    (or row) whose mean distance from the background, over the rows (columns) of the extreme
 *    cells, rises a set part of the way to the body's.
 *
 * Rings count as part of the planet (they are bright and crisp and touch or cross the disc): the
 * region constraint keeps the margins empty, and a ring in a margin is not empty space.
 */
import { blockMedianField, estimateBackground, reestimateWithout, residual, type Background } from './background.js';
import { close3x3, dilate, dropSpecks, fillHoles, labelComponents, type Component } from './binary-mask.js';
import { workspaceFor, type DetectorWorkspace } from './detector-workspace.js';
import { cellSizeFor, gridSize, valueGrid, type RawImage, type ValueGrid } from './value-grid.js';

export type { RawImage } from './value-grid.js';

/** A box in full-resolution pixels: `left`/`top` the first planet column/row, `right`/`bottom` one past the last. */
export interface PixelBox {
  readonly left: number;
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
}

export interface PlanetDetection {
  readonly found: boolean;
  /** The planet's bounding box (rings included); absent when nothing was found. */
  readonly box?: PixelBox;
  /** Box area / image area (0 when nothing was found). */
  readonly areaFraction: number;
  /** Body cells / box cells on the grid: ~0.79 for a disc, less with rings or for a crescent. */
  readonly fillRatio: number;
  /** 0..1: how crisp the limb is (a heuristic, not a probability). */
  readonly confidence: number;
}

/** Smallest threshold on the distance from the background, in grey levels (a very clean sky). */
const MIN_CONTRAST = 3;
/** Threshold on the distance from the background, in units of its median over the background cells. */
const NOISE_K = 8;
/** ... and in units of that median near the cell (a block median): lumpy haze needs a higher bar than clean sky. */
const LOCAL_K = 4;
/** A crisp edge falls by at least this many noise units. */
const FALL_K = 10;
/** Grid cells the first pass's foreground is grown by before the background is estimated again. */
const EXCLUDE_GROW = 2;
/**
 * Fraction of boundary cells that must be crisp for a body to count as a planet: a floor against
 * ragged blobs of haze texture. Dim limbs (limb darkening on a dark planet) are crisp on a third
 * or so of their boundary, so the floor stays low.
 */
export const CRISP_MIN = 0.2;
/** Share of the body's bright parts (90th percentile score) a cell's score must reach to be part of it: the labels' 10 % visibility rule. */
const VISIBLE_SHARE = 0.1;
/** A cell darker than the background is part of a body only from this value up (black is not seen). */
const VISIBLE_MIN = 10;
/** Share of the fall across a crisp edge that one cell step carries (an even 4-step ramp has 0.25). */
const STEP_SHARE = 0.35;
/** A boundary cell is crisp when the distance drops by this part of its height within 3 cells. */
const CRISP_DROP = 0.2;
/** Smallest candidate body, as a fraction of the grid's cells (a 2%-of-image planet covers ~1.5%). */
const MIN_BODY_FRACTION = 0.002;

const NOT_FOUND: PlanetDetection = Object.freeze({ found: false, areaFraction: 0, fillRatio: 0, confidence: 0 });

/** Fraction of the component's boundary cells (not counting the frame) where the limb is crisp, on the score grid `v`. */
function crispness(w: number, h: number, v: Float32Array, labels: Int32Array, c: Component, minFall: number): number {
  let boundary = 0;
  let crisp = 0;
  const DX = [-1, 1, 0, 0];
  const DY = [0, 0, -1, 1];
  for (let y = c.minY; y <= c.maxY; y++) {
    for (let x = c.minX; x <= c.maxX; x++) {
      const i = y * w + x;
      if (labels[i] !== c.label) continue;
      for (let k = 0; k < 4; k++) {
        const nx = x + DX[k]!;
        const ny = y + DY[k]!;
        if (nx < 0 || ny < 0 || nx >= w || ny >= h || labels[ny * w + nx] === c.label) continue;
        boundary++;
        // The profile across the edge: one cell in, the cell, and three cells out.
        const ix = Math.max(0, Math.min(w - 1, x - DX[k]!));
        const iy = Math.max(0, Math.min(h - 1, y - DY[k]!));
        const vIn = v[iy * w + ix]!;
        const vAt = v[i]!;
        const vOut = v[ny * w + nx]!;
        const ox = Math.max(0, Math.min(w - 1, nx + 2 * DX[k]!));
        const oy = Math.max(0, Math.min(h - 1, ny + 2 * DY[k]!));
        const vFar = v[oy * w + ox]!;
        // Crisp: the score falls most of the way to the background within the profile, and one step
        // carries a large share of that fall. A haze ramp falls evenly, a quarter per step.
        const fall = Math.max(vIn, vAt) - vFar;
        const step = Math.max(vIn - vAt, vAt - vOut);
        if (fall >= minFall && fall >= CRISP_DROP * Math.max(vIn, vAt) && step >= STEP_SHARE * fall) crisp++;
        break;
      }
    }
  }
  return boundary ? crisp / boundary : 1;
}

type Side = 'left' | 'right' | 'top' | 'bottom';

/**
 * Refines one side of the component's box at full resolution. Scans the pixel columns (rows) of
 * the cell outside the extreme cells, the extreme cells and the cells inside them, from outside
 * in, and returns the first whose mean distance from the background — over the pixel rows
 * (columns) of those cells — rises to `level`. Each pixel's distance is capped at `cap`, so a
 * star in the strip cannot pass for the limb.
 */
function refineSide(img: RawImage, grid: ValueGrid, bg: Background, labels: Int32Array, c: Component, side: Side, level: number, cap: number): number {
  const { w, cell } = grid;
  const { data, width, height, channels } = img;
  const horizontal = side === 'left' || side === 'right';
  const edgeCell = side === 'left' ? c.minX : side === 'right' ? c.maxX : side === 'top' ? c.minY : c.maxY;
  const outward = side === 'left' || side === 'top' ? -1 : 1;
  const innerCell = edgeCell - outward;
  // The span (across the scan direction) of the component's cells on the extreme line and the
  // line inside it: a star merged onto the limb makes a one-cell extreme line, and averaging
  // over the limb's rows as well keeps that star from passing for the limb.
  let lo = Number.MAX_SAFE_INTEGER;
  let hi = -1;
  const [a0, a1] = horizontal ? [c.minY, c.maxY] : [c.minX, c.maxX];
  const lines = innerCell >= (horizontal ? c.minX : c.minY) && innerCell <= (horizontal ? c.maxX : c.maxY) ? [edgeCell, innerCell] : [edgeCell];
  for (const line of lines) {
    for (let a = a0; a <= a1; a++) {
      const i = horizontal ? a * w + line : line * w + a;
      if (labels[i] === c.label) {
        if (a < lo) lo = a;
        if (a > hi) hi = a;
      }
    }
  }
  const limit = horizontal ? height : width;
  const spanLo = lo * cell;
  const spanHi = Math.min(limit, (hi + 1) * cell);
  const extent = horizontal ? width : height;
  // Scan positions from outside in: the neighbouring cell outside, the extreme cell, the one inside.
  const outerCell = edgeCell + outward;
  const cellStart = (g: number): number => Math.max(0, Math.min(extent, g * cell));
  const from = outward < 0 ? cellStart(outerCell) : Math.min(extent, (outerCell + 1) * cell) - 1;
  const to = outward < 0 ? Math.min(extent, (innerCell + 1) * cell) - 1 : cellStart(innerCell);
  const step = outward < 0 ? 1 : -1;
  const colour = channels >= 3;
  const n = spanHi - spanLo;
  if (n <= 0 || (outward < 0 ? from > to : from < to)) return outward < 0 ? cellStart(edgeCell) : Math.min(extent, (edgeCell + 1) * cell);
  // Along a column (left/right) the pixels of the span are a row stride apart; along a row, one pixel.
  const stride = horizontal ? width * channels : channels;
  for (let pos = from; outward < 0 ? pos <= to : pos >= to; pos += step) {
    let sum = 0;
    let p = (horizontal ? spanLo * width + pos : pos * width + spanLo) * channels;
    // The cell index of the span's first pixel, and how it moves: a cell row (column) per `cell` pixels.
    const fixedCell = horizontal ? ((pos / cell) | 0) : ((pos / cell) | 0) * w;
    const cellStep = horizontal ? w : 1;
    for (let a = spanLo; a < spanHi; a++, p += stride) {
      const ci = fixedCell + ((a / cell) | 0) * cellStep;
      const dr = data[p]! - bg.r[ci]!;
      let d = dr < 0 ? -dr : dr;
      if (colour) {
        const dg = data[p + 1]! - bg.g[ci]!;
        const db = data[p + 2]! - bg.b[ci]!;
        const ag = dg < 0 ? -dg : dg;
        const ab = db < 0 ? -db : db;
        if (ag > d) d = ag;
        if (ab > d) d = ab;
      }
      sum += d < cap ? d : cap;
    }
    if (sum / n >= level) return outward < 0 ? pos : pos + 1;
  }
  return outward < 0 ? cellStart(edgeCell) : Math.min(extent, (edgeCell + 1) * cell);
}

/** Foreground above threshold `t` (and LOCAL_K times `local`, when given) on `score`, cleaned up: specks dropped, gaps closed, holes filled. In `ws.filled`. */
function foreground(ws: DetectorWorkspace, score: Float32Array, t: number, local?: Float32Array): Uint8Array {
  const { w, h, above } = ws;
  const n = w * h;
  // Unary plus turns a comparison into 0/1 without a branch (see branchless.ts).
  if (local) for (let i = 0; i < n; i++) above[i] = +(score[i]! > t) & +(score[i]! > LOCAL_K * local[i]!);
  else for (let i = 0; i < n; i++) above[i] = +(score[i]! > t);
  dropSpecks(above, w, h, 3, ws.specks);
  close3x3(ws.specks, w, h, ws.closed, ws.tmp, ws.mid);
  return fillHoles(ws.closed, w, h, ws.filled, ws.runs);
}

/** The 1/16-level histogram medianScore fills (reused: it is cleared on each call). */
const scoreHist = new Uint32Array(4096);

/** The median of `score` over the cells not in `exclude`, from a 1/16-level histogram. */
function medianScore(score: Float32Array, exclude?: Uint8Array): number {
  const hist = scoreHist;
  hist.fill(0);
  let n = 0;
  for (let i = 0; i < score.length; i++) {
    if (exclude && exclude[i]) continue;
    hist[Math.min(4095, (score[i]! * 16) | 0)]!++;
    n++;
  }
  let acc = 0;
  for (let b = 0; b < hist.length; b++) {
    acc += hist[b]!;
    if (acc * 2 >= n) return (b + 0.5) / 16;
  }
  return 0;
}

/** The q-quantile of `score` over the component's cells, from a 1/4-level histogram. */
function bodyQuantile(score: Float32Array, labels: Int32Array, c: Component, w: number, q: number): number {
  const hist = new Uint32Array(1024);
  for (let y = c.minY; y <= c.maxY; y++) for (let x = c.minX; x <= c.maxX; x++) if (labels[y * w + x] === c.label) hist[Math.min(1023, (score[y * w + x]! * 4) | 0)]!++;
  let acc = 0;
  for (let b = 0; b < hist.length; b++) {
    acc += hist[b]!;
    if (acc >= q * c.area) return (b + 0.5) / 4;
  }
  return hist.length / 4;
}

/** The largest component of `mask`, with the labelling (in `ws.labels`). */
function largest(ws: DetectorWorkspace, mask: Uint8Array): { labels: Int32Array; comp: Component | undefined } {
  const { labels, components } = labelComponents(mask, ws.w, ws.h, ws.labels, ws.parent);
  let comp: Component | undefined;
  for (const c of components) if (!comp || c.area > comp.area) comp = c;
  return { labels, comp };
}

/** Diagnostics for the benchmark: the threshold used and the crispness. */
export interface DetectionDetail extends PlanetDetection {
  /** Median distance of the background cells from the background estimate. */
  readonly noise: number;
  readonly threshold: number;
  readonly crispness: number;
}

/** The detector's phases, in the order they first run (the background and segmentation alternate: two passes). */
export const DETECT_PHASES = ['grid', 'background', 'segmentation', 'limb', 'refinement'] as const;
export type DetectPhase = (typeof DETECT_PHASES)[number];

/**
 * detectPlanet with its diagnostics. `phaseDone`, when given, is called as each phase ends (a
 * phase may run more than once): the benchmark times the phases with it.
 */
export function detectPlanetDetailed(img: RawImage, phaseDone?: (phase: DetectPhase) => void): DetectionDetail {
  const cell = cellSizeFor(img.width);
  const { w, h } = gridSize(img.width, img.height, cell);
  const ws = workspaceFor(w, h);
  const grid = valueGrid(img, cell, ws.grid);
  phaseDone?.('grid');
  // First pass: background from every cell; second: without the first pass's foreground, grown.
  // The second pass updates the first's background and score in place where they differ.
  const bg = estimateBackground(grid, undefined, undefined, ws.bg, ws.blocks);
  const score = residual(grid, bg, VISIBLE_MIN, ws.score);
  let noise = medianScore(score);
  let t = Math.max(NOISE_K * noise, MIN_CONTRAST);
  phaseDone?.('background');
  const exclude = dilate(foreground(ws, score, t), w, h, EXCLUDE_GROW, ws.exclude, ws.tmp);
  phaseDone?.('segmentation');
  reestimateWithout(grid, exclude, ws.blocks, bg, score, VISIBLE_MIN);
  noise = medianScore(score, exclude);
  t = Math.max(NOISE_K * noise, MIN_CONTRAST);
  const [local] = blockMedianField([score], w, h, exclude, undefined, [ws.local]);
  phaseDone?.('background');
  let { labels, comp } = largest(ws, foreground(ws, score, t, local));
  // What a person outlines: parts at least VISIBLE_SHARE as bright (as far from the background)
  // as the body's bright parts — a crescent's faint earthshine beyond the terminator is not.
  const floor = comp ? VISIBLE_SHARE * bodyQuantile(score, labels, comp, w, 0.9) : 0;
  if (floor > t) {
    t = floor;
    ({ labels, comp } = largest(ws, foreground(ws, score, t, local)));
  }
  phaseDone?.('segmentation');
  if (!comp || comp.area < Math.max(6, MIN_BODY_FRACTION * w * h)) return { ...NOT_FOUND, noise, threshold: t, crispness: 0 };
  const crisp = crispness(grid.w, grid.h, score, labels, comp, Math.max(MIN_CONTRAST, FALL_K * noise));
  phaseDone?.('limb');
  if (crisp < CRISP_MIN) return { ...NOT_FOUND, noise, threshold: t, crispness: crisp };
  // The body's mean distance from the background sets the refinement's levels: a column joins
  // the box when its mean (partial coverage of a limb-darkened edge) rises a tenth of the way to
  // the body, and one pixel counts at most 0.6 of the body's height, so a lone star cannot fill a column.
  let bodySum = 0;
  for (let y = comp.minY; y <= comp.maxY; y++) for (let x = comp.minX; x <= comp.maxX; x++) if (labels[y * w + x] === comp.label) bodySum += score[y * w + x]!;
  const body = bodySum / comp.area;
  const level = Math.max(0.5 * t, 0.1 * body);
  const cap = Math.max(2 * t, 0.6 * body);
  const box: PixelBox = {
    left: refineSide(img, grid, bg, labels, comp, 'left', level, cap),
    right: refineSide(img, grid, bg, labels, comp, 'right', level, cap),
    top: refineSide(img, grid, bg, labels, comp, 'top', level, cap),
    bottom: refineSide(img, grid, bg, labels, comp, 'bottom', level, cap),
  };
  phaseDone?.('refinement');
  const fillRatio = comp.area / ((comp.maxX - comp.minX + 1) * (comp.maxY - comp.minY + 1));
  const areaFraction = ((box.right - box.left) * (box.bottom - box.top)) / (img.width * img.height);
  const confidence = Math.min(1, crisp / 0.9);
  return { found: true, box, areaFraction, fillRatio, confidence, noise, threshold: t, crispness: crisp };
}

/** Finds the planet in `img` (RGB or RGBA raw pixels); `found: false` when no body qualifies. */
export function detectPlanet(img: RawImage): PlanetDetection {
  const { found, box, areaFraction, fillRatio, confidence } = detectPlanetDetailed(img);
  return box ? { found, box, areaFraction, fillRatio, confidence } : { found, areaFraction, fillRatio, confidence };
}
