/**
 * Lazy expansion: a job's items go into the work stream a window at a time. While the job's
 * subject holds fewer than 2 × capacity + jobs.queued_window messages, the next items after the
 * record's cursor are published (Nats-Msg-Id: job.generation.index) and then the cursor is
 * advanced by compare-and-set. Publishing before the cursor moves means a router that dies between
 * the two loses nothing (the next feeder republishes the range, and the stream drops the
 * duplicates); two routers feeding at once publish the same ids and only one cursor move wins. A
 * 10^7-item grid is never materialized: submit cost and router memory do not depend on its size.
 *
 * RetryJob's requeue lives here too: every item of the job that did not succeed gets a queued
 * record of the new generation and a message, decided on its KV record read in pages and written
 * by compare-and-set (so a lagging view can never requeue a success).
 */
import type { Logger } from '../../common/logger.js';
import type { JobManager, LiveJob } from './job-manager.js';
import { FINAL_ITEM_STATES, isConflict, type ItemRecord, type Versioned } from './job-store.js';

/** Most items one feeder step publishes (keeps a step short; the next tick continues). */
const MAX_STEP = 2000;
const PUBLISH_CONCURRENCY = 128;

async function publishRange(m: JobManager, jobId: string, gen: number, indices: readonly number[]): Promise<void> {
  for (let i = 0; i < indices.length; i += PUBLISH_CONCURRENCY) {
    await Promise.all(indices.slice(i, i + PUBLISH_CONCURRENCY).map((index) => m.queue.publish({ j: jobId, i: index, g: gen })));
  }
}

/** Publishes the job's next window of items, if it has room. */
export async function feedJob(m: JobManager, live: LiveJob, log: Logger): Promise<void> {
  const r = live.rec.value;
  if (r.cursor >= r.total) return;
  const window = 2 * m.capacity() + m.config.jobs.queuedWindow;
  const pending = await m.queue.pending(r.id);
  const n = Math.min(window - pending, r.total - r.cursor, MAX_STEP);
  if (n <= 0) return;
  const from = r.cursor;
  await publishRange(m, r.id, r.generation, Array.from({ length: n }, (_, k) => from + k));
  const res = await m.setJob(r.id, (j) => (j.cursor === from && j.generation === r.generation ? { ...j, cursor: from + n, startedAtMs: j.startedAtMs ?? Date.now() } : undefined));
  if (res?.changed) log.debug({ from, to: from + n }, 'items queued');
}

/**
 * Requeues every item that did not succeed for generation `generation` (RetryJob), then clears
 * retryPending. Item records are read in pages (JobStore.itemRecords, not one KV get per item);
 * published items with no record at all (a cancelled job's purged messages) are found with a
 * bitmap of the indices seen (cursor / 8 bytes). Items never published (past the cursor) need
 * nothing: the feeder publishes them.
 */
export async function requeueRetry(m: JobManager, live: LiveJob, log: Logger): Promise<void> {
  const r = live.rec.value;
  const gen = r.generation;
  let requeued = 0;
  const batch: number[] = [];
  const flush = async () => {
    await publishRange(m, r.id, gen, batch);
    batch.length = 0;
  };
  const seen = new Uint8Array(Math.ceil(r.cursor / 8));
  /** Queues item `index` of the new generation over its record `cur` (undefined: none), unless it succeeded. */
  const requeue = async (index: number, cur: Versioned<ItemRecord> | undefined): Promise<void> => {
    for (;;) {
      if (cur?.value.state === 'succeeded') return;
      if (cur && cur.value.gen >= gen && !FINAL_ITEM_STATES.includes(cur.value.state)) {
        batch.push(index); // requeued by an earlier, interrupted pass
        return;
      }
      const prev = cur?.value;
      const rec: ItemRecord = {
        state: 'queued', customId: prev?.customId ?? '', gen, attempts: 0, totalAttempts: prev?.totalAttempts ?? 0, seed: prev?.seed ?? '',
        ...(prev?.error ? { error: prev.error, code: prev.code ?? '' } : {}),
      };
      try {
        await m.store.casItem(r.id, index, rec, cur?.revision ?? 0);
        batch.push(index);
        requeued++;
        return;
      } catch (err) {
        if (!isConflict(err)) throw err;
        cur = await m.store.getItem(r.id, index); // changed meanwhile: decide again
      }
    }
  };
  for await (const cur of m.store.itemRecords(r.id)) {
    if (cur.index >= r.cursor) continue;
    seen[cur.index >> 3]! |= 1 << (cur.index & 7);
    await requeue(cur.index, cur);
    if (batch.length >= 512) await flush();
  }
  for (let index = 0; index < r.cursor; index++) {
    if ((seen[index >> 3]! & (1 << (index & 7))) !== 0) continue;
    await requeue(index, await m.store.getItem(r.id, index));
    if (batch.length >= 512) await flush();
  }
  await flush();
  const res = await m.setJob(r.id, (j) => (j.generation === gen && j.retryPending ? { ...j, retryPending: false } : undefined));
  if (res?.changed) log.info({ requeued, generation: gen }, 'retry: failed and cancelled items queued again');
}
