/**
 * The live view of a job for `orrery jobs watch` and `orrery demo`: a cli-progress bar on a
 * terminal (done/total, items/s, ETA, failures, state), or plain progress lines — at most one
 * every `plainIntervalMs`, plus every change of state — when the output is a file or a pipe.
 */
import { SingleBar } from 'cli-progress';
import { counts, formatDuration, formatRate, isFinal, progressLine, shouldPrintPlain, type JobMessage, type PlainLineState } from './job-format.js';

export interface JobProgressViewOptions {
  /** Where the view writes (default process.stdout). */
  readonly out?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Force the bar (true) or plain lines (false); default: the bar when `out` is a TTY. */
  readonly tty?: boolean;
  /** Least time between two plain lines, in ms (default 5000). */
  readonly plainIntervalMs?: number;
  /** The clock, injectable for tests. */
  readonly now?: () => number;
}

/** Shows a job's updates until stop(). */
export class JobProgressView {
  private readonly out: NodeJS.WritableStream;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private bar: SingleBar | undefined;
  private last: PlainLineState | undefined;

  constructor(options: JobProgressViewOptions = {}) {
    this.out = options.out ?? process.stdout;
    this.tty = options.tty ?? Boolean((this.out as NodeJS.WriteStream).isTTY);
    this.intervalMs = options.plainIntervalMs ?? 5000;
    this.now = options.now ?? Date.now;
  }

  /** Shows one update of the job. */
  update(job: JobMessage): void {
    if (this.tty) this.updateBar(job);
    else this.updatePlain(job);
  }

  /** Ends the view (the bar stays on screen as it last was). */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  private updatePlain(job: JobMessage): void {
    const nowMs = this.now();
    if (!shouldPrintPlain(this.last, job, nowMs, this.intervalMs)) return;
    const line = progressLine(job);
    this.out.write(`${line}\n`);
    this.last = { atMs: nowMs, line, state: job.state };
  }

  private updateBar(job: JobMessage): void {
    const c = counts(job);
    // The server's rate and ETA (over the last minute, surviving restarts), not the bar's own guess
    // (whose {eta} token is why ours is called jobEta).
    const payload = {
      state: job.state.padEnd(11), rate: formatRate(job.items_per_second), jobEta: isFinal(job) ? '0s' : formatDuration(job.eta_seconds),
      failed: c.failed, running: c.running,
    };
    if (!this.bar) {
      this.bar = new SingleBar({
        stream: this.out,
        format: `job ${job.job_id} {state} |{bar}| {value}/{total} done {percentage}% | {rate} items/s | ETA {jobEta} | {failed} failed, {running} running`,
        barsize: 30, hideCursor: true, fps: 5, etaBuffer: 1, forceRedraw: true,
      });
      this.bar.start(Math.max(c.total, 1), c.done, payload);
      return;
    }
    this.bar.setTotal(Math.max(c.total, 1));
    this.bar.update(c.done, payload);
  }
}
