/**
 * Bytes between processes: inline in the NATS message when small, otherwise through the JetStream
 * object store. The receiver of a referenced payload deletes it after reading; the bucket's TTL
 * removes anything a crashed receiver left behind.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { Payload } from './wire.js';

export interface PayloadStoreOptions {
  readonly bucket: string;
  /** Payloads larger than this go to the object store. */
  readonly maxInlineBytes: number;
  /** Leftover objects expire after this long. */
  readonly ttlMs?: number;
}

export class PayloadStore {
  private store: Promise<ObjectStore> | undefined;
  constructor(
    private readonly nc: NatsConnection,
    private readonly options: PayloadStoreOptions,
  ) {}

  private bucket(): Promise<ObjectStore> {
    this.store ??= new Objm(this.nc)
      .create(this.options.bucket, { ttl: (this.options.ttlMs ?? 3_600_000) * 1_000_000, storage: 'file' as never })
      .catch((err: unknown) => {
        this.store = undefined; // retry on the next call (e.g. JetStream was not ready yet)
        throw err;
      });
    return this.store;
  }

  /** Wraps bytes for a message: inline if small enough, else stored and referenced. */
  async put(bytes: Uint8Array, hint = 'blob'): Promise<Payload> {
    if (bytes.byteLength <= this.options.maxInlineBytes) return { inline: bytes, size: bytes.byteLength };
    const name = `${hint}-${randomUUID()}`;
    const os = await this.bucket();
    await os.putBlob({ name }, bytes);
    return { objectName: name, size: bytes.byteLength };
  }

  /** Reads a payload; a referenced object is deleted after reading unless `keep` is set. */
  async take(p: Payload | null | undefined, keep = false): Promise<Uint8Array> {
    if (!p) return new Uint8Array(0);
    if (p.objectName) {
      const os = await this.bucket();
      const data = await os.getBlob(p.objectName);
      if (!data) throw new Error(`payload ${p.objectName} is missing from the object store`);
      if (!keep) await os.delete(p.objectName).catch(() => undefined);
      return data;
    }
    return p.inline ?? new Uint8Array(0);
  }

  /** Deletes a referenced payload nobody will read (e.g. a reply to a batch already retried). */
  async discard(p: Payload | null | undefined): Promise<void> {
    if (!p?.objectName) return;
    const os = await this.bucket();
    await os.delete(p.objectName).catch(() => undefined);
  }
}
