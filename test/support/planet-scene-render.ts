/**
 * Raw-pixel renderer for the QC evaluation scenes (planet-scenes.ts): sky with grain, nebula
 * haze, stars, a limb-darkened planet with bands, storms, phase (crescents) and rings, and moons.
 * Pure and deterministic for a given scene description and seed.
 */
import { mulberry32 } from '../../services/models/demo-models.js';
import type { PixelBox } from '../../services/stages/qc/planet-detect.js';

export type Rgb = readonly [number, number, number];

export interface RingSpec {
  /** Inner and outer ring radius in the ring plane, in planet radii. */
  readonly inner: number;
  readonly outer: number;
  /** Minor/major axis ratio of the projected ring (sine of the inclination). */
  readonly squash: number;
  /** Rotation of the ring's major axis, radians. */
  readonly angle: number;
  readonly colour: Rgb;
  readonly opacity: number;
}

export interface PlanetSpec {
  readonly cx: number;
  readonly cy: number;
  readonly radius: number;
  readonly colour: Rgb;
  /** Second colour the bands blend toward. */
  readonly bandColour: Rgb;
  /** Linear limb-darkening coefficient u: I = 1 − u (1 − mu). */
  readonly limbDarkening: number;
  readonly bandAmplitude: number;
  readonly bandFrequency: number;
  readonly bandTilt: number;
  readonly storms: ReadonlyArray<{ readonly x: number; readonly y: number; readonly rx: number; readonly ry: number; readonly gain: number }>;
  /** Direction of the light (unit vector; z toward the viewer). z < 0 makes a crescent. */
  readonly light: readonly [number, number, number];
  /** Fraction of light that reaches the night side (0: black night side). */
  readonly ambient: number;
  readonly ring?: RingSpec;
}

export interface MoonSpec {
  readonly cx: number;
  readonly cy: number;
  readonly radius: number;
  readonly colour: Rgb;
}

export interface HazeBlob {
  readonly cx: number;
  readonly cy: number;
  readonly sx: number;
  readonly sy: number;
  readonly colour: Rgb;
  /** Peak added value (0..255 scale) before cloud modulation. */
  readonly amplitude: number;
}

export interface SceneSpec {
  readonly width: number;
  readonly height: number;
  readonly seed: number;
  readonly skyColour: Rgb;
  readonly grain: number;
  readonly stars: number;
  readonly haze: readonly HazeBlob[];
  readonly planet?: PlanetSpec;
  readonly moons: readonly MoonSpec[];
}

/** A planet (or ring) pixel: its colour, opacity, and whether a person would see it as part of the planet. */
interface Sample {
  r: number;
  g: number;
  b: number;
  alpha: number;
}

function planetSample(p: PlanetSpec, x: number, y: number, out: Sample): void {
  const dx = (x + 0.5 - p.cx) / p.radius;
  const dy = (y + 0.5 - p.cy) / p.radius;
  const d2 = dx * dx + dy * dy;
  const d = Math.sqrt(d2);
  // Anti-aliased edge: coverage over one pixel across the limb.
  out.alpha = Math.max(0, Math.min(1, (1 - d) * p.radius + 0.5));
  if (out.alpha <= 0) return;
  const mu = Math.sqrt(Math.max(0, 1 - Math.min(1, d2)));
  const limb = 1 - p.limbDarkening * (1 - mu);
  const [lx, ly, lz] = p.light;
  const lambert = Math.max(0, dx * lx + dy * ly + mu * lz);
  const light = limb * (p.ambient + (1 - p.ambient) * lambert);
  // Bands run along the tilted latitude; a little wobble keeps them from looking ruled.
  const lat = dy * Math.cos(p.bandTilt) - dx * Math.sin(p.bandTilt);
  const band = 0.5 + 0.5 * Math.sin(lat * p.bandFrequency * Math.PI + 0.8 * Math.sin(dx * 5 + lat * 3));
  let gain = 1 - p.bandAmplitude * band;
  for (const s of p.storms) {
    const sx = (dx - s.x) / s.rx;
    const sy = (dy - s.y) / s.ry;
    const q = sx * sx + sy * sy;
    if (q < 1) gain *= 1 + s.gain * (1 - q);
  }
  const mix = band * 0.6;
  out.r = (p.colour[0] * (1 - mix) + p.bandColour[0] * mix) * gain * light;
  out.g = (p.colour[1] * (1 - mix) + p.bandColour[1] * mix) * gain * light;
  out.b = (p.colour[2] * (1 - mix) + p.bandColour[2] * mix) * gain * light;
}

