/**
 * Batch forming for the router (DESIGN §4): which queued requests go together, to which replica,
 * and when.
 *
 * Pure policy (CONVENTIONS §2): the queue, replica views, options, `nowMs` and an injected `rng`
 * come in; a tagged {@link BatchDecision} comes out. The caller applies the decision (removes the
 * items, sends the batch, bumps the replica's counters) and calls again until it gets `wait` or
 * `idle`.
 */

import { hasFreeSlot, holdsModel, placeBatch, type Placement, type ReplicaView } from './replica-picker.js';

/** One queued request as the policy sees it. */
export interface QueuedItem {
  /** Batch key: items with equal keys may share a batch (model, size, steps, … — built by the caller). */
  readonly key: string;
  readonly modelId: string;
  readonly enqueuedAtMs: number;
  /** Absolute deadline in ms, 0 = none. Expired items are removed by the caller before each call. */
  readonly deadlineMs: number;
  /** `bulk` items (bulk jobs) go only after every group holding an online item; absent: online. */
  readonly priority?: 'online' | 'bulk';
}

export interface BatchPolicyOptions {
  /** Images per batch (≥ 1). */
  readonly maxBatchSize: number;
  /** Longest a partial batch waits for company; 0 sends partial batches at once. */
  readonly batchWaitTimeoutMs: number;
  /** Longest a group waits for a busy replica that holds its model before spilling to another replica. */
  readonly affinityWaitMs: number;
  /**
   * A group also spills when it holds more than this many full batches per replica holding its
   * model (default 1). Loading a model costs far more than a batch on a GPU, so deployments set it
   * higher: a backlog of a batch or two is cheaper to wait out than a reload.
   */
  readonly spillBacklogBatches?: number;
}

export type BatchDecision =
  | { kind: 'dispatch'; replicaId: string; key: string; modelId: string; indexes: number[]; affinity: 'hit' | 'miss' }
  /** Re-run the policy at `untilMs` (or earlier if the queue or replicas change). */
  | { kind: 'wait'; untilMs: number }
  /** Nothing to do until the queue or replicas change. */
  | { kind: 'idle' };

/** Queue items sharing one batch key; `indexes` are queue positions in arrival order. */
export interface Group {
  readonly key: string;
  readonly modelId: string;
  readonly indexes: number[];
  readonly headEnqueuedAtMs: number;
  /** Holds at least one online item. */
  readonly online: boolean;
}

/** A group with its placement and the earliest time its batch may leave. */
interface Candidate {
  readonly group: Group;
  readonly placement: Placement;
  /** The group's oldest item has waited `affinityWaitMs`: it goes ahead of everything else. */
  readonly overdue: boolean;
  /** The group may go to a replica that must load its model (see decideBatch). */
  readonly spill: boolean;
}

/** The queue's groups, in the order their first items appear (room-policy.ts shares it). */
export function groupByKey(queue: readonly QueuedItem[]): Group[] {
  const byKey = new Map<string, { key: string; modelId: string; indexes: number[]; headEnqueuedAtMs: number; online: boolean }>();
  queue.forEach((item, index) => {
    const online = item.priority !== 'bulk';
    const group = byKey.get(item.key);
    if (group) {
      group.indexes.push(index);
      group.online ||= online;
    } else byKey.set(item.key, { key: item.key, modelId: item.modelId, indexes: [index], headEnqueuedAtMs: item.enqueuedAtMs, online });
  });
  return [...byKey.values()];
}

/**
 * When the group's next batch may leave: now if it is full; otherwise when its oldest item has
 * waited `batchWaitTimeoutMs`. If that wait would reach the earliest deadline in the batch, the
 * batch leaves now — waiting for company must never cost a request its deadline.
 */
function readyAtMs(group: Group, queue: readonly QueuedItem[], opts: BatchPolicyOptions, nowMs: number): number {
  if (group.indexes.length >= opts.maxBatchSize) return nowMs;
  const timerAtMs = group.headEnqueuedAtMs + opts.batchWaitTimeoutMs;
  let earliestDeadlineMs = Number.POSITIVE_INFINITY;
  for (const i of group.indexes) {
    const deadlineMs = queue[i]!.deadlineMs;
    if (deadlineMs > 0) earliestDeadlineMs = Math.min(earliestDeadlineMs, deadlineMs);
  }
  return timerAtMs >= earliestDeadlineMs ? nowMs : timerAtMs;
}

/**
 * Candidate order: (0) overdue groups, oldest head first; (1) groups with an affinity hit on a
 * free replica, largest first, ties by oldest head; (2) the rest, oldest head first.
 */
function rank(c: Candidate): number {
  if (c.overdue) return 0;
  return c.placement.kind === 'hit' ? 1 : 2;
}

function compareCandidates(a: Candidate, b: Candidate): number {
  if (a.group.online !== b.group.online) return a.group.online ? -1 : 1;
  const byRank = rank(a) - rank(b);
  if (byRank !== 0) return byRank;
  if (rank(a) === 1) {
    const bySize = b.group.indexes.length - a.group.indexes.length;
    if (bySize !== 0) return bySize;
  }
  return a.group.headEnqueuedAtMs - b.group.headEnqueuedAtMs;
}

