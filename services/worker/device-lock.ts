/**
 * The replica's device: one batch at a time runs model work on it (a GPU, or the CPU cores ONNX
 * Runtime's threads use), in arrival order. A batch holds it from the start of its stage run until
 * its last model call returns (RunContext.computeDone) — not while it encodes its images — so with
 * `max_ongoing_batches` ≥ 2 the next batch's model work overlaps the previous batch's encoding and
 * the device never waits for PNG encoding, a NATS round trip or the router between batches.
 * A batch holding online work goes ahead of waiting bulk-only batches (work-item.ts Priority), so
 * an online request waits for at most the batch that is running, never for queued bulk batches.
 * With continuous batching the running sets of the replica's models take it per model call
 * instead (services/stages/running-set.ts DeviceTurns), so two models never step at once.
 */
import { CancelledError } from '../common/errors.js';
import type { Priority } from '../common/work-item.js';

export class DeviceLock {
  private held = false;
  /** Online waiters first, then bulk ones; each in arrival order. */
  private readonly waiting: Array<{ readonly priority: Priority; grant: () => void }> = [];

  /** Batches waiting for the device. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Priority of the caller that gets the device next; undefined when none waits. */
  get nextPriority(): Priority | undefined {
    return this.waiting[0]?.priority;
  }

  /**
   * Resolves with the release function once the device is this caller's (online callers first,
   * then bulk ones, FIFO within each). Rejects with a CancelledError, leaving the queue, if
   * `signal` aborts first. The release is idempotent.
   */
  acquire(signal: AbortSignal, priority: Priority = 'online'): Promise<() => void> {
    if (signal.aborted) return Promise.reject(new CancelledError('while waiting for the device'));
    if (!this.held) {
      this.held = true;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        priority,
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new CancelledError('while waiting for the device'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const firstBulk = priority === 'online' ? this.waiting.findIndex((w) => w.priority === 'bulk') : -1;
      if (firstBulk >= 0) this.waiting.splice(firstBulk, 0, waiter);
      else this.waiting.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.grant();
      else this.held = false;
    };
  }
}
