/**
 * The router's live replicas, one {@link ReplicaHandle} each, built from heartbeats. A replica
 * that has not heartbeated for `timeoutIntervals` of its own interval is dropped and its batches
 * end as lost (DESIGN.md §4); one that says it stopped is dropped at once. Time comes in as `nowMs`.
 */
import type { Heartbeat } from '../common/wire.js';
import { ReplicaHandle } from './replica-handle.js';

export class ReplicaRegistry {
  private readonly replicas = new Map<string, ReplicaHandle>();
  /**
   * Replicas taken out of service by {@link remove} (NATS said nobody listens on their subject)
   * whose batches may still be running: they come back with their batches at their next
   * heartbeat, or expire like any silent replica, losing those batches (so they are retried).
   */
  private readonly detached = new Map<string, ReplicaHandle>();
  constructor(private readonly timeoutIntervals: number) {}

  /**
   * Records a heartbeat. Returns 'new' for a replica not seen before, 'gone' when a known one
   * reports stopped (its unfinished batches end as lost, see ReplicaHandle.stopped).
   */
  observe(hb: Heartbeat, nowMs: number): 'new' | 'known' | 'gone' {
    const existing = this.replicas.get(hb.replicaId);
    const detached = this.detached.get(hb.replicaId);
    if (hb.state === 'stopped') {
      const handle = existing ?? detached;
      if (!handle) return 'known';
      this.replicas.delete(hb.replicaId);
      this.detached.delete(hb.replicaId);
      handle.stopped(hb);
      return 'gone';
    }
    if (existing) {
      existing.observe(hb, nowMs);
      return 'known';
    }
    if (detached) {
      // Back in service: its batches still in flight are checked against this heartbeat.
      this.detached.delete(hb.replicaId);
      this.replicas.set(hb.replicaId, detached);
      detached.observe(hb, nowMs);
      return 'new';
    }
    this.replicas.set(hb.replicaId, new ReplicaHandle(hb, nowMs));
    return 'new';
  }

  /**
   * Removes and returns replicas (in service or detached) whose heartbeats stopped; their
   * batches in flight end as lost.
   */
  expire(nowMs: number): ReplicaHandle[] {
    const lost: ReplicaHandle[] = [];
    for (const map of [this.replicas, this.detached]) {
      for (const r of [...map.values()]) {
        if (!r.expired(nowMs, this.timeoutIntervals)) continue;
        map.delete(r.id);
        r.lose('replica stopped heartbeating');
        lost.push(r);
      }
    }
    return lost;
  }

  /**
   * Takes a replica out of service at once (NATS said nobody listens on its subject: it died,
   * or its subscription is not back yet after a NATS restart). Its other batches are left
   * running: a heartbeat brings it back with them, silence expires it and loses them.
   */
  remove(replicaId: string): ReplicaHandle | undefined {
    const r = this.replicas.get(replicaId);
    if (!r) return undefined;
    this.replicas.delete(replicaId);
    this.detached.set(replicaId, r);
    return r;
  }

  get(replicaId: string): ReplicaHandle | undefined {
    return this.replicas.get(replicaId);
  }

  /** Replicas of a deployment that accept work (running, not draining). */
  serving(deployment: string): ReplicaHandle[] {
    return [...this.replicas.values()].filter((r) => r.deployment === deployment && r.serving);
  }

  all(): ReplicaHandle[] {
    return [...this.replicas.values()];
  }
}
