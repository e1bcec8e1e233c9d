/**
 * Bytes between processes: inline in the NATS message when small, otherwise through the JetStream
 * object store. The receiver of a referenced payload deletes it after reading; a deletion that
 * fails (NATS restarting) is retried until it succeeds, and the bucket's TTL removes anything a
 * crashed process left behind.
 *
 * Reads do not use the object store client's `get`: it creates an ordered push consumer per read
 * that is never deleted (the server drops it 5 minutes after the read, and keeps it across a
 * restart), so a busy router had hundreds of consumers on the bucket and every nats-server
 * restart recovered them all. A payload is read instead with one direct get per chunk
 * (`$JS.API.DIRECT.GET`, no consumer), which is also faster.
 */
import { createHash, randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { clampTimerMs } from './deadline.js';
import { PayloadUnavailableError } from './errors.js';
import type { Payload } from './wire.js';

export interface PayloadStoreOptions {
  readonly bucket: string;
  /** Payloads larger than this go to the object store. */
  readonly maxInlineBytes: number;
  /** Leftover objects expire after this long. */
  readonly ttlMs?: number;
  /** A failed deletion is tried again after this long (default 1 s). */
  readonly deleteRetryMs?: number;
  /** At most this many failed deletions wait for a retry; past it the TTL removes them (default 10,000). */
  readonly maxPendingDeletes?: number;
}

/**
 * The object name of a batch's `index`th output image: the replica stores it under this name, so
 * the router can delete the outputs of a batch it declared lost whose reply never came.
 */
export function outputPayloadName(batchId: string, index: number): string {
  return `out-${batchId}-${index}`;
}

interface Bucket {
  readonly os: ObjectStore;
  readonly jsm: JetStreamManager;
}

export class PayloadStore {
  private store: Promise<Bucket> | undefined;
  /** Names whose deletion failed, tried again on a timer. */
  private readonly pendingDeletes = new Set<string>();
  private retryTimer: NodeJS.Timeout | undefined;
  constructor(
    private readonly nc: NatsConnection,
    private readonly options: PayloadStoreOptions,
  ) {}

  private bucket(): Promise<Bucket> {
    this.store ??= Promise.all([
      new Objm(this.nc).create(this.options.bucket, { ttl: (this.options.ttlMs ?? 3_600_000) * 1_000_000, storage: 'file' as never }),
      jetstreamManager(this.nc),
    ]).then(([os, jsm]) => ({ os, jsm })).catch((err: unknown) => {
      this.store = undefined; // retry on the next call (e.g. JetStream was not ready yet)
      throw err;
    });
    return this.store;
  }

  /**
   * Wraps bytes for a message: inline if small enough, else stored and referenced (under `name`
   * when given, else `<hint>-<uuid>`). Rejects with PayloadUnavailableError when the object store
   * cannot take it; nothing of it is left stored then.
   */
  async put(bytes: Uint8Array, hint = 'blob', name = `${hint}-${randomUUID()}`): Promise<Payload> {
    if (bytes.byteLength <= this.options.maxInlineBytes) return { inline: bytes, size: bytes.byteLength };
    try {
      const { os } = await this.bucket();
      await os.putBlob({ name }, bytes);
    } catch (err) {
      // The object may be stored though its acknowledgement was lost (NATS restarting).
      void this.deleteObject(name);
      throw new PayloadUnavailableError(`storing payload ${name}`, { cause: err });
    }
    return { objectName: name, size: bytes.byteLength };
  }

  /**
   * Reads a payload; a referenced object is deleted afterwards (also when reading it failed: nobody
   * else will read it) unless `keep` is set. Rejects with PayloadUnavailableError when it cannot be read.
   */
  async take(p: Payload | null | undefined, keep = false): Promise<Uint8Array> {
    if (!p) return new Uint8Array(0);
    if (!p.objectName) return p.inline ?? new Uint8Array(0);
    try {
      return await this.read(p.objectName);
    } catch (err) {
      throw new PayloadUnavailableError(`reading payload ${p.objectName}`, { cause: err });
    } finally {
      if (!keep) await this.deleteObject(p.objectName);
    }
  }

  /** Deletes a referenced payload nobody will read (e.g. a reply to a batch already retried). */
  async discard(p: Payload | null | undefined): Promise<void> {
    if (p?.objectName) await this.deleteObject(p.objectName);
  }

  /** Deletes the object `name` if it exists (one a lost batch's replica may have stored). */
  async discardName(name: string): Promise<void> {
    await this.deleteObject(name);
  }

  /** Failed deletions still waiting for their retry. */
  get pendingDeleteCount(): number {
    return this.pendingDeletes.size;
  }

  /** The object's bytes, chunk by chunk with direct gets (no consumer), checked against its size and digest. */
  private async read(name: string): Promise<Uint8Array> {
    const { os, jsm } = await this.bucket();
    const info = await os.info(name);
    if (!info || info.deleted) throw new Error(`payload ${name} is missing from the object store`);
    const stream = `OBJ_${this.options.bucket}`;
    const subject = `$O.${this.options.bucket}.C.${info.nuid}`;
    const out = new Uint8Array(info.size);
    const sha = createHash('sha256');
    let offset = 0;
    let seq = 0;
    for (let c = 0; c < info.chunks; c++) {
      const m = await jsm.direct.getMessage(stream, { seq: seq + 1, next_by_subj: subject });
      if (!m) throw new Error(`payload ${name} lost chunk ${c + 1} of ${info.chunks}`);
      if (offset + m.data.byteLength > out.byteLength) throw new Error(`payload ${name} has more bytes than its size ${info.size}`);
      out.set(m.data, offset);
      sha.update(m.data);
      offset += m.data.byteLength;
      seq = m.seq;
    }
    if (offset !== info.size) throw new Error(`payload ${name} has ${offset} bytes, expected ${info.size}`);
    // The object store writes `SHA-256=` and the padded base64url digest.
    const digest = sha.digest('base64url');
    if (info.digest.replace(/^SHA-256=/, '').replace(/=+$/, '') !== digest) throw new Error(`payload ${name} is corrupt (SHA-256 ${digest}, expected ${info.digest})`);
    return out;
  }

  /** Deletes `name`; on failure remembers it and tries again later. Never rejects. */
  private async deleteObject(name: string): Promise<void> {
    try {
      const { os } = await this.bucket();
      await os.delete(name);
      this.pendingDeletes.delete(name);
    } catch {
      if (this.pendingDeletes.size < (this.options.maxPendingDeletes ?? 10_000)) this.pendingDeletes.add(name);
      this.scheduleRetry();
    }
  }

  /** Retries on an unref'd timer while the connection is open; once it is closed the bucket's TTL removes what is left. */
  private scheduleRetry(): void {
    if (this.retryTimer || this.pendingDeletes.size === 0 || this.nc.isClosed()) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const n of [...this.pendingDeletes]) void this.deleteObject(n);
    }, clampTimerMs(this.options.deleteRetryMs ?? 1000));
    this.retryTimer.unref();
  }
}
