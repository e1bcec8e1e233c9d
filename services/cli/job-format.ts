/**
 * How jobs read for people: one progress line, the final summary, where the outputs are, the
 * `jobs list` table and the `jobs get` summary. Pure: a Job message in, text out.
 */
import { fileURLToPath } from 'node:url';

/** A Job as proto-loader hands it over (uint64 as decimal strings, Timestamps as {seconds, nanos}). */
export interface JobMessage {
  job_id: string;
  state: string;
  total: string | number;
  done: string | number;
  failed: string | number;
  succeeded: string | number;
  queued: string | number;
  running: string | number;
  cancelled: string | number;
  /** Absent from routers that predate completion windows. */
  expired?: string | number;
  expires_at?: Timestamp | null;
  attempts: string | number;
  items_per_second: number;
  eta_seconds: number;
  created_at?: Timestamp | null;
  started_at?: Timestamp | null;
  finished_at?: Timestamp | null;
  output_uri: string;
  job_key: string;
  name: string;
  pipeline: string;
  model_id: string;
  message: string;
  max_attempts: number;
}

export interface Timestamp {
  seconds: string | number;
  nanos: number;
}

/** The states a job does not leave. */
export const FINAL_STATES: readonly string[] = ['completed', 'cancelled', 'expired'];

export const isFinal = (job: Pick<JobMessage, 'state'>): boolean => FINAL_STATES.includes(job.state);

/** Milliseconds since the epoch, or undefined for an unset Timestamp. */
export function timestampMs(t: Timestamp | null | undefined): number | undefined {
  if (!t || (Number(t.seconds) === 0 && !t.nanos)) return undefined;
  return Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

/** Counts as numbers (a job's counts stay far below 2^53). */
export function counts(job: JobMessage): { total: number; done: number; failed: number; queued: number; running: number; cancelled: number; expired: number; attempts: number } {
  return {
    total: Number(job.total), done: Number(job.done), failed: Number(job.failed), queued: Number(job.queued),
    running: Number(job.running), cancelled: Number(job.cancelled), expired: Number(job.expired ?? 0), attempts: Number(job.attempts),
  };
}

/** "45s", "3m05s", "2h07m", "3d04h"; "?" for an unknown (0 or not finite) time. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** Items per second with sensible precision ("0.42", "12.5", "1840"). */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return '0';
  return perSecond >= 100 ? perSecond.toFixed(0) : perSecond >= 10 ? perSecond.toFixed(1) : perSecond.toFixed(2);
}

const percent = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '0.0%');

/**
 * One line of progress, the non-TTY form of the progress bar:
 * `job j-1 in_progress: 120/960 done (12.5%), 3 failed, 8 running, 2.40 items/s, ETA 5m50s`.
 * Failures are never counted as done.
 */
export function progressLine(job: JobMessage): string {
  const c = counts(job);
  const parts = [`${c.done}/${c.total} done (${percent(c.done, c.total)})`, `${c.failed} failed`];
  if (c.cancelled > 0) parts.push(`${c.cancelled} cancelled`);
  if (c.expired > 0) parts.push(`${c.expired} expired`);
  if (!isFinal(job)) parts.push(`${c.running} running`, `${formatRate(job.items_per_second)} items/s`, `ETA ${formatDuration(job.eta_seconds)}`);
  const why = job.message && (job.state === 'paused' || isFinal(job)) ? ` — ${job.message}` : '';
  return `job ${job.job_id} ${job.state}: ${parts.join(', ')}${why}`;
}

/** What the plain (non-TTY) progress printer remembers of the last line it printed. */
export interface PlainLineState {
  readonly atMs: number;
  readonly line: string;
  readonly state: string;
}

/**
 * Whether the plain printer prints this update: the first one, a change of state, and the final
 * one always; otherwise at most once per `intervalMs`, and only when the line changed.
 */
export function shouldPrintPlain(last: PlainLineState | undefined, job: JobMessage, nowMs: number, intervalMs: number): boolean {
  if (!last || last.state !== job.state || isFinal(job)) return true;
  return nowMs - last.atMs >= intervalMs && progressLine(job) !== last.line;
}

