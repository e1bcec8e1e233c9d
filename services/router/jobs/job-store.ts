/**
 * Where jobs live: two JetStream KV buckets (file storage), shared by every router.
 *
 * - `<prefix>_jobs`: `job.<id>` → JobRecord (JSON). Every state change is a compare-and-set on the
 *   entry's revision, so two routers never both move a job. `key.<hex job_key>` → job id, made
 *   with KV create, so two submits of one key cannot make two jobs.
 * - `<prefix>_job_items`: `<id>.r.<index>` → ItemRecord (an item's progress and result; absent:
 *   never started), `<id>.d.<index>` → ItemDef (explicit items), `<id>.id.<hex custom_id>` → the
 *   index holding that id (create-only: custom_id uniqueness across chunks).
 *
 * Keys use hex for client strings: KV keys are subject tokens and custom ids may hold dots.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { QcBox } from '../../common/qc-verdict.js';
import type { ItemDef, JobSpec } from './job-spec.js';
import type { DeletionProgress, SeqBounds } from './lifecycle-policy.js';

/**
 * `expiring` and `cancelling` stop a job early (its unfinished items end `expired` / `cancelled`);
 * `deleting` is a finished job whose records are being removed (retention or DeleteJob): no RPC
 * shows it any more.
 */
export type JobState = 'validating' | 'in_progress' | 'paused' | 'finalizing' | 'completed' | 'expiring' | 'expired' | 'cancelling' | 'cancelled' | 'deleting';
export const FINAL_JOB_STATES: readonly JobState[] = ['completed', 'cancelled', 'expired'];
/** States that stop a job before all its items finished, and the final state each leads to. */
export const STOPPING_JOB_STATES: Readonly<Partial<Record<JobState, 'cancelled' | 'expired'>>> = { cancelling: 'cancelled', expiring: 'expired' };

export type ItemState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'expired';
export const FINAL_ITEM_STATES: readonly ItemState[] = ['succeeded', 'failed', 'cancelled', 'expired'];

/** The item state a stopped job's unfinished items end in (cancelled or expired), if the job is stopping or stopped that way. */
export function stoppedItemState(state: JobState): 'cancelled' | 'expired' | undefined {
  if (state === 'cancelling' || state === 'cancelled') return 'cancelled';
  if (state === 'expiring' || state === 'expired') return 'expired';
  return undefined;
}

/** Final counts, written into the job record when it finishes (and into job.json). */
export interface JobCounts {
  readonly total: number;
  readonly queued: number;
  readonly running: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly cancelled: number;
  /** Items that had not finished when the job's completion window passed; absent in records written before expiry existed. */
  readonly expired?: number;
  readonly attempts: number;
  /** Quality gate (pipelines with `qc`): items returned flagged, and re-rolls made; absent in records written before the gate existed. */
  readonly qcFlagged?: number;
  readonly qcRerolls?: number;
}

export interface JobRecord {
  readonly id: string;
  readonly jobKey: string;
  readonly name: string;
  readonly state: JobState;
  readonly spec: JobSpec;
  readonly outputUri: string;
  /** Items in the job: the grid's size, or explicit items accepted so far. */
  readonly total: number;
  /** Explicit items may still arrive (AddJobItems until `last`). */
  readonly itemsFollow: boolean;
  /** Items [0, cursor) have been published to the work stream (lazy expansion). */
  readonly cursor: number;
  /** Run generation: RetryJob starts a new one for the failed and cancelled items. */
  readonly generation: number;
  /** RetryJob's requeueing of generation `generation` is still to be done. */
  readonly retryPending: boolean;
  readonly createdAtMs: number;
  readonly startedAtMs?: number;
  readonly finishedAtMs?: number;
  /**
   * When finalizing started (a finalizer that died is replaced after a while); in `cancelling`,
   * first when the cancel was asked for, then when a finalizer started.
   */
  readonly finalizingAtMs?: number;
  /** The router finishing a cancel (absent: none started yet). */
  readonly finalizer?: string;
  readonly message: string;
  /** Written when the job reaches a final state. */
  readonly counts?: JobCounts;
  /**
   * When the job expires unless finished (creation, or the last RetryJob, + its completion window);
   * absent: no window (and in records written before windows existed).
   */
  readonly expiresAtMs?: number;
  /** Deleting its records (state deleting): how far it got, who does it and when it last moved. */
  readonly deletion?: DeletionRecord;
}

