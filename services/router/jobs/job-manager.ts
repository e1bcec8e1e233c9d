/**
 * The router's job machinery: it watches every job record in KV (so each router knows every job
 * and sees cancels at once), keeps a JobView for each unfinished job from a watch of its item
 * records, and once every TICK_MS moves each unfinished job along — feed its next window of items
 * (feeder.ts), requeue a retry, resume a paused job whose sink is writable again, finalize a job
 * whose items are all final (finalizer.ts), expire a job whose completion window passed and
 * finish its expiry, delete the records of a job finished longer ago than `jobs.retention_h`
 * (job-deleter.ts; lifecycle-policy.ts decides when). Every move is a compare-and-set on the job
 * record, so any number of routers can do this at once. The JobRunner pulls and runs the items.
 */
import type { KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ClusterConfig } from '../../common/config.js';
import { CancelledError, JobExpiredError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { PipelineRunner } from '../pipeline-runner.js';
import type { RouterMetrics } from '../router-metrics.js';
import { feedJob, requeueRetry } from './feeder.js';
import { finalizeJob, finalizeStop } from './finalizer.js';
import { LazyGrid } from './grid.js';
import { runDeletion, startDeletion } from './job-deleter.js';
import { JobRunner } from './job-runner.js';
import { FINAL_JOB_STATES, JobStore, stoppedItemState, type ItemRecord, type JobCounts, type JobRecord, type Versioned } from './job-store.js';
import { JobView } from './job-view.js';
import { retentionDecision, windowDecision } from './lifecycle-policy.js';
import { openSink, type JobSink } from './sinks/index.js';
import { WorkQueue } from './work-queue.js';

const TICK_MS = 250;
/** A finalizer that has not finished in this long is presumed dead and replaced. */
const FINALIZE_LEASE_MS = 120_000;

export interface JobManagerOptions {
  readonly nc: NatsConnection;
  readonly config: ClusterConfig;
  readonly runner: PipelineRunner;
  readonly metrics: RouterMetrics;
  readonly log: Logger;
  readonly routerId: string;
  readonly env?: NodeJS.ProcessEnv;
  /** The clock completion windows and retention are judged by (default Date.now). */
  readonly clock?: () => number;
}

/** What this router knows of one job. */
export interface LiveJob {
  rec: Versioned<JobRecord>;
  /** Counts of an unfinished job (absent once it is final: its record holds the counts). */
  view?: JobView;
  stopWatch?: () => void;
  grid?: LazyGrid;
  sink?: Promise<JobSink>;
  /** Tick work running for this job (one at a time per router). */
  busy: boolean;
  lastSinkCheckMs: number;
  /** Items of the job running on this router, aborted when it is cancelled. */
  readonly aborts: Set<AbortController>;
}

export class JobManager {
  readonly live = new Map<string, LiveJob>();
  private readonly listeners = new Set<(jobId: string) => void>();
  private tick: NodeJS.Timeout | undefined;
  private stopped = false;
  private stopJobsWatch: (() => void) | undefined;
  readonly jobRunner: JobRunner;
  readonly log: Logger;

  private constructor(
    readonly options: JobManagerOptions,
    readonly store: JobStore,
    readonly queue: WorkQueue,
  ) {
    this.log = options.log.child({ component: 'jobs' });
    this.jobRunner = new JobRunner(this);
  }

  get config(): ClusterConfig {
    return this.options.config;
  }

  /** Now, by the injected clock (completion windows, retention, deletion leases). */
  now(): number {
    return (this.options.clock ?? Date.now)();
  }

  static async start(options: JobManagerOptions): Promise<JobManager> {
    const prefix = options.config.nats.prefix;
    const store = await JobStore.open(options.nc, prefix.replace(/\./g, '_'));
    const queue = await WorkQueue.open(options.nc, prefix, options.config.jobs.ackWaitMs);
    const m = new JobManager(options, store, queue);
    await m.watchJobs();
    m.tick = setInterval(() => m.onTick(), TICK_MS);
    m.jobRunner.start();
    return m;
  }

  /** Calls `fn(jobId)` whenever a job's record or counts change; returns the unsubscribe. */
  onChange(fn: (jobId: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(jobId: string): void {
    for (const fn of this.listeners) fn(jobId);
  }

  /** The job's record: this router's copy when it has one, else from KV. */
  async getJob(id: string): Promise<Versioned<JobRecord> | undefined> {
    return this.live.get(id)?.rec ?? (await this.store.getJob(id));
  }

  /** The job's counts now (final counts for a finished job). */
  counts(rec: JobRecord): JobCounts {
    const view = this.live.get(rec.id)?.view;
    if (rec.counts && FINAL_JOB_STATES.includes(rec.state)) return rec.counts;
    return view ? view.counts(rec) : { total: rec.total, queued: rec.total, running: 0, succeeded: 0, failed: 0, cancelled: 0, attempts: 0 };
  }

  itemsPerSecond(id: string): number {
    return this.live.get(id)?.view?.itemsPerSecond(Date.now()) ?? 0;
  }

  etaSeconds(rec: JobRecord): number {
    return this.live.get(rec.id)?.view?.etaSeconds(rec, Date.now()) ?? 0;
  }

  /** The job's grid (cached per job). */
  gridOf(live: LiveJob): LazyGrid | undefined {
    const spec = live.rec.value.spec;
    if (!spec.grid) return undefined;
    live.grid ??= new LazyGrid(spec.grid, BigInt(spec.seed));
    return live.grid;
  }

  /** The job's sink, opened once per router and job. */
  sinkOf(live: LiveJob): Promise<JobSink> {
    live.sink ??= openSink(live.rec.value.outputUri, { nc: this.options.nc, env: this.options.env ?? process.env }).catch((err: unknown) => {
      live.sink = undefined;
      throw err;
    });
    return live.sink;
  }

  /** Bulk items worth having in flight on this router: jobs.max_in_flight, else the pipelines' bulk capacity. */
  capacity(): number {
    if (this.config.jobs.maxInFlight > 0) return this.config.jobs.maxInFlight;
    let cap = 0;
    const seen = new Set<string>();
    for (const j of this.live.values()) {
      const r = j.rec.value;
      if (FINAL_JOB_STATES.includes(r.state) || r.state === 'deleting' || seen.has(r.spec.pipeline)) continue;
      seen.add(r.spec.pipeline);
      cap = Math.max(cap, this.options.runner.bulkCapacity(r.spec.pipeline));
    }
    return cap;
  }

  /** Records a job record this router wrote (the watch will confirm it). */
  noteJob(rec: Versioned<JobRecord>): void {
    this.applyJob(rec);
  }

  private async watchJobs(): Promise<void> {
    const iter = await this.store.watchJobs();
    this.stopJobsWatch = () => (iter as unknown as { stop(): void }).stop();
    void (async () => {
      for await (const e of iter) this.onJobEntry(e);
      if (!this.stopped) {
        this.log.warn('job watch ended; restarting it');
        setTimeout(() => void this.watchJobs().catch((err: unknown) => this.log.error({ err }, 'cannot watch jobs')), 1000);
      }
    })();
  }

  private onJobEntry(e: KvWatchEntry): void {
    if (e.operation !== 'PUT') {
      this.forget(e.key.slice('job.'.length)); // its records were deleted
      return;
    }
    this.applyJob({ value: e.json<JobRecord>(), revision: e.revision });
  }

  /** Drops a job whose records are gone (deleted). */
  forget(id: string): void {
    const live = this.live.get(id);
    if (!live) return;
    this.live.delete(id);
    live.stopWatch?.();
    void live.sink?.then((s) => s.close()).catch(() => undefined);
    this.changed(id);
  }

  private applyJob(rec: Versioned<JobRecord>): void {
    const id = rec.value.id;
    let live = this.live.get(id);
    if (live && live.rec.revision >= rec.revision) return;
    if (!live) {
      live = { rec, busy: false, lastSinkCheckMs: 0, aborts: new Set() };
      this.live.set(id, live);
    } else live.rec = rec;
    const r = rec.value;
    // A deleting job is finished too: it needs no view.
    const final = FINAL_JOB_STATES.includes(r.state) || r.state === 'deleting';
    if (!final && !live.view) this.watchItems(live);
    if (final && live.view) {
      live.stopWatch?.();
      live.view = undefined;
      live.stopWatch = undefined;
      void live.sink?.then((s) => s.close()).catch(() => undefined);
      live.sink = undefined;
    }
    const stopped = stoppedItemState(r.state);
    if (stopped) for (const ac of live.aborts) ac.abort(stopped === 'expired' ? new JobExpiredError(r.id) : new CancelledError('with its job'));
    this.changed(id);
  }

  private watchItems(live: LiveJob): void {
    const view = new JobView();
    live.view = view;
    const id = live.rec.value.id;
    const prefixLen = `${id}.r.`.length;
    let stop = false;
    live.stopWatch = () => {
      stop = true;
    };
    void (async () => {
      while (!stop && !this.stopped) {
        try {
          const iter = await this.store.watchItems(id);
          live.stopWatch = () => {
            stop = true;
            iter.stop();
          };
          for await (const e of iter) {
            const index = Number(e.key.slice(prefixLen));
            view.apply(index, e.operation === 'PUT' ? e.json<ItemRecord>() : undefined, Date.now());
            this.changed(id);
          }
        } catch (err) {
          if (!stop && !this.stopped) this.log.warn({ err, jobId: id }, 'item watch failed; retrying');
        }
        if (!stop && !this.stopped) await new Promise((r) => setTimeout(r, 1000));
      }
    })();
  }

  private onTick(): void {
    const now = this.now();
    const states = new Map<string, number>();
    for (const live of this.live.values()) {
      const r = live.rec.value;
      states.set(r.state, (states.get(r.state) ?? 0) + 1);
      if (live.busy) continue;
      if (FINAL_JOB_STATES.includes(r.state) && retentionDecision(r, now, this.config.jobs.retentionMs).kind !== 'delete') continue;
      live.busy = true;
      this.advance(live, now)
        .catch((err: unknown) => this.log.warn({ err, jobId: r.id }, 'job step failed; retrying'))
        .finally(() => {
          live.busy = false;
        });
    }
    let rate = 0;
    let remaining = 0;
    for (const live of this.live.values()) {
      rate += live.view?.itemsPerSecond(now) ?? 0;
      if (live.view && !FINAL_JOB_STATES.includes(live.rec.value.state)) {
        const c = live.view.counts(live.rec.value);
        remaining += c.queued + c.running;
      }
    }
    this.options.metrics.jobsByState(states, rate, remaining);
  }

  /** One step of a job (see the file comment). */
  private async advance(live: LiveJob, now: number): Promise<void> {
    const r = live.rec.value;
    const log = this.log.child({ jobId: r.id });
    if (windowDecision(r, now).kind === 'expire') {
      const windowS = Math.round((r.spec.completionWindowMs ?? 0) / 1000);
      const res = await this.setJob(r.id, (j) =>
        windowDecision(j, now).kind === 'expire' ? { ...j, state: 'expiring', finalizingAtMs: now, message: `expired: its completion window (${windowS} s) passed before it finished` } : undefined,
      );
      if (res?.changed) log.info({ expiresAtMs: r.expiresAtMs }, 'completion window passed; the job expires');
      return;
    }
    if (FINAL_JOB_STATES.includes(r.state)) {
      const res = await startDeletion(this, r.id, `retention (jobs.retention_h: ${this.config.jobs.retentionMs / 3_600_000}) passed`, now);
      if (res?.changed) log.info('retention passed; deleting the job\'s records');
      return;
    }
    switch (r.state) {
      case 'deleting':
        await runDeletion(this, live, log);
        return;
      case 'paused':
        if (now - live.lastSinkCheckMs < this.config.jobs.sinkCheckIntervalMs) return;
        live.lastSinkCheckMs = now;
        try {
          await (await this.sinkOf(live)).check();
        } catch {
          return;
        }
        log.info('sink writable again; resuming the job');
        await this.setJob(r.id, (j) => (j.state === 'paused' ? { ...j, state: j.itemsFollow ? 'validating' : 'in_progress', message: '' } : undefined));
        return;
      case 'cancelling':
      case 'expiring':
        await finalizeStop(this, live, log, FINALIZE_LEASE_MS, now);
        return;
      case 'finalizing':
        if (now - (r.finalizingAtMs ?? 0) < FINALIZE_LEASE_MS) return;
        log.warn('finalizer presumed dead; finalizing again');
        await finalizeJob(this, live, log, true);
        return;
      case 'validating':
      case 'in_progress':
        if (r.retryPending) {
          await requeueRetry(this, live, log);
          return;
        }
        await feedJob(this, live, log);
        if (r.state === 'in_progress' && !r.itemsFollow && r.cursor >= r.total && live.view?.allFinal(r.total)) await finalizeJob(this, live, log, false);
        return;
      default:
        return;
    }
  }

  /** Compare-and-set on the job record; keeps this router's copy current. */
  async setJob(id: string, change: (rec: JobRecord) => JobRecord | undefined): Promise<{ job: Versioned<JobRecord>; changed: boolean } | undefined> {
    const res = await this.store.updateJob(id, change);
    if (res) this.applyJob(res.job);
    return res;
  }

  /** True once stop() was called (WatchJob streams end with UNAVAILABLE). */
  get stopping(): boolean {
    return this.stopped;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.tick);
    for (const fn of this.listeners) fn('*');
    await this.jobRunner.stop();
    this.stopJobsWatch?.();
    for (const live of this.live.values()) {
      live.stopWatch?.();
      await live.sink?.then((s) => s.close()).catch(() => undefined);
    }
  }
}
