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

/**
 * Queue items sharing one batch key and priority; `indexes` are queue positions in arrival order.
 * A key with online and bulk items makes two groups: the online one carries the bulk items as
 * `fill`, which ride along only on an idle replica (see decideBatch).
 */
export interface Group {
  readonly key: string;
  readonly modelId: string;
  readonly indexes: number[];
  readonly headEnqueuedAtMs: number;
  /** Holds online items (else bulk items only). */
  readonly online: boolean;
  /** For an online group: the bulk items of its key, which may fill its batch on an idle replica. */
  readonly fill: number[];
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

/** The queue's groups: online groups first, then bulk ones, each in the order its first item appears (room-policy.ts shares it). */
export function groupByKey(queue: readonly QueuedItem[]): Group[] {
  const online = new Map<string, Group>();
  const bulk = new Map<string, Group>();
  queue.forEach((item, index) => {
    const groups = item.priority === 'bulk' ? bulk : online;
    const group = groups.get(item.key);
    if (group) group.indexes.push(index);
    else groups.set(item.key, { key: item.key, modelId: item.modelId, indexes: [index], headEnqueuedAtMs: item.enqueuedAtMs, online: groups === online, fill: [] });
  });
  for (const g of online.values()) g.fill.push(...(bulk.get(g.key)?.indexes ?? []));
  return [...online.values(), ...bulk.values()];
}

/**
 * When the group's next batch may leave: now if it is full; otherwise when its oldest item has
 * waited `batchWaitTimeoutMs`. If that wait would reach the earliest deadline in the batch, the
 * batch leaves now — waiting for company must never cost a request its deadline.
 */
function readyAtMs(group: Group, indexes: readonly number[], queue: readonly QueuedItem[], opts: BatchPolicyOptions, nowMs: number): number {
  if (indexes.length >= opts.maxBatchSize) return nowMs;
  const timerAtMs = group.headEnqueuedAtMs + opts.batchWaitTimeoutMs;
  let earliestDeadlineMs = Number.POSITIVE_INFINITY;
  for (const i of indexes) {
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
 * The replicas as a group holding online work sees them: a replica with a bulk-only batch in
 * flight has one slot more (the *priority slot*) and no prefetch hold (it would wait for the bulk
 * batches too), so online work reaches it at once and its device lock runs it ahead of every
 * waiting bulk batch (device-lock.ts) — a saturating bulk job never makes an online request wait
 * behind more than the batch running now.
 */
function onlineViews(replicas: readonly ReplicaView[]): readonly ReplicaView[] {
  return replicas.map((r) => {
    if ((r.onlineBatches ?? r.ongoingBatches) >= r.ongoingBatches) return r;
    const { partialFromMs: _hold, ...rest } = r;
    return { ...rest, maxOngoingBatches: r.maxOngoingBatches + 1 };
  });
}

/** Busy replicas whose spare slot is not open to partial batches yet, when it opens, and the views without them. */
function prefetchViews(replicas: readonly ReplicaView[], nowMs: number): { partialOpensMs: number; partialViews: readonly ReplicaView[] } {
  let partialOpensMs = Number.POSITIVE_INFINITY;
  for (const r of replicas) {
    if (hasFreeSlot(r) && r.partialFromMs !== undefined && r.partialFromMs > nowMs) partialOpensMs = Math.min(partialOpensMs, r.partialFromMs);
  }
  const partialViews = Number.isFinite(partialOpensMs) ? replicas.map((r) => (r.partialFromMs !== undefined && r.partialFromMs > nowMs ? { ...r, ongoingBatches: r.maxOngoingBatches } : r)) : replicas;
  return { partialOpensMs, partialViews };
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
 * - **Online first**: the online items of a key form one group and its bulk items another; online
 *   groups are tried first. Bulk items fill the rest of an online batch only when it goes to an
 *   idle replica (behind a running batch they would add a second batch time to the online
 *   items' wait); otherwise online batches hold online items only. A replica with a bulk batch in
 *   flight has a priority slot for online work (see onlineViews), and its device lock runs
 *   the online batch next: an online request so waits at most one batch time more than on an
 *   idle cluster — the batch running ahead of it, or the bulk items riding along, never both.
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
 * - **Reserved slots.** While an online group waits for a replica (its batch is not ready yet, or
 *   held by prefetch timing), bulk groups are not placed on that replica: a bulk batch taking the
 *   slot would run before the online batch.
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
  const online = onlineViews(replicas);
  const anyOnline = queue.some((item) => item.priority !== 'bulk');
  if (queue.length === 0 || !(anyOnline ? online : replicas).some(hasFreeSlot)) {
    return { kind: 'idle' };
  }

  const candidates: Candidate[] = groupByKey(queue).map((group) => {
    const views = group.online ? online : replicas;
    const overdue = nowMs - group.headEnqueuedAtMs >= opts.affinityWaitMs;
    const holders = views.filter((r) => holdsModel(r, group.modelId)).length;
    const spill = overdue || group.indexes.length + group.fill.length > opts.maxBatchSize * holders * (opts.spillBacklogBatches ?? 1);
    return { group, overdue, spill, placement: placeBatch(group.modelId, views, spill, rng) };
  });
  candidates.sort(compareCandidates);

  let untilMs = Number.POSITIVE_INFINITY;
  const prefetch = { online: prefetchViews(online, nowMs), bulk: prefetchViews(replicas, nowMs) };
  // Replicas an online group waits for (its batch is not ready, or held for prefetch timing):
  // bulk batches may not take their slots meanwhile, or the online batch would queue behind them.
  const reserved = new Set<string>();
  const unreserved = (views: readonly ReplicaView[]) => (reserved.size === 0 ? views : views.filter((r) => !reserved.has(r.id)));
  const reserve = (p: Placement) => {
    if (p.kind === 'hit' || p.kind === 'miss') reserved.add(p.replica.id);
  };
  for (const c of candidates) {
    const { group } = c;
    const { partialOpensMs, partialViews } = group.online ? prefetch.online : prefetch.bulk;
    // Online groups come first, so every reservation is known when bulk groups are placed.
    let placement = !group.online && reserved.size > 0 ? placeBatch(group.modelId, unreserved(replicas), c.spill, rng) : c.placement;
    if (placement.kind !== 'wait-affinity' && placement.kind !== 'none' && group.indexes.length < opts.maxBatchSize && placement.replica.partialFromMs !== undefined && placement.replica.partialFromMs > nowMs) {
      // A partial batch for a replica still busy: it would sit there while more requests could
      // join it. Place it among the replicas that can start it soon, or keep it queued.
      const held = placement;
      placement = placeBatch(group.modelId, group.online ? partialViews : unreserved(partialViews), c.spill, rng);
      if (placement.kind === 'none' || placement.kind === 'wait-affinity') {
        if (group.online) reserve(held);
        untilMs = Math.min(untilMs, partialOpensMs);
        continue;
      }
    }
    if (placement.kind === 'wait-affinity') {
      // Not overdue (else it would spill), so this lies in the future.
      untilMs = Math.min(untilMs, group.headEnqueuedAtMs + opts.affinityWaitMs);
      continue;
    }
    // 'none': only the priority slot is free and this group is bulk.
    if (placement.kind === 'none') continue;
    // Bulk items ride along in an online batch only on an idle replica: behind a running batch
    // they would lengthen the online items' wait by a second batch time.
    const indexes = placement.replica.ongoingBatches === 0 ? [...group.indexes, ...group.fill] : group.indexes;
    const readyMs = readyAtMs(group, indexes, queue, opts, nowMs);
    if (readyMs > nowMs) {
      if (group.online) reserve(placement);
      untilMs = Math.min(untilMs, readyMs);
      continue;
    }
    return {
      kind: 'dispatch',
      replicaId: placement.replica.id,
      key: group.key,
      modelId: group.modelId,
      indexes: indexes.slice(0, opts.maxBatchSize).sort((a, b) => a - b),
      affinity: placement.kind,
    };
  }
  return Number.isFinite(untilMs) ? { kind: 'wait', untilMs } : { kind: 'idle' };
}
