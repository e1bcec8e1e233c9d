/**
 * The identity of an optimized model in the optimized-model cache (optimized-model-cache.ts):
 * what the source model contains, and everything that shapes what ONNX Runtime makes of it.
 *
 * Key = sha256 of: the source's content hash, the ONNX Runtime version, the execution provider,
 * the graph optimization level, the platform and CPU architecture, and the CPU's vector ISA flags.
 * ORT itself warns that a model saved after its layout optimizations (NCHWc, at level `all`) holds
 * hardware-specific transforms for the machine that optimized it, and EP-specific fusions (CUDA)
 * do not run on another provider; so all of these are in the key, and a node pool with different
 * CPUs sharing one cache directory simply gets one entry per CPU type.
 *
 * Source identity is a CONTENT hash (sha256 of the model file and every regular file beside it:
 * external data such as `model.onnx_data` or per-tensor files, and config.json), not size+mtime:
 * a re-export or copy with preserved times and equal sizes must not serve stale weights. Hashing
 * costs about 1 s per GB on one core (measured: ~1.07 GB/s here), too much for a 5 GB UNet at every
 * load, so the hash is memoized on disk, in the cache directory, per source path and guarded by
 * each file's size, mtime, ctime and inode (nanoseconds): a replica whose files look exactly as
 * when they were hashed reuses the hash, whichever replica computed it (and each process also
 * keeps the hashes it has seen, for a cache directory it cannot write). ctime cannot be set by
 * copy tools (rsync -t, cp -p), so a replaced file always misses the memo.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { env } from 'onnxruntime-node';
import type { ExecutionProvider, GraphOptimizationLevel } from './session-options.js';

/** Bumped whenever the key recipe or the entry layout changes (old entries are then ignored). */
export const CACHE_FORMAT = 1;

/** The content hash of a model's files, and how it was obtained. */
export interface SourceHash {
  readonly sha256: string;
  /** Bytes of every file hashed (model + files beside it). */
  readonly bytes: number;
  /** Seconds spent hashing now; 0 when the memo was reused. */
  readonly hashSeconds: number;
}

interface FileStamp {
  readonly name: string;
  readonly size: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
  readonly ino: string;
}

interface HashMemo {
  readonly format: number;
  readonly modelPath: string;
  readonly files: readonly FileStamp[];
  readonly sha256: string;
  readonly bytes: number;
}

/** The regular files of the model's folder, sorted by name, with their stat stamps. */
async function stampFiles(modelPath: string): Promise<FileStamp[]> {
  const dir = path.dirname(modelPath);
  const names = (await fs.promises.readdir(dir)).sort();
  const stamps: FileStamp[] = [];
  for (const name of names) {
    const st = await fs.promises.stat(path.join(dir, name), { bigint: true });
    if (!st.isFile()) continue;
    stamps.push({ name, size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), ino: String(st.ino) });
  }
  if (!stamps.some((s) => s.name === path.basename(modelPath))) throw new Error(`${modelPath} is not a regular file`);
  return stamps;
}

