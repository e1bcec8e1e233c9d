/**
 * A job's counts, materialized from its item records (pure: the caller feeds it every record it
 * sees from a KV watch, so a restarted router rebuilds it from KV). Per item it keeps one state
 * byte and an attempts counter, in pages created only where records exist: memory follows the
 * items that have started, never the grid's size. A failure is never counted as done.
 */
import { FINAL_JOB_STATES, stoppedItemState, type ItemRecord, type ItemState, type JobCounts, type JobRecord } from './job-store.js';

const STATES: readonly (ItemState | 'none')[] = ['none', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'];
const CODE = new Map(STATES.map((s, i) => [s, i]));
const PAGE = 4096;
const RATE_WINDOW_S = 60;

export class JobView {
  private readonly statePages = new Map<number, Uint8Array>();
  private readonly attemptPages = new Map<number, Uint32Array>();
  private readonly byState = new Array<number>(STATES.length).fill(0);
  private attemptsSum = 0;
  /** Per item, its quality gate's attempts × 2 + 1 when it was returned flagged (0: not checked). */
  private readonly qcPages = new Map<number, Uint16Array>();
  private qcFlagged = 0;
  private qcRerolls = 0;
  /** Items finished (succeeded or failed) per second, over the last RATE_WINDOW_S seconds. */
  private readonly finishedPerSecond = new Map<number, number>();

  /** Applies the current record of item `index` (undefined: deleted). */
  apply(index: number, rec: ItemRecord | undefined, nowMs: number): void {
    const page = Math.floor(index / PAGE);
    let states = this.statePages.get(page);
    let attempts = this.attemptPages.get(page);
    if (!states || !attempts) {
      if (!rec) return;
      states = new Uint8Array(PAGE);
      attempts = new Uint32Array(PAGE);
      this.statePages.set(page, states);
      this.attemptPages.set(page, attempts);
    }
    const slot = index % PAGE;
    const before = states[slot]!;
    const after = rec ? CODE.get(rec.state)! : 0;
    this.byState[before]!--;
    this.byState[after]!++;
    this.attemptsSum += (rec?.totalAttempts ?? 0) - attempts[slot]!;
    attempts[slot] = rec?.totalAttempts ?? 0;
    states[slot] = after;
    this.applyQc(page, slot, rec);
    const finished = (s: number) => s === CODE.get('succeeded') || s === CODE.get('failed');
    if (rec && finished(after) && !finished(before) && rec.finishedAtMs !== undefined && nowMs - rec.finishedAtMs < RATE_WINDOW_S * 1000) {
      const sec = Math.floor(rec.finishedAtMs / 1000);
      this.finishedPerSecond.set(sec, (this.finishedPerSecond.get(sec) ?? 0) + 1);
    }
  }

  private applyQc(page: number, slot: number, rec: ItemRecord | undefined): void {
    const code = rec?.qc ? Math.min(rec.qc.attempts, 0x7fff) * 2 + (rec.qc.passed ? 0 : 1) : 0;
    let qc = this.qcPages.get(page);
    if (!qc) {
      if (code === 0) return;
      qc = new Uint16Array(PAGE);
      this.qcPages.set(page, qc);
    }
    const was = qc[slot]!;
    const rerolls = (c: number) => Math.max(0, (c >> 1) - 1);
    this.qcRerolls += rerolls(code) - rerolls(was);
    this.qcFlagged += (code & 1) - (was & 1);
    qc[slot] = code;
  }

  /** The recorded state of item `index`, or 'none' when it has no record (never started). */
  stateOf(index: number): ItemState | 'none' {
    const states = this.statePages.get(Math.floor(index / PAGE));
    return STATES[states ? states[index % PAGE]! : 0]!;
  }

  /** Items with a record in `state`. */
  recorded(state: ItemState): number {
    return this.byState[CODE.get(state)!]!;
  }

  /** Finished items per second over the last minute. */
  itemsPerSecond(nowMs: number): number {
    const nowSec = Math.floor(nowMs / 1000);
    let n = 0;
    for (const [sec, c] of this.finishedPerSecond) {
      if (nowSec - sec >= RATE_WINDOW_S) this.finishedPerSecond.delete(sec);
      else n += c;
    }
    return n / RATE_WINDOW_S;
  }

  /** Every item has a final record (succeeded, failed, cancelled or expired). */
  allFinal(total: number): boolean {
    return this.recorded('succeeded') + this.recorded('failed') + this.recorded('cancelled') + this.recorded('expired') >= total;
  }

  /**
   * The job's counts now. Items of a cancelled (expired) job that never ran count as cancelled
   * (expired); none of them is ever counted as done.
   */
  counts(job: JobRecord): JobCounts {
    if (job.counts && FINAL_JOB_STATES.includes(job.state)) return job.counts;
    const running = this.recorded('running');
    const succeeded = this.recorded('succeeded');
    const failed = this.recorded('failed');
    let cancelled = this.recorded('cancelled');
    let expired = this.recorded('expired');
    let queued = Math.max(0, job.total - running - succeeded - failed - cancelled - expired);
    const stopped = stoppedItemState(job.state);
    if (stopped === 'cancelled') cancelled += queued;
    if (stopped === 'expired') expired += queued;
    if (stopped) queued = 0;
    return { total: job.total, queued, running, succeeded, failed, cancelled, expired, attempts: this.attemptsSum, qcFlagged: this.qcFlagged, qcRerolls: this.qcRerolls };
  }

  /** Seconds until done at the current rate; 0 when unknown or finished. */
  etaSeconds(job: JobRecord, nowMs: number): number {
    const rate = this.itemsPerSecond(nowMs);
    const c = this.counts(job);
    const left = c.queued + c.running;
    return rate > 0 && left > 0 ? left / rate : 0;
  }
}

/** A finished job's counts once RetryJob took effect: its failed, cancelled and expired items are queued again. */
export function countsAfterRetry(c: JobCounts): JobCounts {
  return { ...c, queued: c.queued + c.running + c.failed + c.cancelled + (c.expired ?? 0), running: 0, failed: 0, cancelled: 0, expired: 0 };
}
