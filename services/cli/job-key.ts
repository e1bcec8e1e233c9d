/**
 * The default job_key of `orrery jobs submit FILE`: the SHA-256 of the file's bytes and of the
 * request it becomes without the items (template, output_uri, name, max_attempts, after flags are
 * applied). Submitting the same file with the same flags again — after a crash, a lost connection,
 * a Ctrl-C — so returns the job the first submit created instead of starting a second one. A
 * changed file or flag is a new job; `--job-key` sets the key outright.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { JobHeader } from './job-file.js';

/** JSON with object keys sorted, so the same header always hashes the same. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The key for a file's contents (as chunks of bytes) and the header it is submitted with. */
export async function jobKeyOf(contents: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, header: Omit<JobHeader, 'job_key'>): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of contents) h.update(chunk);
  // A separator that cannot be confused with file bytes at the boundary: the header's length.
  // Absent keys are left out, so a file without a completion window keeps the key it always had.
  const json = canonicalJson({
    template: header.template, output_uri: header.output_uri, name: header.name, max_attempts: header.max_attempts,
    completion_window_s: header.completion_window_s, no_completion_window: header.no_completion_window,
  });
  h.update(`\n--orrery-job-header ${json.length}\n${json}`);
  return `sha256-${h.digest('hex')}`;
}

/** The key of a file on disk, read as a stream. */
export function jobKeyOfFile(file: string, header: Omit<JobHeader, 'job_key'>): Promise<string> {
  return jobKeyOf(fs.createReadStream(file), header);
}
