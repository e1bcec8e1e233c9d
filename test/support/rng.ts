/** Deterministic random numbers for tests: policies take an injected rng (CONVENTIONS §2). */

/** A deterministic rng in [0, 1): a 32-bit LCG (Numerical Recipes constants). */
export function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** An rng that replays `values` in a loop (to force a particular choice). */
export function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}