/**
 * Decide the next batch.
 *
 * - Empty queue, or no replica with a free slot (including no replicas at all) → `idle`. Under
 *   load items simply accumulate, so the batch taken when a slot frees is as large as allowed.
 * - The queue is grouped by `key`. A group may **spill** (be placed on a replica that must load its
 *   model although a busy replica holds it) when its oldest item has waited ≥ `affinityWaitMs`, or
 *   when it holds more than `maxBatchSize × holders × spillBacklogBatches` items (`holders` =
 *   replicas holding the model, busy or not) — the holders cannot absorb it soon. A model held
 *   nowhere always "spills".
 *   Otherwise a group whose holders are all busy gets `wait-affinity` and is skipped.
 * - **Online first**: groups holding an online item are tried before groups of bulk items only,
 *   and the caller queues online items ahead of bulk ones, so a batch's oldest items — the ones
 *   taken — are online ones; bulk items fill the rest of a batch of their key.
 * - Within each of those two sets, groups are tried in order: overdue groups (oldest item waited ≥ `affinityWaitMs`) oldest first,
 *   so no group starves; then groups with a hit on a free replica, largest first (keeps a mixed
 *   stream from reloading models back and forth); then the rest, oldest first (FIFO).
 * - The first group in that order that is **ready** is dispatched: full (≥ `maxBatchSize` items),
 *   or its oldest item has waited ≥ `batchWaitTimeoutMs`, or waiting that long would reach the
 *   earliest deadline among its items. Its oldest `maxBatchSize` items go out.
 * - **Prefetch timing.** A busy replica's spare slot (max_ongoing_batches ≥ 2) takes a *full* batch
 *   at once — it can only wait there — but a *partial* one only from the replica's
 *   `partialFromMs` on (about when it will be free): until then the partial batch stays queued,
 *   where later requests can still join it, or goes to a replica that can start it sooner. So
 *   a second slot hides the round trip between batches without splitting the queue into small
 *   batches.
 * - If no group is ready → `wait` until the earliest time one becomes ready, a skipped group
 *   would spill (`oldest.enqueuedAtMs + affinityWaitMs`) or a busy replica's spare slot opens to
 *   partial batches. `untilMs` is always > `nowMs`.
 *
 * @param queue items in arrival order; `indexes` in the result are positions in it, oldest first,
 *   at most `maxBatchSize`, all with the same key.
 * @param rng returns a number in [0, 1); breaks ties between equally good replicas.
 */
export function decideBatch(
  queue: readonly QueuedItem[],
  replicas: readonly ReplicaView[],
  opts: BatchPolicyOptions,
  nowMs: number,
  rng: () => number,
): BatchDecision {
  if (queue.length === 0 || !replicas.some(hasFreeSlot)) {
    return { kind: 'idle' };
  }

  const candidates: Candidate[] = groupByKey(queue).map((group) => {
    const overdue = nowMs - group.headEnqueuedAtMs >= opts.affinityWaitMs;
    const holders = replicas.filter((r) => holdsModel(r, group.modelId)).length;
    const spill = overdue || group.indexes.length > opts.maxBatchSize * holders * (opts.spillBacklogBatches ?? 1);
    return { group, overdue, spill, placement: placeBatch(group.modelId, replicas, spill, rng) };
  });
  candidates.sort(compareCandidates);

  let untilMs = Number.POSITIVE_INFINITY;
  // Busy replicas whose spare slot is not open to partial batches yet, and when it opens.
  let partialOpensMs = Number.POSITIVE_INFINITY;
  for (const r of replicas) {
    if (hasFreeSlot(r) && r.partialFromMs !== undefined && r.partialFromMs > nowMs) partialOpensMs = Math.min(partialOpensMs, r.partialFromMs);
  }
  const partialViews = Number.isFinite(partialOpensMs) ? replicas.map((r) => (r.partialFromMs !== undefined && r.partialFromMs > nowMs ? { ...r, ongoingBatches: r.maxOngoingBatches } : r)) : replicas;
  for (const c of candidates) {
    const { group } = c;
    let placement = c.placement;
    if (placement.kind !== 'wait-affinity' && placement.kind !== 'none' && group.indexes.length < opts.maxBatchSize && placement.replica.partialFromMs !== undefined && placement.replica.partialFromMs > nowMs) {
      // A partial batch for a replica still busy: it would sit there while more requests could
      // join it. Place it among the replicas that can start it soon, or keep it queued.
      placement = placeBatch(group.modelId, partialViews, c.spill, rng);
      if (placement.kind === 'none' || placement.kind === 'wait-affinity') {
        untilMs = Math.min(untilMs, partialOpensMs);
        continue;
      }
    }
    if (placement.kind === 'wait-affinity') {
      // Not overdue (else it would spill), so this lies in the future.
      untilMs = Math.min(untilMs, group.headEnqueuedAtMs + opts.affinityWaitMs);
      continue;
    }
    // 'none' cannot happen here (a free replica exists); guard for the type checker.
    if (placement.kind === 'none') continue;
    const readyMs = readyAtMs(group, queue, opts, nowMs);
    if (readyMs > nowMs) {
      untilMs = Math.min(untilMs, readyMs);
      continue;
    }
    return {
      kind: 'dispatch',
      replicaId: placement.replica.id,
      key: group.key,
      modelId: group.modelId,
      indexes: group.indexes.slice(0, opts.maxBatchSize),
      affinity: placement.kind,
    };
  }
  return Number.isFinite(untilMs) ? { kind: 'wait', untilMs } : { kind: 'idle' };
}