/** The ring at a pixel; `front` tells whether this part of the ring passes in front of the disc. */
function ringSample(p: PlanetSpec, ring: RingSpec, x: number, y: number, out: Sample): { front: boolean } {
  const dx = x + 0.5 - p.cx;
  const dy = y + 0.5 - p.cy;
  const c = Math.cos(ring.angle);
  const s = Math.sin(ring.angle);
  const u = (dx * c + dy * s) / p.radius;
  const v = (-dx * s + dy * c) / p.radius;
  const rho = Math.sqrt(u * u + (v / ring.squash) ** 2);
  out.alpha = 0;
  if (rho < ring.inner || rho > ring.outer) return { front: v > 0 };
  const t = (rho - ring.inner) / (ring.outer - ring.inner);
  // Radial structure: a few gaps and ringlets, as in Saturn's.
  const structure = 0.55 + 0.45 * Math.sin(t * 23) * Math.sin(t * 7 + 1);
  const edge = Math.min(1, (rho - ring.inner) * p.radius, (ring.outer - rho) * p.radius);
  out.alpha = ring.opacity * structure * Math.max(0, Math.min(1, edge));
  out.r = ring.colour[0];
  out.g = ring.colour[1];
  out.b = ring.colour[2];
  return { front: v > 0 };
}

/** The value (max channel) a pixel of the planet must add to count as visible in the label. */
export function visibilityLevel(p: PlanetSpec): number {
  return Math.max(8, 0.1 * Math.max(...p.colour));
}

/**
 * The planet's labelled box: pixels where the body (or its ring) covers at least half the pixel
 * and adds at least visibilityLevel() of value — what a person would outline. Clipped to the frame.
 */
export function planetLabel(spec: SceneSpec): PixelBox | undefined {
  const p = spec.planet;
  if (!p) return undefined;
  const reach = p.radius * (p.ring ? p.ring.outer : 1) + 2;
  const x0 = Math.max(0, Math.floor(p.cx - reach));
  const x1 = Math.min(spec.width, Math.ceil(p.cx + reach));
  const y0 = Math.max(0, Math.floor(p.cy - reach));
  const y1 = Math.min(spec.height, Math.ceil(p.cy + reach));
  const level = visibilityLevel(p);
  const s: Sample = { r: 0, g: 0, b: 0, alpha: 0 };
  let left = Infinity;
  let right = -Infinity;
  let top = Infinity;
  let bottom = -Infinity;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      planetSample(p, x, y, s);
      let seen = s.alpha >= 0.5 && Math.max(s.r, s.g, s.b) >= level;
      if (!seen && p.ring) {
        const { front } = ringSample(p, p.ring, x, y, s);
        const hidden = !front && Math.hypot(x + 0.5 - p.cx, y + 0.5 - p.cy) < p.radius;
        seen = !hidden && s.alpha >= 0.5 && s.alpha * Math.max(s.r, s.g, s.b) >= level;
      }
      if (!seen) continue;
      if (x < left) left = x;
      if (x > right) right = x;
      if (y < top) top = y;
      if (y > bottom) bottom = y;
    }
  }
  return right < left ? undefined : { left, top, right: right + 1, bottom: bottom + 1 };
}

