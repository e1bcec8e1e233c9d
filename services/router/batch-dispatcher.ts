/**
 * Sends one batch to one replica over NATS and brings back its answer. The scheduler decides
 * what to send where and puts the batch on the replica's handle (replica-handle.ts, which also
 * detects lost batches from heartbeats); this file owns the wire: payloads (inline or object
 * store), progress events, cancellation messages, and the reply.
 *
 * Replies and progress events come back on ONE subscription per router (`subjects.routerInbox`),
 * matched to their batch by the batch id in the subject: no per-batch subscription or request
 * object, which cost the router more CPU per batch than the rest of dispatching
 * (bench/results/core-serving.md).
 */
import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { clampTimerMs } from '../common/deadline.js';
import type { Logger } from '../common/logger.js';
import { outputPayloadName, type PayloadStore } from '../common/payload-store.js';
import { decodeQcVerdict, type QcVerdictData } from '../common/qc-verdict.js';
import type { Subjects } from '../common/subjects.js';
import { wire, type BatchReply, type ErrorInfo, type Progress, type WorkItem } from '../common/wire.js';
import { encodeWorkItem } from '../common/work-item.js';
import type { BatchSlot, ReplicaHandle } from './replica-handle.js';
import type { WorkUnit } from './work-unit.js';

export interface ItemOutcome {
  readonly requestId: string;
  readonly imageIndex: number;
  readonly data?: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly mimeType: string;
  readonly error?: ErrorInfo;
  /** The quality gate's verdict, when the work item asked for the check. */
  readonly qc?: QcVerdictData;
}

export type BatchOutcome =
  | { kind: 'replied'; replicaId: string; items: ItemOutcome[]; error?: ErrorInfo; runSeconds: number; loadSeconds: number }
  /**
   * No usable answer. `ran` is false when the batch provably never reached a replica (nobody was
   * subscribed), so retrying it does not count against the unit's one retry.
   */
  | { kind: 'lost'; reason: string; ran: boolean };

type Lost = Extract<BatchOutcome, { kind: 'lost' }>;

interface InFlight {
  readonly slot: BatchSlot;
  /** Per-step progress of the batch's images (only for batches that asked for it). */
  readonly progress?: (p: Progress) => void;
}

export interface DispatcherOptions {
  /** Longest to wait for a reply when no unit has a deadline. */
  readonly maxBatchWaitMs: number;
}

export class BatchDispatcher {
  private readonly inFlight = new Map<string, InFlight>();
  private readonly inbox: string;
  private readonly inboxSub: Subscription;
  private closed = false;

