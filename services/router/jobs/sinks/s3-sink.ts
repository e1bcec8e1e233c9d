/**
 * s3://BUCKET[/PREFIX]: objects in an S3 bucket (AWS or any S3-protocol store: MinIO, Ceph, R2…)
 * named `PREFIX/<name>`. A PutObject is atomic per object: a reader sees the old or the new object,
 * and writing a name twice leaves one object.
 *
 * Configuration comes from the environment (in Kubernetes, a Secret mapped to env vars):
 * `ORRERY_S3_ENDPOINT` or `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (default: AWS), `AWS_REGION` /
 * `AWS_DEFAULT_REGION` (default us-east-1), `ORRERY_S3_FORCE_PATH_STYLE=true` for stores without
 * virtual-host buckets, and the standard credential variables (`AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; without them the SDK's default chain: web identity,
 * instance metadata, …). The SDK is loaded only when an s3:// sink is opened.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { SinkUnavailableError } from '../../../common/errors.js';
import { fromSource, rethrow } from './chunk-source.js';
import { checkObjectName, INTERNAL_PREFIX, reasonOf, sha256Hex, splitBucketPath } from './object-name.js';
import type { JobSink, SinkDeps } from './sink.js';

type S3Module = typeof import('@aws-sdk/client-s3');

/** Part size of putStream's multipart uploads (S3's minimum is 5 MiB for every part but the last). */
export const S3_PART_BYTES = 8 * 1024 * 1024;

/** Attempts per get (the SDK retries failed requests itself, but not a body cut off mid-read). */
const GET_ATTEMPTS = 3;

export interface S3SinkOptions {
  /** Keys per ListObjectsV2 page (S3's maximum and default: 1000). */
  readonly listPageSize?: number;
  /**
   * Longest one read attempt of get() may take, body included (default 60 s); a read that stalls
   * past it is aborted and retried like a failed one.
   */
  readonly readTimeoutMs?: number;
}

/** The client settings an s3:// sink takes from the environment. */
export interface S3Settings {
  readonly endpoint?: string;
  readonly region: string;
  readonly forcePathStyle: boolean;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** Reads {@link S3Settings} from an environment (pure: no I/O). */
export function s3SettingsFromEnv(env: NodeJS.ProcessEnv): S3Settings {
  const endpoint = env.ORRERY_S3_ENDPOINT || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
  const forcePathStyle = /^(true|1|yes)$/i.test(env.ORRERY_S3_FORCE_PATH_STYLE ?? '');
  const credentials =
    env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
      : undefined;
  return { endpoint, region, forcePathStyle, credentials };
}

export class S3Sink implements JobSink {
  readonly uri: string;

  private constructor(
    private readonly sdk: S3Module,
    private readonly client: S3Client,
    readonly bucket: string,
    readonly prefix: string,
    readonly settings: S3Settings,
    private readonly listPageSize: number,
    private readonly readTimeoutMs: number,
  ) {
    this.uri = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
  }