/** A child of a sink URI ("file:///out/j1" + "manifest.jsonl"), as a path for file:// sinks. */
export function sinkChild(uri: string, name: string): string {
  const joined = `${uri.replace(/\/+$/, '')}/${name}`;
  if (!joined.startsWith('file://')) return joined;
  try {
    return fileURLToPath(joined);
  } catch {
    return joined.slice('file://'.length);
  }
}

/** Where a job's outputs are: the folder or bucket, the manifest, the contact sheet, job.json. */
export function outputLines(job: JobMessage): string[] {
  if (!job.output_uri) return [];
  const where = job.output_uri.startsWith('file://') ? sinkChild(job.output_uri, '') : job.output_uri;
  return [
    `  images:        ${where.replace(/\/$/, '')}/<custom_id>.<ext>`,
    `  manifest:      ${sinkChild(job.output_uri, 'manifest.jsonl')}`,
    `  contact sheet: ${sinkChild(job.output_uri, 'contact-sheet.png')}`,
    `  job.json:      ${sinkChild(job.output_uri, 'job.json')}`,
  ];
}

/**
 * The lines printed when a watched job ends: one summary line, then where its outputs are, then
 * what to do next when items failed, were cancelled or expired.
 */
export function summaryLines(job: JobMessage): string[] {
  const c = counts(job);
  const started = timestampMs(job.started_at) ?? timestampMs(job.created_at);
  const finished = timestampMs(job.finished_at);
  const seconds = started !== undefined && finished !== undefined ? (finished - started) / 1000 : 0;
  const rate = seconds > 0 ? `, ${formatRate(c.done / seconds)} images/s` : '';
  const took = seconds > 0 ? ` in ${formatDuration(seconds)}` : '';
  const lines = [`job ${job.job_id} ${job.state}: ${c.done} of ${c.total} succeeded, ${c.failed} failed, ${c.cancelled} cancelled${c.expired > 0 ? `, ${c.expired} expired` : ''}${took}${rate}${job.message ? ` — ${job.message}` : ''}`];
  lines.push(...outputLines(job));
  if (c.failed + c.cancelled + c.expired > 0) lines.push(`  see why:       orrery jobs items ${job.job_id} --state failed`, `  run them again: orrery jobs retry ${job.job_id} --watch`);
  return lines;
}

const iso = (t: Timestamp | null | undefined): string => {
  const ms = timestampMs(t);
  return ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
};

/** `jobs get`: the job for people, one `key: value` a line. */
export function jobDetails(job: JobMessage): string[] {
  const c = counts(job);
  return [
    `job:          ${job.job_id}${job.name ? ` (${job.name})` : ''}`,
    `state:        ${job.state}${job.message ? ` — ${job.message}` : ''}`,
    `items:        ${c.total} total: ${c.done} succeeded, ${c.failed} failed, ${c.cancelled} cancelled, ${c.expired} expired, ${c.running} running, ${c.queued} queued`,
    `attempts:     ${c.attempts} (at most ${job.max_attempts || '?'} per item)`,
    `rate:         ${formatRate(job.items_per_second)} items/s over the last minute${isFinal(job) ? '' : `, ETA ${formatDuration(job.eta_seconds)}`}`,
    `pipeline:     ${job.pipeline || '-'}${job.model_id ? `, model ${job.model_id}` : ''}`,
    `created:      ${iso(job.created_at)}  started: ${iso(job.started_at)}  finished: ${iso(job.finished_at)}`,
    `expires:      ${timestampMs(job.expires_at) === undefined ? 'never (no completion window)' : iso(job.expires_at)}`,
    `job_key:      ${job.job_key || '-'}`,
    `output_uri:   ${job.output_uri || '-'}`,
  ];
}

/** `jobs list`: a table with a header row, columns padded to their widest cell. */
export function jobsTable(jobs: readonly JobMessage[]): string[] {
  const rows = [['JOB', 'STATE', 'DONE/TOTAL', 'FAILED', 'ITEMS/S', 'CREATED', 'NAME']];
  for (const job of jobs) {
    const c = counts(job);
    rows.push([job.job_id, job.state, `${c.done}/${c.total}`, String(c.failed), isFinal(job) ? '-' : formatRate(job.items_per_second), iso(job.created_at), job.name || '']);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}
