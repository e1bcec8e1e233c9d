/**
 * The router's one object per replica (as grpc-js keeps a Subchannel per endpoint and Ray Serve a
 * RunningReplica): what its heartbeats say, the batches this router has in flight on it, when it
 * is expected to be free, how many of its slots other routers' batches take (from heartbeats), and
 * the loss of those batches. The registry (replica-registry.ts) owns
 * the handles; the scheduler begins and ends batches on them; the dispatcher sends and settles
 * them. Time comes in as `nowMs`; nothing here does I/O.
 */
import type { Heartbeat } from '../common/wire.js';
import type { ReplicaView } from './replica-picker.js';
import { replicaRoom, type RoomView } from './room-policy.js';

/** How a batch in flight ended: the reply's bytes, or why there will be none. */
export type BatchSettlement =
  | { readonly kind: 'reply'; readonly data: Uint8Array }
  /** `ran` is false when the batch provably never reached a replica (nobody was subscribed). */
  | { readonly kind: 'lost'; readonly reason: string; readonly ran: boolean };

/**
 * One batch this router has put on a replica, from the moment the scheduler picks the replica
 * until its outcome is applied. The dispatcher fills in the wire part when it sends it.
 */
export class BatchSlot {
  /** Set by the dispatcher when it starts sending the batch. */
  batchId = '';
  /** When the batch message was published (0 until then: its payloads may still be being stored). */
  sentAtMs = 0;
  /** Heartbeats from the replica, sent well after the batch, that did not list it. */
  misses = 0;
  private settleFn: ((s: BatchSettlement) => void) | undefined;
  private ended: BatchSettlement | undefined;

  constructor(
    readonly modelId: string,
    readonly items: number,
    /** Expected run time (ms, BatchTimings), NaN when nothing is known. */
    readonly expectedMs: number,
    /** Online images among `items` (continuous batching: online room, room-policy.ts). */
    readonly onlineItems = 0,
  ) {}

  /** Holds online work (work-item.ts Priority); false: bulk items only. */
  get online(): boolean {
    return this.onlineItems > 0;
  }

  /** How the batch ended, once it has. */
  get settlement(): BatchSettlement | undefined {
    return this.ended;
  }

  /** Resolves with the batch's settlement (the first one wins). Called once, by the dispatcher. */
  settled(): Promise<BatchSettlement> {
    return new Promise((resolve) => {
      if (this.ended) resolve(this.ended);
      else this.settleFn = resolve;
    });
  }

  /** Ends the batch; the first call wins (true), later ones change nothing (false). */
  settle(s: BatchSettlement): boolean {
    if (this.ended) return false;
    this.ended = s;
    this.settleFn?.(s);
    return true;
  }
}

export class ReplicaHandle {
  private hb: Heartbeat;
  private lastSeen: number;
  private readonly slots = new Set<BatchSlot>();
  /**
   * Ids of this router's batches that the replica answered but whose reply may have overtaken a
   * heartbeat still listing them: not counted as other routers' batches. Pruned at each heartbeat.
   */
  private readonly answered = new Set<string>();
  /** The replica refused a batch for want of a free slot: it counts as full until its next heartbeat. */
  private full = false;
  /**
   * When the replica should be done with every batch in flight here (ms; NaN if unknown): tells
   * the batch policy when a partial batch may take a spare slot, and deadline shedding how long a
   * new batch would wait.
   */
  private busyUntilMs = Number.NaN;
  /** Batches the last heartbeat listed (continuous batching: their images are in its running-set counts). */
  private listed: ReadonlySet<string>;
  /** Images of listed batches answered since the last heartbeat: they have left its running set (and the online ones among them). */
  private releasedItems = 0;
  private releasedOnlineItems = 0;

  constructor(heartbeat: Heartbeat, nowMs: number) {
    this.hb = heartbeat;
    this.lastSeen = nowMs;
    this.listed = new Set(heartbeat.inFlightBatches);
  }

  get id(): string {
    return this.hb.replicaId;
  }

  get deployment(): string {
    return this.hb.deployment;
  }

  get heartbeat(): Heartbeat {
    return this.hb;
  }

  get lastSeenMs(): number {
    return this.lastSeen;
  }

