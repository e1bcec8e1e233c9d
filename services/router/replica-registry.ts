/**
 * The router's view of live replicas, built from heartbeats. A replica that has not heartbeated
 * for `timeoutIntervals` of its own interval is dropped (DESIGN.md §4). Time comes in as `nowMs`.
 */
import type { Heartbeat } from '../common/wire.js';

export interface ReplicaState {
  readonly id: string;
  readonly deployment: string;
  heartbeat: Heartbeat;
  lastSeenMs: number;
  /** Heartbeats received since the router first saw the replica (for batch-loss detection). */
  heartbeatsSeen: number;
}

export class ReplicaRegistry {
  private readonly replicas = new Map<string, ReplicaState>();
  constructor(private readonly timeoutIntervals: number) {}

  /** Records a heartbeat. Returns 'new' for a replica not seen before, 'gone' when it reports stopped. */
  observe(hb: Heartbeat, nowMs: number): 'new' | 'known' | 'gone' {
    const existing = this.replicas.get(hb.replicaId);
    if (hb.state === 'stopped') {
      this.replicas.delete(hb.replicaId);
      return existing ? 'gone' : 'known';
    }
    if (existing) {
      if (hb.seq < existing.heartbeat.seq) return 'known'; // reordered old heartbeat
      existing.heartbeat = hb;
      existing.lastSeenMs = nowMs;
      existing.heartbeatsSeen++;
      return 'known';
    }
    this.replicas.set(hb.replicaId, { id: hb.replicaId, deployment: hb.deployment, heartbeat: hb, lastSeenMs: nowMs, heartbeatsSeen: 1 });
    return 'new';
  }

  /** Removes and returns replicas whose heartbeats stopped. */
  expire(nowMs: number): ReplicaState[] {
    const lost: ReplicaState[] = [];
    for (const r of this.replicas.values()) {
      if (nowMs - r.lastSeenMs > this.timeoutIntervals * Math.max(r.heartbeat.intervalMs, 1)) lost.push(r);
    }
    for (const r of lost) this.replicas.delete(r.id);
    return lost;
  }

  /** Forgets a replica at once (e.g. NATS said nobody listens on its subject). */
  remove(replicaId: string): ReplicaState | undefined {
    const r = this.replicas.get(replicaId);
    this.replicas.delete(replicaId);
    return r;
  }

  get(replicaId: string): ReplicaState | undefined {
    return this.replicas.get(replicaId);
  }

  /** Replicas of a deployment that accept work (running, not draining). */
  serving(deployment: string): ReplicaState[] {
    return [...this.replicas.values()].filter((r) => r.deployment === deployment && r.heartbeat.state === 'running');
  }

  all(): ReplicaState[] {
    return [...this.replicas.values()];
  }
}
