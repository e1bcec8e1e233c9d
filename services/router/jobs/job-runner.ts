/**
 * Runs job items: pulls from the shared work consumer while this router's bulk items in flight are
 * fewer than its capacity (PipelineRunner.bulkCapacity: online work still goes first, since bulk
 * units queue behind online ones), runs each item's request with priority `bulk`, writes
 * `<custom_id>.<ext>` to the job's sink and commits the item's final record.
 *
 * Exactly once: an attempt claims the item by compare-and-set on its KV record (state running,
 * attempts + 1) and commits its result by compare-and-set on the revision it claimed. A second
 * holder of the same message (ack_wait passed: its first router was presumed dead) claims over the
 * first; the first then loses its commit and discards its result without acking. A message whose
 * item is already final for its generation is acked without running.
 *
 * Failures: an attempt that fails is recorded (attempts, error, code) and nak'd with backoff until
 * max_attempts, then the item ends failed — a poison item never stalls its job. Invalid-argument
 * errors fail at once. A sink that cannot be written pauses the job (the attempt is given back).
 */
import type { JsMsg } from '@nats-io/jetstream';
import { asOrreryError, CancelledError, DeadlineExceededError, JobExpiredError, OrreryError, SinkUnavailableError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { ackWaitFor, retryBackoffMs, shouldUpdateAckWait } from './ack-wait-policy.js';
import type { JobManager, LiveJob } from './job-manager.js';
import { isPermanent, itemRequest, sourceOfDef, sourceOfGrid, type ItemSource } from './job-spec.js';
import { FINAL_ITEM_STATES, isConflict, stoppedItemState, type ItemRecord, type JobRecord } from './job-store.js';
import type { WorkMessage } from './work-queue.js';

/** Durations of recent successful items kept for the ack wait. */
const RECENT_ITEMS = 200;
const ACK_WAIT_REVIEW_MS = 30_000;
const NOT_THE_ITEMS_FAULT: readonly string[] = ['ORRERY_ERR_NO_REPLICA', 'ORRERY_ERR_QUEUE_FULL', 'ORRERY_ERR_REPLICA_DRAINING'];
const CONTENT_TYPES: Record<string, string> = { png: 'image/png', webp: 'image/webp', jpg: 'image/jpeg' };

/** Why an item's run was aborted by this router (not the item's fault: no attempt used). */
class RouterStopping extends OrreryError {
  constructor() {
    super('ORRERY_ERR_CANCELLED', 'the router is stopping');
  }
}

export class JobRunner {
  private inFlight = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly recentMs: number[] = [];
  private lastAckWaitReviewMs = Date.now();
  private readonly log: Logger;

  constructor(private readonly m: JobManager) {
    this.log = m.log;
  }

  /** Items this router is running now. */
  get active(): number {
    return this.inFlight;
  }

  start(): void {
    this.running = true;
    this.loop = this.pullLoop();
  }

  /** Stops pulling and gives back the items still running (nak, no attempt used). */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    for (const live of this.m.live.values()) for (const ac of live.aborts) ac.abort(new RouterStopping());
    await this.loop;
    const deadline = Date.now() + 5000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async pullLoop(): Promise<void> {
    while (this.running) {
      const free = this.m.capacity() - this.inFlight;
      if (free <= 0) {
        await this.sleep(200);
        continue;
      }
      let msgs: JsMsg[];
      try {
        msgs = await this.m.queue.fetch(Math.min(free, 256), 1000);
      } catch (err) {
        if (this.running) this.log.debug({ err }, 'fetching job items failed; retrying');
        await this.sleep(500);
        continue;
      }
      for (const msg of msgs) {
        this.inFlight++;
        void this.handle(msg)
          .catch((err: unknown) => this.log.error({ err }, 'job item handling failed'))
          .finally(() => {
            this.inFlight--;
            this.wake?.();
          });
      }
      this.reviewAckWait();
    }
  }

  private reviewAckWait(): void {
    const now = Date.now();
    if (now - this.lastAckWaitReviewMs < ACK_WAIT_REVIEW_MS || this.recentMs.length < 10) return;
    this.lastAckWaitReviewMs = now;
    const j = this.m.config.jobs;
    const next = ackWaitFor(this.recentMs, { defaultMs: j.ackWaitMs, minMs: j.minAckWaitMs, maxMs: j.maxAckWaitMs });
    if (shouldUpdateAckWait(this.m.queue.ackWaitMs, next)) {
      this.log.info({ ackWaitMs: next }, 'job item ack wait updated from measured item times');
      void this.m.queue.setAckWaitMs(next).catch((err: unknown) => this.log.warn({ err }, 'cannot update the ack wait'));
    }
  }

  private async liveJob(id: string): Promise<LiveJob | undefined> {
    const live = this.m.live.get(id);
    if (live) return live;
    const rec = await this.m.store.getJob(id);
    if (!rec) return undefined;
    this.m.noteJob(rec);
    return this.m.live.get(id);
  }

  private async source(live: LiveJob, index: number): Promise<ItemSource | undefined> {
    const grid = this.m.gridOf(live);
    if (grid) return sourceOfGrid(grid, index);
    const def = await this.m.store.getDef(live.rec.value.id, index);
    return def ? sourceOfDef(live.rec.value.spec, def, index) : undefined;
  }

  /** One delivery of one item (see the file comment for the protocol). */
  private async handle(msg: JsMsg): Promise<void> {
    const w = msg.json<WorkMessage>();
    const live = await this.liveJob(w.j);
    if (!live) return msg.ack(); // the job is gone
    const job = live.rec.value;
    if (w.g < job.generation || ['cancelling', 'cancelled', 'expiring', 'expired', 'completed', 'deleting'].includes(job.state)) return msg.ack();
    if (job.state === 'paused') return msg.nak(this.m.config.jobs.sinkCheckIntervalMs);
    // A finalizer that finds an item not final after all puts the job back in progress: keep its message.
    if (job.state === 'finalizing') return msg.nak(1000);
    const log = this.log.child({ jobId: job.id, item: w.i });

    const cur = await this.m.store.getItem(job.id, w.i);
    if (cur && (cur.value.gen > w.g || (cur.value.gen === w.g && FINAL_ITEM_STATES.includes(cur.value.state)))) return msg.ack();
    const src = await this.source(live, w.i);
    if (!src) {
      log.warn('item has no definition; dropping its message');
      return msg.ack();
    }
    const prev = cur && cur.value.gen === w.g ? cur.value : undefined;
    const base = { customId: src.customId, gen: w.g, seed: src.seed.toString(), totalAttempts: (cur?.value.totalAttempts ?? 0) + 1 };
    // The previous holder died during its attempt, every attempt: the item ends failed.
    if (prev?.state === 'running' && prev.attempts >= job.spec.maxAttempts) {
      const rec: ItemRecord = { ...prev, state: 'failed', error: prev.error ?? `its router stopped during each of ${prev.attempts} attempts`, code: prev.code ?? 'ORRERY_ERR_REPLICA_LOST', finishedAtMs: Date.now() };
      await this.commit(msg, job.id, w.i, rec, cur!.revision, log);
      return;
    }
    const claim: ItemRecord = {
      ...(prev ?? {}), ...base, state: 'running', attempts: (prev?.attempts ?? 0) + 1, router: this.m.options.routerId, claimedAtMs: Date.now(),
    };
    let claimRev: number;
    try {
      claimRev = await this.m.store.casItem(job.id, w.i, claim, cur?.revision ?? 0);
    } catch (err) {
      if (isConflict(err)) return; // someone claimed it this instant; JetStream redelivers if they die
      throw err;
    }

    const ac = new AbortController();
    live.aborts.add(ac);
    const ackWait = this.m.queue.ackWaitMs;
    const heartbeat = setInterval(() => msg.working(), Math.max(100, ackWait / 3));
    const started = performance.now();
    let deadline: NodeJS.Timeout | undefined;
    try {
      const req = itemRequest(job.spec, job.id, w.i, src);
      // A bound on one attempt, so an item whose batch went missing cannot hold its claim (kept
      // alive by working()) for ever: it fails DEADLINE_EXCEEDED and is retried.
      const deadlineMs = Date.now() + this.m.config.jobs.maxAckWaitMs;
      deadline = setTimeout(() => ac.abort(new DeadlineExceededError(`after ${this.m.config.jobs.maxAckWaitMs} ms (jobs.max_ack_wait_s)`)), this.m.config.jobs.maxAckWaitMs);
      const res = await this.m.options.runner.run(req, ac.signal, deadlineMs, {}, { priority: 'bulk' });
      const image = res.images[0]!;
      const sink = await this.m.sinkOf(live);
      // Another router took the item over meanwhile: its result counts, not this one.
      if ((await this.m.store.getItem(job.id, w.i))?.revision !== claimRev) return;
      const file = `${src.customId}.${job.spec.ext}`;
      const put = await sink.put(file, image.data, CONTENT_TYPES[job.spec.ext] ?? 'application/octet-stream');
      const qc = image.qcResult;
      const done: ItemRecord = {
        ...claim, state: 'succeeded', prompt: req.prompt, file, bytes: put.bytes, sha256: put.sha256, finishedAtMs: Date.now(), error: '', code: '',
        ...(qc ? { qc: { passed: qc.verdict.passed, attempts: qc.attempts, seed: image.seed.toString(), reasons: qc.verdict.reasons, ...(qc.verdict.box ? { box: qc.verdict.box } : {}), areaFraction: qc.verdict.areaFraction } } : {}),
      };
      if (await this.commit(msg, job.id, w.i, done, claimRev, log)) {
        this.recentMs.push(performance.now() - started);
        if (this.recentMs.length > RECENT_ITEMS) this.recentMs.shift();
      }
    } catch (raw) {
      await this.failed(msg, live, w, claim, claimRev, raw, ac.signal, log);
    } finally {
      clearInterval(heartbeat);
      clearTimeout(deadline);
      live.aborts.delete(ac);
    }
  }

  /** Commits a final record; acks when it won. A loser (a redelivered duplicate) discards its result. */
  private async commit(msg: JsMsg, jobId: string, index: number, rec: ItemRecord, revision: number, log: Logger): Promise<boolean> {
    try {
      await this.m.store.casItem(jobId, index, rec, revision);
    } catch (err) {
      if (!isConflict(err)) throw err;
      log.info('another router took this item over; discarding this result');
      return false;
    }
    msg.ack();
    this.m.options.metrics.jobItem(rec.state);
    return true;
  }

  private async failed(msg: JsMsg, live: LiveJob, w: WorkMessage, claim: ItemRecord, claimRev: number, raw: unknown, signal: AbortSignal, log: Logger): Promise<void> {
    const job: JobRecord = live.rec.value;
    const reason: unknown = signal.aborted ? signal.reason : undefined;
    const err = reason instanceof DeadlineExceededError ? reason : asOrreryError(raw);
    const giveBack = async (): Promise<boolean> => {
      try {
        await this.m.store.casItem(job.id, w.i, { ...claim, state: 'queued', attempts: claim.attempts - 1, totalAttempts: claim.totalAttempts - 1 }, claimRev);
        return true;
      } catch (e) {
        if (isConflict(e)) return false;
        throw e;
      }
    };
    if (reason instanceof RouterStopping) {
      if (await giveBack()) msg.nak();
      return;
    }
    // Stopped with its job: cancelled, or expired (its completion window passed).
    const stopped = reason instanceof JobExpiredError ? 'expired' : reason instanceof CancelledError ? 'cancelled' : stoppedItemState(live.rec.value.state);
    if (stopped) {
      const why = stopped === 'expired' ? new JobExpiredError(job.id) : new CancelledError('with its job');
      await this.commit(msg, job.id, w.i, { ...claim, state: stopped, error: why.message, code: why.code, finishedAtMs: Date.now() }, claimRev, log);
      return;
    }
    // The cluster could not take the item now (no replica yet, queue full, replica draining): not
    // the item's fault, so no attempt is used; it waits in the work queue.
    if (NOT_THE_ITEMS_FAULT.includes(err.code)) {
      log.debug({ code: err.code }, 'item not admitted now; back to the queue');
      if (await giveBack()) msg.nak(1000);
      return;
    }
    if (err instanceof SinkUnavailableError || err.code === 'ORRERY_ERR_SINK_UNAVAILABLE') {
      log.warn({ err: err.message }, 'sink cannot be written; pausing the job');
      await this.m.setJob(job.id, (j) => (j.state === 'in_progress' || j.state === 'validating' ? { ...j, state: 'paused', message: `paused: ${err.message}` } : undefined));
      if (await giveBack()) msg.nak(this.m.config.jobs.sinkCheckIntervalMs);
      return;
    }
    const last = isPermanent(err) || claim.attempts >= job.spec.maxAttempts;
    const rec: ItemRecord = { ...claim, state: last ? 'failed' : 'queued', error: err.message, code: err.code, ...(last ? { finishedAtMs: Date.now() } : {}) };
    if (last) {
      log.warn({ err: err.message, code: err.code, attempts: claim.attempts }, 'item failed');
      await this.commit(msg, job.id, w.i, rec, claimRev, log);
      return;
    }
    log.info({ err: err.message, code: err.code, attempts: claim.attempts }, 'item attempt failed; retrying');
    try {
      await this.m.store.casItem(job.id, w.i, rec, claimRev);
    } catch (e) {
      if (isConflict(e)) return;
      throw e;
    }
    this.m.options.metrics.jobItem('retried');
    msg.nak(retryBackoffMs(this.m.config.jobs.retryBackoffMs, claim.attempts));
  }
}
