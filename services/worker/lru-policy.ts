/**
 * Which loaded models to evict so another fits: least recently used first, never one in use,
 * within a model count (`max_models_per_replica`) and optionally a byte budget
 * (`max_model_bytes_per_replica`). Pure (no clock, no I/O), so model-cache.ts stays the only
 * place with side effects.
 */

export interface CachedModelState {
  readonly modelId: string;
  /** When the model was last acquired or loaded (any monotonic clock, milliseconds). */
  readonly lastUsedMs: number;
  /** A batch is running on it (or it is still loading): it must not be disposed now. */
  readonly inUse: boolean;
  /** Bytes it holds (LoadedModel.sizeBytes); for a model still loading, its last known size or 0. */
  readonly sizeBytes?: number;
}

export interface CacheLimits {
  /** Most models kept; values below 1 count as 1. */
  readonly maxModels: number;
  /** Most bytes kept (sum of sizeBytes); absent: unlimited. */
  readonly maxBytes?: number;
}

/** The model to make room for, with its size when known (0 or absent: unknown). */
export interface IncomingModel {
  readonly modelId: string;
  readonly sizeBytes?: number;
}

/**
 * - `fits`: after evicting `evict`, the cache is within both limits;
 * - `over`: after evicting `evict` (every idle model it could), it is still over a limit:
 *   `oversized` when the incoming model alone exceeds the byte budget (it then stays alone with
 *   the models in use), `in-use` when models in use keep it over. Trimming again when they are
 *   released brings it back.
 */
export type EvictionPlan =
  | { readonly kind: 'fits'; readonly evict: string[] }
  | { readonly kind: 'over'; readonly evict: string[]; readonly reason: 'in-use' | 'oversized'; readonly models: number; readonly bytes: number };

const byAge = (a: CachedModelState, b: CachedModelState): number =>
  a.lastUsedMs - b.lastUsedMs || (a.modelId < b.modelId ? -1 : a.modelId > b.modelId ? 1 : 0);

/**
 * The model ids to evict, oldest first, so that `incoming` fits within `limits`. If `incoming`
 * is already in `loaded`, it trims the cache down to the limits (`incoming` itself is then a
 * candidate like any other idle model, though never evicted for bytes when it would be the last
 * model left: a model larger than the budget is kept alone rather than reloaded at every use).
 *
 * Running batches are never broken to honour a limit. Ties in `lastUsedMs` break by model id, so
 * the choice is deterministic.
 */
export function planEvictions(loaded: readonly CachedModelState[], limits: CacheLimits, incoming: IncomingModel): EvictionPlan {
  const cap = Math.max(1, Math.floor(limits.maxModels));
  const budget = limits.maxBytes ?? Number.POSITIVE_INFINITY;
  const present = loaded.find((m) => m.modelId === incoming.modelId);
  const incomingBytes = Math.max(0, incoming.sizeBytes || present?.sizeBytes || 0);
  let models = loaded.length + (present ? 0 : 1);
  let bytes = loaded.reduce((a, m) => a + (m.modelId === incoming.modelId ? 0 : Math.max(0, m.sizeBytes ?? 0)), 0) + incomingBytes;
  const evict: string[] = [];
  for (const m of loaded.filter((x) => !x.inUse).sort(byAge)) {
    const overCount = models > cap;
    const overBytes = bytes > budget;
    if (!overCount && !overBytes) break;
    // Only bytes are over and this is the last model: keep it (it is what was asked for).
    if (!overCount && models === 1) break;
    evict.push(m.modelId);
    models--;
    bytes -= m.modelId === incoming.modelId ? incomingBytes : Math.max(0, m.sizeBytes ?? 0);
  }
  if (models <= cap && bytes <= budget) return { kind: 'fits', evict };
  const oversized = incomingBytes > budget && !evict.includes(incoming.modelId);
  return { kind: 'over', evict, reason: oversized ? 'oversized' : 'in-use', models, bytes };
}

/**
 * The model ids to evict, oldest first, so that `incoming` fits within `maxModels` (values below
 * 1 count as 1): {@link planEvictions} with a model count only. May return fewer ids than needed
 * when too many models are in use: the cache then holds more than `maxModels` for a while.
 */
export function chooseEvictions(loaded: readonly CachedModelState[], maxModels: number, incoming: string): string[] {
  return planEvictions(loaded, { maxModels }, { modelId: incoming }).evict;
}
