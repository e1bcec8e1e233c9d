/**
 * Object names inside a sink. A job writes flat names (`<custom_id>.<ext>`, `manifest.jsonl`, …);
 * every sink checks them the same way so a name that is valid on one sink is valid on all.
 */
import { createHash } from 'node:crypto';
import { SinkUnavailableError } from '../../../common/errors.js';

/** Names starting with this are a sink's own bookkeeping (temp files, probes), never listed. */
export const INTERNAL_PREFIX = '.orrery-';

/**
 * Why `name` cannot be an object name, or undefined when it can: empty, a path (`/`, `\`),
 * `.`/`..`, a control character, longer than 255 bytes (a file name's limit), or reserved.
 * Job validation uses it to reject a bad `custom_id` at submit (INVALID_ARGUMENT) rather than
 * fail its write later.
 */
export function objectNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name === '.' || name === '..') return 'is a directory reference';
  if (/[/\\]/.test(name)) return 'contains a path separator';
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'contains a control character';
  if (Buffer.byteLength(name) > 255) return 'is longer than 255 bytes';
  if (name.startsWith(INTERNAL_PREFIX)) return `starts with the reserved prefix "${INTERNAL_PREFIX}"`;
  return undefined;
}

/** Throws SinkUnavailableError naming the problem when `name` cannot be an object name ({@link objectNameProblem}). */
export function checkObjectName(uri: string, name: string): void {
  const why = objectNameProblem(name);
  if (why) throw new SinkUnavailableError(uri, `object name ${JSON.stringify(name.slice(0, 300))} ${why}`);
}

/** Lower-case hex SHA-256 of `data`. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The reason an I/O error happened, for a SinkUnavailableError message (`EACCES: permission denied, open '…'`). */
export function reasonOf(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * Splits `BUCKET[/PREFIX]` into bucket and a prefix without leading/trailing slashes ('' for none).
 * Throws SinkUnavailableError when the bucket is empty or the prefix has an empty or `..` segment.
 */
export function splitBucketPath(uri: string, rest: string): { bucket: string; prefix: string } {
  const [bucket = '', ...segments] = rest.replace(/\/+$/, '').split('/');
  if (bucket === '') throw new SinkUnavailableError(uri, 'the URI names no bucket');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new SinkUnavailableError(uri, 'the prefix has an empty, "." or ".." segment');
  }
  return { bucket, prefix: segments.join('/') };
}
