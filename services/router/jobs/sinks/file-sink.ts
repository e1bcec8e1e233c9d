/**
 * file://DIR: one file per object in a directory (a local folder under serve-local, a PVC in
 * Kubernetes). A put writes a temp file in the same directory, fsyncs it, renames it over the
 * final name and fsyncs the directory ({@link FileSinkOptions.fsync} can skip the fsyncs). Rename
 * is atomic on POSIX file systems, so a reader (or a router restarted after a crash) sees the old
 * object or the new one, never a torn one. Temp files of a put interrupted by a crash are named
 * `.orrery-tmp-*`; list() skips them and the first put (or check()) of a later sink removes those
 * older than `staleTempMs`.
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SinkUnavailableError } from '../../../common/errors.js';
import { fromSource, rethrow } from './chunk-source.js';
import { checkObjectName, INTERNAL_PREFIX, reasonOf, sha256Hex } from './object-name.js';
import type { JobSink } from './sink.js';

const TEMP_PREFIX = `${INTERNAL_PREFIX}tmp-`;
const PROBE_PREFIX = `${INTERNAL_PREFIX}probe-`;

export interface FileSinkOptions {
  /**
   * Temp files older than this are leftovers of a crashed put and are removed; younger ones may
   * belong to another router writing into the same directory right now. Default 10 minutes.
   */
  readonly staleTempMs?: number;
  /**
   * fsync each file before its rename and the directory after it (default true), so a put that
   * returned survives a power loss, not just a process crash. Off, puts are ~5x faster on a
   * typical disk and still atomic (rename), but the last seconds of outputs can be lost or empty
   * after a machine crash while JetStream already counts them as written.
   */
  readonly fsync?: boolean;
}

export class FileSink implements JobSink {
  readonly uri: string;
  private swept: Promise<void> | undefined;
  private readonly staleTempMs: number;
  private readonly fsync: boolean;

  /** `dir` is resolved against the process's working directory. */
  constructor(
    readonly dir: string,
    options: FileSinkOptions = {},
  ) {
    this.dir = path.resolve(dir);
    this.uri = pathToFileURL(this.dir).href;
    this.staleTempMs = options.staleTempMs ?? 600_000;
    this.fsync = options.fsync ?? true;
  }

  /**
   * `file:///abs/dir` (percent-escapes decoded), `file://localhost/abs/dir`, or a relative
   * `file://out/jobs/j1` / `file://./out/jobs/j1` resolved against the working directory.
   */
  static fromUri(uri: string, rest: string, options: FileSinkOptions = {}): FileSink {
    if (rest === '' || rest === 'localhost') throw new SinkUnavailableError(uri, 'the URI names no directory');
    let dir: string;
    try {
      if (rest.startsWith('/')) dir = fileURLToPath(`file://${rest}`);
      else if (rest.startsWith('localhost/')) dir = fileURLToPath(`file://${rest.slice('localhost'.length)}`);
      else dir = path.resolve(decodeURIComponent(rest));
    } catch (err) {
      throw new SinkUnavailableError(uri, `malformed file URI: ${reasonOf(err)}`, { cause: err });
    }
    return new FileSink(dir, options);
  }

  async check(): Promise<void> {
    const probe = path.join(this.dir, `${PROBE_PREFIX}${randomUUID()}`);
    try {
      await fs.promises.mkdir(this.dir, { recursive: true });
      await writeFile(probe, new Uint8Array([0x6f, 0x6b]), true);
      await fs.promises.unlink(probe);
    } catch (err) {
      await fs.promises.unlink(probe).catch(() => undefined);
      throw new SinkUnavailableError(this.uri, `directory ${this.dir} is not writable: ${reasonOf(err)}`, { cause: err });
    }
    await this.sweepOnce();
  }