  static async fromUri(uri: string, rest: string, deps: SinkDeps, options: S3SinkOptions = {}): Promise<S3Sink> {
    const { bucket, prefix } = splitBucketPath(uri, rest);
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new SinkUnavailableError(uri, `"${bucket}" is not a valid S3 bucket name (3–63 lower-case letters, digits, "." and "-")`);
    }
    const settings = s3SettingsFromEnv(deps.env);
    let sdk: S3Module;
    try {
      sdk = await import('@aws-sdk/client-s3');
    } catch (err) {
      throw new SinkUnavailableError(uri, `cannot load @aws-sdk/client-s3: ${reasonOf(err)}`, { cause: err });
    }
    const client = new sdk.S3Client({
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      ...(settings.credentials ? { credentials: settings.credentials } : {}),
      // A dead endpoint should fail a check in seconds, not hang a submit.
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
      // Checksums only where the API demands them: third-party S3 stores differ in which of the
      // newer flexible checksums they accept; the sink verifies content with its own SHA-256.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    return new S3Sink(sdk, client, bucket, prefix, settings, options.listPageSize ?? 1000, options.readTimeoutMs ?? 60_000);
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new this.sdk.HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (isNotFound(err)) throw this.unavailable(`bucket ${this.bucket} does not exist`, err);
      throw this.unavailable(`bucket ${this.bucket} is not reachable`, err);
    }
    const probe = this.key(`${INTERNAL_PREFIX}probe-${randomUUID()}`);
    try {
      await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.bucket, Key: probe, Body: new Uint8Array([0x6f, 0x6b]) }));
      await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: probe }));
    } catch (err) {
      throw this.unavailable(`bucket ${this.bucket} is not writable`, err);
    }
  }

  async put(name: string, data: Uint8Array, contentType: string): Promise<{ bytes: number; sha256: string }> {
    checkObjectName(this.uri, name);
    const sha256 = sha256Hex(data);
    try {
      await this.client.send(
        new this.sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(name),
          Body: data,
          ContentType: contentType,
          ContentLength: data.byteLength,
          Metadata: { sha256 },
        }),
      );
    } catch (err) {
      throw this.unavailable(`writing ${name}`, err);
    }
    return { bytes: data.byteLength, sha256 };
  }

  /**
   * A multipart upload in parts of S3_PART_BYTES (only one part in memory), completed after the
   * last: S3 makes the object visible only then, whole. A stream smaller than one part is one
   * PutObject. A multipart object carries no SHA-256 metadata (it is known only at the end), so
   * get() checks its length only. A failed upload is aborted (its parts are dropped).
   */
  async putStream(name: string, chunks: AsyncIterable<Uint8Array>, contentType: string): Promise<{ bytes: number; sha256: string }> {
    checkObjectName(this.uri, name);
    const key = this.key(name);
    const hash = createHash('sha256');
    let bytes = 0;
    let part: Uint8Array[] = [];
    let partBytes = 0;
    let uploadId: string | undefined;
    const parts: Array<{ ETag: string; PartNumber: number }> = [];
    const sendPart = async () => {
      uploadId ??= (await this.client.send(new this.sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: contentType }))).UploadId;
      const body = Buffer.concat(part);
      part = [];
      partBytes = 0;
      const out = await this.client.send(new this.sdk.UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: parts.length + 1, Body: body, ContentLength: body.byteLength }));
      parts.push({ ETag: out.ETag ?? '', PartNumber: parts.length + 1 });
    };
    try {
      for await (const chunk of fromSource(chunks)) {
        hash.update(chunk);
        bytes += chunk.byteLength;
        part.push(chunk);
        partBytes += chunk.byteLength;
        if (partBytes >= S3_PART_BYTES) await sendPart();
      }
      const sha256 = hash.digest('hex');
      if (uploadId === undefined) {
        const body = Buffer.concat(part);
        await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType, ContentLength: body.byteLength, Metadata: { sha256 } }));
      } else {
        if (partBytes > 0) await sendPart();
        await this.client.send(new this.sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
      }
      return { bytes, sha256 };
    } catch (err) {
      if (uploadId !== undefined) await this.client.send(new this.sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      rethrow(err, (e) => this.unavailable(`writing ${name}`, e));
    }
  }

  /**
   * Verifies what it read against the length and the SHA-256 its put stored in the object's
   * metadata, and retries a read that fails or does not match (a connection reset mid-body).
   */
  async get(name: string): Promise<Uint8Array | undefined> {
    checkObjectName(this.uri, name);
    let last: unknown;
    for (let attempt = 1; attempt <= GET_ATTEMPTS; attempt++) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(new Error(`no whole answer within ${this.readTimeoutMs} ms`)), this.readTimeoutMs);
      try {
        const out = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(name) }), { abortSignal: ac.signal });
        const data = out.Body ? await unlessAborted(out.Body.transformToByteArray(), ac.signal, () => (out.Body as { destroy?: () => void }).destroy?.()) : new Uint8Array(0);
        if (out.ContentLength !== undefined && data.byteLength !== out.ContentLength) throw new Error(`read ${data.byteLength} of ${out.ContentLength} bytes`);
        const want = out.Metadata?.sha256;
        if (want && sha256Hex(data) !== want) throw new Error('the content does not match the SHA-256 stored with it');
        return data;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        last = ac.signal.aborted ? ac.signal.reason : err;
      } finally {
        clearTimeout(timer);
      }
    }
    throw this.unavailable(`reading ${name} (${GET_ATTEMPTS} attempts)`, last);
  }

  async *list(): AsyncIterable<string> {
    const head = this.prefix ? `${this.prefix}/` : '';
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: head, ContinuationToken: token, MaxKeys: this.listPageSize }));
      } catch (err) {
        throw this.unavailable('listing', err);
      }
      for (const obj of page.Contents ?? []) {
        const name = (obj.Key ?? '').slice(head.length);
        if (name === '' || name.includes('/') || name.startsWith(INTERNAL_PREFIX)) continue;
        yield name;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  private unavailable(what: string, err: unknown): SinkUnavailableError {
    return new SinkUnavailableError(this.uri, `${what}: S3 ${describeS3Error(err)}`, { cause: err });
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** `NotFound (HTTP 404)`, `ECONNREFUSED …`: some SDK errors (HeadBucket's) carry no message of their own. */
function describeS3Error(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const parts = new Set([e?.name, e?.message, e?.code].filter((p): p is string => !!p && p !== 'Error' && p !== 'UnknownError'));
  const text = [...parts].join(': ') || reasonOf(err);
  const status = e?.$metadata?.httpStatusCode;
  return status ? `${text} (HTTP ${status})` : text;
}

/** `p`, or the signal's reason once it aborts (then `onAbort` releases what `p` was reading). */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal, onAbort: () => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const abort = () => {
      onAbort();
      reject(signal.reason as Error);
    };
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}
