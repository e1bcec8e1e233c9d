/**
 * What the router has seen batches cost, per batch key and batch size: the replica's own run time
 * of recent batches (model load and waiting for the device excluded) and the deployment's transport
 * overhead (the rest of a batch's round trip). Two scheduling decisions read it:
 *
 * - deadline shedding (deployment-scheduler.ts): an image whose deadline is nearer than the
 *   *fastest* recent run of its batch cannot be answered in time, so it fails with
 *   DEADLINE_EXCEEDED before it takes device time that other requests could use;
 * - prefetch timing (batch-policy.ts): a partial batch goes to a busy replica's spare slot only
 *   when that replica is expected to finish (typical run times) within one transport overhead.
 *
 * A plain data structure (no clocks, no I/O): the scheduler feeds it samples.
 */

/** Recent samples kept per (key, size). */
const WINDOW = 8;
/** Batch keys remembered (least recently recorded forgotten first). */
const MAX_KEYS = 256;
/** Weight of a new transport-overhead sample in its moving average. */
const OVERHEAD_ALPHA = 0.2;

/** The last WINDOW samples of one (key, size), oldest overwritten first. */
class Ring {
  private readonly samples: number[] = [];
  private next = 0;

  add(ms: number): void {
    if (this.samples.length < WINDOW) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % WINDOW;
  }

  min(): number {
    return Math.min(...this.samples);
  }

  median(): number {
    const s = [...this.samples].sort((a, b) => a - b);
    return s[(s.length - 1) >> 1]!;
  }
}

export class BatchTimings {
  /** key → batch size → recent run times (ms). Map order is recency of recording (oldest first). */
  private readonly byKey = new Map<string, Map<number, Ring>>();
  private overheadEwmaMs: number | undefined;

  /**
   * One finished batch: `runMs` is the replica's own time on it (BatchReply.run_seconds);
   * `overheadMs`, when the batch did not wait behind another on the replica, is the rest of its
   * round trip (round trip − load − run): transport, hand-offs, encoding the reply.
   */
  record(key: string, size: number, runMs: number, overheadMs?: number): void {
    if (!(size >= 1) || !Number.isFinite(runMs) || runMs < 0) return;
    let sizes = this.byKey.get(key);
    if (sizes) this.byKey.delete(key);
    else sizes = new Map();
    this.byKey.set(key, sizes);
    if (this.byKey.size > MAX_KEYS) this.byKey.delete(this.byKey.keys().next().value!);
    let ring = sizes.get(size);
    if (!ring) sizes.set(size, (ring = new Ring()));
    ring.add(runMs);
    if (overheadMs !== undefined && Number.isFinite(overheadMs) && overheadMs >= 0) {
      this.overheadEwmaMs = this.overheadEwmaMs === undefined ? overheadMs : this.overheadEwmaMs + OVERHEAD_ALPHA * (overheadMs - this.overheadEwmaMs);
    }
  }

  /**
   * A lower bound on the run time of a batch of `size` with this key: the fastest recent run of
   * the largest size seen that is ≤ `size` (a batch never runs faster than a smaller one of the
   * same kind). Undefined when no such batch has been seen: nothing is known, nothing is shed.
   */
  runLowerBoundMs(key: string, size: number): number | undefined {
    const sizes = this.byKey.get(key);
    if (!sizes) return undefined;
    let best: number | undefined;
    for (const s of sizes.keys()) if (s <= size && (best === undefined || s > best)) best = s;
    return best === undefined ? undefined : sizes.get(best)!.min();
  }

  /**
   * The typical run time of a batch of `size` with this key: the median of recent runs of that
   * size, else of the nearest size seen (larger preferred, so the guess errs long). Undefined
   * when no batch of this key has been seen.
   */
  runExpectedMs(key: string, size: number): number | undefined {
    const sizes = this.byKey.get(key);
    if (!sizes) return undefined;
    let best: number | undefined;
    for (const s of sizes.keys()) {
      if (best === undefined) best = s;
      const d = Math.abs(s - size), bd = Math.abs(best - size);
      if (d < bd || (d === bd && s > best)) best = s;
    }
    return best === undefined ? undefined : sizes.get(best)!.median();
  }

  /** Moving average of the transport overhead per batch (ms); undefined before the first sample. */
  get overheadMs(): number | undefined {
    return this.overheadEwmaMs;
  }
}
