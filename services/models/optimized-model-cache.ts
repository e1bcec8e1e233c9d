/**
 * Creating ONNX Runtime sessions through an on-disk cache of optimized models (the "compile" step
 * done once): with `optimized_model_cache_dir` set, a cold load creates the session at the
 * configured optimization level (default `all`) and has ONNX Runtime save the optimized graph
 * (`optimizedModelFilePath`); a warm load creates the session from that saved graph with
 * optimization `disabled`, so nothing is optimized again. Keys: optimized-model-key.ts.
 *
 * Entry layout, one directory per key: `<dir>/<key>/{model.onnx, model.onnx.data, manifest.json}`.
 * Weights go to the external file (`session.optimized_model_external_initializers_file_name`),
 * since a model past 2 GB (an SDXL UNet) cannot be one protobuf. An entry is written in
 * `<dir>/.tmp-<key>-…/`, fsynced, then renamed into place: replicas sharing the directory on a
 * PVC see a whole entry or none, and when two write the same key at once the first rename wins
 * and the other drops its copy. An entry that fails to load (corrupt, truncated, foreign) is
 * removed and the model is loaded cold; the cache never fails a load the source could serve.
 *
 * Not cached (a plain load, reported as `bypass`): the `tensorrt` provider (ORT cannot save a
 * graph holding compiled TensorRT nodes), level `disabled` (nothing to save), and callers' own
 * exceptions (LoRA-fused models, written anew at every load). If ORT refuses to save for any other
 * reason, the load is retried without saving (`write-failed`).
 *
 * Every cached load is published on the diagnostics channel {@link SESSION_LOAD_CHANNEL} (the
 * executor thread forwards it to the replica's log and metrics); stages need no logger.
 */
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { CACHE_FORMAT, optimizationTarget, optimizedModelKey, sourceHash, writeFileAtomic, type OptimizationTarget, type SourceHash } from './optimized-model-key.js';
import { SESSION_LOAD_CHANNEL, type SessionCacheOutcome, type SessionLoadReport } from './session-load-report.js';
import { toOrtSessionOptions, type SessionOptions } from './session-options.js';

export { SESSION_LOAD_CHANNEL, type SessionCacheOutcome, type SessionLoadReport } from './session-load-report.js';

/** A model to open: its file (external data is found beside it), and its bytes if already read. */
export interface ModelSource {
  readonly path: string;
  readonly bytes?: Uint8Array;
}

export interface CachedSessionOptions {
  /** Load without the cache, for this reason (e.g. a model file written anew at every load). */
  readonly bypass?: string;
}

export interface CachedSession {
  readonly session: InferenceSession;
  readonly report: SessionLoadReport;
}

const MODEL_FILE = 'model.onnx';
const DATA_FILE = 'model.onnx.data';
const MANIFEST_FILE = 'manifest.json';
/** Temporary entries older than this are left over from a crashed writer and removed. */
const STALE_TMP_MS = 60 * 60 * 1000;

const channel = diagnostics.channel(SESSION_LOAD_CHANNEL);

interface Manifest {
  readonly format: number;
  readonly key: string;
  readonly createdAt: string;
  readonly source: { readonly path: string; readonly sha256: string; readonly bytes: number };
  readonly target: OptimizationTarget;
  readonly files: ReadonlyArray<{ readonly name: string; readonly size: number }>;
}

