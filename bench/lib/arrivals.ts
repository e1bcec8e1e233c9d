/** Seeded randomness for load generation, so two runs offer the same arrival pattern. */
import { mulberry32 } from '../../services/models/demo-models.js';

/**
 * Poisson arrivals: offsets in ms from the start, with exponential inter-arrival times of mean
 * 1000 / ratePerS, until `durationMs`.
 */
export function poissonArrivals(ratePerS: number, durationMs: number, seed: number): number[] {
  const rng = mulberry32(seed);
  const meanGapMs = 1000 / ratePerS;
  const out: number[] = [];
  for (let t = -Math.log(1 - rng()) * meanGapMs; t < durationMs; t += -Math.log(1 - rng()) * meanGapMs) out.push(t);
  return out;
}
