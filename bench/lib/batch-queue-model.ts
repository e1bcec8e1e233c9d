/**
 * The ideal batching server, simulated: one replica running one batch at a time, a batch of n
 * costing `fixedMs + perItemMs·n`, at most `maxBatch` per batch, FIFO, a partial batch leaving
 * when its oldest request has waited `waitMs` (as the router's batch policy does), no transport
 * or scheduling overhead. Fed the same arrivals as a real run, it says how much of the measured
 * latency is queueing that no router could avoid, and how much is the system's own.
 */

export interface ModelOptions {
  readonly maxBatch: number;
  readonly fixedMs: number;
  readonly perItemMs: number;
  readonly waitMs: number;
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
  const latencies = new Array<number>(arrivals.length);
  let next = 0; // first arrival not yet queued
  let head = 0; // first arrival not yet served (the queue is arrivals[head .. next))
  let now = 0;
  let batches = 0;
  while (head < arrivals.length) {
    if (head === next) now = Math.max(now, arrivals[next++]!); // idle until the next arrival
    while (next < arrivals.length && arrivals[next]! <= now) next++;
    if (next - head < o.maxBatch) {
      // A partial batch leaves when its head has waited waitMs, or earlier if it fills up.
      const readyAt = Math.max(now, arrivals[head]! + o.waitMs);
      while (next - head < o.maxBatch && next < arrivals.length && arrivals[next]! <= readyAt) next++;
      now = next - head >= o.maxBatch ? Math.max(now, arrivals[head + o.maxBatch - 1]!) : readyAt;
    }
    const n = Math.min(o.maxBatch, next - head);
    const done = now + o.fixedMs + o.perItemMs * n + (o.overheadMs ?? 0);
    for (let i = head; i < head + n; i++) latencies[i] = done - arrivals[i]!;
    head += n;
    batches++;
    now = done;
  }
  return { latencies, meanBatch: batches ? arrivals.length / batches : 0 };
}
