/**
 * Finishing a job. When every item is final and no more items follow, one router wins the
 * compare-and-set in_progress → finalizing and writes, into the sink: `manifest.jsonl` (one line
 * per finished item, in item order, read from the items KV — the source of truth, not a view),
 * `job.json` (spec + final counts) and `contact-sheet.png` (the first succeeded items, labelled
 * with their custom_id); then → completed. Should it find an item that is not final after all (a
 * retry raced the view), it puts the job back in progress.
 *
 * A cancel ends the same way from `cancelling` once nothing runs: the job's remaining messages are
 * purged, unfinished records become cancelled, and the files are written; then → cancelled.
 * Writing twice is harmless (puts replace), so a finalizer presumed dead is simply replaced.
 */
import type { Logger } from '../../common/logger.js';
import type { JobManager, LiveJob } from './job-manager.js';
import { FINAL_ITEM_STATES, isConflict, type ItemRecord, type JobCounts, type JobRecord, type Versioned } from './job-store.js';
import { contactSheet } from './sinks/contact-sheet.js';
import { manifestLine, type ManifestEntry } from './sinks/manifest.js';

const READ_CONCURRENCY = 64;
/** Tiles on the contact sheet. */
const SHEET_TILES = 200;

/** Reads every item record of [0, total) in order, `READ_CONCURRENCY` at a time. */
async function* records(m: JobManager, jobId: string, total: number): AsyncGenerator<[number, Versioned<ItemRecord> | undefined]> {
  for (let from = 0; from < total; from += READ_CONCURRENCY) {
    const idx = Array.from({ length: Math.min(READ_CONCURRENCY, total - from) }, (_, k) => from + k);
    const got = await Promise.all(idx.map((i) => m.store.getItem(jobId, i)));
    for (let k = 0; k < idx.length; k++) yield [idx[k]!, got[k]];
  }
}

function entry(job: JobRecord, rec: ItemRecord): ManifestEntry {
  return {
    custom_id: rec.customId, status: rec.state as ManifestEntry['status'], seed: rec.seed, prompt: rec.prompt ?? '', model: job.spec.modelId || '',
    size: `${job.spec.width}x${job.spec.height}`, file: rec.state === 'succeeded' ? rec.file ?? '' : '', bytes: rec.state === 'succeeded' ? rec.bytes ?? 0 : 0,
    sha256: rec.state === 'succeeded' ? rec.sha256 ?? '' : '', attempts: rec.totalAttempts, error: rec.state === 'succeeded' ? '' : rec.error ?? '',
    ...(rec.qc ? { qc: { passed: rec.qc.passed, attempts: rec.qc.attempts, seed: rec.qc.seed, reasons: [...rec.qc.reasons], box: rec.qc.box ?? null, area_fraction: rec.qc.areaFraction } } : {}),
  };
}

/**
 * Writes manifest.jsonl, job.json and contact-sheet.png; returns the counts, or undefined when an
 * item turned out not final (only when `requireAllFinal`). Records still queued or running become
 * cancelled when `cancelRest` (a cancelled job).
 */