function create(source: ModelSource, options: InferenceSession.SessionOptions): Promise<InferenceSession> {
  return source.bytes ? InferenceSession.create(source.bytes, options) : InferenceSession.create(source.path, options);
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Creates a session for `source` with `options`, through the optimized-model cache when
 * `options.optimizedModelCacheDir` is set. Throws only what a plain load of the source throws
 * (ONNX Runtime's error); cache trouble is reported, never thrown.
 */
export async function createCachedSession(source: ModelSource, options: SessionOptions, extra: CachedSessionOptions = {}): Promise<CachedSession> {
  const started = performance.now();
  const ort = toOrtSessionOptions(options);
  const dir = options.optimizedModelCacheDir;
  let hashSeconds = 0;
  const finish = (session: InferenceSession, outcome: SessionCacheOutcome, more: { entryDir?: string; reason?: string } = {}): CachedSession => {
    const report: SessionLoadReport = { modelPath: source.path, outcome, seconds: (performance.now() - started) / 1000, hashSeconds, ...more };
    if (outcome !== 'disabled') channel.publish(report);
    return { session, report };
  };
  if (!dir) return finish(await create(source, ort), 'disabled');
  const level = options.graphOptimizationLevel ?? 'all';
  const bypass = extra.bypass
    ?? (options.executionProvider === 'tensorrt' ? 'execution provider tensorrt: ONNX Runtime cannot save a graph with compiled TensorRT nodes' : undefined)
    ?? (level === 'disabled' ? 'graph_optimization_level disabled: nothing to save' : undefined);
  if (bypass) return finish(await create(source, ort), 'bypass', { reason: bypass });

  let hash: SourceHash;
  try {
    hash = await sourceHash(source.path, dir);
  } catch (err) {
    return finish(await create(source, ort), 'bypass', { reason: `could not hash the source: ${message(err)}` });
  }
  hashSeconds = hash.hashSeconds;
  const target = optimizationTarget(options.executionProvider, level);
  const key = optimizedModelKey(hash, target);
  const entryDir = path.join(dir, key);

  let discarded: string | undefined;
  if (fs.existsSync(entryDir)) {
    let verified = false;
    try {
      await verifyEntry(entryDir);
      verified = true;
      // Already optimized: optimizing again would only cost time (and could re-fuse fused nodes).
      return finish(await InferenceSession.create(path.join(entryDir, MODEL_FILE), { ...ort, graphOptimizationLevel: 'disabled' }), 'hit', { entryDir });
    } catch (err) {
      if (verified) {
        // Whole files that ONNX Runtime refused: the entry is bad only if the source loads. A
        // failure of the device (out of memory) fails that load too, and the entry stays for
        // the other replicas.
        const session = await create(source, ort);
        await removeDir(entryDir);
        return finish(session, 'recovered', { entryDir, reason: `cached entry refused by ONNX Runtime, removed (the next load saves it again): ${message(err)}` });
      }
      discarded = `cached entry unusable, removed: ${message(err)}`;
      await removeDir(entryDir);
    }
  }
  const manifest = { format: CACHE_FORMAT, key, source: { path: path.resolve(source.path), sha256: hash.sha256, bytes: hash.bytes }, target };
  const written = await optimizeAndSave(source, ort, dir, entryDir, manifest);
  if (written.saveError) return finish(written.session, 'write-failed', { entryDir, reason: [discarded, written.saveError].filter(Boolean).join('; ') });
  return finish(written.session, discarded ? 'recovered' : 'miss', { entryDir, ...(discarded ? { reason: discarded } : {}) });
}

/** Checks a cached entry's manifest and file sizes; throws if they do not hold. */
async function verifyEntry(entryDir: string): Promise<void> {
  const manifest = JSON.parse(await fs.promises.readFile(path.join(entryDir, MANIFEST_FILE), 'utf8')) as Manifest;
  if (manifest.format !== CACHE_FORMAT || manifest.key !== path.basename(entryDir)) throw new Error('manifest does not match its entry');
  for (const f of manifest.files) {
    const st = await fs.promises.stat(path.join(entryDir, f.name));
    if (st.size !== f.size) throw new Error(`${f.name} has ${st.size} bytes, the manifest says ${f.size}`);
  }
}

/**
 * Creates the session from the source, having ORT save the optimized graph into a temporary
 * entry, then seals and renames the entry into place. If ORT cannot save, creates the session
 * again without saving (its error, if that fails too, is the model's and is thrown).
 */
async function optimizeAndSave(
  source: ModelSource, ort: InferenceSession.SessionOptions, dir: string, entryDir: string,
  manifest: Omit<Manifest, 'files' | 'createdAt'>,
): Promise<{ session: InferenceSession; saveError?: string }> {
  const tmp = path.join(dir, `.tmp-${manifest.key}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  try {
    await fs.promises.mkdir(tmp, { recursive: true });
    await sweepStaleTemps(dir);
  } catch (err) {
    return { session: await create(source, ort), saveError: `cannot write in the cache directory: ${message(err)}` };
  }
  let session: InferenceSession;
  try {
    session = await create(source, {
      ...ort,
      optimizedModelFilePath: path.join(tmp, MODEL_FILE),
      extra: { ...ort.extra, session: { optimized_model_external_initializers_file_name: DATA_FILE, optimized_model_external_initializers_min_size_in_bytes: '1024' } },
    });
  } catch (err) {
    await removeDir(tmp);
    return { session: await create(source, ort), saveError: `ONNX Runtime could not save the optimized model: ${message(err)}` };
  }
  try {
    await seal(tmp, manifest);
    try {
      await fs.promises.rename(tmp, entryDir);
    } catch (err) {
      // Another replica renamed the same key first: its entry is as good as ours.
      if (!isExistsError(err)) throw err;
    }
    return { session };
  } catch (err) {
    return { session, saveError: `could not store the optimized model: ${message(err)}` };
  } finally {
    await removeDir(tmp);
  }
}

/** Flushes the files ORT wrote, then writes the manifest that lists them (sizes checked at load). */
async function seal(tmp: string, manifest: Omit<Manifest, 'files' | 'createdAt'>): Promise<void> {
  const names = (await fs.promises.readdir(tmp)).sort();
  if (!names.includes(MODEL_FILE)) throw new Error('ONNX Runtime wrote no optimized model');
  const files: Array<{ name: string; size: number }> = [];
  for (const name of names) {
    const fh = await fs.promises.open(path.join(tmp, name), 'r+');
    try {
      await fh.sync();
      files.push({ name, size: (await fh.stat()).size });
    } finally {
      await fh.close();
    }
  }
  const full: Manifest = { ...manifest, createdAt: new Date().toISOString(), files };
  await writeFileAtomic(path.join(tmp, MANIFEST_FILE), JSON.stringify(full, null, 2));
}

function isExistsError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EEXIST' || code === 'ENOTEMPTY';
}

/** Removes a directory; renamed aside first, so a concurrent writer may rename a fresh entry into the name at once. */
async function removeDir(dir: string): Promise<void> {
  const aside = path.join(path.dirname(dir), `.trash-${crypto.randomBytes(6).toString('hex')}`);
  try {
    await fs.promises.rename(dir, aside);
  } catch {
    return; // Already gone (another replica removed it).
  }
  await fs.promises.rm(aside, { recursive: true, force: true });
}

/** Removes temporary entries and trash older than an hour (a writer that crashed midway). */
async function sweepStaleTemps(dir: string): Promise<void> {
  const now = Date.now();
  for (const name of await fs.promises.readdir(dir)) {
    if (!name.startsWith('.tmp-') && !name.startsWith('.trash-')) continue;
    const p = path.join(dir, name);
    const st = await fs.promises.stat(p).catch(() => undefined);
    if (st && now - st.mtimeMs > STALE_TMP_MS) await fs.promises.rm(p, { recursive: true, force: true }).catch(() => undefined);
  }
}