/** A deletion in progress (JobRecord.deletion): resumable from `progress` by any router once `atMs` is old. */
export interface DeletionRecord {
  readonly progress: DeletionProgress;
  /** The router deleting (empty: none started yet) and when it last recorded progress. */
  readonly router: string;
  readonly atMs: number;
  /** Why: `retention` or `DeleteJob`. */
  readonly reason: string;
}

export interface ItemRecord {
  readonly state: ItemState;
  readonly customId: string;
  /** Generation this record belongs to (JobRecord.generation when it was written). */
  readonly gen: number;
  /** Attempts in this generation. */
  readonly attempts: number;
  /** Attempts over every generation. */
  readonly totalAttempts: number;
  readonly seed: string;
  readonly prompt?: string;
  readonly file?: string;
  readonly bytes?: number;
  readonly sha256?: string;
  readonly error?: string;
  readonly code?: string;
  /** Router that claimed the current attempt, and when (running). */
  readonly router?: string;
  readonly claimedAtMs?: number;
  readonly finishedAtMs?: number;
  /** The quality gate's result on the item's image (succeeded items of a pipeline with `qc`). */
  readonly qc?: ItemQc;
}

/** An item's quality gate result, as recorded, listed (JobItemResult.qc) and written in the manifest. */
export interface ItemQc {
  readonly passed: boolean;
  /** Generations of the image, the first included. */
  readonly attempts: number;
  /** The seed of the attempt kept (the item's own seed when it passed at once). */
  readonly seed: string;
  readonly reasons: readonly string[];
  readonly box?: QcBox;
  readonly areaFraction: number;
}

export interface Versioned<T> {
  readonly value: T;
  readonly revision: number;
}

const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex');
const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

/** True when a KV create/update lost a compare-and-set (wrong last sequence / key exists). */
export function isConflict(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|key exists|10071/.test(msg);
}

/** Item records one page of {@link JobStore.itemRecords} asks the server for. */
const RECORD_PAGE = 1000;
/** How long a page waits for its first record (an empty page ends the read). */
const RECORD_PAGE_WAIT_MS = 2000;

/** One item record as {@link JobStore.itemRecords} reads it. */
export interface IndexedRecord extends Versioned<ItemRecord> {
  readonly index: number;
}

export class JobStore {
  private constructor(
    readonly jobs: KV,
    readonly items: KV,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly itemsBucket: string,
    private readonly jobsBucket: string,
  ) {}

  /** Opens (creating when missing) both buckets. `bucketPrefix` is the NATS prefix with `_` for dots. */
  static async open(nc: NatsConnection, bucketPrefix: string): Promise<JobStore> {
    const kvm = new Kvm(nc);
    const opts = { history: 1, storage: 'file' as never };
    const itemsBucket = `${bucketPrefix}_job_items`;
    const jobsBucket = `${bucketPrefix}_jobs`;
    return new JobStore(await kvm.create(jobsBucket, opts), await kvm.create(itemsBucket, opts), jetstream(nc), await jetstreamManager(nc), itemsBucket, jobsBucket);
  }

  /** The items bucket's stream: first and last sequence (a deletion's item pages). */
  async itemSeqBounds(): Promise<SeqBounds> {
    const { state } = await this.jsm.streams.info(`KV_${this.itemsBucket}`);
    return { firstSeq: state.first_seq, lastSeq: state.last_seq };
  }

