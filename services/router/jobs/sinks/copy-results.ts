/**
 * Copies a job's results out of any sink into a local directory (`orrery jobs results ID --out DIR`):
 * the item outputs first, then manifest.jsonl, job.json and contact-sheet.png, so a directory that
 * has a manifest has the outputs it lists. Each file is written to a temp name and renamed, so an
 * interrupted copy never leaves a torn file; re-running skips files already present with the same
 * size and SHA-256 (outputs are compared against the manifest without downloading them again).
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { checkObjectName, INTERNAL_PREFIX, sha256Hex } from './object-name.js';
import { parseManifest } from './manifest.js';
import type { JobSink } from './sink.js';

/** The files written beside the outputs, copied last in this order. */
export const JOB_METADATA_FILES = ['manifest.jsonl', 'job.json', 'contact-sheet.png'] as const;

export interface CopyProgress {
  /** The file just handled. */
  readonly name: string;
  /** Files written so far. */
  readonly files: number;
  /** Bytes written so far. */
  readonly bytes: number;
  /** Files found already present and identical so far. */
  readonly skipped: number;
}

export interface CopyResult {
  /** Files written. */
  files: number;
  /** Bytes written. */
  bytes: number;
  /** Files already present with the same size and SHA-256, left alone. */
  skipped: number;
}

/** Downloads in flight at once (network sinks are latency-bound; local disk is not the limit). */
const COPY_CONCURRENCY = 8;

/**
 * Copies every object of `sink` into `outDir` (created if missing). Throws the sink's
 * SinkUnavailableError when it cannot be read, or the file system's error when `outDir` cannot be
 * written; files copied before the error stay, and a re-run continues from them.
 */
export async function copyJobResults(sink: JobSink, outDir: string, onProgress?: (p: CopyProgress) => void): Promise<CopyResult> {
  const dir = path.resolve(outDir);
  await fs.promises.mkdir(dir, { recursive: true });
  const result: CopyResult = { files: 0, bytes: 0, skipped: 0 };
  const report = (name: string) => onProgress?.({ name, ...result });

  const manifestBytes = await sink.get('manifest.jsonl');
  const expected = new Map<string, { bytes: number; sha256: string }>();
  if (manifestBytes) {
    for (const e of parseManifest(Buffer.from(manifestBytes).toString('utf8')).values()) {
      if (e.file && e.sha256) expected.set(e.file, { bytes: e.bytes, sha256: e.sha256 });
    }
  }

  const copyOne = async (name: string, known?: Uint8Array) => {
    const target = path.join(dir, name);
    const want = expected.get(name);
    if (!known && want && (await localDigest(target, want.bytes)) === want.sha256) {
      result.skipped++;
      return report(name);
    }
    const data = known ?? (await sink.get(name));
    if (!data) return; // removed from the sink since it was listed
    if ((await localDigest(target, data.byteLength)) === sha256Hex(data)) result.skipped++;
    else {
      await writeAtomically(dir, target, data);
      result.files++;
      result.bytes += data.byteLength;
    }
    report(name);
  };

  const metadata = new Set<string>(JOB_METADATA_FILES);
  await forEachLimited(outputNames(sink, metadata), COPY_CONCURRENCY, (name) => copyOne(name));
  for (const name of JOB_METADATA_FILES) {
    if (name === 'manifest.jsonl') {
      if (manifestBytes) await copyOne(name, manifestBytes);
    } else await copyOne(name);
  }
  return result;
}

/** The sink's object names except the metadata files and any name that is not a plain file name. */
async function* outputNames(sink: JobSink, metadata: ReadonlySet<string>): AsyncIterable<string> {
  for await (const name of sink.list()) {
    if (metadata.has(name) || name.startsWith(INTERNAL_PREFIX)) continue;
    try {
      checkObjectName(sink.uri, name); // never let a listed name escape outDir
    } catch {
      continue;
    }
    yield name;
  }
}

/** The local file's SHA-256 when it exists with `size` bytes; undefined otherwise. */
async function localDigest(file: string, size: number): Promise<string | undefined> {
  const stat = await fs.promises.stat(file).catch(() => undefined);
  if (!stat?.isFile() || stat.size !== size) return undefined;
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Temp file + rename: a reader or a re-run never sees a torn file. No fsync: a local copy is
 * re-verifiable, and a re-run repairs anything a power loss damaged (its SHA-256 no longer matches).
 */
async function writeAtomically(dir: string, target: string, data: Uint8Array): Promise<void> {
  const tmp = path.join(dir, `${INTERNAL_PREFIX}tmp-${randomUUID()}`);
  try {
    await fs.promises.writeFile(tmp, data, { flag: 'wx' });
    await fs.promises.rename(tmp, target);
  } catch (err) {
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Runs `fn` over an async iterable with at most `limit` calls in flight. */
async function forEachLimited<T>(items: AsyncIterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.asyncIterator]();
  const worker = async () => {
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      await fn(next.value);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}
