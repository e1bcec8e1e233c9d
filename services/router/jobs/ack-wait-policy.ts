/**
 * How long a claimed item may run without a sign of life before JetStream hands it to another
 * router (the work consumer's ack_wait). Pure: 4 × the p99 of recent item times, clamped to
 * [min, max]; the configured default until anything has been measured. A running item also sends
 * in-progress acks every third of it (job-runner.ts), so the bound matters only for a router that
 * died: it is how long its items wait before they run elsewhere.
 */

export interface AckWaitBounds {
  readonly defaultMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

/** The ack wait for recent item durations (ms). */
export function ackWaitFor(recentMs: readonly number[], bounds: AckWaitBounds): number {
  if (recentMs.length === 0) return bounds.defaultMs;
  const sorted = [...recentMs].sort((a, b) => a - b);
  const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
  return Math.min(bounds.maxMs, Math.max(bounds.minMs, 4 * p99));
}

/** Whether a new ack wait differs enough from the current one to update the shared consumer. */
export function shouldUpdateAckWait(currentMs: number, nextMs: number): boolean {
  return Math.abs(nextMs - currentMs) > 0.25 * currentMs;
}

/** Delay before attempt `attempt + 1` of a failed item: base × 2^(attempt-1), at most 60 s. */
export function retryBackoffMs(baseMs: number, attempt: number): number {
  return Math.min(60_000, baseMs * 2 ** Math.max(0, attempt - 1));
}
