/**
 * What the autoscaler's leader needs from the other routers: their queues. Replicas' heartbeats
 * tell every router what runs, but each router alone knows what waits in its own queues, so every
 * router publishes its queue depth per deployment each autoscaler interval on
 * `<prefix>.autoscaler.queues`, and the leader adds the fresh reports to its own queue when it
 * measures a deployment's load. A router holding a request for a deployment with no replica asks
 * the leader to evaluate at once (`wake`), as the leader's own held requests do.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';

/** One router's report (JSON on the wire). */
export interface QueueReport {
  readonly routerId: string;
  /** Images queued per deployment. */
  readonly queued: Readonly<Record<string, number>>;
  /** Deployments this router holds requests for with no replica (scale from zero now). */
  readonly wake: readonly string[];
}

/** The latest report of each other router, and the sum of the fresh ones (pure; time comes in). */
export class QueueBoard {
  private readonly latest = new Map<string, { report: QueueReport; atMs: number }>();

  constructor(
    private readonly selfId: string,
    /** Reports older than this are ignored (their router is gone or cut off) and dropped. */
    private readonly maxAgeMs: number,
  ) {}

  /** Records a report; ignores this router's own. */
  record(report: QueueReport, nowMs: number): void {
    if (report.routerId !== this.selfId) this.latest.set(report.routerId, { report, atMs: nowMs });
  }

  /** Images queued for `deployment` in the other routers, from reports no older than maxAgeMs. */
  queuedElsewhere(deployment: string, nowMs: number): number {
    let n = 0;
    for (const [id, { report, atMs }] of this.latest) {
      if (nowMs - atMs > this.maxAgeMs) {
        this.latest.delete(id);
        continue;
      }
      const q = report.queued[deployment];
      if (typeof q === 'number' && Number.isFinite(q) && q > 0) n += q;
    }
    return n;
  }
}

/** Decodes a report, or undefined for a message that is not one. */
export function decodeQueueReport(data: Uint8Array): QueueReport | undefined {
  try {
    const r = JSON.parse(new TextDecoder().decode(data)) as Partial<QueueReport>;
    if (typeof r.routerId !== 'string' || typeof r.queued !== 'object' || r.queued === null || !Array.isArray(r.wake)) return undefined;
    return { routerId: r.routerId, queued: r.queued, wake: r.wake.filter((w): w is string => typeof w === 'string') };
  } catch {
    return undefined;
  }
}

/** The subject of queue reports under NATS prefix `prefix`. */
export function queueReportSubject(prefix: string): string {
  return `${prefix}.autoscaler.queues`;
}

/** Publishes this router's reports and feeds the others' into a board. */
export class QueueReporter {
  private readonly sub: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
    readonly board: QueueBoard,
    /** A report that asks for an evaluation of `deployment` now (only the leader acts on it). */
    onWake: (deployment: string) => void,
  ) {
    this.sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return;
        const r = decodeQueueReport(msg.data);
        if (!r) return;
        board.record(r, Date.now());
        for (const d of r.wake) onWake(d);
      },
    });
  }

  publish(report: QueueReport): void {
    if (!this.nc.isClosed()) this.nc.publish(this.subject, JSON.stringify(report));
  }

  close(): void {
    this.sub.unsubscribe();
  }
}
