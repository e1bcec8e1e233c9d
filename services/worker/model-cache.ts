/**
 * The replica's loaded models (used inside the executor thread): loads on demand with one load
 * per model id however many batches ask at once, keeps at most `maxModels` and, optionally,
 * `maxBytes` of LoadedModel.sizeBytes (LRU via {@link planEvictions}), and never disposes a model
 * a batch is running on (leases).
 *
 * A model's size is known only once it is loaded: before a load the cache makes room for the
 * size that model had the last time it was loaded here (0 the first time), and right after the
 * load it evicts least recently used idle models until the budget holds again. A model larger
 * than the whole budget still loads, and stays alone.
 */
import { OrreryError } from '../common/errors.js';
import type { LoadedModel } from '../stages/stage.js';
import { planEvictions, type CacheLimits, type CachedModelState } from './lru-policy.js';

export interface ModelCacheOptions {
  /** Models kept loaded; may be exceeded while more are in use (see planEvictions). */
  readonly maxModels: number;
  /** Bytes (sum of LoadedModel.sizeBytes) kept loaded; absent: unlimited. Exceeded like maxModels. */
  readonly maxBytes?: number;
  /** Loads one model (the stage's `load`). A rejection is passed to every waiter, not cached. */
  readonly load: (modelId: string) => Promise<LoadedModel>;
  /** Monotonic clock in milliseconds (injected for tests). */
  readonly now?: () => number;
  /** A load finished; `seconds` is the load's own duration (excluding evictions before it). */
  readonly onLoad?: (modelId: string, seconds: number, model: LoadedModel) => void;
  /** A model left the cache (its dispose may still be running). */
  readonly onEvict?: (modelId: string) => void;
  /** The loaded or loading lists changed. */
  readonly onChange?: () => void;
  /** A model's dispose() failed; the cache has forgotten it anyway. */
  readonly onDisposeError?: (modelId: string, err: unknown) => void;
}

/** A pinned model: it stays loaded until release(). release() is idempotent. */
export interface ModelLease extends Disposable {
  readonly model: LoadedModel;
  release(): void;
}

interface Entry {
  readonly modelId: string;
  state: 'loading' | 'ready';
  promise: Promise<LoadedModel>;
  model?: LoadedModel;
  /** Leases held. */
  inUse: number;
  lastUsedMs: number;
  /** LoadedModel.sizeBytes once ready; while loading, the size of its previous load here (or 0). */
  sizeBytes: number;
}