async function hashFiles(dir: string, stamps: readonly FileStamp[]): Promise<{ sha256: string; bytes: number }> {
  const h = crypto.createHash('sha256');
  let bytes = 0;
  for (const s of stamps) {
    // Name and size frame each file, so moving bytes between files changes the hash.
    h.update(`${s.name}\0${s.size}\0`);
    for await (const chunk of fs.createReadStream(path.join(dir, s.name), { highWaterMark: 4 << 20 })) {
      h.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  }
  return { sha256: h.digest('hex'), bytes };
}

const sameStamps = (a: readonly FileStamp[], b: readonly FileStamp[]): boolean =>
  a.length === b.length && a.every((x, i) => {
    const y = b[i]!;
    return x.name === y.name && x.size === y.size && x.mtimeNs === y.mtimeNs && x.ctimeNs === y.ctimeNs && x.ino === y.ino;
  });

/**
 * Hashes computed or read by this process, by absolute model path: a cache directory where the
 * memo cannot be written (read-only) still costs one hash per model version per process, not one
 * per load.
 */
const processMemo = new Map<string, HashMemo>();

/** Writes `text` to `file` so that readers see the old content or the new, never a part. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  try {
    const fh = await fs.promises.open(tmp, 'w');
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
}

/**
 * The content hash of `modelPath` and the files beside it, reusing the memo under
 * `<cacheDir>/.sources/` when every file's stamps are unchanged. A memo that cannot be read or
 * written only costs a re-hash. Throws if the model's folder cannot be listed or read.
 */
export async function sourceHash(modelPath: string, cacheDir: string): Promise<SourceHash> {
  const abs = path.resolve(modelPath);
  const dir = path.dirname(abs);
  const memoFile = path.join(cacheDir, '.sources', `${crypto.createHash('sha256').update(abs).digest('hex').slice(0, 32)}.json`);
  const before = await stampFiles(abs);
  const known = processMemo.get(abs);
  if (known && sameStamps(known.files, before)) {
    // Another cache directory (or none yet) may lack the memo: give it one for other replicas.
    if (!fs.existsSync(memoFile)) await writeMemo(memoFile, known);
    return { sha256: known.sha256, bytes: known.bytes, hashSeconds: 0 };
  }
  try {
    const memo = JSON.parse(await fs.promises.readFile(memoFile, 'utf8')) as HashMemo;
    if (memo.format === CACHE_FORMAT && memo.modelPath === abs && sameStamps(memo.files, before) && /^[0-9a-f]{64}$/.test(memo.sha256)) {
      processMemo.set(abs, memo);
      return { sha256: memo.sha256, bytes: memo.bytes, hashSeconds: 0 };
    }
  } catch {
    // No memo (or an unreadable one): hash below.
  }
  const started = performance.now();
  const { sha256, bytes } = await hashFiles(dir, before);
  const hashSeconds = (performance.now() - started) / 1000;
  // A file that changed while it was read must not be memoized under the stamps taken before.
  if (sameStamps(before, await stampFiles(abs))) {
    const memo: HashMemo = { format: CACHE_FORMAT, modelPath: abs, files: before, sha256, bytes };
    processMemo.set(abs, memo);
    await writeMemo(memoFile, memo);
  }
  return { sha256, bytes, hashSeconds };
}

async function writeMemo(memoFile: string, memo: HashMemo): Promise<void> {
  try {
    await fs.promises.mkdir(path.dirname(memoFile), { recursive: true });
    await writeFileAtomic(memoFile, JSON.stringify(memo));
  } catch {
    // A read-only cache directory is reported by the cache itself when it tries to write.
  }
}

/** What, besides the source, decides the optimized graph ONNX Runtime writes. */
export interface OptimizationTarget {
  readonly ortVersion: string;
  readonly executionProvider: ExecutionProvider;
  readonly graphOptimizationLevel: GraphOptimizationLevel;
  readonly platform: string;
  readonly arch: string;
  /** Vector ISA flags of the CPU (Linux /proc/cpuinfo), or the CPU model name elsewhere. */
  readonly cpu: string;
}

/** Flags MLAS (ONNX Runtime's CPU kernels) dispatches on: x86 SSE/AVX/AMX families, Arm NEON/SVE/dot products. */
const ISA_FLAG = /^(sse\d*|ssse3|avx\w*|fma\w*|f16c|amx\w*|asimd\w*|sve\w*|i8mm|bf16|fphp|dotprod)$/;

let cpuFingerprint: string | undefined;

function cpuIsa(): string {
  if (cpuFingerprint !== undefined) return cpuFingerprint;
  let flags: string[] = [];
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info);
    if (line) flags = line[1]!.split(/\s+/).filter((f) => ISA_FLAG.test(f)).sort();
  } catch {
    // Not Linux: the model name below stands in.
  }
  cpuFingerprint = flags.length ? flags.join(' ') : (os.cpus()[0]?.model ?? 'unknown');
  return cpuFingerprint;
}

/** The target of this process for `executionProvider` and `level`. */
export function optimizationTarget(executionProvider: ExecutionProvider, level: GraphOptimizationLevel): OptimizationTarget {
  return {
    ortVersion: env.versions.node ?? env.versions.common,
    executionProvider,
    graphOptimizationLevel: level,
    platform: process.platform,
    arch: process.arch,
    cpu: cpuIsa(),
  };
}

/** The cache key (32 hex characters: 128 bits of sha256) of `source` optimized for `target`. */
export function optimizedModelKey(source: SourceHash, target: OptimizationTarget): string {
  const recipe = JSON.stringify({ format: CACHE_FORMAT, source: source.sha256, ...target });
  return crypto.createHash('sha256').update(recipe).digest('hex').slice(0, 32);
}
