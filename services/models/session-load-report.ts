/**
 * What the optimized-model cache (optimized-model-cache.ts) reports for each session it creates,
 * and the diagnostics channel it reports on. Kept apart from the cache so that subscribers (the
 * executor thread) do not load ONNX Runtime just to listen.
 */

/** Name of the node:diagnostics_channel carrying a {@link SessionLoadReport} per cached load. */
export const SESSION_LOAD_CHANNEL = 'orrery:session-load';

/**
 * - `hit`: created from the cached optimized model;
 * - `miss`: optimized from the source and saved (or another replica saved it first);
 * - `recovered`: the cached entry was unusable (`reason`), was removed, and the model was
 *   optimized from the source and saved again;
 * - `write-failed`: optimized from the source, but nothing could be saved (`reason`);
 * - `bypass`: the cache does not apply (`reason`); a plain load;
 * - `disabled`: no cache directory configured (never published).
 */
export type SessionCacheOutcome = 'hit' | 'miss' | 'recovered' | 'write-failed' | 'bypass' | 'disabled';

export interface SessionLoadReport {
  /** The source model file. */
  readonly modelPath: string;
  readonly outcome: SessionCacheOutcome;
  /** Wall time of the whole load: hashing, session creation, saving. */
  readonly seconds: number;
  /** Part of `seconds` spent hashing the source (0 when the memoized hash was reused). */
  readonly hashSeconds: number;
  /** The cache entry directory, when a key was computed. */
  readonly entryDir?: string;
  /** Why the cache was bypassed, an entry discarded, or saving failed. */
  readonly reason?: string;
}
