/**
 * Shape checks for job files: each takes a parsed value and the key path it came from, and returns
 * the value in the form the SubmitJob request wants, or throws a JobFileError naming the key
 * (`grid.colors: must be a list of strings`). Pure; job-file.ts and job-items-jsonl.ts use them.
 */
import { JobFileError } from './job-file-error.js';

/** Where a value came from: the file and the key path inside it. */
export interface Where {
  readonly file: string;
  readonly path: string;
}

/** The path of `key` under `w`: `grid.colors`, `items[3]`, or `line 12: seed` under a JSONL line. */
export const at = (w: Where, key: string | number): Where => ({
  file: w.file,
  path: typeof key === 'number' ? `${w.path}[${key}]` : !w.path ? key : /^line \d+$/.test(w.path) ? `${w.path}: ${key}` : `${w.path}.${key}`,
});

const fail = (w: Where, why: string): never => {
  throw new JobFileError(w.file, w.path, why);
};

export const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `v` must be a mapping whose keys are all in `known`; an unknown key (a typo, usually) is named. */
export function mapping(v: unknown, w: Where, known: readonly string[]): Record<string, unknown> {
  if (!isMapping(v)) return fail(w, `must be a mapping (key: value), not ${describe(v)}`);
  for (const key of Object.keys(v)) {
    if (!known.includes(key)) fail(at(w, key), `unknown key (known: ${known.join(', ')})`);
  }
  return v;
}

export function str(v: unknown, w: Where): string {
  if (typeof v !== 'string') return fail(w, `must be a string, not ${describe(v)}`);
  return v;
}

export function strList(v: unknown, w: Where): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) return fail(w, 'must be a list of strings');
  return v as string[];
}

/** A non-negative integer that fits in a uint32 (counts, sizes, steps). */
export function uint32(v: unknown, w: Where): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) return fail(w, `must be a non-negative integer, not ${describe(v)}`);
  return v;
}

const UINT64_MAX = (1n << 64n) - 1n;

/**
 * A uint64 (seeds, sample sizes) as the decimal string proto-loader sends: a YAML/JSON integer
 * (exact only up to 2^53, so larger ones must be written as a quoted string) or a string of digits.
 */
export function uint64(v: unknown, w: Where): string {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return String(v);
  if (typeof v === 'string' && /^\d{1,20}$/.test(v) && BigInt(v) <= UINT64_MAX) return BigInt(v).toString();
  if (typeof v === 'number' && Number.isInteger(v) && v > Number.MAX_SAFE_INTEGER) return fail(w, `${v} is above 2^53 and not exact; write it as a quoted string`);
  return fail(w, `must be a non-negative integer below 2^64, not ${describe(v)}`);
}

export function finiteNumber(v: unknown, w: Where): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return fail(w, `must be a number, not ${describe(v)}`);
  return v;
}

/** One of `choices`, compared case-insensitively; returns the choice as written in `choices`. */
export function oneOf<T extends string>(v: unknown, w: Where, choices: readonly T[]): T {
  const s = typeof v === 'string' ? v.toLowerCase() : undefined;
  const hit = choices.find((c) => c.toLowerCase() === s);
  if (hit === undefined) return fail(w, `must be one of ${choices.join(', ')}, not ${describe(v)}`);
  return hit;
}

/** Letters, digits and ._- , not starting with '.'; at most 128 characters (JobItem.custom_id). */
export const CUSTOM_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** Ids that would collide with the files a job writes beside its outputs. */
const RESERVED_IDS = ['manifest', 'job', 'contact-sheet'];

export function customId(v: unknown, w: Where): string {
  const s = str(v, w);
  if (!CUSTOM_ID.test(s)) return fail(w, `must be 1-128 letters, digits, '.', '_' or '-', not starting with '.' (it names the output file), not ${JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s)}`);
  if (RESERVED_IDS.includes(s)) return fail(w, `"${s}" is reserved for the job's own files (${RESERVED_IDS.join(', ')})`);
  return s;
}

/** A short description of a wrong value for error messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  return `a ${typeof v}`;
}
