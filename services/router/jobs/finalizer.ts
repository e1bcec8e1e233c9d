/**
 * Finishing a job. When every item is final and no more items follow, one router wins the
 * compare-and-set in_progress → finalizing and writes, into the sink: `manifest.jsonl` (one line
 * per finished item, read from the items KV — the source of truth, not a view — in pages, and
 * streamed into the sink, so memory does not grow with the job; lines come in the order the
 * records were last written),
 * `job.json` (spec + final counts) and `contact-sheet.png` (the first succeeded items, labelled
 * with their custom_id); then → completed. Should it find an item that is not final after all (a
 * retry raced the view), it puts the job back in progress.
 *
 * A cancel ends the same way from `cancelling` once nothing runs: the job's remaining messages are
 * purged, unfinished records become cancelled, and the files are written; then → cancelled. An
 * expiry (the completion window passed) ends from `expiring` alike, its unfinished items expired.
 * Writing twice is harmless (puts replace), so a finalizer presumed dead is simply replaced.
 */
import { JobExpiredError, JobStateError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { JobManager, LiveJob } from './job-manager.js';
import { FINAL_ITEM_STATES, isConflict, STOPPING_JOB_STATES, type IndexedRecord, type ItemRecord, type JobCounts, type JobRecord } from './job-store.js';
import { contactSheet } from './sinks/contact-sheet.js';
import { manifestLine, type ManifestEntry } from './sinks/manifest.js';

/** Manifest lines encoded and handed to the sink at a time. */
export const MANIFEST_CHUNK_LINES = 1000;
/** Tiles on the contact sheet. */
const SHEET_TILES = 200;

function entry(job: JobRecord, rec: ItemRecord): ManifestEntry {
  return {
    custom_id: rec.customId, status: rec.state as ManifestEntry['status'], seed: rec.seed, prompt: rec.prompt ?? '', model: job.spec.modelId || '',
    size: `${job.spec.width}x${job.spec.height}`, file: rec.state === 'succeeded' ? rec.file ?? '' : '', bytes: rec.state === 'succeeded' ? rec.bytes ?? 0 : 0,
    sha256: rec.state === 'succeeded' ? rec.sha256 ?? '' : '', attempts: rec.totalAttempts, error: rec.state === 'succeeded' ? '' : rec.error ?? '',
    ...(rec.qc ? { qc: { passed: rec.qc.passed, attempts: rec.qc.attempts, seed: rec.qc.seed, reasons: [...rec.qc.reasons], box: rec.qc.box ?? null, area_fraction: rec.qc.areaFraction } } : {}),
  };
}

/** What writing a manifest found: counts (without never-started items) and the contact sheet's tiles. */
export interface ManifestTally {
  readonly counts: { succeeded: number; failed: number; cancelled: number; expired: number; attempts: number; qcFlagged: number; qcRerolls: number };
  /** The succeeded items of lowest index (at most SHEET_TILES), in item order. */
  readonly tiles: Array<{ index: number; label: string; file: string }>;
  lines: number;
}

export function newTally(): ManifestTally {
  return { counts: { succeeded: 0, failed: 0, cancelled: 0, expired: 0, attempts: 0, qcFlagged: 0, qcRerolls: 0 }, tiles: [], lines: 0 };
}

function addTile(tiles: ManifestTally['tiles'], index: number, label: string, file: string): void {
  if (tiles.length >= SHEET_TILES && index > tiles[tiles.length - 1]!.index) return;
  let at = tiles.length;
  while (at > 0 && tiles[at - 1]!.index > index) at--;
  tiles.splice(at, 0, { index, label, file });
  if (tiles.length > SHEET_TILES) tiles.pop();
}

/**
 * manifest.jsonl as chunks of MANIFEST_CHUNK_LINES lines, from item records as they are read
 * (JobStore.itemRecords: in the order they were last written), tallying counts and tiles on the
 * way: memory stays one chunk, whatever the job's size. `settle` turns a record that is not final
 * into its final one (a cancel), or throws (finalizing found an item still running).
 */
export async function* manifestChunks(job: JobRecord, records: AsyncIterable<IndexedRecord>, settle: (r: IndexedRecord) => Promise<ItemRecord>, tally: ManifestTally): AsyncGenerator<Uint8Array> {
  let pending: string[] = [];
  for await (const r of records) {
    const rec = FINAL_ITEM_STATES.includes(r.value.state) ? r.value : await settle(r);
    tally.counts.attempts += rec.totalAttempts;
    if (rec.qc) {
      tally.counts.qcRerolls += rec.qc.attempts - 1;
      if (!rec.qc.passed) tally.counts.qcFlagged++;
    }
    tally.counts[rec.state as 'succeeded' | 'failed' | 'cancelled' | 'expired']++;
    pending.push(manifestLine(entry(job, rec)));
    tally.lines++;
    if (pending.length >= MANIFEST_CHUNK_LINES) {
      yield Buffer.from(pending.join(''), 'utf8');
      pending = [];
    }
    if (rec.state === 'succeeded' && rec.file) addTile(tally.tiles, r.index, rec.customId, rec.file);
  }
  if (pending.length > 0) yield Buffer.from(pending.join(''), 'utf8');
}

/**
 * Writes manifest.jsonl (streamed into the sink), job.json and contact-sheet.png; returns the
 * counts, or undefined when an item turned out not final (only without `rest`: the manifest's
 * put is then abandoned). With `rest` (a cancelled or expired job), records still queued or
 * running end in that state, and so do the items that never started.
 */
async function writeOutputs(m: JobManager, live: LiveJob, job: JobRecord, rest: 'cancelled' | 'expired' | undefined, log: Logger): Promise<JobCounts | undefined> {
  const t0 = performance.now();
  const sink = await m.sinkOf(live);
  const tally = newTally();
  const notFinal = new JobStateError(job.id, 'an item is not final yet');
  const settle = async (r: IndexedRecord): Promise<ItemRecord> => {
    if (!rest) throw notFinal;
    const why = rest === 'expired' ? new JobExpiredError(job.id) : { message: 'cancelled with its job', code: 'ORRERY_ERR_CANCELLED' };
    const ended: ItemRecord = { ...r.value, state: rest, error: why.message, code: why.code, finishedAtMs: Date.now() };
    try {
      await m.store.casItem(job.id, r.index, ended, r.revision);
      return ended;
    } catch (err) {
      if (!isConflict(err)) throw err;
      const now = (await m.store.getItem(job.id, r.index))?.value;
      return now && FINAL_ITEM_STATES.includes(now.state) ? now : ended;
    }
  };
  try {
    await sink.putStream('manifest.jsonl', manifestChunks(job, m.store.itemRecords(job.id), settle, tally), 'application/x-ndjson');
  } catch (err) {
    if (err === notFinal) return undefined;
    throw err;
  }
  const c = tally.counts;
  // Items never started (a stopped job's unpublished or purged items) end as the job's rest did.
  const unstarted = job.total - c.succeeded - c.failed - c.cancelled - c.expired;
  const counts: JobCounts = {
    total: job.total, queued: 0, running: 0, succeeded: c.succeeded, failed: c.failed, cancelled: c.cancelled + (rest === 'cancelled' ? unstarted : 0),
    expired: c.expired + (rest === 'expired' ? unstarted : 0), attempts: c.attempts, qcFlagged: c.qcFlagged, qcRerolls: c.qcRerolls,
  };
  const t1 = performance.now();
  const jobJson = { job_id: job.id, name: job.name, job_key: job.jobKey, output_uri: job.outputUri, created_at: new Date(job.createdAtMs).toISOString(), spec: job.spec, counts };
  await sink.put('job.json', new TextEncoder().encode(`${JSON.stringify(jobJson, null, 2)}\n`), 'application/json');
  const t2 = performance.now();
  if (tally.tiles.length > 0) {
    try {
      const png = await contactSheet(
        tally.tiles.map((t) => ({ label: t.label, image: () => sink.get(t.file) })),
        { title: `${job.name || job.id}: ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.cancelled} cancelled${counts.expired ? `, ${counts.expired} expired` : ''} of ${counts.total}` },
      );
      await sink.put('contact-sheet.png', png, 'image/png');
    } catch (err) {
      log.warn({ err }, 'cannot make the contact sheet');
    }
  }
  log.info({ lines: tally.lines, manifestMs: Math.round(t1 - t0), jobJsonMs: Math.round(t2 - t1), contactSheetMs: Math.round(performance.now() - t2) }, 'job outputs written');
  return counts;
}

/** A completed job's message: how many items failed, if any. */
function completedMessage(counts: JobCounts): string {
  return counts.failed > 0 ? `${counts.failed} of ${counts.total} items failed (RetryJob runs them again)` : '';
}

/** in_progress → finalizing → completed (`takeover`: replace a finalizer presumed dead). */
export async function finalizeJob(m: JobManager, live: LiveJob, log: Logger, takeover: boolean): Promise<void> {
  const r = live.rec.value;
  const now = Date.now();
  const won = await m.setJob(r.id, (j) =>
    j.generation === r.generation && !j.retryPending && (takeover ? j.state === 'finalizing' && j.finalizingAtMs === r.finalizingAtMs : j.state === 'in_progress')
      ? { ...j, state: 'finalizing', finalizingAtMs: now }
      : undefined,
  );
  if (!won?.changed) return;
  log.info('all items final; writing the manifest');
  const job = won.job.value;
  const counts = await writeOutputs(m, live, job, undefined, log);
  if (!counts) {
    log.info('an item is not final yet; back in progress');
    await m.setJob(r.id, (j) => (j.state === 'finalizing' && j.finalizingAtMs === now ? { ...j, state: 'in_progress' } : undefined));
    return;
  }
  const done = await m.setJob(r.id, (j) =>
    j.state === 'finalizing' && j.finalizingAtMs === now
      ? { ...j, state: 'completed', counts, finishedAtMs: Date.now(), message: completedMessage(counts) }
      : undefined,
  );
  if (done?.changed) {
    m.options.metrics.jobFinished('completed');
    log.info({ ...counts }, 'job completed');
  }
}

/**
 * cancelling → cancelled, expiring → expired (completed, should nothing have been left to
 * expire), once no item runs (or after an ack wait: a router
 * that died holding an item never reports it). The router that starts finishing records itself as
 * the finalizer; another takes over only after FINALIZE_LEASE_MS (`leaseMs`).
 */
export async function finalizeStop(m: JobManager, live: LiveJob, log: Logger, leaseMs: number, nowMs: number): Promise<void> {
  const r = live.rec.value;
  const outcome = STOPPING_JOB_STATES[r.state];
  if (!outcome) return;
  const since = r.finalizingAtMs ?? 0;
  if (r.finalizer) {
    if (nowMs - since < leaseMs) return;
  } else if ((live.view?.recorded('running') ?? 0) > 0 && nowMs - since < m.queue.ackWaitMs + 5000) return;
  const me = m.options.routerId;
  const won = await m.setJob(r.id, (j) => (j.state === r.state && (j.finalizingAtMs ?? 0) === since && j.finalizer === r.finalizer ? { ...j, finalizingAtMs: nowMs, finalizer: me } : undefined));
  if (!won?.changed) return;
  log.info({ waitedMs: nowMs - since, outcome }, 'nothing of the job runs; finishing it');
  await m.queue.purgeJob(r.id);
  const counts = (await writeOutputs(m, live, won.job.value, outcome, log))!;
  // The window passed as the last items finished: nothing expired, the job completed.
  const final = outcome === 'expired' && counts.expired === 0 ? 'completed' : outcome;
  const message = final === 'expired' ? `${won.job.value.message}: ${counts.expired} of ${counts.total} items expired (RetryJob runs them again)` : final === 'completed' ? completedMessage(counts) : won.job.value.message;
  const done = await m.setJob(r.id, (j) => (j.state === r.state && j.finalizingAtMs === nowMs && j.finalizer === me ? { ...j, state: final, counts, message, finishedAtMs: m.now() } : undefined));
  if (done?.changed) {
    m.options.metrics.jobFinished(final);
    log.info({ ...counts }, `job ${final}`);
  }
}