  /**
   * Removes every key of the job from the items bucket (records, definitions, custom id claims)
   * stored at a sequence below `belowSeq`: one server-side purge of the job's subjects, no
   * markers left, no key read into the router. Idempotent. Resolves with the messages removed.
   */
  async purgeItemsBelow(jobId: string, belowSeq: number): Promise<number> {
    const res = await this.jsm.streams.purge(`KV_${this.itemsBucket}`, { filter: `$KV.${this.itemsBucket}.${jobId}.>`, seq: belowSeq });
    return res.purged;
  }

  /** Frees `jobKey` if it still names `jobId` (a new job may have taken it since: then it stays). */
  async releaseJobKey(jobKey: string, jobId: string): Promise<void> {
    const key = `key.${hex(jobKey)}`;
    const e = await this.jobs.get(key);
    if (!e || e.operation !== 'PUT' || e.json<string>() !== jobId) return;
    try {
      await this.jobs.delete(key, { previousSeq: e.revision });
    } catch (err) {
      if (!isConflict(err)) throw err;
      return; // taken again this instant
    }
    await this.dropMarker(key);
  }

  /**
   * Removes the job record: a PURGE marker first (every router's watch sees the job go), then the
   * marker itself, so nothing of the job stays in the bucket.
   */
  async deleteJobRecord(jobId: string): Promise<void> {
    await this.jobs.purge(`job.${jobId}`);
    await this.dropMarker(`job.${jobId}`);
  }

  /** Removes `key`'s delete/purge marker, and only it: a value written after it (a reused job_key) stays. */
  private async dropMarker(key: string): Promise<void> {
    const e = await this.jobs.get(key);
    if (!e || e.operation === 'PUT') return;
    await this.jsm.streams.purge(`KV_${this.jobsBucket}`, { filter: `$KV.${this.jobsBucket}.${key}`, seq: e.revision + 1 });
  }