  /** Running (not starting, draining or stopped): the router may send it batches. */
  get serving(): boolean {
    return this.hb.state === 'running';
  }

  /** Batches this router has in flight on the replica. */
  get ongoingBatches(): number {
    return this.slots.size;
  }

  /**
   * A newer heartbeat (false, and nothing changes, for a reordered older one). Batches the
   * replica's heartbeats have stopped listing are detected here ({@link detectLostBatches}).
   */
  observe(hb: Heartbeat, nowMs: number): boolean {
    if (hb.seq < this.hb.seq) return false;
    // Only a heartbeat sent after the refusal can show a slot freed since.
    if (hb.seq > this.hb.seq) this.full = false;
    this.hb = hb;
    this.lastSeen = nowMs;
    this.listed = new Set(hb.inFlightBatches);
    this.releasedItems = 0;
    this.releasedOnlineItems = 0;
    if (this.answered.size > 0) {
      const listed = new Set(hb.inFlightBatches);
      for (const id of this.answered) if (!listed.has(id)) this.answered.delete(id);
    }
    this.detectLostBatches(hb, nowMs);
    return true;
  }

  /** True once the replica has been silent for `timeoutIntervals` of its own heartbeat interval. */
  expired(nowMs: number, timeoutIntervals: number): boolean {
    return nowMs - this.lastSeen > timeoutIntervals * Math.max(this.hb.intervalMs, 1);
  }

  /** Puts a batch on the replica (the scheduler, when it dispatches); `onlineItems` of its `items` are online. */
  begin(modelId: string, items: number, expectedMs: number, nowMs: number, onlineItems = 0): BatchSlot {
    const slot = new BatchSlot(modelId, items, expectedMs, onlineItems);
    this.busyUntilMs = (this.slots.size === 0 ? nowMs : Math.max(nowMs, this.busyUntilMs)) + expectedMs;
    this.slots.add(slot);
    return slot;
  }

  /** Takes a batch off the replica (its outcome is known): the replica works on what is left. */
  end(slot: BatchSlot, nowMs: number): void {
    if (!this.slots.delete(slot)) return;
    if (this.listed.has(slot.batchId)) {
      this.releasedItems += slot.items;
      this.releasedOnlineItems += slot.onlineItems;
    }
    // A batch declared lost may still run there (a paused replica): while heartbeats list it, it takes a slot.
    if (slot.settlement?.kind === 'reply' && slot.batchId) this.answered.add(slot.batchId);
    this.busyUntilMs = nowMs;
    for (const s of this.slots) this.busyUntilMs += s.expectedMs;
  }

  /**
   * The replica refused a batch with ORRERY_ERR_REPLICA_FULL (other routers took its slots, or
   * its running set's room, since its last heartbeat): no batch goes there until a newer heartbeat.
   */
  refused(): void {
    this.full = true;
  }

  /**
   * Batches the replica's last heartbeat lists that are not this router's: other routers'
   * (several routers share the replicas) and this router's batches declared lost that still run.
   */
  get otherBatches(): number {
    const mine = new Set<string>(this.answered);
    for (const s of this.slots) if (s.batchId) mine.add(s.batchId);
    let n = 0;
    for (const id of this.hb.inFlightBatches) if (!mine.has(id)) n++;
    return n;
  }

  /** Every batch in flight ends as lost (the replica is gone; the scheduler retries them). */
  lose(reason: string): void {
    for (const s of [...this.slots]) s.settle({ kind: 'lost', reason, ran: true });
  }

  /**
   * The replica said it stopped. It answered every batch it finished before saying so (replies go
   * out before the heartbeat on the same connection), so only the batches its last heartbeat
   * still lists — cut off by the drain timeout — are lost.
   */
  stopped(hb: Heartbeat): void {
    const unfinished = new Set(hb.inFlightBatches);
    for (const s of [...this.slots]) {
      if (s.batchId && unfinished.has(s.batchId)) s.settle({ kind: 'lost', reason: 'the replica stopped before finishing the batch', ran: true });
    }
  }

