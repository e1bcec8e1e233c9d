/** NATS subjects, all under a configurable prefix (default `orrery`). */
export interface Subjects {
  /** Batches addressed to one replica (request/reply). */
  batch(replicaId: string): string;
  /** Cancellation of requests inside a batch on one replica. */
  cancel(replicaId: string): string;
  /** Heartbeats of every replica of a deployment; `heartbeatAll` subscribes to all deployments. */
  heartbeat(deployment: string): string;
  readonly heartbeatAll: string;
  /** Routers ask every replica to heartbeat now (at router start), instead of waiting an interval. */
  readonly heartbeatRequest: string;
  /**
   * Everything addressed to one router: replies to its batches and their progress events. The
   * router holds ONE subscription, `routerInbox(id) + '.>'`, instead of a subscription per batch.
   */
  routerInbox(routerId: string): string;
  /** The reply subject of one batch (under routerInbox). */
  batchReply(routerId: string, batchId: string): string;
  /** Per-step progress events of one batch, from a replica to its router (under routerInbox). */
  progress(routerId: string, batchId: string): string;
  /** Name of the object store bucket for payloads too big to travel inline. */
  readonly payloadBucket: string;
}

export function subjects(prefix: string): Subjects {
  return {
    batch: (r) => `${prefix}.replica.${r}.batch`,
    cancel: (r) => `${prefix}.replica.${r}.cancel`,
    heartbeat: (d) => `${prefix}.hb.${d}`,
    heartbeatAll: `${prefix}.hb.*`,
    heartbeatRequest: `${prefix}.hb-request`,
    routerInbox: (r) => `${prefix}.router.${r}`,
    batchReply: (r, b) => `${prefix}.router.${r}.reply.${b}`,
    progress: (r, b) => `${prefix}.router.${r}.progress.${b}`,
    // Bucket names allow letters, digits, '-' and '_' only.
    payloadBucket: `${prefix.replace(/\./g, '_')}_payloads`,
  };
}
