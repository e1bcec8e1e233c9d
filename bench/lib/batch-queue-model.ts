/**
 * The ideal batching server, simulated: `replicas` replicas each running one batch at a time, a
 * batch of n costing `fixedMs + perItemMs·n`, at most `maxBatch` per batch, one FIFO queue, a
 * partial batch leaving when its oldest request has waited `waitMs` (as the router's batch policy
 * does), the next batch going to the replica free first, no transport or scheduling overhead.
 * Fed the same arrivals as a real run, it says how much of the measured latency is queueing that
 * no router could avoid, and how much is the system's own.
 */

export interface ModelOptions {
  readonly maxBatch: number;
  readonly fixedMs: number;
  readonly perItemMs: number;
  readonly waitMs: number;
  /** Replicas sharing the queue (default 1). */
  readonly replicas?: number;
  /** Extra time per batch (e.g. a measured round-trip overhead); 0 for the ideal. */
  readonly overheadMs?: number;
}

export interface ModelResult {
  /** Latency of each arrival, ms, in arrival order. */
  readonly latencies: number[];
  readonly meanBatch: number;
}

/** `arrivals`: ascending ms offsets (e.g. poissonArrivals()). */
export function simulateBatching(arrivals: readonly number[], o: ModelOptions): ModelResult {
  const r = simulateBatchQueue(arrivals, { maxBatch: o.maxBatch, waitMs: o.waitMs, replicas: o.replicas ?? 1 }, (n) => o.fixedMs + o.perItemMs * n + (o.overheadMs ?? 0));
  return { latencies: r.latencies, meanBatch: r.batches ? arrivals.length / r.batches : 0 };
}

/**
 * The queue of that server with any batch cost: `batchMs(n)` is how long a batch of n takes (the
 * step model's request-level mode prices it per step). Also says when the last batch ended.
 */
export function simulateBatchQueue(
  arrivals: readonly number[],
  o: { readonly maxBatch: number; readonly waitMs: number; readonly replicas: number },
  batchMs: (n: number) => number,
): { latencies: number[]; batches: number; lastDoneMs: number } {
  const latencies = new Array<number>(arrivals.length);
  const freeAtMs = new Array<number>(Math.max(1, o.replicas)).fill(0);
  let head = 0; // first arrival not yet served
  let batches = 0;
  let lastDoneMs = 0;
  while (head < arrivals.length) {
    let r = 0;
    for (let i = 1; i < freeAtMs.length; i++) if (freeAtMs[i]! < freeAtMs[r]!) r = i;
    // The replica free first starts when it is free and the queue is not empty.
    let now = Math.max(freeAtMs[r]!, arrivals[head]!);
    let n = 0;
    while (n < o.maxBatch && head + n < arrivals.length && arrivals[head + n]! <= now) n++;
    if (n < o.maxBatch) {
      // A partial batch leaves when its head has waited waitMs, or earlier if it fills up.
      const readyAt = Math.max(now, arrivals[head]! + o.waitMs);
      while (n < o.maxBatch && head + n < arrivals.length && arrivals[head + n]! <= readyAt) n++;
      now = n >= o.maxBatch ? Math.max(now, arrivals[head + o.maxBatch - 1]!) : readyAt;
    }
    const done = now + batchMs(n);
    for (let i = head; i < head + n; i++) latencies[i] = done - arrivals[i]!;
    head += n;
    batches++;
    freeAtMs[r] = done;
    lastDoneMs = Math.max(lastDoneMs, done);
  }
  return { latencies, batches, lastDoneMs };
}
