/**
 * The scheduler of one deployment (DESIGN.md §4): a queue of work units, a pump that asks the
 * pure batch policy what to do next, and the bookkeeping of batches in flight per replica.
 * Every decision lives in batch-policy.ts / replica-picker.ts; this class applies them.
 */
import type { DeploymentConfig } from '../common/config.js';
import { clampTimerMs } from '../common/deadline.js';
import { DeadlineExceededError, NoReplicaError, OrreryError, QueueFullError, fromWire } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { BatchDispatcher, BatchOutcome } from './batch-dispatcher.js';
import type { ReplicaHandle, BatchSlot } from './replica-handle.js';
import { decideBatch, type QueuedItem } from './batch-policy.js';
import { decideByRoom } from './room-policy.js';
import { BatchTimings } from './batch-timings.js';
import type { ReplicaView } from './replica-picker.js';
import type { ReplicaRegistry } from './replica-registry.js';
import type { RouterMetrics } from './router-metrics.js';
import type { WorkUnit } from './work-unit.js';

export interface SchedulerDeps {
  readonly registry: ReplicaRegistry;
  readonly dispatcher: BatchDispatcher;
  readonly metrics: RouterMetrics;
  readonly log: Logger;
  readonly rng: () => number;
  readonly now: () => number;
  /** How long a group waits for a busy replica holding its model before spilling elsewhere. */
  readonly affinityWaitMs: number;
  /** Attempts of a unit whose replica was lost before it fails (DESIGN §4: retried elsewhere once). */
  readonly maxLostAttempts: number;
  /**
   * For an autoscaled deployment: with no replica, submit() holds requests in the queue and calls
   * `onHold` (the autoscaler scales up at once) instead of failing with NoReplicaError. A held
   * unit waits until its deadline or `maxHoldMs` (see expireHeld), whichever comes first.
   */
  readonly scaleFromZero?: { readonly maxHoldMs: number; onHold(): void };
}

