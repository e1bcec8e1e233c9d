/**
 * Discrete-event models of one deployment under the per-step cost model of issue 12, fed the same
 * arrivals as a real run, so the measured figures can be read against what the two batching modes
 * allow with no transport or scheduling overhead:
 *
 * - **request-level**: a batch of n images runs all `steps` steps at `stepMs(2n)` each (rows =
 *   2 × images under guidance); each replica runs one batch at a time; one FIFO queue; a batch is
 *   formed when a replica is free, from the queued images (up to `maxBatch`), a partial one after
 *   its oldest image has waited `waitMs` (as the router's batch policy does);
 * - **continuous**: each replica keeps a running set of at most `maxBatch` images; at every step
 *   boundary queued images join (FIFO) while there is room, each step of the set costs
 *   `stepMs(2 × images in it)`, and an image leaves after its `steps`-th step. An arrival at an
 *   idle replica starts a step at once; one at a busy replica joins at its next step boundary.
 *   Queued images go to the replica with most room.
 */
import { simulateBatchQueue } from '../lib/batch-queue-model.js';

export interface StepModelOptions {
  readonly steps: number;
  readonly maxBatch: number;
  readonly replicas: number;
  /** Cost of one step over `rows` rows (ms). */
  readonly stepMs: (rows: number) => number;
  /** Request-level only: longest a partial batch waits for company. */
  readonly waitMs: number;
}

export interface StepModelResult {
  /** Time to image of each arrival (ms), in arrival order. */
  readonly latencies: number[];
  /** When the last image finished (ms from the start). */
  readonly lastDoneMs: number;
}

/** Request-level batching (see the file comment): bench/lib/batch-queue-model.ts's queue, a batch of n priced at `steps` steps of 2n rows. */
export function simulateRequestLevel(arrivals: readonly number[], o: StepModelOptions): StepModelResult {
  const { latencies, lastDoneMs } = simulateBatchQueue(arrivals, o, (n) => o.steps * o.stepMs(2 * n));
  return { latencies, lastDoneMs };
}

interface SetState {
  /** Arrivals stepping in the set, and the steps each has left. */
  readonly members: Array<{ index: number; left: number }>;
  /** Arrivals sent to the replica while a step runs: they join at its end. */
  readonly joining: number[];
  /** When the step running now ends; NaN when the replica is idle. */
  stepEndsMs: number;
}

/** Continuous batching (see the file comment). `arrivals`: ascending ms offsets. */
export function simulateContinuous(arrivals: readonly number[], o: StepModelOptions): StepModelResult {
  const latencies = new Array<number>(arrivals.length);
  const sets: SetState[] = Array.from({ length: o.replicas }, () => ({ members: [], joining: [], stepEndsMs: Number.NaN }));
  const queue: number[] = [];
  let next = 0;
  let lastDoneMs = 0;
  const held = (x: SetState) => x.members.length + x.joining.length;
  const startStep = (x: SetState, now: number) => {
    for (const index of x.joining.splice(0)) x.members.push({ index, left: o.steps });
    x.stepEndsMs = x.members.length > 0 ? now + o.stepMs(2 * x.members.length) : Number.NaN;
  };
  /** Queued images go to the replica with most room: an idle one starts a step at once, a busy one takes them at its next boundary. */
  const place = (now: number) => {
    while (queue.length > 0) {
      let best: SetState | undefined;
      for (const x of sets) if (held(x) < o.maxBatch && (!best || held(x) < held(best))) best = x;
      if (!best) return;
      best.joining.push(queue.shift()!);
      if (Number.isNaN(best.stepEndsMs)) startStep(best, now);
    }
  };
  for (;;) {
    let s: SetState | undefined;
    for (const x of sets) if (!Number.isNaN(x.stepEndsMs) && (!s || x.stepEndsMs < s.stepEndsMs)) s = x;
    const arrivalMs = next < arrivals.length ? arrivals[next]! : Number.POSITIVE_INFINITY;
    if (!s && !Number.isFinite(arrivalMs)) break;
    if (!s || arrivalMs < s.stepEndsMs) {
      queue.push(next++);
      place(arrivalMs);
      continue;
    }
    // A step ends: every member advances, finished ones leave, then waiting images join.
    const now = s.stepEndsMs;
    for (const m of s.members) m.left--;
    for (const m of s.members) {
      if (m.left > 0) continue;
      latencies[m.index] = now - arrivals[m.index]!;
      lastDoneMs = Math.max(lastDoneMs, now);
    }
    s.members.splice(0, s.members.length, ...s.members.filter((x) => x.left > 0));
    s.stepEndsMs = Number.NaN;
    place(now);
    startStep(s, now);
  }
  return { latencies, lastDoneMs };
}