  /**
   * Every item record of a job, read in pages of RECORD_PAGE through one ordered consumer on the
   * bucket's stream (the last value per key) — not one KV get per item. Records come in the order
   * they were last written, not in item order, each index once: a record rewritten while the read
   * goes on (a cancel or expiry settling it) is delivered again by the consumer and skipped, as a
   * bitmap of the indices seen (one bit per item) tells. Memory is that bitmap and one page.
   */
  async *itemRecords(jobId: string): AsyncGenerator<IndexedRecord> {
    const prefix = `$KV.${this.itemsBucket}.${jobId}.r.`;
    const consumer = await this.js.consumers.get(`KV_${this.itemsBucket}`, { filter_subjects: `${prefix}>`, deliver_policy: DeliverPolicy.LastPerSubject });
    let seen = new Uint8Array(1024);
    try {
      for (;;) {
        let got = 0;
        let pending = 1;
        for await (const msg of await consumer.fetch({ max_messages: RECORD_PAGE, expires: RECORD_PAGE_WAIT_MS })) {
          got++;
          pending = msg.info.pending;
          const op = msg.headers?.get('KV-Operation');
          const index = Number(msg.subject.slice(prefix.length));
          if (op !== 'DEL' && op !== 'PURGE') {
            if (index >> 3 >= seen.length) {
              const grown = new Uint8Array(Math.max(seen.length * 2, (index >> 3) + 1));
              grown.set(seen);
              seen = grown;
            }
            if ((seen[index >> 3]! & (1 << (index & 7))) === 0) {
              seen[index >> 3]! |= 1 << (index & 7);
              yield { index, value: msg.json<ItemRecord>(), revision: msg.seq };
            }
          }
          // Nothing more to read: end the page now rather than wait out its expiry.
          if (pending === 0) break;
        }
        if (got === 0 || pending === 0) return;
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  async getJob(id: string): Promise<Versioned<JobRecord> | undefined> {
    return versioned<JobRecord>(await this.jobs.get(`job.${id}`));
  }

  async createJob(rec: JobRecord): Promise<number> {
    return this.jobs.create(`job.${rec.id}`, enc(rec));
  }

  /**
   * Applies `change` to the job by compare-and-set, re-reading and re-applying on conflict.
   * `change` returns the new record, or undefined to leave it as it is. Resolves with the record
   * as stored afterwards and whether this call changed it; undefined when the job does not exist.
   */
  async updateJob(id: string, change: (rec: JobRecord) => JobRecord | undefined): Promise<{ job: Versioned<JobRecord>; changed: boolean } | undefined> {
    for (let i = 0; ; i++) {
      const cur = await this.getJob(id);
      if (!cur) return undefined;
      const next = change(cur.value);
      if (!next) return { job: cur, changed: false };
      try {
        const revision = await this.jobs.update(`job.${id}`, enc(next), cur.revision);
        return { job: { value: next, revision }, changed: true };
      } catch (err) {
        if (!isConflict(err) || i > 50) throw err;
      }
    }
  }

  /** Claims `jobKey` for `jobId`; resolves with the job id the key already names, if any. */
  async claimJobKey(jobKey: string, jobId: string): Promise<string | undefined> {
    try {
      await this.jobs.create(`key.${hex(jobKey)}`, enc(jobId));
      return undefined;
    } catch (err) {
      if (!isConflict(err)) throw err;
      const e = await this.jobs.get(`key.${hex(jobKey)}`);
      return e ? e.json<string>() : undefined;
    }
  }

  /** Every job id (for ListJobs; ids sort by creation time). */
  async jobIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const k of await this.jobs.keys('job.*')) ids.push(k.slice(4));
    return ids;
  }

  async watchJobs(): Promise<AsyncIterable<KvWatchEntry>> {
    return this.jobs.watch({ key: 'job.*' });
  }

  async getItem(jobId: string, index: number): Promise<Versioned<ItemRecord> | undefined> {
    return versioned<ItemRecord>(await this.items.get(`${jobId}.r.${index}`));
  }

  /** Writes an item record by compare-and-set on `revision` (0: must not exist yet). Throws on conflict (see isConflict). */
  async casItem(jobId: string, index: number, rec: ItemRecord, revision: number): Promise<number> {
    const key = `${jobId}.r.${index}`;
    return revision === 0 ? this.items.create(key, enc(rec)) : this.items.update(key, enc(rec), revision);
  }

  /** Watches a job's item records (current values first, then changes). */
  async watchItems(jobId: string): Promise<AsyncIterable<KvWatchEntry> & { stop(): void }> {
    return this.items.watch({ key: `${jobId}.r.*` });
  }

  async putDef(jobId: string, index: number, def: ItemDef): Promise<void> {
    await this.items.put(`${jobId}.d.${index}`, enc(def));
  }

  async getDef(jobId: string, index: number): Promise<ItemDef | undefined> {
    return versioned<ItemDef>(await this.items.get(`${jobId}.d.${index}`))?.value;
  }

  /**
   * Records that `customId` is item `index` of the job. Resolves with the other index already
   * holding it (a duplicate), or undefined. A holder at or past `accepted` (the job's accepted item
   * count) is the leftover of a chunk that was never accepted and is replaced.
   */
  async claimCustomId(jobId: string, customId: string, index: number, accepted: number): Promise<number | undefined> {
    const key = `${jobId}.id.${hex(customId)}`;
    for (let i = 0; i < 10; i++) {
      try {
        await this.items.create(key, enc(index));
        return undefined;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      const e = await this.items.get(key);
      if (!e || e.operation !== 'PUT') continue;
      const holder = e.json<number>();
      if (holder === index) return undefined;
      if (holder < accepted) return holder;
      try {
        await this.items.update(key, enc(index), e.revision);
        return undefined;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    throw new Error(`custom_id ${customId}: could not be recorded (contention)`);
  }
}

function versioned<T>(e: KvEntry | null): Versioned<T> | undefined {
  if (!e || e.operation !== 'PUT') return undefined;
  return { value: e.json<T>(), revision: e.revision };
}