export class DeploymentScheduler {
  /** Online units first, then bulk units; each part in arrival order (retries at its head). */
  private queue: WorkUnit[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = 0;
  /** Run times of recent batches per key and size: deadline shedding and prefetch timing. */
  private readonly timings = new BatchTimings();

  constructor(
    readonly config: DeploymentConfig,
    private readonly deps: SchedulerDeps,
  ) {}

  get queueDepth(): number {
    return this.queue.length;
  }

  /** Replicas of this deployment that accept work now. */
  get servingReplicas(): number {
    return this.deps.registry.serving(this.config.name).length;
  }

  /**
   * Queues all units of one request for this deployment, or none: throws QueueFullError when
   * they would pass max_queued_requests, NoReplicaError when no replica serves the deployment
   * (unless it scales from zero: then the units wait for one, see SchedulerDeps.scaleFromZero).
   */
  submit(units: readonly WorkUnit[]): void {
    const noReplica = this.deps.registry.serving(this.config.name).length === 0;
    if (noReplica && !this.deps.scaleFromZero) throw new NoReplicaError(this.config.name);
    if (this.queue.length + units.length > this.config.maxQueuedRequests) throw new QueueFullError(this.config.name, this.config.maxQueuedRequests);
    const now = this.deps.now();
    for (const u of units) {
      u.enqueuedAtMs = now;
      u.onAbort(() => this.dropQueued(u));
    }
    this.enqueue(units, 'tail');
    if (noReplica) this.deps.scaleFromZero!.onHold();
    this.pump();
  }

  /**
   * Fails units held longer than scaleFromZero.maxHoldMs while no replica serves (the scale-up
   * did not bring one in time). The router calls this on its tick.
   */
  expireHeld(nowMs: number): void {
    const hold = this.deps.scaleFromZero;
    if (!hold || this.queue.length === 0 || this.deps.registry.serving(this.config.name).length > 0) return;
    const expired = this.queue.filter((u) => nowMs - u.enqueuedAtMs >= hold.maxHoldMs);
    if (expired.length === 0) return;
    this.queue = this.queue.filter((u) => nowMs - u.enqueuedAtMs < hold.maxHoldMs);
    const err = new OrreryError('ORRERY_ERR_NO_REPLICA', `deployment ${this.config.name} has no ready replica: none became ready within ${hold.maxHoldMs / 1000} s (autoscaling.max_hold_s)`);
    for (const u of expired) u.fail(err);
  }

  /** A replica's heartbeat may have freed a slot or changed what it holds: try to dispatch. */
  replicaHeartbeat(): void {
    this.pump();
  }

  /** Fails every queued unit (no replica came back in time, or the router is stopping). */
  failQueued(err: OrreryError): void {
    const q = this.queue;
    this.queue = [];
    for (const u of q) u.fail(err);
  }

  /**
   * Adds units to the queue: online units go after the queued online ones (`tail`) or before
   * them (`head`: retries), ahead of every bulk unit; bulk units likewise among bulk units. So
   * the batch policy, which takes the oldest items of a group, always fills batches with online
   * work first, and bulk work only rides along or runs when no online work waits.
   */
  private enqueue(units: readonly WorkUnit[], where: 'head' | 'tail'): void {
    const online = units.filter((u) => u.priority === 'online');
    const bulk = units.filter((u) => u.priority !== 'online');
    if (online.length === 0 && where === 'tail') {
      this.queue.push(...bulk);
      return;
    }
    const split = this.queue.findIndex((u) => u.priority !== 'online');
    const queuedOnline = split < 0 ? this.queue : this.queue.slice(0, split);
    const queuedBulk = split < 0 ? [] : this.queue.slice(split);
    this.queue = where === 'head'
      ? [...online, ...queuedOnline, ...bulk, ...queuedBulk]
      : [...queuedOnline, ...online, ...queuedBulk, ...bulk];
  }

  private dropQueued(u: WorkUnit): void {
    const i = this.queue.indexOf(u);
    if (i >= 0) this.queue.splice(i, 1);
  }

  private views(): ReplicaView[] {
    const overheadMs = this.timings.overheadMs ?? 0;
    return this.deps.registry.serving(this.config.name).map((r) => r.view(overheadMs, this.config.maxOngoingBatches));
  }

  /** Forms and sends batches while the policy says so; arms a timer when it says wait. */
  pump(): void {
    if (this.config.batching === 'continuous') return this.pumpByRoom();
    for (;;) {
      if (this.queue.length === 0) return;
      const now = this.deps.now();
      // A WorkUnit is a QueuedItem: the policy reads the queue as it is, no copy per pump.
      const items: readonly QueuedItem[] = this.queue;
      const d = decideBatch(items, this.views(), {
        maxBatchSize: this.config.maxBatchSize,
        batchWaitTimeoutMs: this.config.batchWaitTimeoutMs,
        affinityWaitMs: this.deps.affinityWaitMs,
        spillBacklogBatches: this.config.spillBacklogBatches,
      }, now, this.deps.rng);
      if (d.kind === 'idle') return;
      if (d.kind === 'wait') {
        this.armTimer(d.untilMs, now);
        return;
      }
      if (this.shedDoomed(d.key, d.indexes, now)) continue;
      this.dispatch(d, now, (n) => this.timings.runExpectedMs(d.key, n) ?? Number.NaN);
    }
  }

  /**
   * Continuous batching (room-policy.ts): sends queued images to replicas with room in their
   * running sets, at once and however few, until no replica has room or nothing is queued. No
   * batch-forming wait, no slot limit, no deadline shedding: the replica's step loop acts on
   * deadlines at the next step.
   */
  private pumpByRoom(): void {
    const opts = { maxBatchSize: this.config.maxBatchSize, affinityWaitMs: this.deps.affinityWaitMs, spillBacklogBatches: this.config.spillBacklogBatches };
    for (;;) {
      const now = this.deps.now();
      const views = this.deps.registry.serving(this.config.name).map((r) => r.roomView(this.config.maxBatchSize, this.config.maxWaitingImages));
      this.deps.metrics.runningSetRoom(this.config.name, views.reduce((n, v) => n + v.room, 0));
      if (this.queue.length === 0) return;
      const d = decideByRoom(this.queue, views, opts, now, this.deps.rng);
      if (d.kind === 'idle') return;
      if (d.kind === 'wait') return this.armTimer(d.untilMs, now);
      this.dispatch(d, now, () => Number.NaN);
    }
  }

  /** Takes a decision's units off the queue, puts their batch on its replica and sends it. */
  private dispatch(d: { replicaId: string; key: string; modelId: string; indexes: readonly number[]; affinity: 'hit' | 'miss' }, now: number, expectedMs: (n: number) => number): void {
    const replica = this.deps.registry.get(d.replicaId)!;
    const take = new Set(d.indexes);
    const units = this.queue.filter((_, i) => take.has(i));
    this.queue = this.queue.filter((_, i) => !take.has(i));
    const toIdle = replica.ongoingBatches === 0;
    const online = units.filter((u) => u.priority === 'online').length;
    const slot = replica.begin(d.modelId, units.length, expectedMs(units.length), now, online);
    this.deps.metrics.batchDispatched(this.config.name, units.length, d.affinity);
    for (const u of units) this.deps.metrics.queueWait(this.config.name, (now - u.enqueuedAtMs) / 1000, u.priority);
    void this.run(replica, slot, d.key, units, toIdle);
  }

  /**
   * Deadline shedding: an image among queue positions `indexes` cannot be answered in time when
   * its deadline is nearer than the time until the first replica is free (the expected run times
   * of the batches in flight on it), plus the fastest recent run of such a batch
   * (BatchTimings.runLowerBoundMs), plus the usual transport overhead. Such images fail now with
   * DEADLINE_EXCEEDED instead of taking device time from requests that can still make theirs —
   * under overload this is what keeps goodput near capacity. Returns true if it shed any (the
   * caller decides again).
   */
  private shedDoomed(key: string, indexes: readonly number[], now: number): boolean {
    const runMs = this.timings.runLowerBoundMs(key, indexes.length);
    if (runMs === undefined) return false;
    // The earliest any replica could start the batch: a bound whichever replica it ends up on.
    let aheadMs = Number.POSITIVE_INFINITY;
    for (const r of this.deps.registry.serving(this.config.name)) aheadMs = Math.min(aheadMs, r.aheadMs(now));
    if (!Number.isFinite(aheadMs)) aheadMs = 0;
    const boundMs = aheadMs + runMs + (this.timings.overheadMs ?? 0);
    const doomed = new Set<WorkUnit>();
    for (const i of indexes) {
      const u = this.queue[i]!;
      if (u.deadlineMs > 0 && u.deadlineMs - now < boundMs) doomed.add(u);
    }
    if (doomed.size === 0) return false;
    this.queue = this.queue.filter((u) => !doomed.has(u));
    const why = `answering it takes at least ${Math.round(boundMs)} ms (${Math.round(aheadMs)} ms until a replica is free, ${Math.round(runMs)} ms for its batch, and the round trip)`;
    for (const u of doomed) {
      u.fail(new DeadlineExceededError(`in deployment ${this.config.name}'s queue: ${Math.max(0, Math.round(u.deadlineMs - now))} ms were left and ${why}, so it was not run`));
    }
    this.deps.metrics.shed(this.config.name, doomed.size);
    return true;
  }

  private armTimer(untilMs: number, now: number): void {
    if (this.timer && this.timerAtMs <= untilMs) return;
    clearTimeout(this.timer);
    this.timerAtMs = untilMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, clampTimerMs(untilMs - now));
  }