  /** Subscribes to the router's inbox at once; {@link close} ends the subscription. */
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly routerId: string,
    private readonly payloads: PayloadStore,
    private readonly log: Logger,
    private readonly options: DispatcherOptions,
  ) {
    this.inbox = `${subjects.routerInbox(routerId)}.`;
    this.inboxSub = nc.subscribe(`${this.inbox}>`, {
      callback: (err, msg) => {
        // E.g. a permissions violation: without its inbox the router gets no replies at all.
        if (err) log.error({ err: err.message, subject: `${this.inbox}>` }, 'the router inbox subscription failed: no batch can be answered');
        else this.onInbox(msg);
      },
    });
  }

  /** Ends the inbox subscription; batches still in flight end as lost (nothing can answer them now). */
  close(): void {
    this.closed = true;
    this.inboxSub.unsubscribe();
    for (const b of [...this.inFlight.values()]) b.slot.settle(lost('the router is closing'));
  }

  /**
   * Sends `units` as the batch `slot` on `replica` (the scheduler began it there); resolves when
   * it is answered or known lost (the handle settles it lost when the replica goes). Never rejects.
   */
  async send(replica: ReplicaHandle, slot: BatchSlot, units: readonly WorkUnit[], attempt: number): Promise<BatchOutcome> {
    if (this.closed) return lost('the router is closing');
    const replicaId = replica.id;
    const batchId = randomUUID();
    slot.batchId = batchId;
    const first = units[0]!;
    const deadlines = units.map((u) => u.deadlineMs);
    const deadline = deadlines.includes(0) ? 0 : Math.max(...deadlines);
    const wantsProgress = units.some((u) => u.observer.progress);
    const onAbort = units.map((u) => u.onAbort(() => this.nc.publish(this.subjects.cancel(replicaId), wire.cancel.encode({ batchId, requestIds: [u.input.requestId] }))));
    const settled = slot.settled();
    this.inFlight.set(batchId, { slot, ...(wantsProgress ? { progress: progressRouter(units) } : {}) });
    let timer: NodeJS.Timeout | undefined;
    try {
      const stored = await Promise.allSettled(units.map((u) => this.toWireItem(u)));
      const failed = stored.find((r) => r.status === 'rejected');
      if (failed) {
        // The batch will not be sent: the input images stored for it would never be read.
        for (const r of stored) if (r.status === 'fulfilled') void this.payloads.discard(r.value.initImage);
        throw failed.reason;
      }
      const items = stored.map((r) => (r as PromiseFulfilledResult<WorkItem>).value);
      // The replica was lost while the inputs were being stored: the scheduler retries the work
      // elsewhere, so sending it too would run it twice.
      const early = slot.settlement;
      if (early?.kind === 'lost') {
        for (const it of items) void this.payloads.discard(it.initImage);
        return { ...early, ran: false };
      }
      const payload = wire.batchRequest.encode({
        batchId, attempt, modelId: first.modelId, items,
        deadlineUnixMs: deadline, progressSubject: wantsProgress ? this.subjects.progress(this.routerId, batchId) : '',
      });
      const timeoutMs = deadline ? Math.max(1, deadline - Date.now() + 1000) : this.options.maxBatchWaitMs;
      timer = setTimeout(() => slot.settle(lost(`no reply within ${timeoutMs} ms`)), clampTimerMs(timeoutMs));
      this.nc.publish(this.subjects.batch(replicaId), payload, { reply: this.subjects.batchReply(this.routerId, batchId) });
      // Only now can the replica's heartbeats be expected to list the batch: storing big input
      // images in the object store above may take longer than a heartbeat interval.
      slot.sentAtMs = Date.now();
      const s = await settled;
      if (s.kind === 'reply') return await this.readReply(wire.batchReply.decode(s.data), replicaId);
      // Its reply may have been lost after the replica stored the images (a NATS restart drops
      // a reply published before the router resubscribed): nobody will read them now.
      if (s.ran && !this.closed) for (let i = 0; i < units.length; i++) void this.payloads.discardName(outputPayloadName(batchId, i));
      return s;
    } catch (err) {
      // Storing a payload or publishing failed (the connection is closed): the batch may not
      // have reached a replica, but nothing proves it did not.
      const reason = err instanceof Error ? err.message : String(err);
      this.log.warn({ batchId, replicaId, err: reason }, 'batch request failed');
      return lost(reason);
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(batchId);
      onAbort.forEach((off) => off());
    }
  }

  /** A message on the router's inbox: `reply.<batch>` or `progress.<batch>`. */
  private onInbox(msg: Msg): void {
    const rest = msg.subject.slice(this.inbox.length);
    const dot = rest.indexOf('.');
    const kind = rest.slice(0, dot);
    const b = this.inFlight.get(rest.slice(dot + 1));
    try {
      if (kind === 'progress') {
        b?.progress?.(wire.progress.decode(msg.data));
      } else if (kind === 'reply') {
        // A replica whose reply carries stored images asks for an acknowledgement (replica.ts answer()).
        if (msg.reply) msg.respond();
        // nats-server answers a publish nobody is subscribed to with an empty 503 status message.
        if (msg.data.length === 0 && msg.headers?.code === 503) b?.slot.settle({ kind: 'lost', reason: 'no replica is subscribed (no responders)', ran: false });
        // A reply after its batch was declared lost (and retried): free its stored payloads.
        else if (!b?.slot.settle({ kind: 'reply', data: msg.data }) && msg.data.length > 0) this.discardReply(wire.batchReply.decode(msg.data));
      }
    } catch (err) {
      this.log.warn({ subject: msg.subject, err: (err as Error).message }, 'unreadable message on the router inbox');
    }
  }

  private async toWireItem(u: WorkUnit): Promise<WorkItem> {
    const i = u.input;
    // Each attempt stores its own copy; the replica deletes it after reading, the bucket TTL
    // removes what a crashed replica left.
    return encodeWorkItem(i, i.initImage ? await this.payloads.put(i.initImage, `in-${i.requestId}`) : null);
  }

  private async readReply(reply: BatchReply, replicaId: string): Promise<BatchOutcome> {
    const items = await Promise.all(
      reply.results.map(async (r): Promise<ItemOutcome> => ({
        requestId: r.requestId, imageIndex: r.imageIndex, width: r.width, height: r.height, mimeType: r.mimeType,
        data: r.error?.code ? undefined : await this.payloads.take(r.image),
        error: r.error?.code ? r.error : undefined,
        qc: decodeQcVerdict(r.qcJson ?? ''),
      })),
    );
    return { kind: 'replied', replicaId: reply.replicaId || replicaId, items, error: reply.error?.code ? reply.error : undefined, runSeconds: reply.runSeconds, loadSeconds: reply.loadSeconds };
  }

  /** A reply that arrived after its batch was declared lost: free its stored payloads. */
  private discardReply(reply: BatchReply): void {
    for (const r of reply.results) void this.payloads.discard(r.image);
  }
}

function lost(reason: string): Lost {
  return { kind: 'lost', reason, ran: true };
}

/** Delivers a batch's progress events to the unit each one is about. */
function progressRouter(units: readonly WorkUnit[]): (p: Progress) => void {
  const byItem = new Map(units.map((u) => [`${u.input.requestId}/${u.input.imageIndex}`, u]));
  return (p) => byItem.get(`${p.requestId}/${p.imageIndex}`)?.observer.progress?.(p.step, p.totalSteps);
}
