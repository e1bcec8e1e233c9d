/**
 * Load shapes over any async operation: sequential (one in flight) and open loop (arrivals on a
 * schedule, whatever the latency). Latency is timed by the operation itself, from its send.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { poissonArrivals } from './arrivals.js';

export interface OpResult {
  readonly ok: boolean;
  /** Latency from the actual send. */
  readonly ms: number;
  readonly code?: number;
}

export interface Completion extends OpResult {
  /** Scheduled send, ms after the run started. */
  readonly scheduledMs: number;
  /** How late the send left against its schedule (client lag; should stay ~1 ms). */
  readonly lagMs: number;
  /** When the answer came, ms after the run started. */
  readonly doneMs: number;
}

/** Runs `op` `n` times, one at a time. */
export async function sequential(n: number, op: (i: number) => Promise<OpResult>): Promise<OpResult[]> {
  const out: OpResult[] = [];
  for (let i = 0; i < n; i++) out.push(await op(i));
  return out;
}

/**
 * Open loop: Poisson arrivals at `ratePerS` for `durationMs` (seeded), each sent on schedule
 * (timers fire with ~1 ms granularity: due sends leave together), then waits for every answer.
 */
export async function openLoop(ratePerS: number, durationMs: number, seed: number, op: (i: number) => Promise<OpResult>): Promise<Completion[]> {
  const arrivals = poissonArrivals(ratePerS, durationMs, seed);
  const t0 = performance.now();
  const pending: Array<Promise<Completion>> = [];
  for (let i = 0; i < arrivals.length; i++) {
    const wait = t0 + arrivals[i]! - performance.now();
    if (wait >= 1) await sleep(Math.floor(wait));
    const sentMs = performance.now() - t0;
    const scheduledMs = arrivals[i]!;
    pending.push(op(i).then((r) => ({ ...r, scheduledMs, lagMs: Math.max(0, sentMs - scheduledMs), doneMs: sentMs + r.ms })));
  }
  return Promise.all(pending);
}