function gaussian(rng: () => number): number {
  const u = Math.max(1e-12, rng());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

function addHaze(img: Float32Array, spec: SceneSpec, rng: () => number): void {
  if (spec.haze.length === 0) return;
  // Haze is smooth: compute it on a grid 8x coarser and interpolate bilinearly.
  const f = 8;
  const gw = Math.ceil(spec.width / f) + 2;
  const gh = Math.ceil(spec.height / f) + 2;
  const field = new Float32Array(gw * gh * 3);
  // Cloud texture: random values on a coarse lattice, smoothly interpolated.
  const lw = 14;
  const lh = 8;
  const lattice = Array.from({ length: (lw + 1) * (lh + 1) }, () => 0.35 + 0.65 * rng());
  const cloud = (gx: number, gy: number): number => {
    const u = (gx / gw) * lw;
    const v = (gy / gh) * lh;
    const i = Math.min(lw - 1, Math.floor(u));
    const j = Math.min(lh - 1, Math.floor(v));
    const fu = (u - i) * (u - i) * (3 - 2 * (u - i));
    const fv = (v - j) * (v - j) * (3 - 2 * (v - j));
    const at = (a: number, b: number): number => lattice[b * (lw + 1) + a]!;
    return at(i, j) * (1 - fu) * (1 - fv) + at(i + 1, j) * fu * (1 - fv) + at(i, j + 1) * (1 - fu) * fv + at(i + 1, j + 1) * fu * fv;
  };
  for (let gy = 0; gy < gh; gy++) {
    for (let gx = 0; gx < gw; gx++) {
      const x = gx * f;
      const y = gy * f;
      const c = cloud(gx, gy);
      for (const b of spec.haze) {
        const q = ((x - b.cx) / b.sx) ** 2 + ((y - b.cy) / b.sy) ** 2;
        if (q > 12) continue;
        const a = b.amplitude * c * Math.exp(-0.5 * q) / 255;
        const k = (gy * gw + gx) * 3;
        field[k]! += a * b.colour[0];
        field[k + 1]! += a * b.colour[1];
        field[k + 2]! += a * b.colour[2];
      }
    }
  }
  for (let y = 0; y < spec.height; y++) {
    const gy = y / f;
    const j = Math.floor(gy);
    const fy = gy - j;
    for (let x = 0; x < spec.width; x++) {
      const gx = x / f;
      const i = Math.floor(gx);
      const fx = gx - i;
      const p = (y * spec.width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const a = field[(j * gw + i) * 3 + ch]!;
        const b = field[(j * gw + i + 1) * 3 + ch]!;
        const c = field[((j + 1) * gw + i) * 3 + ch]!;
        const d = field[((j + 1) * gw + i + 1) * 3 + ch]!;
        img[p + ch]! += (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy;
      }
    }
  }
}

function addStars(img: Float32Array, spec: SceneSpec, rng: () => number): void {
  const { width, height } = spec;
  for (let n = 0; n < spec.stars; n++) {
    const x = rng() * width;
    const y = rng() * height;
    // Most stars are faint: brightness falls as a power law.
    const peak = 30 + 225 * rng() ** 3;
    const tint: Rgb = rng() < 0.7 ? [1, 1, 1] : rng() < 0.5 ? [1, 0.85, 0.7] : [0.75, 0.85, 1];
    const sigma = rng() < 0.8 ? 0.45 : 0.6 + rng() * 0.7;
    const r = Math.ceil(sigma * 3);
    for (let yy = Math.max(0, Math.floor(y) - r); yy <= Math.min(height - 1, Math.floor(y) + r); yy++) {
      for (let xx = Math.max(0, Math.floor(x) - r); xx <= Math.min(width - 1, Math.floor(x) + r); xx++) {
        const q = ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (2 * sigma * sigma);
        const a = peak * Math.exp(-q);
        if (a < 0.5) continue;
        const p = (yy * width + xx) * 3;
        img[p]! += a * tint[0];
        img[p + 1]! += a * tint[1];
        img[p + 2]! += a * tint[2];
      }
    }
  }
}

function composite(img: Float32Array, width: number, x: number, y: number, s: Sample): void {
  const p = (y * width + x) * 3;
  img[p] = img[p]! * (1 - s.alpha) + s.r * s.alpha;
  img[p + 1] = img[p + 1]! * (1 - s.alpha) + s.g * s.alpha;
  img[p + 2] = img[p + 2]! * (1 - s.alpha) + s.b * s.alpha;
}

function drawPlanet(img: Float32Array, spec: SceneSpec, p: PlanetSpec): void {
  const reach = p.radius * (p.ring ? p.ring.outer : 1) + 2;
  const x0 = Math.max(0, Math.floor(p.cx - reach));
  const x1 = Math.min(spec.width, Math.ceil(p.cx + reach));
  const y0 = Math.max(0, Math.floor(p.cy - reach));
  const y1 = Math.min(spec.height, Math.ceil(p.cy + reach));
  const s: Sample = { r: 0, g: 0, b: 0, alpha: 0 };
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      let front = false;
      if (p.ring) {
        front = ringSample(p, p.ring, x, y, s).front;
        if (!front && s.alpha > 0) composite(img, spec.width, x, y, s);
      }
      planetSample(p, x, y, s);
      if (s.alpha > 0) composite(img, spec.width, x, y, s);
      if (p.ring && front) {
        ringSample(p, p.ring, x, y, s);
        if (s.alpha > 0) composite(img, spec.width, x, y, s);
      }
    }
  }
}

function drawMoon(img: Float32Array, spec: SceneSpec, m: MoonSpec): void {
  const moon: PlanetSpec = {
    cx: m.cx, cy: m.cy, radius: m.radius, colour: m.colour, bandColour: m.colour, limbDarkening: 0.5,
    bandAmplitude: 0, bandFrequency: 1, bandTilt: 0, storms: [], light: [0, 0, 1], ambient: 1,
  };
  drawPlanet(img, spec, moon);
}

/** Renders a scene to raw RGB bytes (3 channels, rows top to bottom). */
export function renderSceneSpec(spec: SceneSpec): Uint8Array {
  const { width, height } = spec;
  const rng = mulberry32(spec.seed ^ 0x5eed);
  const img = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    img[i * 3] = spec.skyColour[0];
    img[i * 3 + 1] = spec.skyColour[1];
    img[i * 3 + 2] = spec.skyColour[2];
  }
  addHaze(img, spec, rng);
  addStars(img, spec, rng);
  for (const m of spec.moons) drawMoon(img, spec, m);
  if (spec.planet) drawPlanet(img, spec, spec.planet);
  const out = new Uint8Array(img.length);
  // Film grain last, so it lies on planet and sky alike.
  for (let i = 0; i < img.length; i += 3) {
    const g = gaussian(rng) * spec.grain;
    for (let ch = 0; ch < 3; ch++) out[i + ch] = Math.max(0, Math.min(255, Math.round(img[i + ch]! + g + (rng() - 0.5) * spec.grain)));
  }
  return out;
}
