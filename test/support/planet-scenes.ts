/**
 * The labelled evaluation set for the planet quality check (issue 13): scenes rendered by code
 * from a seeded PRNG — nothing is downloaded — each with its known planet box and the verdict the
 * check should give under the example region (margins 8% left/right, 6% top/bottom, area
 * 2%..60%).
 *
 * Labels: the planet's box is what a person would outline — body pixels covered at least half and
 * at least 10% as bright as the planet's colour (so a crescent's dark side is not part of it), and
 * the ring's visible pixels: rings count as part of the planet, because the margins are meant to
 * stay empty. Moons, stars and haze are not part of it. Boxes are clipped to the frame.
 *
 * Borderline cases are not generated: a case whose box lies within CLEARANCE px of a region
 * boundary, or whose area is within 10% of a limit, is re-drawn. A 2 px intrusion is not a call a
 * person could make either, and the check's resolution is ~±2 px.
 */
import { DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';
import { judgeBox, regionBounds, type QcVerdict } from '../../services/stages/qc/qc-check.js';
import type { PixelBox, RawImage } from '../../services/stages/qc/planet-detect.js';
import { mulberry32 } from '../../services/models/demo-models.js';
import { planetLabel, renderSceneSpec, type HazeBlob, type MoonSpec, type PlanetSpec, type Rgb, type SceneSpec } from './planet-scene-render.js';

export const SCENE_CATEGORIES = ['disc', 'banded', 'ringed', 'moons', 'starfield', 'haze', 'dark', 'crescent', 'cut', 'none'] as const;
export type SceneCategory = (typeof SCENE_CATEGORIES)[number];

export const SCENE_SIZES: ReadonlyArray<readonly [number, number]> = [[1536, 640], [2520, 1080]];

export interface EvalCase {
  readonly id: string;
  readonly category: SceneCategory;
  readonly spec: SceneSpec;
  /** The labelled planet box (undefined: no planet). */
  readonly box?: PixelBox;
  /** The verdict for the labelled box under DEFAULT_QC_OPTIONS. */
  readonly expected: QcVerdict;
}

const PALETTE: readonly Rgb[] = [
  [205, 172, 128], [95, 140, 230], [35, 62, 190], [212, 118, 70], [150, 210, 222],
  [182, 180, 172], [118, 190, 112], [232, 212, 162], [170, 92, 205], [225, 160, 90],
];
const HAZE_COLOURS: readonly Rgb[] = [[170, 70, 220], [60, 110, 240], [40, 200, 200], [240, 120, 60], [220, 70, 150]];

/** Distance (px at 1536 wide, scaled with the width) a label keeps from every region boundary. */
export const CLEARANCE_1536 = 6;

const scale = (c: Rgb, k: number): Rgb => [c[0] * k, c[1] * k, c[2] * k];

function borderline(box: PixelBox | undefined, width: number, height: number): boolean {
  if (!box) return false;
  const clr = Math.round((CLEARANCE_1536 * width) / 1536);
  const r = regionBounds(width, height, DEFAULT_QC_OPTIONS);
  const near = (a: number, b: number): boolean => Math.abs(a - b) < clr;
  if (near(box.left, r.left) || near(box.right, r.right) || near(box.top, r.top) || near(box.bottom, r.bottom)) return true;
  const area = ((box.right - box.left) * (box.bottom - box.top)) / (width * height);
  return Math.abs(area - DEFAULT_QC_OPTIONS.minAreaFraction) < 0.1 * DEFAULT_QC_OPTIONS.minAreaFraction || Math.abs(area - DEFAULT_QC_OPTIONS.maxAreaFraction) < 0.1 * DEFAULT_QC_OPTIONS.maxAreaFraction;
}

/** A planet's centre and radius: inside the region (pass-shaped), across a margin, too small, or cut by the frame. */
function placePlanet(rng: () => number, width: number, height: number, category: SceneCategory): { cx: number; cy: number; radius: number } {
  const r = regionBounds(width, height, DEFAULT_QC_OPTIONS);
  const between = (a: number, b: number): number => a + (b - a) * rng();
  if (category === 'cut') {
    const radius = rng() < 0.25 ? between(0.55, 1.2) * height : between(0.15, 0.45) * height;
    const out = between(0.1, 0.6) * radius;
    // The disc reaches `out` past one frame edge.
    const side = Math.floor(rng() * 4);
    const cx = side === 0 ? radius - out : side === 1 ? width - radius + out : between(r.left, r.right);
    const cy = side === 2 ? radius - out : side === 3 ? height - radius + out : between(r.top, r.bottom);
    return { cx, cy, radius };
  }
  const mode = rng();
  if (mode < 0.55) {
    const radius = between(0.11, 0.4) * height;
    const cx = between(r.left + radius, Math.max(r.left + radius, r.right - radius));
    const cy = between(r.top + radius, Math.max(r.top + radius, r.bottom - radius));
    return { cx, cy, radius };
  }
  if (mode < 0.8) {
    // Across one margin by a visible amount.
    const radius = between(0.11, 0.38) * height;
    const into = between(0.04, 0.5) * radius;
    const side = Math.floor(rng() * 4);
    const cx = side === 0 ? r.left + radius - into : side === 1 ? r.right - radius + into : between(r.left + radius, Math.max(r.left + radius, r.right - radius));
    const cy = side === 2 ? r.top + radius - into : side === 3 ? r.bottom - radius + into : between(r.top + radius, Math.max(r.top + radius, r.bottom - radius));
    return { cx, cy, radius };
  }
  // Too small: well below 2% of the frame, placed inside the region.
  const radius = between(0.035, 0.085) * height;
  return { cx: between(r.left + radius, r.right - radius), cy: between(r.top + radius, r.bottom - radius), radius };
}

function planetSpec(rng: () => number, width: number, height: number, category: SceneCategory): PlanetSpec {
  const between = (a: number, b: number): number => a + (b - a) * rng();
  const { cx, cy, radius } = placePlanet(rng, width, height, category);
  let colour = PALETTE[Math.floor(rng() * PALETTE.length)]!;
  if (category === 'dark') colour = scale(colour, between(28, 60) / Math.max(...colour));
  const bandColour = scale([colour[2], colour[0], colour[1]], between(0.6, 0.9));
  const banded = category === 'banded' || (category !== 'disc' && rng() < 0.4);
  const crescent = category === 'crescent';
  const angle = rng() * 2 * Math.PI;
  const lz = crescent ? between(-0.6, -0.1) : between(0.7, 1);
  const lxy = Math.sqrt(1 - lz * lz);
  const storms = banded ? Array.from({ length: Math.floor(rng() * 3) }, () => ({ x: between(-0.5, 0.5), y: between(-0.5, 0.5), rx: between(0.08, 0.2), ry: between(0.05, 0.12), gain: between(-0.35, 0.4) })) : [];
  const ringed = category === 'ringed' || (category === 'moons' && rng() < 0.2);
  return {
    cx, cy, radius, colour, bandColour,
    limbDarkening: between(0.35, 0.65),
    bandAmplitude: banded ? between(0.12, 0.35) : between(0, 0.06),
    bandFrequency: between(3, 9),
    bandTilt: between(-0.35, 0.35),
    storms,
    light: [lxy * Math.cos(angle), lxy * Math.sin(angle), lz],
    ambient: crescent ? between(0, 0.03) : between(0.35, 0.5),
    ...(ringed ? {
      ring: {
        inner: between(1.2, 1.45), outer: between(1.75, 2.3), squash: between(0.14, 0.42), angle: between(-0.3, 0.3),
        colour: scale(colour, between(0.7, 1.05)), opacity: between(0.6, 0.95),
      },
    } : {}),
  };
}

function moonSpecs(rng: () => number, width: number, height: number, planet: PlanetSpec | undefined, count: number, inMargins: boolean): MoonSpec[] {
  const r = regionBounds(width, height, DEFAULT_QC_OPTIONS);
  const moons: MoonSpec[] = [];
  for (let tries = 0; moons.length < count && tries < 200; tries++) {
    const radius = planet ? Math.max(4, Math.min(0.16 * planet.radius * (0.4 + 0.6 * rng()), 0.05 * height)) : 3 + rng() * 0.02 * height;
    const cx = inMargins && moons.length === 0 ? (rng() < 0.5 ? rng() * r.left : r.right + rng() * (width - r.right)) : rng() * width;
    const cy = rng() * height;
    const reach = planet ? planet.radius * (planet.ring ? planet.ring.outer : 1) + radius + 0.04 * height : 0;
    if (planet && Math.hypot(cx - planet.cx, cy - planet.cy) < reach) continue;
    const grey = 120 + rng() * 110;
    moons.push({ cx, cy, radius, colour: [grey, grey * (0.9 + rng() * 0.1), grey * (0.85 + rng() * 0.15)] });
  }
  return moons;
}

function hazeBlobs(rng: () => number, width: number, height: number, strong: boolean): HazeBlob[] {
  const n = strong ? 2 + Math.floor(rng() * 3) : rng() < 0.3 ? 1 + Math.floor(rng() * 2) : 0;
  return Array.from({ length: n }, () => ({
    cx: rng() * width, cy: rng() * height,
    sx: (0.12 + rng() * 0.35) * width, sy: (0.2 + rng() * 0.5) * height,
    colour: HAZE_COLOURS[Math.floor(rng() * HAZE_COLOURS.length)]!,
    amplitude: strong ? 40 + rng() * 70 : 8 + rng() * 22,
  }));
}

/** One evaluation case: deterministic for (category, size, seed). */
export function makeCase(category: SceneCategory, width: number, height: number, seed: number): EvalCase {
  const rng = mulberry32(seed);
  const megapixels = (width * height) / 1e6;
  for (let attempt = 0; ; attempt++) {
    const planet = category === 'none' ? undefined : planetSpec(rng, width, height, category);
    const moonCount = category === 'moons' ? 1 + Math.floor(rng() * 3) : category === 'none' ? Math.floor(rng() * 2) : rng() < 0.2 ? 1 : 0;
    const spec: SceneSpec = {
      width, height, seed,
      skyColour: category === 'dark' ? [1 + rng() * 3, 1 + rng() * 3, 2 + rng() * 5] : [2 + rng() * 6, 2 + rng() * 6, 4 + rng() * 8],
      grain: category === 'dark' ? 1 + rng() * 1.5 : 1 + rng() * 3,
      stars: Math.round(megapixels * (category === 'starfield' || (category === 'none' && rng() < 0.5) ? 4000 + rng() * 6000 : 300 + rng() * 900)),
      haze: hazeBlobs(rng, width, height, category === 'haze' || (category === 'none' && rng() < 0.4)),
      moons: moonSpecs(rng, width, height, planet, moonCount, category === 'moons'),
      ...(planet ? { planet } : {}),
    };
    const box = planetLabel(spec);
    // Keep redrawing borderline geometry (bounded: after 50 tries accept what we have).
    if (borderline(box, width, height) && attempt < 50) continue;
    if (planet && !box && attempt < 50) continue;
    return { id: `${category}-${width}x${height}-${seed}`, category, spec, ...(box ? { box } : {}), expected: judgeBox(box, width, height, DEFAULT_QC_OPTIONS) };
  }
}

/**
 * The evaluation set: `perCell` cases for every category at each of the two sizes
 * (16 → 320 cases). Deterministic: the same cases every run. `first` skips that many seeds per
 * category and size: `evaluationSet(4, 16)` is a held-out set the standard 320 do not contain.
 */
export function evaluationSet(perCell = 16, first = 0): EvalCase[] {
  const cases: EvalCase[] = [];
  SCENE_CATEGORIES.forEach((category, ci) => {
    SCENE_SIZES.forEach(([w, h], si) => {
      for (let i = first; i < first + perCell; i++) cases.push(makeCase(category, w, h, 1_000_003 * (ci + 1) + 7919 * si + i));
    });
  });
  return cases;
}

/** Renders a case's pixels (RGB, 3 channels). */
export function renderCase(c: EvalCase): RawImage {
  return { data: renderSceneSpec(c.spec), width: c.spec.width, height: c.spec.height, channels: 3 };
}

/** Intersection over union of two boxes (0 when either is missing). */
export function iou(a: PixelBox | undefined, b: PixelBox | undefined): number {
  if (!a || !b) return 0;
  const iw = Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left));
  const ih = Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  const inter = iw * ih;
  const union = (a.right - a.left) * (a.bottom - a.top) + (b.right - b.left) * (b.bottom - b.top) - inter;
  return union > 0 ? inter / union : 0;
}
