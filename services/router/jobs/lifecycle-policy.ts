/**
 * When a job's life moves on without anyone asking (pure: state and `now` in, a decision out; the
 * JobManager's tick acts on it): a job not finished within its completion window expires, a
 * finished job's records are deleted once `jobs.retention_h` has passed, and a deletion goes
 * step by step so that any router can resume it where the last one stopped.
 */
import type { JobState } from './job-store.js';

/** States a completion window can end: the job is still running (not finalizing, stopping or finished). */
const EXPIRABLE: readonly JobState[] = ['validating', 'in_progress', 'paused'];
const RETAINABLE: readonly JobState[] = ['completed', 'cancelled', 'expired'];

export type WindowDecision = { kind: 'none' } | { kind: 'wait'; untilMs: number } | { kind: 'expire' };

/** Expire the job now, wait until `untilMs`, or nothing to do (no window, or a state a window cannot end). */
export function windowDecision(job: { readonly state: JobState; readonly expiresAtMs?: number }, nowMs: number): WindowDecision {
  if (job.expiresAtMs === undefined || !EXPIRABLE.includes(job.state)) return { kind: 'none' };
  return nowMs >= job.expiresAtMs ? { kind: 'expire' } : { kind: 'wait', untilMs: job.expiresAtMs };
}

/** When a window of `windowMs` opened at `startMs` closes; undefined for no window (0). */
export function expiresAt(startMs: number, windowMs: number): number | undefined {
  return windowMs > 0 ? startMs + windowMs : undefined;
}

export type RetentionDecision = { kind: 'keep' } | { kind: 'wait'; untilMs: number } | { kind: 'delete' };

/** Delete a finished job's records now, at `untilMs`, or keep them (unfinished, or `retentionMs` 0: for ever). */
export function retentionDecision(job: { readonly state: JobState; readonly finishedAtMs?: number }, nowMs: number, retentionMs: number): RetentionDecision {
  if (retentionMs <= 0 || !RETAINABLE.includes(job.state) || job.finishedAtMs === undefined) return { kind: 'keep' };
  const untilMs = job.finishedAtMs + retentionMs;
  return nowMs >= untilMs ? { kind: 'delete' } : { kind: 'wait', untilMs };
}

/**
 * How far a deletion got (stored in the job record after every step). Steps, in order: free the
 * job_key (so it can name a new job), purge the job's leftover work messages, purge its item
 * keys from the items stream a page of sequences at a time (up to `untilSeq`, the stream's last
 * sequence when that step began: a finished job writes no item records, so none can appear
 * later), then remove the job record itself.
 */
export type DeletionProgress =
  | { readonly step: 'key' }
  | { readonly step: 'work' }
  | { readonly step: 'items'; readonly fromSeq: number; readonly untilSeq: number }
  | { readonly step: 'record' };

export const DELETION_START: DeletionProgress = { step: 'key' };

export type DeletionStep =
  | { kind: 'release-key'; next: DeletionProgress }
  | { kind: 'purge-work'; next: DeletionProgress }
  /** Purge the job's item keys stored at sequences below `belowSeq`. */
  | { kind: 'purge-items'; belowSeq: number; next: DeletionProgress }
  | { kind: 'delete-record' };

/** The items stream's first and last sequence now. */
export interface SeqBounds {
  readonly firstSeq: number;
  readonly lastSeq: number;
}

/**
 * The next step of a deletion at `progress`. `bounds` are the items stream's now (used when the
 * item step begins); `pageSeqs` bounds the sequences one purge covers, so each request to the
 * server is bounded and progress is recorded between pages.
 */
export function nextDeletionStep(progress: DeletionProgress, bounds: SeqBounds, pageSeqs: number): DeletionStep {
  switch (progress.step) {
    case 'key':
      return { kind: 'release-key', next: { step: 'work' } };
    case 'work':
      return { kind: 'purge-work', next: { step: 'items', fromSeq: bounds.firstSeq, untilSeq: bounds.lastSeq } };
    case 'items': {
      if (progress.fromSeq > progress.untilSeq) return { kind: 'delete-record' };
      const belowSeq = Math.min(progress.fromSeq + pageSeqs, progress.untilSeq + 1);
      return { kind: 'purge-items', belowSeq, next: belowSeq > progress.untilSeq ? { step: 'record' } : { step: 'items', fromSeq: belowSeq, untilSeq: progress.untilSeq } };
    }
    case 'record':
      return { kind: 'delete-record' };
  }
}
