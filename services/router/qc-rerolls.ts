/**
 * The quality gate's re-roll policy (issue 13), pure: which seed an attempt uses, and what a
 * verdict leads to — keep the image, generate it again, return it flagged, or fail its request.
 */
import { QcFailedError } from '../common/errors.js';
import type { QcOptions } from '../common/qc-config.js';
import type { QcVerdictData } from '../common/qc-verdict.js';

const U64 = (1n << 64n) - 1n;
/** 2^64 / φ, odd: successive attempts' seeds are spread over the whole 64-bit range. */
const SEED_STEP = 0x9e3779b97f4a7c15n;

/**
 * The seed of attempt `attempt` (1, 2, …) of an image whose first seed is `seed`:
 * `seed + (attempt − 1) × 0x9E3779B97F4A7C15 mod 2^64`. Attempt 1 is the seed itself, so a request
 * whose images pass is unchanged by the gate; a re-roll never reuses a neighbour image's seed
 * (`seed + i`) for any realistic `num_images`.
 */
export function attemptSeed(seed: bigint, attempt: number): bigint {
  return (seed + BigInt(attempt - 1) * SEED_STEP) & U64;
}

export type QcDecision =
  /** Passed: keep the image. */
  | { readonly kind: 'accept' }
  /** Failed with attempts left: generate the image again with `seed` as attempt `attempt`. */
  | { readonly kind: 'reroll'; readonly attempt: number; readonly seed: bigint }
  /** Failed on its last attempt, `on_fail: return_flagged`: return it with its failed verdict. */
  | { readonly kind: 'flag' }
  /** Failed on its last attempt, `on_fail: error`: fail the request (FAILED_PRECONDITION). */
  | { readonly kind: 'fail'; readonly error: QcFailedError };

/** What attempt `attempt` of image `imageIndex` (first seed `firstSeed`) leads to, given its verdict. */
export function decideQc(verdict: QcVerdictData, attempt: number, firstSeed: bigint, imageIndex: number, opts: QcOptions, pipeline: string): QcDecision {
  if (verdict.passed) return { kind: 'accept' };
  if (attempt < opts.maxAttempts) return { kind: 'reroll', attempt: attempt + 1, seed: attemptSeed(firstSeed, attempt + 1) };
  if (opts.onFail === 'return_flagged') return { kind: 'flag' };
  return { kind: 'fail', error: new QcFailedError(pipeline, imageIndex, attempt, verdict.reasons) };
}