  private async run(replica: ReplicaHandle, slot: BatchSlot, key: string, units: WorkUnit[], toIdle: boolean): Promise<void> {
    const live = units.filter((u) => !u.settled);
    // One "started" per request in the batch, not one per image.
    const seen = new Set<string>();
    for (const u of live) {
      if (seen.has(u.input.requestId)) continue;
      seen.add(u.input.requestId);
      u.observer.started?.(replica.id, live.length);
    }
    const startedMs = this.deps.now();
    const attempt = Math.max(...units.map((u) => u.lostAttempts)) + 1;
    const outcome = await this.deps.dispatcher.send(replica, slot, units, attempt);
    const roundTripMs = this.deps.now() - startedMs;
    replica.end(slot, this.deps.now());
    // A continuous batch's run time depends on the running set it joined: it says nothing of its key.
    if (outcome.kind === 'replied' && !outcome.error && this.config.batching === 'request') {
      const runMs = outcome.runSeconds * 1000;
      // Only a batch that had the replica to itself measures the transport: others also waited for the device.
      this.timings.record(key, units.length, runMs, toIdle ? roundTripMs - runMs - outcome.loadSeconds * 1000 : undefined);
    }
    this.deps.metrics.batchFinished(this.config.name, roundTripMs / 1000);
    this.apply(outcome, replica.id, units, startedMs);
    this.pump();
  }

