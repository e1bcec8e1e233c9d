/**
 * nats-object://BUCKET[/PREFIX]: objects in a JetStream object store bucket (file storage) on the
 * cluster's own NATS, named `PREFIX/<name>`. An object put is atomic by nature: chunks go under a
 * fresh id and only the final meta message (a roll-up) makes them the object, so a reader sees the
 * old object or the new one, and writing a name twice leaves one object.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm, StorageType, type ObjectStore } from '@nats-io/obj';
import { SinkUnavailableError } from '../../../common/errors.js';
import { fromSource, rethrow } from './chunk-source.js';
import { checkObjectName, INTERNAL_PREFIX, reasonOf, sha256Hex, splitBucketPath } from './object-name.js';
import type { JobSink, SinkDeps } from './sink.js';

export interface NatsObjectSinkOptions {
  /** A get that receives no data for this long fails (and is retried). Default 30 s. */
  readonly readTimeoutMs?: number;
}

/** Attempts per get: a read racing an overwrite of the same name is abandoned and retried. */
const GET_ATTEMPTS = 5;
/** How often a read in progress checks whether its object was overwritten. */
const SUPERSEDED_POLL_MS = 250;

export class NatsObjectSink implements JobSink {
  readonly uri: string;
  private store: Promise<ObjectStore> | undefined;
  private readonly readTimeoutMs: number;

  constructor(
    private readonly nc: NatsConnection,
    readonly bucket: string,
    readonly prefix: string,
    options: NatsObjectSinkOptions = {},
  ) {
    this.uri = `nats-object://${bucket}${prefix ? `/${prefix}` : ''}`;
    this.readTimeoutMs = options.readTimeoutMs ?? 30_000;
  }

  /** `BUCKET[/PREFIX]`; the bucket name is what JetStream allows (letters, digits, `-`, `_`). */
  static fromUri(uri: string, rest: string, deps: SinkDeps): NatsObjectSink {
    const { bucket, prefix } = splitBucketPath(uri, rest);
    if (!/^[A-Za-z0-9_-]+$/.test(bucket)) {
      throw new SinkUnavailableError(uri, `bucket "${bucket}" may contain only letters, digits, "-" and "_"`);
    }
    if (!deps.nc) throw new SinkUnavailableError(uri, 'no NATS connection was given to write a nats-object:// sink with');
    return new NatsObjectSink(deps.nc, bucket, prefix);
  }

  async check(): Promise<void> {
    const probe = this.key(`${INTERNAL_PREFIX}probe-${randomUUID()}`);
    try {
      const os = await this.bucketStore();
      await os.putBlob({ name: probe }, new Uint8Array([0x6f, 0x6b]));
      await os.delete(probe);
    } catch (err) {
      throw this.unavailable(`bucket ${this.bucket} is not writable`, err);
    }
  }

  async put(name: string, data: Uint8Array, contentType: string): Promise<{ bytes: number; sha256: string }> {
    checkObjectName(this.uri, name);
    try {
      const os = await this.bucketStore();
      await os.putBlob({ name: this.key(name), metadata: { 'content-type': contentType } }, data);
    } catch (err) {
      throw this.unavailable(`writing ${name}`, err);
    }
    return { bytes: data.byteLength, sha256: sha256Hex(data) };
  }

  async putStream(name: string, chunks: AsyncIterable<Uint8Array>, contentType: string): Promise<{ bytes: number; sha256: string }> {
    checkObjectName(this.uri, name);
    const hash = createHash('sha256');
    let bytes = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of fromSource(chunks)) {
        hash.update(chunk);
        bytes += chunk.byteLength;
        yield chunk;
      }
    }
    try {
      const os = await this.bucketStore();
      // The object store writes the stream in its own chunks and publishes the object's info (which
      // makes it visible) only after the last one: readers see the old object or the new one.
      await os.put({ name: this.key(name), metadata: { 'content-type': contentType } }, ReadableStream.from(counted()));
    } catch (err) {
      rethrow(err, (e) => this.unavailable(`writing ${name}`, e));
    }
    return { bytes, sha256: hash.digest('hex') };
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    checkObjectName(this.uri, name);
    let last: unknown;
    for (let attempt = 1; attempt <= GET_ATTEMPTS; attempt++) {
      try {
        return await this.readOnce(await this.bucketStore(), this.key(name));
      } catch (err) {
        last = err;
        // NATS itself down: retrying only multiplies the request timeout.
        if (this.nc.isClosed() || /^timeout$/i.test(reasonOf(err))) break;
      }
    }
    throw this.unavailable(`reading ${name}`, last);
  }

  /** Reads the bucket's object index at once (about 0.5 KB per object in memory, all prefixes). */
  async *list(): AsyncIterable<string> {
    let infos;
    try {
      infos = await (await this.bucketStore()).list();
    } catch (err) {
      throw this.unavailable('listing', err);
    }
    const head = this.prefix ? `${this.prefix}/` : '';
    for (const info of infos) {
      if (info.deleted || !info.name.startsWith(head)) continue;
      const name = info.name.slice(head.length);
      if (name.includes('/') || name.startsWith(INTERNAL_PREFIX)) continue;
      yield name;
    }
  }

  /** The NATS connection belongs to the caller; nothing of the sink's own to release. */
  async close(): Promise<void> {}

  private key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  private bucketStore(): Promise<ObjectStore> {
    if (this.nc.isClosed()) return Promise.reject(new Error('the NATS connection is closed'));
    this.store ??= new Objm(this.nc).create(this.bucket, { storage: StorageType.File }).catch((err: unknown) => {
      this.store = undefined; // retry on the next call (NATS or JetStream may be back by then)
      throw err;
    });
    return this.store;
  }

  /**
   * Reads a whole object, or undefined when absent. Throws when the read is torn or stalls: an
   * overwrite purges the chunks of the version being read, and the store's reader then waits for
   * chunks that will never come — so while reading, the object's current version is polled and a
   * superseded read is abandoned at once (the caller retries and gets the new version).
   */
  private async readOnce(os: ObjectStore, key: string): Promise<Uint8Array | undefined> {
    const r = await os.get(key);
    if (!r) return undefined;
    const reader = r.data.getReader();
    let stopped: string | undefined;
    const stop = (why: string) => {
      stopped ??= why;
      reader.cancel().catch(() => undefined);
    };
    let lastProgressMs = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgressMs > this.readTimeoutMs) return stop(`no data for ${this.readTimeoutMs} ms`);
      os.info(key).then(
        (now) => {
          if (!now || now.deleted || now.nuid !== r.info.nuid) stop('the object was overwritten while being read');
        },
        () => undefined, // NATS trouble surfaces through the read itself or the no-data timeout
      );
    }, SUPERSEDED_POLL_MS);
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.byteLength;
        lastProgressMs = Date.now();
      }
      if (!stopped) {
        const err = await r.error;
        if (err) throw err;
      }
    } finally {
      clearInterval(watchdog);
    }
    if (stopped) throw new Error(stopped);
    if (size !== r.info.size) throw new Error(`read ${size} of ${r.info.size} bytes`);
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }

  private unavailable(what: string, err: unknown): SinkUnavailableError {
    // A request while the connection is down ends in a bare "timeout"; say what that means.
    const reason = /^timeout$/i.test(reasonOf(err)) ? 'timeout: no answer from JetStream (is NATS down or JetStream disabled?)' : reasonOf(err);
    return new SinkUnavailableError(this.uri, `${what}: NATS ${reason}`, { cause: err });
  }
}
