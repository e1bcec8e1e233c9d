/**
 * The job RPCs of orrery.v1.ImageService (SubmitJob, AddJobItems, GetJob, WatchJob, CancelJob,
 * ListJobs, ListJobItems, RetryJob, DeleteJob). A job being deleted is no longer shown: every RPC
 * answers NOT_FOUND for it (DeleteJob itself answers again, so a retried call succeeds). Each validates at the edge and answers from the job records in
 * KV (job-store.ts); the JobManager does the work. Semantics are those documented in
 * proto/orrery/v1/image_service.proto.
 */
import { randomBytes } from 'node:crypto';
import type { ServerUnaryCall, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import { InvalidArgumentError, JobNotFoundError, JobStateError, OrreryError } from '../../common/errors.js';
import type { JobManager } from './job-manager.js';
import { checkUniqueIds, compileItem, compileSubmit, sourceOfDef, sourceOfGrid, type ItemDef, type JobItemWire, type SubmitJobWire } from './job-spec.js';
import { startDeletion } from './job-deleter.js';
import { FINAL_JOB_STATES, stoppedItemState, type ItemRecord, type ItemState, type JobCounts, type JobRecord, type Versioned } from './job-store.js';
import { countsAfterRetry } from './job-view.js';
import { expiresAt } from './lifecycle-policy.js';
import { openSink } from './sinks/index.js';

const ITEM_STATES: readonly ItemState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'];
/** The states ListJobs filters by (`deleting` is not shown). */
const JOB_STATES = ['validating', 'in_progress', 'paused', 'finalizing', 'completed', 'expiring', 'expired', 'cancelling', 'cancelled'];
const WRITE_CONCURRENCY = 64;
/** Items ListJobItems looks at per call when filtering by state (the token continues the scan). */
const MAX_SCAN = 100_000;

const randomSeed = (): bigint => randomBytes(8).readBigUInt64BE();

/** A new job id: sortable by creation time (ListJobs is newest first), then random. */
export function newJobId(nowMs: number): string {
  return `j${nowMs.toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`;
}

function timestamp(ms: number | undefined): { seconds: string; nanos: number } | null {
  if (ms === undefined) return null;
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** A job record and its counts (`counts`, or the job's as the router knows them) as the Job message. */
export function jobMessage(m: JobManager, rec: JobRecord, counts?: JobCounts): Record<string, unknown> {
  const c = counts ?? m.counts(rec);
  const final = FINAL_JOB_STATES.includes(rec.state);
  return {
    job_id: rec.id, state: rec.state, total: c.total, done: c.succeeded, failed: c.failed, succeeded: c.succeeded, queued: c.queued, running: c.running,
    cancelled: c.cancelled, expired: c.expired ?? 0, expires_at: timestamp(rec.expiresAtMs), attempts: c.attempts, items_per_second: final ? 0 : m.itemsPerSecond(rec.id), eta_seconds: final ? 0 : m.etaSeconds(rec),
    created_at: timestamp(rec.createdAtMs), started_at: timestamp(rec.startedAtMs), finished_at: timestamp(rec.finishedAtMs), output_uri: rec.outputUri,
    job_key: rec.jobKey, name: rec.name, pipeline: rec.spec.pipeline, model_id: rec.spec.modelId, message: rec.message, max_attempts: rec.spec.maxAttempts,
    qc_flagged: c.qcFlagged ?? 0, qc_rerolls: c.qcRerolls ?? 0,
  };
}

function requireId(raw: unknown): string {
  const id = typeof raw === 'string' ? raw : '';
  if (!id) throw new InvalidArgumentError('job_id', 'is required');
  if (!/^[a-z0-9]{1,64}$/.test(id)) throw new JobNotFoundError(id);
  return id;
}

/** The job, unless it is unknown or being deleted (NOT_FOUND). */
async function mustGet(m: JobManager, id: string): Promise<Versioned<JobRecord>> {
  const job = await m.getJob(requireId(id));
  if (!job || job.value.state === 'deleting') throw new JobNotFoundError(id);
  return job;
}

/** Writes explicit items' definitions and claims their custom ids (positions from `first`). */
async function storeItems(m: JobManager, jobId: string, defs: readonly ItemDef[], first: number, accepted: number): Promise<void> {
  for (let k = 0; k < defs.length; k += WRITE_CONCURRENCY) {
    await Promise.all(defs.slice(k, k + WRITE_CONCURRENCY).map(async (def, j) => {
      const index = first + k + j;
      const dup = await m.store.claimCustomId(jobId, def.customId, index, accepted);
      if (dup !== undefined) throw new InvalidArgumentError(`items[${index}].custom_id`, `"${def.customId}" duplicates items[${dup}].custom_id`);
      await m.store.putDef(jobId, index, def);
    }));
  }
}

export interface JobServiceHandlers {
  SubmitJob(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  AddJobItems(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  GetJob(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  WatchJob(call: ServerWritableStream<unknown, unknown>): void;
  CancelJob(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  ListJobs(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  ListJobItems(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  RetryJob(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
  DeleteJob(call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>): void;
}

/**
 * The handlers. `unary` runs one and maps errors to statuses (image-service.ts owns that mapping
 * and the metrics); `stream` does the same for WatchJob.
 */
export function jobHandlers(
  m: JobManager,
  unary: (method: string, cb: sendUnaryData<unknown>, fn: () => Promise<unknown>) => void,
  stream: (method: string, call: ServerWritableStream<unknown, unknown>, fn: () => Promise<void>) => void,
): JobServiceHandlers {
  const config = m.config;

  async function submit(raw: SubmitJobWire): Promise<unknown> {
    const compiled = compileSubmit(config, raw, randomSeed);
    const jobKey = raw.job_key ?? '';
    if (jobKey.length > 256) throw new InvalidArgumentError('job_key', `is ${jobKey.length} characters; at most 256`);
    let id = newJobId(Date.now());
    if (jobKey) {
      const existing = await m.store.claimJobKey(jobKey, id);
      if (existing) {
        const job = await m.store.getJob(existing);
        if (job?.value.state === 'deleting') throw new JobStateError(existing, `job_key "${jobKey.slice(0, 80)}" names this job, whose records are being deleted; submit again in a moment`);
        if (job) return jobMessage(m, job.value);
        id = existing; // the submit that claimed the key stopped before creating the job
      }
    }
    const sink = await openSink(raw.output_uri || `${config.jobs.defaultOutputUri.replace(/\/+$/, '')}/${id}`, { nc: m.options.nc, env: m.options.env ?? process.env });
    let outputUri: string;
    try {
      await sink.check();
      outputUri = sink.uri;
    } finally {
      await sink.close().catch(() => undefined);
    }
    await storeItems(m, id, compiled.items, 0, 0);
    const createdAtMs = m.now();
    const expiry = expiresAt(createdAtMs, compiled.spec.completionWindowMs ?? 0);
    const rec: JobRecord = {
      id, jobKey, name: raw.name ?? '', state: compiled.itemsFollow ? 'validating' : 'in_progress', spec: compiled.spec, outputUri,
      total: compiled.total, itemsFollow: compiled.itemsFollow, cursor: 0, generation: 0, retryPending: false, createdAtMs, message: '',
      ...(expiry !== undefined ? { expiresAtMs: expiry } : {}),
    };
    try {
      const revision = await m.store.createJob(rec);
      m.noteJob({ value: rec, revision });
      m.log.info({ jobId: id, total: rec.total, pipeline: rec.spec.pipeline, outputUri }, 'job submitted');
      return jobMessage(m, rec);
    } catch (err) {
      const job = await m.store.getJob(id);
      if (job) return jobMessage(m, job.value); // a concurrent submit of the same key made it
      throw err;
    }
  }

  async function addItems(raw: { job_id?: string; offset?: string | number; items?: JobItemWire[]; last?: boolean }): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      const { value: job } = await mustGet(m, raw.job_id ?? '');
      const offset = Number(raw.offset ?? 0);
      const wires = raw.items ?? [];
      if (!job.itemsFollow) {
        if (offset + wires.length <= job.total) return jobMessage(m, job); // a retried chunk already accepted
        throw new JobStateError(job.id, `its item list is closed at ${job.total} items (a chunk with last = true was accepted, or items_follow was not set)`);
      }
      if (stoppedItemState(job.state)) throw new JobStateError(job.id, `is ${job.state}`);
      if (offset > job.total) throw new InvalidArgumentError('offset', `${offset} is past the ${job.total} items accepted so far; send the missing chunk first`);
      const skip = job.total - offset;
      const fresh = wires.slice(skip);
      if (job.total + fresh.length > config.jobs.maxJobItems) throw new InvalidArgumentError('items', `would make ${job.total + fresh.length} items; more than jobs.max_job_items (${config.jobs.maxJobItems})`);
      const defs = fresh.map((w, k) => compileItem(job.spec, w, job.total + k));
      checkUniqueIds(defs, job.total);
      await storeItems(m, job.id, defs, job.total, job.total);
      const last = !!raw.last;
      const res = await m.setJob(job.id, (j) =>
        j.total === job.total && j.itemsFollow
          ? { ...j, total: j.total + defs.length, itemsFollow: !last, state: last && j.state === 'validating' ? 'in_progress' : j.state }
          : undefined,
      );
      if (res?.changed) return jobMessage(m, res.job.value);
      if (attempt >= 3) throw new JobStateError(job.id, 'another AddJobItems call changed the job at the same time; retry the chunk');
    }
  }

  async function cancel(id: string): Promise<unknown> {
    const { value } = await mustGet(m, id);
    const res = await m.setJob(value.id, (j) =>
      ['validating', 'in_progress', 'paused'].includes(j.state) ? { ...j, state: 'cancelling', finalizingAtMs: Date.now(), message: 'cancelled by a CancelJob call' } : undefined,
    );
    if (res?.changed) m.log.info({ jobId: value.id }, 'job cancelling');
    return jobMessage(m, res?.job.value ?? value);
  }

  async function retry(id: string): Promise<unknown> {
    const { value } = await mustGet(m, id);
    let before: JobRecord | undefined;
    const now = m.now();
    const res = await m.setJob(value.id, (j) => {
      const expired = j.counts?.expired ?? 0;
      if (!FINAL_JOB_STATES.includes(j.state) || !j.counts || j.counts.failed + j.counts.cancelled + expired === 0) return undefined;
      before = j;
      const { counts: _c, finishedAtMs: _f, finalizingAtMs: _z, finalizer: _r, expiresAtMs: _e, ...rest } = j;
      // A new completion window, as long as the job's, from now.
      const expiry = expiresAt(now, j.spec.completionWindowMs ?? 0);
      return {
        ...rest, state: j.itemsFollow ? 'validating' : 'in_progress', generation: j.generation + 1, retryPending: true, ...(expiry !== undefined ? { expiresAtMs: expiry } : {}),
        message: `retry ${j.generation + 1}: ${j.counts.failed} failed, ${j.counts.cancelled} cancelled and ${expired} expired items run again`,
      };
    });
    if (!res?.changed) return jobMessage(m, res?.job.value ?? value);
    m.log.info({ jobId: value.id, generation: res.job.value.generation }, 'job retried');
    // The finished job's counts, as the retry leaves them (the item records follow when it is requeued).
    return jobMessage(m, res.job.value, countsAfterRetry(m.counts(before!)));
  }

  async function listJobs(raw: { page_size?: number; page_token?: string; state?: string }): Promise<unknown> {
    const size = Math.min(1000, raw.page_size || 50);
    const state = raw.state ?? '';
    if (state && !JOB_STATES.includes(state)) throw new InvalidArgumentError('state', `"${state.slice(0, 40)}" is not one of ${JOB_STATES.join(', ')}`);
    const ids = (await m.store.jobIds()).sort().reverse();
    const after = raw.page_token ?? '';
    const jobs: unknown[] = [];
    let next = '';
    for (const id of ids) {
      if (after && id >= after) continue;
      const job = await m.getJob(id);
      if (!job || job.value.state === 'deleting' || (state && job.value.state !== state)) continue;
      if (jobs.length === size) {
        next = (jobs[jobs.length - 1] as { job_id: string }).job_id;
        break;
      }
      jobs.push(jobMessage(m, job.value));
    }
    return { jobs, next_page_token: next };
  }

  async function listItems(raw: { job_id?: string; page_size?: number; page_token?: string; state?: string }): Promise<unknown> {
    const { value: job } = await mustGet(m, raw.job_id ?? '');
    const size = Math.min(10_000, raw.page_size || 100);
    const state = raw.state ?? '';
    if (state && !ITEM_STATES.includes(state as ItemState)) throw new InvalidArgumentError('state', `"${state.slice(0, 40)}" is not one of ${ITEM_STATES.join(', ')}`);
    let index = raw.page_token ? Number(raw.page_token) : 0;
    if (!Number.isInteger(index) || index < 0) throw new InvalidArgumentError('page_token', 'is not a token from ListJobItems');
    const live = m.live.get(job.id) ?? { rec: { value: job, revision: 0 }, busy: false, lastSinkCheckMs: 0, aborts: new Set<AbortController>() };
    const grid = m.gridOf(live);
    // A stopped job's unfinished items show as it left them (cancelled or expired).
    const stopped = stoppedItemState(job.state);
    const items: unknown[] = [];
    const stop = Math.min(job.total, index + MAX_SCAN);
    while (index < stop && items.length < size) {
      const idx = Array.from({ length: Math.min(64, stop - index) }, (_, k) => index + k);
      const recs = await Promise.all(idx.map((i) => m.store.getItem(job.id, i)));
      for (let k = 0; k < idx.length && items.length < size; k++) {
        index = idx[k]! + 1;
        const i = idx[k]!;
        const rec: ItemRecord | undefined = recs[k]?.value;
        const itemState: ItemState = rec ? (stopped && (rec.state === 'queued' || rec.state === 'running') ? stopped : rec.state) : stopped ?? 'queued';
        if (state && itemState !== state) continue;
        let customId = rec?.customId ?? '';
        let seed = rec?.seed ?? '';
        if (!customId) {
          const def = grid ? undefined : await m.store.getDef(job.id, i);
          const src = grid ? sourceOfGrid(grid, i) : def ? sourceOfDef(job.spec, def, i) : undefined;
          customId = src?.customId ?? '';
          seed = src?.seed.toString() ?? '';
        }
        items.push({
          custom_id: customId, index: i, state: itemState, seed: seed || '0', prompt: rec?.prompt ?? '', model_id: job.spec.modelId,
          width: job.spec.width, height: job.spec.height, file: rec?.state === 'succeeded' ? rec.file ?? '' : '', bytes: rec?.bytes ?? 0,
          sha256: rec?.sha256 ?? '', attempts: rec?.totalAttempts ?? 0, error: rec?.error ?? '', error_code: rec?.code ?? '',
          ...(rec?.qc ? { qc: { passed: rec.qc.passed, attempts: rec.qc.attempts, seed: rec.qc.seed, ...(rec.qc.box ? { box: rec.qc.box } : {}), area_fraction: rec.qc.areaFraction, reasons: rec.qc.reasons } } : {}),
        });
      }
    }
    return { items, next_page_token: index < job.total ? String(index) : '' };
  }

  async function watch(call: ServerWritableStream<unknown, unknown>): Promise<void> {
    const req = call.request as { job_id?: string; watch_interval_ms?: number };
    const intervalMs = Math.max(50, req.watch_interval_ms || 1000);
    const { value: first } = await mustGet(m, req.job_id ?? '');
    let last = '';
    let wake: (() => void) | undefined;
    let dirty: boolean;
    const unsubscribe = m.onChange((id) => {
      if (id !== first.id && id !== '*') return;
      dirty = true;
      wake?.();
    });
    const onCancelled = () => wake?.();
    call.on('cancelled', onCancelled);
    try {
      for (;;) {
        if (call.cancelled) return;
        if (m.stopping) throw new OrreryError('ORRERY_ERR_NO_REPLICA', 'the router is stopping; watch the job again (any router serves it)');
        const cur = await m.getJob(first.id);
        if (!cur || cur.value.state === 'deleting') throw new JobNotFoundError(first.id);
        const job = cur.value;
        const msg = jobMessage(m, job);
        const text = JSON.stringify({ ...msg, items_per_second: 0, eta_seconds: 0 });
        if (text !== last) {
          last = text;
          call.write(msg);
        }
        if (FINAL_JOB_STATES.includes(job.state)) return;
        dirty = false;
        await new Promise((r) => setTimeout(r, intervalMs));
        if (call.cancelled) return;
        // Then wait for a change (or a second, for the rate and ETA) before looking again.
        if (!dirty) await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.max(intervalMs, 1000));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      unsubscribe();
      call.removeListener('cancelled', onCancelled);
    }
  }

  /** Starts deleting a finished job's records; a job already being deleted answers the same (a retried call). */
  async function remove(raw: string): Promise<unknown> {
    const id = requireId(raw);
    const job = await m.getJob(id);
    if (!job) throw new JobNotFoundError(id);
    if (job.value.state === 'deleting') return { job_id: id };
    const res = await startDeletion(m, id, 'DeleteJob', m.now());
    if (!res) throw new JobNotFoundError(id);
    const state = res.job.value.state;
    if (state !== 'deleting') throw new JobStateError(id, `is ${state}; only a finished job (${FINAL_JOB_STATES.join(', ')}) can be deleted — CancelJob stops it first`);
    if (res.changed) m.log.info({ jobId: id }, 'job deletion asked for');
    return { job_id: id };
  }

  const req = <T>(call: ServerUnaryCall<unknown, unknown>): T => call.request as T;
  return {
    SubmitJob: (call, cb) => unary('SubmitJob', cb, () => submit(req<SubmitJobWire>(call))),
    AddJobItems: (call, cb) => unary('AddJobItems', cb, () => addItems(req(call))),
    GetJob: (call, cb) => unary('GetJob', cb, async () => jobMessage(m, (await mustGet(m, req<{ job_id?: string }>(call).job_id ?? '')).value)),
    WatchJob: (call) => stream('WatchJob', call, () => watch(call)),
    CancelJob: (call, cb) => unary('CancelJob', cb, () => cancel(req<{ job_id?: string }>(call).job_id ?? '')),
    ListJobs: (call, cb) => unary('ListJobs', cb, () => listJobs(req(call))),
    ListJobItems: (call, cb) => unary('ListJobItems', cb, () => listItems(req(call))),
    RetryJob: (call, cb) => unary('RetryJob', cb, () => retry(req<{ job_id?: string }>(call).job_id ?? '')),
    DeleteJob: (call, cb) => unary('DeleteJob', cb, () => remove(req<{ job_id?: string }>(call).job_id ?? '')),
  };
}
