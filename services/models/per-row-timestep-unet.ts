/**
 * The load path of the per-row timestep rewrite (onnx/per-row-timestep.ts): an SDXL UNet whose
 * `timestep` is one scalar for the batch is rewritten once and stored in a cache directory, so a
 * real 5 GB UNet is rewritten once per source version, not at every load.
 *
 * Entry layout: `<cacheDir>/per-row-timestep/<key>/{model.onnx, <external data files>, manifest.json}`,
 * key = sha256 of (transform version, content hash of the source folder; the hash is memoized as
 * the optimized-model cache memoizes it, see optimized-model-key.ts). Only the graph is rewritten:
 * the weights stay where they are, and each external data file the model refers to is hard-linked
 * into the entry (a symbolic link when the cache is on another file system), since ONNX Runtime
 * resolves external data relative to the model file. A hard link keeps the weights of the source
 * version the entry was made from even if the source is later replaced; its key then changes.
 * Entries are written in a temporary folder and renamed into place (readers see all or nothing;
 * concurrent writers of one key: the first rename wins). A source that already takes one value
 * per row gets a manifest-only entry and is loaded from its own path.
 *
 * The result is a model path for ONNX Runtime; the caller opens it as usual (e.g. through the
 * optimized-model cache, or as an `openSdxlBundle` override of `unet`).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { decodeModel, encodeModel, type ModelProto } from './onnx/onnx-model.js';
import { perRowTimestep, PER_ROW_TIMESTEP_VERSION, type TimestepElemType } from './onnx/per-row-timestep.js';
import { sourceHash, writeFileAtomic } from './optimized-model-key.js';

/** Subfolder of the cache directory holding the rewritten UNets. */
export const PER_ROW_TIMESTEP_DIR = 'per-row-timestep';
const MODEL_FILE = 'model.onnx';
const MANIFEST_FILE = 'manifest.json';
/** Temporary entries older than this are left over from a crashed writer and removed. */
const STALE_TMP_MS = 60 * 60 * 1000;

export interface PerRowUnet {
  /** The UNet to load: the rewritten model, or the source itself when it already takes per-row timesteps. */
  readonly path: string;
  readonly elemType: TimestepElemType;
  readonly alreadyPerRow: boolean;
  /** `hit`: an earlier rewrite was reused; `written`: rewritten now. */
  readonly outcome: 'hit' | 'written';
  /** Seconds spent hashing the source now (0 when the memo was reused). */
  readonly hashSeconds: number;
}

interface Manifest {
  readonly version: number;
  readonly key: string;
  readonly source: { readonly path: string; readonly sha256: string };
  readonly elemType: TimestepElemType;
  readonly alreadyPerRow: boolean;
  /** Files of the entry besides the manifest, with their sizes. */
  readonly files: ReadonlyArray<{ readonly name: string; readonly size: number }>;
}

/**
 * The per-row-timestep version of the UNet at `unetModelPath` (e.g. `bundle.layout.unet.model`),
 * rewritten into `cacheDir` on first use. Throws PerRowTimestepError (ORRERY_ERR_MODEL_LOAD_FAILED)
 * when the graph cannot be rewritten safely, and the file system's error when the source cannot be
 * read or the entry cannot be written.
 */
export async function perRowTimestepUnet(unetModelPath: string, cacheDir: string): Promise<PerRowUnet> {
  const hash = await sourceHash(unetModelPath, cacheDir);
  const key = crypto.createHash('sha256').update(JSON.stringify({ transform: 'per-row-timestep', version: PER_ROW_TIMESTEP_VERSION, source: hash.sha256 })).digest('hex').slice(0, 32);
  const root = path.join(cacheDir, PER_ROW_TIMESTEP_DIR);
  const entryDir = path.join(root, key);
  const cached = readEntry(entryDir, key);
  if (cached) return result(cached, unetModelPath, entryDir, 'hit', hash.hashSeconds);
  fs.rmSync(entryDir, { recursive: true, force: true });

  const source = decodeModel(fs.readFileSync(unetModelPath));
  const rewritten = perRowTimestep(source);
  fs.mkdirSync(root, { recursive: true });
  sweepStaleTemps(root);
  const tmp = path.join(root, `.tmp-${key}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp);
  try {
    if (!rewritten.alreadyPerRow) {
      fs.writeFileSync(path.join(tmp, MODEL_FILE), encodeModel(rewritten.model));
      for (const location of externalLocations(rewritten.model)) linkInto(path.join(path.dirname(unetModelPath), location), path.join(tmp, location));
    }
    const files = fs.readdirSync(tmp).sort().map((name) => ({ name, size: fs.statSync(path.join(tmp, name)).size }));
    const manifest: Manifest = {
      version: PER_ROW_TIMESTEP_VERSION, key, source: { path: path.resolve(unetModelPath), sha256: hash.sha256 },
      elemType: rewritten.elemType, alreadyPerRow: rewritten.alreadyPerRow, files,
    };
    await writeFileAtomic(path.join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
    try {
      fs.renameSync(tmp, entryDir);
    } catch (err) {
      // Another replica stored the same key first: its entry is as good as ours.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
    }
    return result(manifest, unetModelPath, entryDir, 'written', hash.hashSeconds);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function result(m: Manifest, source: string, entryDir: string, outcome: PerRowUnet['outcome'], hashSeconds: number): PerRowUnet {
  return { path: m.alreadyPerRow ? source : path.join(entryDir, MODEL_FILE), elemType: m.elemType, alreadyPerRow: m.alreadyPerRow, outcome, hashSeconds };
}

/** The entry's manifest when it matches its key and every file it lists has its size; else undefined. */
function readEntry(entryDir: string, key: string): Manifest | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(entryDir, MANIFEST_FILE), 'utf8')) as Manifest;
    if (m.version !== PER_ROW_TIMESTEP_VERSION || m.key !== key) return undefined;
    if (!m.alreadyPerRow && !m.files.some((f) => f.name === MODEL_FILE)) return undefined;
    for (const f of m.files) if (fs.statSync(path.join(entryDir, f.name)).size !== f.size) return undefined;
    return m;
  } catch {
    return undefined;
  }
}

/** The external data files the model's initializers refer to (plain names inside its folder). */
function externalLocations(model: ModelProto): string[] {
  const out = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.data_location !== 1) continue;
    const location = t.external_data?.find((e) => e.key === 'location')?.value ?? '';
    if (!location || location.includes('..') || path.isAbsolute(location) || location.includes('/') || location.includes('\\')) {
      throw new Error(`initializer ${t.name}: external data location ${JSON.stringify(location)} is not a file beside the model`);
    }
    out.add(location);
  }
  return [...out].sort();
}

/** Hard-links `src` to `dst`; a symbolic link to its absolute path when the file systems differ. */
function linkInto(src: string, dst: string): void {
  try {
    fs.linkSync(src, dst);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw err;
    fs.symlinkSync(path.resolve(src), dst);
  }
}

/** Removes temporary entries older than an hour (a writer that crashed midway). */
function sweepStaleTemps(root: string): void {
  const now = Date.now();
  for (const name of fs.readdirSync(root)) {
    if (!name.startsWith('.tmp-')) continue;
    const p = path.join(root, name);
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (st && now - st.mtimeMs > STALE_TMP_MS) fs.rmSync(p, { recursive: true, force: true });
  }
}
