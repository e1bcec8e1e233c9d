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

/** Milliseconds of one UNet call over `rows` rows: linear between the points, and beyond the last two. */
export function stepCostMs(points: ReadonlyArray<readonly [number, number]>, rows: number): number {
  let i = 1;
  while (i < points.length - 1 && rows > points[i]![0]) i++;
  const [r0, m0] = points[i - 1]!;
  const [r1, m1] = points[i]!;
  return Math.max(0, m0 + ((m1 - m0) * (rows - r0)) / (r1 - r0));
}

/** Issue 12's calibration (H200, SDXL at 1536x640): 79 ms + 7.6 ms per row up to 8 rows, 270 ms at 16. */
export const H200_STEP_COST: ReadonlyArray<readonly [number, number]> = [[1, 86.6], [8, 139.8], [16, 270]];

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

/** Request-level batching (see the file comment). `arrivals`: ascending ms offsets. */
export function simulateRequestLevel(arrivals: readonly number[], o: StepModelOptions): StepModelResult {
  const latencies = new Array<number>(arrivals.length);
  const freeAtMs = new Array<number>(o.replicas).fill(0);
  let head = 0;
  let lastDoneMs = 0;
  while (head < arrivals.length) {
    let r = 0;
    for (let i = 1; i < freeAtMs.length; i++) if (freeAtMs[i]! < freeAtMs[r]!) r = i;
    let now = Math.max(freeAtMs[r]!, arrivals[head]!);
    let n = 0;
    while (n < o.maxBatch && head + n < arrivals.length && arrivals[head + n]! <= now) n++;
    if (n < o.maxBatch) {
      const readyAt = Math.max(now, arrivals[head]! + o.waitMs);
      while (n < o.maxBatch && head + n < arrivals.length && arrivals[head + n]! <= readyAt) n++;
      now = n >= o.maxBatch ? Math.max(now, arrivals[head + o.maxBatch - 1]!) : readyAt;
    }
    const done = now + o.steps * o.stepMs(2 * n);
    for (let i = head; i < head + n; i++) latencies[i] = done - arrivals[i]!;
    head += n;
    freeAtMs[r] = done;
    lastDoneMs = Math.max(lastDoneMs, done);
  }
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