async function writeOutputs(m: JobManager, live: LiveJob, job: JobRecord, opts: { requireAllFinal: boolean; cancelRest: boolean }, log: Logger): Promise<JobCounts | undefined> {
  const t0 = performance.now();
  const sink = await m.sinkOf(live);
  // Encoded a thousand lines at a time: a million-item manifest would pass V8's longest string.
  const chunks: Buffer[] = [];
  let pending: string[] = [];
  let lineCount = 0;
  const tiles: Array<{ label: string; file: string }> = [];
  const counts = { total: job.total, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, attempts: 0, qcFlagged: 0, qcRerolls: 0 };
  for await (const [index, cur] of records(m, job.id, job.cursor)) {
    let rec = cur?.value;
    if (!rec || !FINAL_ITEM_STATES.includes(rec.state)) {
      if (opts.requireAllFinal) return undefined;
      if (!rec) continue; // published but never started: counted below
      const cancelled: ItemRecord = { ...rec, state: 'cancelled', error: 'cancelled with its job', code: 'ORRERY_ERR_CANCELLED', finishedAtMs: Date.now() };
      try {
        await m.store.casItem(job.id, index, cancelled, cur!.revision);
        rec = cancelled;
      } catch (err) {
        if (!isConflict(err)) throw err;
        rec = (await m.store.getItem(job.id, index))?.value ?? cancelled;
      }
    }
    counts.attempts += rec.totalAttempts;
    if (rec.qc) {
      counts.qcRerolls += rec.qc.attempts - 1;
      if (!rec.qc.passed) counts.qcFlagged++;
    }
    counts[rec.state as 'succeeded' | 'failed' | 'cancelled']++;
    pending.push(manifestLine(entry(job, rec)));
    lineCount++;
    if (pending.length >= 1000) {
      chunks.push(Buffer.from(pending.join(''), 'utf8'));
      pending = [];
    }
    if (rec.state === 'succeeded' && rec.file && tiles.length < SHEET_TILES) tiles.push({ label: rec.customId, file: rec.file });
  }
  // Items never started (a cancelled job's unpublished or purged items) are cancelled too.
  counts.cancelled += job.total - counts.succeeded - counts.failed - counts.cancelled;
  const t1 = performance.now();
  chunks.push(Buffer.from(pending.join(''), 'utf8'));
  await sink.put('manifest.jsonl', Buffer.concat(chunks), 'application/x-ndjson');
  chunks.length = 0;
  const jobJson = { job_id: job.id, name: job.name, job_key: job.jobKey, output_uri: job.outputUri, created_at: new Date(job.createdAtMs).toISOString(), spec: job.spec, counts };
  await sink.put('job.json', new TextEncoder().encode(`${JSON.stringify(jobJson, null, 2)}\n`), 'application/json');
  const t2 = performance.now();
  if (tiles.length > 0) {
    try {
      const png = await contactSheet(
        tiles.map((t) => ({ label: t.label, image: () => sink.get(t.file) })),
        { title: `${job.name || job.id}: ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.cancelled} cancelled of ${counts.total}` },
      );
      await sink.put('contact-sheet.png', png, 'image/png');
    } catch (err) {
      log.warn({ err }, 'cannot make the contact sheet');
    }
  }
  log.info({ lines: lineCount, readMs: Math.round(t1 - t0), writeMs: Math.round(t2 - t1), contactSheetMs: Math.round(performance.now() - t2) }, 'job outputs written');
  return counts;
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
  const counts = await writeOutputs(m, live, job, { requireAllFinal: true, cancelRest: false }, log);
  if (!counts) {
    log.info('an item is not final yet; back in progress');
    await m.setJob(r.id, (j) => (j.state === 'finalizing' && j.finalizingAtMs === now ? { ...j, state: 'in_progress' } : undefined));
    return;
  }
  const done = await m.setJob(r.id, (j) =>
    j.state === 'finalizing' && j.finalizingAtMs === now
      ? { ...j, state: 'completed', counts, finishedAtMs: Date.now(), message: counts.failed > 0 ? `${counts.failed} of ${counts.total} items failed (RetryJob runs them again)` : '' }
      : undefined,
  );
  if (done?.changed) {
    m.options.metrics.jobFinished('completed');
    log.info({ ...counts }, 'job completed');
  }
}

/**
 * cancelling → cancelled, once no item runs (or after an ack wait: a router that died holding an
 * item never reports it). The router that starts finishing records itself as the finalizer; another
 * takes over only after FINALIZE_LEASE_MS (`leaseMs`).
 */
export async function finalizeCancel(m: JobManager, live: LiveJob, log: Logger, leaseMs: number): Promise<void> {
  const r = live.rec.value;
  const now = Date.now();
  const since = r.finalizingAtMs ?? 0;
  if (r.finalizer) {
    if (now - since < leaseMs) return;
  } else if ((live.view?.recorded('running') ?? 0) > 0 && now - since < m.queue.ackWaitMs + 5000) return;
  const me = m.options.routerId;
  const won = await m.setJob(r.id, (j) => (j.state === 'cancelling' && (j.finalizingAtMs ?? 0) === since && j.finalizer === r.finalizer ? { ...j, finalizingAtMs: now, finalizer: me } : undefined));
  if (!won?.changed) return;
  log.info({ waitedMs: now - since }, 'nothing of the job runs; finishing the cancel');
  await m.queue.purgeJob(r.id);
  const counts = (await writeOutputs(m, live, won.job.value, { requireAllFinal: false, cancelRest: true }, log))!;
  const done = await m.setJob(r.id, (j) => (j.state === 'cancelling' && j.finalizingAtMs === now && j.finalizer === me ? { ...j, state: 'cancelled', counts, finishedAtMs: Date.now() } : undefined));
  if (done?.changed) {
    m.options.metrics.jobFinished('cancelled');
    log.info({ ...counts }, 'job cancelled');
  }
}