  /**
   * Batch-loss detection: a batch that the replica's heartbeats have not listed twice in a row,
   * counting only heartbeats sent at least two intervals after the batch, was never received or
   * its reply was lost (a NATS restart). It ends as lost and is retried.
   */
  private detectLostBatches(hb: Heartbeat, nowMs: number): void {
    const listed = new Set(hb.inFlightBatches);
    for (const s of [...this.slots]) {
      if (listed.has(s.batchId) || s.sentAtMs === 0 || nowMs - s.sentAtMs < 2 * hb.intervalMs) {
        s.misses = 0;
        continue;
      }
      if (++s.misses >= 2) s.settle({ kind: 'lost', reason: 'the replica no longer reports the batch (message lost)', ran: true });
    }
  }

  /**
   * How long until the replica could start another batch (0 when it has none of this router's),
   * from the expected run times of the batches in flight; 0 when those are unknown.
   */
  aheadMs(nowMs: number): number {
    return this.slots.size > 0 && Number.isFinite(this.busyUntilMs) ? Math.max(0, this.busyUntilMs - nowMs) : 0;
  }

  /**
   * The replica as the pure policies see it (replica-picker.ts). `overheadMs` is the transport
   * overhead a partial batch's prefetch allows for; `defaultMaxOngoingBatches` stands in for a
   * heartbeat that does not say.
   */
  view(overheadMs: number, defaultMaxOngoingBatches: number): ReplicaView {
    const hb = this.hb;
    // Models of batches in flight: the replica holds (or is loading) them even if a heartbeat sent
    // before the batch arrived says otherwise; heartbeats sent after the reply report them.
    const models = new Set(hb.loadedModels);
    if (hb.loadingModel) models.add(hb.loadingModel);
    let items = 0;
    let online = 0;
    for (const s of this.slots) {
      models.add(s.modelId);
      items += s.items;
      if (s.online) online++;
    }
    const partialFromMs = this.slots.size > 0 && Number.isFinite(this.busyUntilMs) ? this.busyUntilMs - overheadMs : undefined;
    const maxOngoingBatches = hb.maxOngoingBatches || defaultMaxOngoingBatches;
    // Slots taken by other routers count as taken here too: the replica admits max_ongoing_batches in all.
    const ongoingBatches = this.full ? Math.max(maxOngoingBatches, this.slots.size) : this.slots.size + this.otherBatches;
    return {
      id: this.id, loadedModels: [...models], ongoingBatches, maxOngoingBatches, inFlightItems: items, onlineBatches: online,
      ...(partialFromMs !== undefined ? { partialFromMs } : {}),
    };
  }

  /**
   * The replica as the room policy sees it (continuous batching, room-policy.ts): its running-set
   * counts from the last heartbeat, corrected by this router's batches sent or answered since.
   * `defaultCapacity` (max_batch_size) stands in for a heartbeat that reports no running set;
   * `waitingImages` (max_waiting_images) is what the replica takes beyond its capacity. A replica
   * that refused a batch for want of room (other routers filled it) has none until its next heartbeat.
   */
  roomView(defaultCapacity: number, waitingImages: number): RoomView {
    const hb = this.hb;
    const models = new Set(hb.loadedModels);
    if (hb.loadingModel) models.add(hb.loadingModel);
    let outstanding = 0;
    let online = 0;
    let unreported = 0;
    let unreportedOnline = 0;
    for (const s of this.slots) {
      models.add(s.modelId);
      outstanding += s.items;
      online += s.onlineItems;
      if (!this.listed.has(s.batchId)) {
        unreported += s.items;
        unreportedOnline += s.onlineItems;
      }
    }
    const { room, onlineRoom } = replicaRoom({
      capacity: hb.runningSetCapacity ?? 0,
      heldItems: (hb.runningSetOccupied ?? 0) + (hb.runningSetWaiting ?? 0),
      inFlightItems: hb.inFlightItems,
      inFlightOnlineItems: hb.inFlightOnlineItems ?? 0,
      releasedItems: this.releasedItems,
      releasedOnlineItems: this.releasedOnlineItems,
      unreportedItems: unreported,
      unreportedOnlineItems: unreportedOnline,
      outstandingItems: outstanding,
      outstandingOnlineItems: online,
      defaultCapacity,
      waitingImages,
    });
    if (this.full) return { id: this.id, loadedModels: [...models], room: 0, onlineRoom: 0 };
    return { id: this.id, loadedModels: [...models], room, onlineRoom };
  }
}
