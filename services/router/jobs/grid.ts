/**
 * A lazy grid over the planet prompt's axes (JobGrid in image_service.proto). Pure: `item(i)`
 * computes item i from its position in O(1) time and memory, so a 10^7-item grid costs nothing to
 * hold. Item order: colour slowest, then atmosphere, moons, sky, extras, seed index fastest.
 *
 * Seeds come from (job seed, axis indices, seed index) through splitmix64, never from the position,
 * so sampling a grid does not change the seeds of the combinations it keeps. A sample of N of M
 * combinations is the first N of a seeded pseudorandom permutation of [0, M) (a cycle-walking
 * Feistel network): N distinct combinations, no list of M materialized.
 */
import type { PlanetPrompt } from '../planet-prompt.js';

/** The grid as a job stores it (JSON; bigints as decimal strings). */
export interface GridSpec {
  readonly colors: readonly string[];
  readonly atmospheres: readonly string[];
  readonly moons: readonly string[];
  readonly skies: readonly string[];
  /** An axis of extras: empty means no extras axis (and no `e` in ids). */
  readonly extras: readonly string[];
  /** Appended to every item's prompt after the axes. */
  readonly fixedExtras: readonly string[];
  readonly seedsPerPrompt: number;
  /** 0: every combination; N: N combinations drawn with sampleSeed. */
  readonly sample: number;
  readonly sampleSeed: string;
}

export interface GridItem {
  readonly customId: string;
  readonly planet: PlanetPrompt;
  readonly seed: bigint;
}

const U64 = (1n << 64n) - 1n;

/** splitmix64's finalizer: a bijective 64-bit mix (Steele, Lea, Flood 2014). */
export function splitmix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & U64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & U64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & U64;
  return z ^ (z >> 31n);
}

/** A seed derived from a base seed and a path of indices (each index mixed in turn). */
export function deriveSeed(base: bigint, indices: readonly number[]): bigint {
  let h = splitmix64(base & U64);
  for (const v of indices) h = splitmix64(h ^ BigInt(v));
  return h;
}

/** Sizes of the axes as they count in the grid: an empty axis is one empty slot. */
function axisSizes(g: GridSpec): number[] {
  const sizes = [g.colors.length, g.atmospheres.length, g.moons.length, g.skies.length].map((n) => Math.max(1, n));
  if (g.extras.length > 0) sizes.push(g.extras.length);
  return sizes;
}

/** Combinations in the grid before sampling (may exceed 2^53 only for absurd grids; callers cap it). */
export function gridCombinations(g: GridSpec): number {
  return axisSizes(g).reduce((a, b) => a * b, 1);
}

/** Items the grid yields: (sample or every combination) × seeds per prompt. */
export function gridSize(g: GridSpec): number {
  const m = gridCombinations(g);
  return (g.sample > 0 ? Math.min(g.sample, m) : m) * Math.max(1, g.seedsPerPrompt);
}

/** A human-readable account of the grid's size, for errors ("2 colors × 3 atmospheres … = 24 items"). */
export function describeGridSize(g: GridSpec): string {
  const parts = [`${g.colors.length} colors`, `${g.atmospheres.length} atmospheres`, `${g.moons.length} moons`, `${g.skies.length} skies`];
  if (g.extras.length > 0) parts.push(`${g.extras.length} extras`);
  let s = parts.join(' × ');
  if (g.sample > 0) s = `sample ${g.sample} of (${s})`;
  return `${s} × ${Math.max(1, g.seedsPerPrompt)} seeds_per_prompt = ${gridSize(g)} items`;
}

/** 32-bit mix of (key, round, value) for the Feistel round function. */
function roundHash(key: number, round: number, v: number): number {
  let h = Math.imul(v ^ key, 0x9e3779b1) ^ Math.imul(round + 1, 0x85ebca6b);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A seeded pseudorandom permutation of [0, m): a balanced Feistel network over the smallest
 * even-bit domain ≥ m, cycle-walked back into range (expected < 4 steps). O(1) memory.
 */
export class Permutation {
  private readonly halfBits: number;
  private readonly halfMask: number;
  private readonly keys: number[];

  constructor(
    readonly m: number,
    seed: bigint,
  ) {
    let bits = 2;
    while (2 ** bits < m) bits += 2;
    this.halfBits = bits / 2;
    this.halfMask = 2 ** this.halfBits - 1;
    this.keys = [0, 1, 2, 3].map((r) => Number(deriveSeed(seed, [r]) & 0xffffffffn));
  }

  private encrypt(x: number): number {
    const size = 2 ** this.halfBits;
    let left = Math.floor(x / size);
    let right = x % size;
    for (let r = 0; r < this.keys.length; r++) {
      const next = (left ^ (roundHash(this.keys[r]!, r, right) & this.halfMask)) >>> 0;
      left = right;
      right = next;
    }
    return left * size + right;
  }

  /** The image of position `i` (0 ≤ i < m). */
  at(i: number): number {
    let x = this.encrypt(i);
    while (x >= this.m) x = this.encrypt(x);
    return x;
  }
}

/** Zero-padded index: at least `min` digits, enough for the largest index of the axis. */
const pad = (v: number, size: number, min: number): string => String(v).padStart(Math.max(min, String(Math.max(0, size - 1)).length), '0');

/** A grid ready to hand out items by position. */
export class LazyGrid {
  readonly size: number;
  private readonly sizes: number[];
  private readonly perm: Permutation | undefined;
  private readonly seedsPerPrompt: number;

  constructor(
    private readonly spec: GridSpec,
    private readonly jobSeed: bigint,
  ) {
    this.sizes = axisSizes(spec);
    this.seedsPerPrompt = Math.max(1, spec.seedsPerPrompt);
    this.size = gridSize(spec);
    const m = gridCombinations(spec);
    this.perm = spec.sample > 0 && spec.sample < m ? new Permutation(m, BigInt(spec.sampleSeed)) : undefined;
  }

  /** Item `index` (0 ≤ index < size): its id, planet prompt and seed. */
  item(index: number): GridItem {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) throw new RangeError(`grid item ${index} is outside [0, ${this.size})`);
    const k = index % this.seedsPerPrompt;
    const pos = Math.floor(index / this.seedsPerPrompt);
    let combo = this.perm ? this.perm.at(pos) : pos;
    const idx = new Array<number>(this.sizes.length);
    for (let a = this.sizes.length - 1; a >= 0; a--) {
      idx[a] = combo % this.sizes[a]!;
      combo = Math.floor(combo / this.sizes[a]!);
    }
    const g = this.spec;
    const letters = ['c', 'a', 'm', 's', 'e'];
    const customId = [...idx.map((v, a) => `${letters[a]}${pad(v, this.sizes[a]!, 2)}`), `k${pad(k, this.seedsPerPrompt, 1)}`].join('-');
    const extras = [...(g.extras.length > 0 ? [g.extras[idx[4]!]!] : []), ...g.fixedExtras];
    const planet: PlanetPrompt = {
      color: g.colors[idx[0]!] ?? '', atmosphere: g.atmospheres[idx[1]!] ?? '', moons: g.moons[idx[2]!] ?? '', sky: g.skies[idx[3]!] ?? '', extras,
    };
    return { customId, planet, seed: deriveSeed(this.jobSeed, [...idx, k]) };
  }
}
