/**
 * Arithmetic without data-dependent branches for the detector's per-cell loops: sky noise flips
 * comparisons at random, so a branch (a ternary, or Math.max, which branches for NaN and −0)
 * mispredicts about half the time there and costs several times the arithmetic around it.
 */

/** The larger of two non-negative numbers. Exact when a + b and a − b are (float32 values of 0..255 in double arithmetic are). */
export function maxNonNegative(a: number, b: number): number {
  return (a + b + Math.abs(a - b)) * 0.5;
}