export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  /** Sizes of models loaded before (also after eviction): the estimate for their next load. */
  private readonly knownBytes = new Map<string, number>();
  private readonly limits: CacheLimits;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: ModelCacheOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.limits = { maxModels: opts.maxModels, ...(opts.maxBytes !== undefined ? { maxBytes: opts.maxBytes } : {}) };
  }

  /**
   * Loads `modelId` if needed and returns it, marked as just used, WITHOUT pinning it (it may be
   * evicted later): for preloading. Run batches through {@link acquire}.
   */
  async get(modelId: string): Promise<LoadedModel> {
    const entry = this.entryFor(modelId);
    entry.lastUsedMs = this.now();
    return entry.promise;
  }

  /** Loads `modelId` if needed and pins it until the lease is released. */
  async acquire(modelId: string): Promise<ModelLease> {
    const entry = this.entryFor(modelId);
    // Pinned before the load settles, so it cannot be chosen for eviction in between.
    entry.inUse++;
    entry.lastUsedMs = this.now();
    let model: LoadedModel;
    try {
      model = await entry.promise;
    } catch (err) {
      entry.inUse--;
      throw err;
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      entry.inUse--;
      entry.lastUsedMs = this.now();
      // Evictions deferred while everything was in use happen now (evict() handles dispose failures, so this never rejects).
      if (entry.inUse === 0 && this.entries.get(modelId) === entry) void this.evictAll(planEvictions(this.states(), this.limits, { modelId }).evict);
    };
    return { model, release, [Symbol.dispose]: release };
  }

  /** Ready models, most recently used first. */
  loadedModels(): string[] {
    return [...this.entries.values()]
      .filter((e) => e.state === 'ready')
      .sort((a, b) => b.lastUsedMs - a.lastUsedMs)
      .map((e) => e.modelId);
  }

  /** Bytes of the ready models (LoadedModel.sizeBytes). */
  loadedBytes(): number {
    let bytes = 0;
    for (const e of this.entries.values()) if (e.state === 'ready') bytes += e.sizeBytes;
    return bytes;
  }

  /** A model being loaded (the earliest started if several), or undefined. */
  loadingModel(): string | undefined {
    for (const e of this.entries.values()) if (e.state === 'loading') return e.modelId;
    return undefined;
  }

  /** Waits for loads in flight, then disposes every model. Later calls to get/acquire fail. */
  async close(): Promise<void> {
    this.closed = true;
    const entries = [...this.entries.values()];
    await Promise.allSettled(entries.map((e) => e.promise));
    // Not evictions (no onEvict): the models go because the cache does.
    await Promise.all([...this.entries.keys()].map((id) => this.evict(id, false)));
  }

  /** The entries as the policy sees them; `pinned` counts as in use (a model just loaded). */
  private states(pinned?: Entry): CachedModelState[] {
    return [...this.entries.values()].map((e) => ({
      modelId: e.modelId, lastUsedMs: e.lastUsedMs, inUse: e.inUse > 0 || e.state === 'loading' || e === pinned, sizeBytes: e.sizeBytes,
    }));
  }

  private entryFor(modelId: string): Entry {
    if (this.closed) throw new OrreryError('ORRERY_ERR_STAGE_FAILED', `model cache is closed (loading ${modelId})`);
    const existing = this.entries.get(modelId);
    if (existing) return existing;
    const sizeBytes = this.knownBytes.get(modelId) ?? 0;
    const disposals = this.evictAll(planEvictions(this.states(), this.limits, { modelId, sizeBytes }).evict);
    const entry: Entry = { modelId, state: 'loading', inUse: 0, lastUsedMs: this.now(), sizeBytes, promise: Promise.resolve(undefined as never) };
    this.entries.set(modelId, entry);
    entry.promise = this.load(entry, disposals);
    // Callers await entry.promise; this keeps a failure with no waiter left from being "unhandled".
    entry.promise.catch(() => {});
    this.opts.onChange?.();
    return entry;
  }

  private async load(entry: Entry, disposals: Promise<void>): Promise<LoadedModel> {
    try {
      // Free the evicted models' memory (a GPU's, typically) before taking more.
      await disposals;
      const started = performance.now();
      const model = await this.opts.load(entry.modelId);
      entry.state = 'ready';
      entry.model = model;
      entry.sizeBytes = Math.max(0, model.sizeBytes || 0);
      entry.lastUsedMs = this.now();
      this.knownBytes.set(entry.modelId, entry.sizeBytes);
      this.opts.onLoad?.(entry.modelId, (performance.now() - started) / 1000, model);
      // Its size is known only now: make room for it (it stays, as the one just asked for).
      // Not awaited: the batch waiting for this model need not wait for others' disposal.
      if (this.entries.get(entry.modelId) === entry) void this.evictAll(planEvictions(this.states(entry), this.limits, { modelId: entry.modelId }).evict);
      this.opts.onChange?.();
      return model;
    } catch (err) {
      // Not cached: the next get retries. Other models are untouched.
      if (this.entries.get(entry.modelId) === entry) this.entries.delete(entry.modelId);
      this.opts.onChange?.();
      throw err;
    }
  }

  /** Removes the ids from the cache now; resolves when all their disposals have finished. */
  private evictAll(ids: readonly string[]): Promise<void> {
    return Promise.all(ids.map((id) => this.evict(id))).then(() => undefined);
  }

  private async evict(modelId: string, report = true): Promise<void> {
    const entry = this.entries.get(modelId);
    if (!entry) return;
    this.entries.delete(modelId);
    if (report) this.opts.onEvict?.(modelId);
    this.opts.onChange?.();
    try {
      await entry.model?.dispose();
    } catch (err) {
      this.opts.onDisposeError?.(modelId, err);
    }
  }
}
