/**
 * Replica selection for the router: power of two choices and model-affinity placement.
 *
 * Pure policy (CONVENTIONS §2): replica state and an injected `rng` come in, a choice comes out.
 * No timers, no clocks, no `Math.random()` — tests drive `rng` with a seeded stub.
 */

/** What the router knows about one replica when it places a batch. */
export interface ReplicaView {
  readonly id: string;
  /** Models loaded (or being loaded) on the replica. */
  readonly loadedModels: readonly string[];
  /** Batches taking slots of this replica: the router's own not yet answered, plus other routers' that its heartbeat lists. */
  readonly ongoingBatches: number;
  readonly maxOngoingBatches: number;
  /** Images in those ongoing batches. */
  readonly inFlightItems: number;
  /** Those ongoing batches that hold online work (absent: treat every batch as online). */
  readonly onlineBatches?: number;
  /**
   * For a busy replica with a spare slot: the earliest time (ms) a *partial* batch may take that
   * slot — when the replica is expected to finish its batches, less one transport overhead
   * (services/router/batch-timings.ts). Absent: any time (idle, or nothing known about its batches).
   */
  readonly partialFromMs?: number;
}

/** Result of {@link placeBatch}. */
export type Placement =
  | { kind: 'hit' | 'miss'; replica: ReplicaView }
  | { kind: 'wait-affinity' }
  | { kind: 'none' };

/** True when the router may send this replica another batch (`ongoingBatches < maxOngoingBatches`). */
export function hasFreeSlot(r: ReplicaView): boolean {
  return r.ongoingBatches < r.maxOngoingBatches;
}

/** True when `modelId` is loaded (or being loaded) on the replica. */
export function holdsModel(r: ReplicaView, modelId: string): boolean {
  return r.loadedModels.includes(modelId);
}

/** Slot occupancy in [0, ∞); a replica with no slots at all counts as fully loaded. */
function occupancy(r: ReplicaView): number {
  return r.maxOngoingBatches > 0 ? r.ongoingBatches / r.maxOngoingBatches : Number.POSITIVE_INFINITY;
}

/**
 * Negative when `a` is less loaded than `b`: occupancy first, then the one expected to be free
 * sooner (`partialFromMs`, when both have one), then in-flight images.
 */
function compareLoad(a: ReplicaView, b: ReplicaView): number {
  const byOccupancy = occupancy(a) - occupancy(b);
  if (byOccupancy !== 0 && !Number.isNaN(byOccupancy)) return byOccupancy;
  if (a.partialFromMs !== undefined && b.partialFromMs !== undefined && a.partialFromMs !== b.partialFromMs) return a.partialFromMs - b.partialFromMs;
  return a.inFlightItems - b.inFlightItems;
}

/** Uniform integer in [0, n); clamped so an rng that returns exactly 1 cannot index past the end. */
function randomIndex(n: number, rng: () => number): number {
  return Math.min(n - 1, Math.max(0, Math.floor(rng() * n)));
}

/**
 * Power of two choices among `candidates`: sample two distinct candidates with `rng`, return the
 * less loaded one (lower `ongoingBatches / maxOngoingBatches`, then earlier `partialFromMs`, then
 * fewer `inFlightItems`, then a coin flip with `rng`). A single candidate is returned as is.
 *
 * Sampling two instead of scanning all keeps many routers from herding onto the same "least
 * loaded" replica between state updates, while still never choosing the most loaded of the pair.
 *
 * @param rng returns a number in [0, 1); called two or three times.
 * @throws RangeError when `candidates` is empty (callers must filter first).
 */
export function pickPowerOfTwo(candidates: readonly ReplicaView[], rng: () => number): ReplicaView {
  const n = candidates.length;
  if (n === 0) throw new RangeError('pickPowerOfTwo: candidates must not be empty');
  if (n === 1) return candidates[0]!;
  const i = randomIndex(n, rng);
  let j = randomIndex(n - 1, rng);
  if (j >= i) j += 1; // skip i so the two samples are distinct
  const a = candidates[i]!;
  const b = candidates[j]!;
  const cmp = compareLoad(a, b);
  if (cmp < 0) return a;
  if (cmp > 0) return b;
  return rng() < 0.5 ? a : b;
}

/**
 * Model-affinity placement of one batch of `modelId` (DESIGN §4 "multiplexing").
 *
 * Only replicas with a free slot ({@link hasFreeSlot}) can receive the batch:
 * - no free replica at all → `{kind: 'none'}`;
 * - free replicas holding the model → {@link pickPowerOfTwo} among them → `{kind: 'hit'}`;
 * - some replica holds the model but none of those is free, and `spill` is false →
 *   `{kind: 'wait-affinity'}` (the caller holds the batch for the holder);
 * - otherwise the free replicas with the fewest loaded models → {@link pickPowerOfTwo} among
 *   them → `{kind: 'miss'}`; that replica will load the model (evicting its LRU one if full).
 *
 * @param spill true when the caller allows a miss even though a busy replica holds the model.
 */
export function placeBatch(
  modelId: string,
  replicas: readonly ReplicaView[],
  spill: boolean,
  rng: () => number,
): Placement {
  const free = replicas.filter(hasFreeSlot);
  if (free.length === 0) return { kind: 'none' };

  const freeHolders = free.filter((r) => holdsModel(r, modelId));
  if (freeHolders.length > 0) return { kind: 'hit', replica: pickPowerOfTwo(freeHolders, rng) };

  if (!spill && replicas.some((r) => holdsModel(r, modelId))) return { kind: 'wait-affinity' };

  let fewest = Number.POSITIVE_INFINITY;
  for (const r of free) fewest = Math.min(fewest, r.loadedModels.length);
  const emptiest = free.filter((r) => r.loadedModels.length === fewest);
  return { kind: 'miss', replica: pickPowerOfTwo(emptiest, rng) };
}