  private apply(outcome: BatchOutcome, replicaId: string, units: WorkUnit[], startedMs: number): void {
    if (outcome.kind === 'lost') {
      this.deps.log.warn({ deployment: this.config.name, units: units.length, reason: outcome.reason, ran: outcome.ran }, 'batch lost; retrying its work');
      if (!outcome.ran) this.deps.registry.remove(replicaId);
      this.retry(units, outcome.ran, outcome.reason);
      return;
    }
    if (outcome.error) {
      // Refused unrun by a draining replica: requeue without using up the retry.
      if (outcome.error.code === 'ORRERY_ERR_REPLICA_DRAINING') return this.retry(units, false, 'replica draining');
      // Refused unrun for want of a free slot (other routers filled it): back to the head of the
      // queue, no attempt used, and the replica counts as full until its next heartbeat.
      if (outcome.error.code === 'ORRERY_ERR_REPLICA_FULL') {
        this.deps.registry.get(replicaId)?.refused();
        return this.retry(units, false, 'replica full', 'replica_full');
      }
      // The replica could not read its inputs or store its outputs (NATS restarting): retried once, like a lost batch.
      if (outcome.error.code === 'ORRERY_ERR_PAYLOAD_UNAVAILABLE') return this.retry(units, true, outcome.error.message, 'payload_unavailable');
      const err = fromWire(outcome.error);
      for (const u of units) u.fail(err);
      return;
    }
    const byItem = new Map(outcome.items.map((r) => [`${r.requestId}/${r.imageIndex}`, r]));
    for (const u of units) {
      const r = byItem.get(`${u.input.requestId}/${u.input.imageIndex}`);
      if (!r) u.fail(new OrreryError('ORRERY_ERR_INTERNAL', `replica ${outcome.replicaId} returned no result for image ${u.input.imageIndex}`));
      else if (r.error) u.fail(fromWire(r.error));
      else {
        const ok = u.succeed({
          data: r.data!, width: r.width, height: r.height, mimeType: r.mimeType, replicaId: outcome.replicaId,
          queueSeconds: (startedMs - u.createdAtMs) / 1000, runSeconds: outcome.runSeconds, ...(r.qc ? { qc: r.qc } : {}),
        });
        if (ok) this.deps.metrics.imageDone(this.config.name, u.priority);
      }
    }
  }

  /** Puts unsettled units back at the head of the queue (oldest first), or fails them past the retry limit. */
  private retry(units: WorkUnit[], countsAsAttempt: boolean, reason: string, metricReason = countsAsAttempt ? 'replica_lost' : 'not_delivered'): void {
    const back: WorkUnit[] = [];
    for (const u of units) {
      if (u.settled || u.signal.aborted) continue;
      if (countsAsAttempt && ++u.lostAttempts >= this.deps.maxLostAttempts) {
        u.fail(new OrreryError('ORRERY_ERR_REPLICA_LOST', `deployment ${this.config.name}: replica lost twice while running this image (${reason})`));
        continue;
      }
      back.push(u);
    }
    this.deps.metrics.batchRetried(this.config.name, metricReason, back.length);
    this.enqueue(back, 'head');
  }

  /** Stops timers (router shutdown). */
  close(): void {
    clearTimeout(this.timer);
  }
}
