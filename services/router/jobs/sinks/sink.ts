/**
 * The contract every job output sink implements. A job writes each finished item as
 * `<custom_id>.<ext>` plus `manifest.jsonl`, `job.json` and `contact-sheet.png` through one of these;
 * `orrery jobs results ID --out DIR` reads them back through the same interface.
 *
 * Implementations: file:// (file-sink.ts), nats-object:// (nats-object-sink.ts), s3:// (s3-sink.ts);
 * `openSink()` in index.ts picks one by URI scheme.
 */
import type { NatsConnection } from '@nats-io/transport-node';

export interface JobSink {
  /** Canonical URI (file:///abs/dir, nats-object://bucket/prefix, s3://bucket/prefix). */
  readonly uri: string;
  /**
   * Throws SinkUnavailableError (ORRERY_ERR_SINK_UNAVAILABLE → FAILED_PRECONDITION) naming the URI and
   * why when it cannot be written (checked at submit, and to resume a paused job).
   */
  check(): Promise<void>;
  /**
   * Atomic: readers never see a torn object; the same name written twice leaves one object (the last).
   * Throws SinkUnavailableError when the sink cannot be written.
   * `name` is a flat object name (no `/`, no `..`); it is rejected with SinkUnavailableError otherwise.
   */
  put(name: string, data: Uint8Array, contentType: string): Promise<{ bytes: number; sha256: string }>;
  /**
   * put() for an object too large to hold in memory (a million-line manifest): written from
   * `chunks` as they come, as atomic as put(). The file sink streams into its temp file; the
   * nats-object sink streams into the object's chunks; the S3 sink uploads a multipart object in
   * parts of S3_PART_BYTES (a single PutObject when the whole is smaller).
   */
  putStream(name: string, chunks: AsyncIterable<Uint8Array>, contentType: string): Promise<{ bytes: number; sha256: string }>;
  /** The object's bytes, or undefined when there is no object of that name. */
  get(name: string): Promise<Uint8Array | undefined>;
  /** Every object name in the sink (no particular order); temp files of unfinished puts are not listed. */
  list(): AsyncIterable<string>;
  /** Releases the sink's own resources (never closes the injected NATS connection). */
  close(): Promise<void>;
}

/** What openSink() needs from its caller: a NATS connection for nats-object://, the environment for s3://. */
export interface SinkDeps {
  readonly nc?: NatsConnection;
  readonly env: NodeJS.ProcessEnv;
}
