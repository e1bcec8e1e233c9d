/**
 * Following a job to its end, for `orrery jobs watch`, `jobs submit --watch`, `jobs retry --watch`
 * and `orrery demo`: the progress view while it runs, then the summary and where the outputs are.
 */
import type { JobClient } from './job-client.js';
import { summaryLines, type JobMessage } from './job-format.js';
import { JobProgressView } from './job-progress-view.js';

/** Exit status of a watch: 0 when the job completed, this when it was cancelled or expired (errors are 1). */
export const EXIT_CANCELLED = 2;

export interface FollowOptions {
  readonly out?: NodeJS.WritableStream;
  /** Bar (true) or plain lines (false); default: the bar when `out` is a TTY. */
  readonly tty?: boolean;
  /** Least time between plain lines, ms. */
  readonly plainIntervalMs?: number;
  /**
   * Ctrl-C stops watching and says the job keeps running (default true). `orrery demo` sets false:
   * its Ctrl-C ends the demo's own cluster, which the job cannot outlive.
   */
  readonly detachOnInterrupt?: boolean;
}

/**
 * Shows the job's progress until it completes, is cancelled or expires, then prints the summary lines.
 * Resolves with the final Job. Ctrl-C stops watching, not the job (said on the way out).
 */
export async function followJob(client: JobClient, jobId: string, options: FollowOptions = {}): Promise<JobMessage> {
  const out = options.out ?? process.stdout;
  const view = new JobProgressView({ out, tty: options.tty, plainIntervalMs: options.plainIntervalMs });
  const onSigint = () => {
    view.stop();
    process.stderr.write(`\norrery: stopped watching; job ${jobId} keeps running (orrery jobs watch ${jobId} follows it again, orrery jobs cancel ${jobId} stops it)\n`);
    process.exit(130);
  };
  if (options.detachOnInterrupt !== false) process.once('SIGINT', onSigint);
  try {
    const final = await client.watch(jobId, (job) => view.update(job), { intervalMs: 1000 });
    view.stop();
    for (const line of summaryLines(final)) out.write(`${line}\n`);
    return final;
  } finally {
    view.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

/** The exit status for a job's final state. */
export const exitStatusOf = (job: JobMessage): number => (job.state === 'completed' ? 0 : EXIT_CANCELLED);
