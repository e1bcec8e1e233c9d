/**
 * Which loaded models to evict so another fits: least recently used first, never one in use.
 * Pure (no clock, no I/O), so model-cache.ts stays the only place with side effects.
 */

export interface CachedModelState {
  readonly modelId: string;
  /** When the model was last acquired or loaded (any monotonic clock, milliseconds). */
  readonly lastUsedMs: number;
  /** A batch is running on it (or it is still loading): it must not be disposed now. */
  readonly inUse: boolean;
}

/**
 * The model ids to evict, oldest first, so that `incoming` fits within `maxModels` (values below
 * 1 count as 1). If `incoming` is already in `loaded`, it trims the cache down to `maxModels`
 * (`incoming` itself is then a candidate like any other idle model).
 *
 * May return fewer ids than needed when too many models are in use: the cache then holds more
 * than `maxModels` for a while, and trimming again when a model is released brings it back.
 * Running batches are never broken to honour the cap. Ties in `lastUsedMs` break by model id,
 * so the choice is deterministic.
 */
export function chooseEvictions(loaded: readonly CachedModelState[], maxModels: number, incoming: string): string[] {
  const cap = Math.max(1, Math.floor(maxModels));
  const present = loaded.some((m) => m.modelId === incoming);
  const excess = loaded.length + (present ? 0 : 1) - cap;
  if (excess <= 0) return [];
  return loaded
    .filter((m) => !m.inUse)
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.modelId < b.modelId ? -1 : a.modelId > b.modelId ? 1 : 0))
    .slice(0, excess)
    .map((m) => m.modelId);
}