  async put(name: string, data: Uint8Array, _contentType: string): Promise<{ bytes: number; sha256: string }> {
    checkObjectName(this.uri, name);
    await this.sweepOnce();
    const tmp = path.join(this.dir, `${TEMP_PREFIX}${randomUUID()}`);
    try {
      try {
        await writeFile(tmp, data, this.fsync);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        // The directory is gone (or was never created: check() was skipped); make it once.
        await fs.promises.mkdir(this.dir, { recursive: true });
        await writeFile(tmp, data, this.fsync);
      }
      await fs.promises.rename(tmp, path.join(this.dir, name));
      if (this.fsync) await syncDirectory(this.dir);
    } catch (err) {
      await fs.promises.unlink(tmp).catch(() => undefined);
      throw new SinkUnavailableError(this.uri, `writing ${name}: ${reasonOf(err)}`, { cause: err });
    }
    return { bytes: data.byteLength, sha256: sha256Hex(data) };
  }

  async putStream(name: string, chunks: AsyncIterable<Uint8Array>, _contentType: string): Promise<{ bytes: number; sha256: string }> {
    checkObjectName(this.uri, name);
    await this.sweepOnce();
    await fs.promises.mkdir(this.dir, { recursive: true }).catch(() => undefined);
    const tmp = path.join(this.dir, `${TEMP_PREFIX}${randomUUID()}`);
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      const fh = await fs.promises.open(tmp, 'wx', 0o644);
      try {
        for await (const chunk of fromSource(chunks)) {
          await fh.write(chunk);
          hash.update(chunk);
          bytes += chunk.byteLength;
        }
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.promises.rename(tmp, path.join(this.dir, name));
      if (this.fsync) await syncDirectory(this.dir);
    } catch (err) {
      await fs.promises.unlink(tmp).catch(() => undefined);
      rethrow(err, (e) => new SinkUnavailableError(this.uri, `writing ${name}: ${reasonOf(e)}`, { cause: e }));
    }
    return { bytes, sha256: hash.digest('hex') };
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    checkObjectName(this.uri, name);
    try {
      return new Uint8Array(await fs.promises.readFile(path.join(this.dir, name)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new SinkUnavailableError(this.uri, `reading ${name}: ${reasonOf(err)}`, { cause: err });
    }
  }

  async *list(): AsyncIterable<string> {
    let dir: fs.Dir;
    try {
      dir = await fs.promises.opendir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new SinkUnavailableError(this.uri, `listing ${this.dir}: ${reasonOf(err)}`, { cause: err });
    }
    for await (const entry of dir) {
      if (entry.isFile() && !entry.name.startsWith(INTERNAL_PREFIX)) yield entry.name;
    }
  }

  async close(): Promise<void> {}

  /** Removes stale temp and probe files once per sink (a crashed put or check leaves them). */
  private sweepOnce(): Promise<void> {
    this.swept ??= this.sweep().catch(() => undefined); // best effort: a leftover only costs disk
    return this.swept;
  }

  private async sweep(): Promise<void> {
    const cutoff = Date.now() - this.staleTempMs;
    let dir: fs.Dir;
    try {
      dir = await fs.promises.opendir(this.dir);
    } catch {
      return;
    }
    for await (const entry of dir) {
      if (!entry.isFile() || !(entry.name.startsWith(TEMP_PREFIX) || entry.name.startsWith(PROBE_PREFIX))) continue;
      const file = path.join(this.dir, entry.name);
      const stat = await fs.promises.stat(file).catch(() => undefined);
      if (stat && stat.mtimeMs <= cutoff) await fs.promises.unlink(file).catch(() => undefined);
    }
  }
}

/** Creates `file` (it must not exist), writes `data` and, with `fsync`, syncs it before closing. */
async function writeFile(file: string, data: Uint8Array, fsync: boolean): Promise<void> {
  const fh = await fs.promises.open(file, 'wx', 0o644);
  try {
    await fh.writeFile(data);
    if (fsync) await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncs a directory so a rename inside it survives a power loss, not just a process crash. */
async function syncDirectory(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
