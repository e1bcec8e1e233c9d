/** Seeded randomness for load generation, so two runs offer the same arrival pattern. */

/** mulberry32: a small, fast 32-bit PRNG; returns numbers in [0, 1). */
export function seededRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Poisson arrivals: offsets in ms from the start, with exponential inter-arrival times of mean
 * 1000 / ratePerS, until `durationMs`.
 */
export function poissonArrivals(ratePerS: number, durationMs: number, seed: number): number[] {
  const rng = seededRng(seed);
  const meanGapMs = 1000 / ratePerS;
  const out: number[] = [];
  for (let t = -Math.log(1 - rng()) * meanGapMs; t < durationMs; t += -Math.log(1 - rng()) * meanGapMs) out.push(t);
  return out;
}
