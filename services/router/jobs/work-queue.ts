/**
 * The jobs' work queue: one JetStream stream with work-queue retention (file storage), subject
 * `<prefix>.jobs.work.<jobId>`, one message per item {j, i, g} published with a Nats-Msg-Id so a
 * range published twice is stored once, and ONE durable pull consumer shared by every router:
 * items are claimed through JetStream, never from a router-local list.
 *
 * Delivery is unbounded (max_deliver -1): an item's attempts are bounded by its KV record
 * (job-runner.ts), which counts only real attempts — a paused sink's naks and a lost router's
 * redelivery are not the item's fault, and a message past max_deliver would stall its job forever.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

/** One item to run: job, index, generation. */
export interface WorkMessage {
  readonly j: string;
  readonly i: number;
  readonly g: number;
}

const NS_PER_MS = 1_000_000;
/** Duplicate window for Msg-Id dedupe of published ranges (a republish within it is dropped). */
const DUPLICATE_WINDOW_MS = 10 * 60_000;

export class WorkQueue {
  private consumer: Consumer | undefined;
  private ackWaitMsValue: number;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly stream: string,
    private readonly subjectPrefix: string,
    private readonly durable: string,
    ackWaitMs: number,
  ) {
    this.ackWaitMsValue = ackWaitMs;
  }

  /** Ensures the stream and the shared consumer exist. */
  static async open(nc: NatsConnection, natsPrefix: string, ackWaitMs: number): Promise<WorkQueue> {
    const jsm = await jetstreamManager(nc);
    const stream = `${natsPrefix.replace(/\./g, '_')}_job_work`;
    const subjectPrefix = `${natsPrefix}.jobs.work`;
    const q = new WorkQueue(jetstream(nc), jsm, stream, subjectPrefix, 'job-runners', ackWaitMs);
    try {
      await jsm.streams.info(stream);
    } catch {
      await jsm.streams.add({
        name: stream, subjects: [`${subjectPrefix}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File,
        duplicate_window: DUPLICATE_WINDOW_MS * NS_PER_MS,
      }).catch(async (err: unknown) => {
        // Another router created it at the same moment.
        await jsm.streams.info(stream).catch(() => {
          throw err;
        });
      });
    }
    try {
      const info = await jsm.consumers.info(stream, q.durable);
      q.ackWaitMsValue = (info.config.ack_wait ?? ackWaitMs * NS_PER_MS) / NS_PER_MS;
    } catch {
      await jsm.consumers.add(stream, {
        durable_name: q.durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: ackWaitMs * NS_PER_MS,
        max_deliver: -1, filter_subject: `${subjectPrefix}.>`, max_ack_pending: -1,
      }).catch(() => undefined);
    }
    return q;
  }

  /** The consumer's current ack wait (ms). */
  get ackWaitMs(): number {
    return this.ackWaitMsValue;
  }

  subject(jobId: string): string {
    return `${this.subjectPrefix}.${jobId}`;
  }

  /** Publishes one item (deduplicated by job, generation and index). */
  async publish(m: WorkMessage): Promise<void> {
    await this.js.publish(this.subject(m.j), JSON.stringify(m), { msgID: `${m.j}.${m.g}.${m.i}` });
  }

  /** Messages of the job in the stream: queued, waiting to retry, or being worked on. */
  async pending(jobId: string): Promise<number> {
    const subj = this.subject(jobId);
    const info = await this.jsm.streams.info(this.stream, { subjects_filter: subj });
    return info.state.subjects?.[subj] ?? 0;
  }

  /** Drops every message of a job (cancelled: nothing of it will run). */
  async purgeJob(jobId: string): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: this.subject(jobId) });
  }

  /** Up to `max` messages, waiting at most `expiresMs` for the first. */
  async fetch(max: number, expiresMs: number): Promise<JsMsg[]> {
    this.consumer ??= await this.js.consumers.get(this.stream, this.durable);
    const msgs = await this.consumer.fetch({ max_messages: max, expires: expiresMs });
    const out: JsMsg[] = [];
    for await (const m of msgs) out.push(m);
    return out;
  }

  /** Changes the shared consumer's ack wait (every router's claims). */
  async setAckWaitMs(ms: number): Promise<void> {
    await this.jsm.consumers.update(this.stream, this.durable, { ack_wait: Math.round(ms) * NS_PER_MS });
    this.ackWaitMsValue = ms;
  }
}
