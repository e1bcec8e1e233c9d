/**
 * Deleting a finished job's records (after `jobs.retention_h`, or on DeleteJob): its job_key, its
 * leftover work messages, every key it has in the items bucket (records, definitions, custom id
 * claims) and finally its job record — never its outputs in the sink, which are the user's.
 *
 * A deletion is a state (`deleting`, from which no RPC shows the job) and a progress record
 * (lifecycle-policy.ts's DeletionProgress) in the job record, moved on by compare-and-set after
 * every step. The items go in server-side purges of the job's subjects, a page of stream
 * sequences at a time: the router never reads the keys, so memory does not depend on the job's
 * size. Every step is idempotent, so a router that dies mid-way is replaced after DELETE_LEASE_MS
 * by any other, which redoes at most the step it was on.
 */
import type { Logger } from '../../common/logger.js';
import type { JobManager, LiveJob } from './job-manager.js';
import { FINAL_JOB_STATES, type JobRecord, type Versioned } from './job-store.js';
import { DELETION_START, nextDeletionStep } from './lifecycle-policy.js';

/** A deleter silent this long (no progress recorded) is presumed dead and replaced. */
export const DELETE_LEASE_MS = 30_000;
/** Stream sequences one purge of a job's item keys covers (bounds each request's work on the server). */
export const DELETE_PAGE_SEQS = 250_000;

/**
 * Moves a finished job to `deleting` (`reason`: retention, DeleteJob). Resolves with the record
 * afterwards and whether this call moved it; undefined when the job does not exist.
 */
export async function startDeletion(m: JobManager, jobId: string, reason: string, nowMs: number): Promise<{ job: Versioned<JobRecord>; changed: boolean } | undefined> {
  return m.setJob(jobId, (j) =>
    FINAL_JOB_STATES.includes(j.state) ? { ...j, state: 'deleting', message: `deleting its records: ${reason}`, deletion: { progress: DELETION_START, router: '', atMs: nowMs, reason } } : undefined,
  );
}

/** Runs a deletion to its end, or resumes one whose deleter went silent; returns when done or when another router holds it. */
export async function runDeletion(m: JobManager, live: LiveJob, log: Logger): Promise<void> {
  const r = live.rec.value;
  const d = r.deletion;
  const me = m.options.routerId;
  if (r.state !== 'deleting' || !d) return;
  if (d.router && d.router !== me && m.now() - d.atMs < DELETE_LEASE_MS) return;
  const claimedAt = m.now();
  let cur = await m.setJob(r.id, (j) => (j.state === 'deleting' && j.deletion?.router === d.router && j.deletion.atMs === d.atMs ? { ...j, deletion: { ...j.deletion, router: me, atMs: claimedAt } } : undefined));
  if (!cur) {
    m.forget(r.id); // deleted meanwhile
    return;
  }
  if (!cur.changed) return;
  if (d.router && d.router !== me) log.warn({ deleter: d.router, progress: d.progress }, 'deleter presumed dead; resuming the deletion');
  let purged = 0;
  for (;;) {
    const job = cur.job.value;
    const dd = job.deletion!;
    const bounds = dd.progress.step === 'work' ? await m.store.itemSeqBounds() : { firstSeq: 0, lastSeq: 0 };
    const step = nextDeletionStep(dd.progress, bounds, DELETE_PAGE_SEQS);
    switch (step.kind) {
      case 'release-key':
        if (job.jobKey) await m.store.releaseJobKey(job.jobKey, job.id);
        break;
      case 'purge-work':
        await m.queue.purgeJob(job.id);
        break;
      case 'purge-items':
        purged += await m.store.purgeItemsBelow(job.id, step.belowSeq);
        break;
      case 'delete-record':
        await m.store.deleteJobRecord(job.id);
        m.forget(job.id);
        log.info({ reason: dd.reason, itemKeysPurged: purged }, 'job records deleted (its outputs stay in the sink)');
        return;
    }
    const at = m.now();
    cur = await m.setJob(job.id, (j) => (j.state === 'deleting' && j.deletion?.router === me && j.deletion.atMs === dd.atMs ? { ...j, deletion: { ...dd, progress: step.next, atMs: at } } : undefined));
    if (!cur?.changed) return; // taken over (this router was presumed dead) or gone
  }
}
