/**
 * `orrery jobs submit FILE`: a YAML job file or a JSONL item file (with a template from
 * `--template FILE.yaml` and/or flags) → SubmitJob, then AddJobItems chunks when the items do not
 * fit one message. Re-running the same submit returns the same job (the default job_key, job-key.ts)
 * and sends only the chunks the job does not have yet.
 */
import fs from 'node:fs';
import path from 'node:path';
import { JobFileError } from './job-file-error.js';
import { describeGrid, gridItemCount, hasPrompt, mergeTemplate, parseJobYaml, submitRequest, type JobGridSpec, type JobHeader, type JobItemSpec, type JobTemplate } from './job-file.js';
import { fileLines, itemChunks, jsonlItems } from './job-items-jsonl.js';
import { jobKeyOfFile } from './job-key.js';
import type { JobClient } from './job-client.js';
import type { JobMessage } from './job-format.js';

/** Flags of `jobs submit` that shape the request (everything optional; flags win over the file). */
export interface SubmitFlags {
  template?: string;
  pipeline?: string;
  model?: string;
  aspect?: string;
  width?: number;
  height?: number;
  steps?: number;
  guidance?: number;
  negative?: string;
  format?: string;
  seed?: string;
  name?: string;
  maxAttempts?: number;
  outUri?: string;
  jobKey?: string;
}

/** What a job file becomes before anything is sent. */
export interface Submission {
  readonly file: string;
  readonly header: JobHeader;
  readonly grid?: JobGridSpec;
  /** Explicit items from a YAML file (in memory: a YAML file is parsed whole anyway). */
  readonly items?: JobItemSpec[];
  /** Explicit items streamed from this JSONL file. */
  readonly jsonl?: string;
  /** For people: "a grid of 2 colors × 2 atmospheres × 1 seed = 4 items". */
  readonly description: string;
}

/** The template fields set by flags. */
export function templateFromFlags(f: SubmitFlags): JobTemplate {
  const t: JobTemplate = {};
  if (f.pipeline !== undefined) t.pipeline = f.pipeline;
  if (f.model !== undefined) t.model_id = f.model;
  if (f.aspect !== undefined) t.aspect = f.aspect;
  if (f.width !== undefined) t.width = f.width;
  if (f.height !== undefined) t.height = f.height;
  if (f.steps !== undefined) t.steps = f.steps;
  if (f.guidance !== undefined) t.guidance_scale = f.guidance;
  if (f.negative !== undefined) t.negative_prompt = f.negative;
  if (f.format !== undefined) {
    const upper = f.format.toUpperCase();
    if (upper !== 'PNG' && upper !== 'WEBP' && upper !== 'JPEG') throw new JobFileError('--format', '', `must be png, webp or jpeg, not ${f.format}`);
    t.output_format = upper;
  }
  if (f.seed !== undefined) {
    if (!/^\d{1,20}$/.test(f.seed) || BigInt(f.seed) >= 1n << 64n) throw new JobFileError('--seed', '', `must be a non-negative integer below 2^64, not ${f.seed}`);
    t.seed = BigInt(f.seed).toString();
  }
  return t;
}

/** The file's kind, from its name. */
export function fileKind(file: string): 'yaml' | 'jsonl' {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  throw new JobFileError(file, '', 'must end in .yaml or .yml (a job file) or .jsonl (one item a line, with --template or flags)');
}

const readText = (file: string): string => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new JobFileError(file, '', `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
};

/** Fails early with a readable error when `file` cannot be opened (without reading it whole). */
function checkReadable(file: string): void {
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (err) {
    throw new JobFileError(file, '', `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/**
 * Reads and checks a job file (and `--template`), applies the flags, and fills in the default
 * job_key. Reads a JSONL file once to hash it, and checks only that it can be opened: its lines are
 * checked while they are sent.
 */
export async function prepareSubmission(file: string, flags: SubmitFlags): Promise<Submission> {
  const kind = fileKind(file);
  const spec = kind === 'yaml' ? parseJobYaml(readText(file), file) : flags.template ? parseJobYaml(readText(flags.template), flags.template, { itemsAllowed: false }) : { template: {} };
  if (kind === 'yaml' && flags.template) throw new JobFileError('--template', '', 'is for JSONL item files; a YAML job file has its own template:');
  if (kind === 'jsonl') checkReadable(file);
  const header: JobHeader = {
    template: mergeTemplate(spec.template, templateFromFlags(flags)),
    output_uri: flags.outUri ?? spec.output_uri,
    name: flags.name ?? spec.name ?? path.basename(file).replace(/\.[^.]+$/, ''),
    max_attempts: flags.maxAttempts ?? spec.max_attempts,
    completion_window_s: spec.completion_window_s,
    no_completion_window: spec.no_completion_window,
  };
  header.job_key = flags.jobKey ?? spec.job_key ?? (await jobKeyOfFile(file, header));
  if (kind === 'jsonl') return { file, header, jsonl: file, description: `the items of ${file}` };
  if (spec.grid) return { file, header, grid: spec.grid, description: `a grid of ${describeGrid(spec.grid)} = ${gridItemCount(spec.grid)} items` };
  return { file, header, items: spec.items!, description: `${spec.items!.length} items` };
}

/** Explicit items at most this many go inline in SubmitJob; more go in AddJobItems chunks. */
export const INLINE_ITEMS = 1000;

/** What sendSubmission reports while it works. */
export interface SubmitProgress {
  /** The job exists (SubmitJob answered) and its items are about to be sent in chunks. */
  onCreated?(job: JobMessage): void;
  /** A chunk was sent, or skipped because the job already holds it (from an interrupted run). */
  onChunk?(info: { offset: number; count: number; skipped: boolean }): void;
}

/** Sends a prepared submission. Resolves with the job as the last call returned it. */
export async function sendSubmission(client: JobClient, s: Submission, progress: SubmitProgress = {}): Promise<JobMessage> {
  if (s.grid) return client.submit(submitRequest(s.header, { grid: s.grid }));
  if (s.items && s.items.length <= INLINE_ITEMS) return client.submit(submitRequest(s.header, { items: s.items }));
  let job = await client.submit(submitRequest(s.header, { items: [], itemsFollow: true }));
  // Submitted before with the same key, and every item arrived then: nothing more to send.
  if (job.state !== 'validating') return job;
  progress.onCreated?.(job);
  const have = Number(job.total);
  const source = s.items ?? jsonlItems(fileLines(s.jsonl!), s.file, hasPrompt(s.header.template));
  for await (const chunk of itemChunks(source, s.file)) {
    // Chunks the job already holds are skipped; the last one is always sent: it closes the list.
    if (!chunk.last && chunk.offset + chunk.items.length <= have) {
      progress.onChunk?.({ offset: chunk.offset, count: chunk.items.length, skipped: true });
      continue;
    }
    job = await client.addItems(job.job_id, chunk.offset, chunk.items, chunk.last);
    progress.onChunk?.({ offset: chunk.offset, count: chunk.items.length, skipped: false });
  }
  return job;
}
