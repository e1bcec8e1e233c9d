/**
 * Discrete-event models of one deployment under the per-step cost model of issue 12, fed the same
 * arrivals as a real run, so the measured figures can be read against what the two batching modes
 * allow with no scheduling overhead (and, with `transportMs` 0, no transport):
 *
 * - **request-level**: a batch of n images runs all `steps` steps at `stepMs(2n)` each (rows =
 *   2 × images under guidance); each replica runs one batch at a time; one FIFO queue; a batch is
 *   formed when a replica is free, from the queued images (up to `maxBatch`), a partial one after
 *   its oldest image has waited `waitMs` (as the router's batch policy does);
 * - **continuous**: each replica keeps a running set of at most `maxBatch` images; at every step
 *   boundary queued images join (FIFO) while there is room, each step of the set costs
 *   `stepMs(2 × images in it)`, and an image leaves after its `steps`-th step. An arrival at an
 *   idle replica starts a step at once; one at a busy replica joins at its next step boundary.
 *   The router sends a queued image to a replica holding fewer than `maxBatch + waitingImages`
 *   (ContinuousModelOptions), the one with most room, or the one whose row frees soonest; it
 *   counts an image on the replica until the image's reply reaches it (`transportMs` after it
 *   leaves), as room-policy.ts does.
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
  /**
   * One-way time of a router↔replica message (ms); 0 (default): the ideal. Request-level: it
   * adds a round trip to every image's time (the next batch is sent ahead, so replicas do not
   * wait for it). Continuous: see {@link ContinuousModelOptions}.
   */
  readonly transportMs?: number;
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
  const roundTripMs = 2 * (o.transportMs ?? 0);
  return { latencies: latencies.map((ms) => ms + roundTripMs), lastDoneMs: lastDoneMs + roundTripMs };
}

/** How the router of the continuous model picks among replicas that may take an image. */
export type ContinuousDispatch =
  /** The replica holding the fewest images (the room policy before issue 12's follow-up). */
  | 'most-room'
  /**
   * The replica whose running set has a row free soonest: free now, else after the fewest steps,
   * counting the steps left of its members and of the images already waiting there; among equals,
   * the fewest images held, then the fewest steps left in all (the new image shares the fewest steps).
   */
  | 'soonest-row';

/**
 * Continuous model options. With `transportMs`, an image sent reaches the replica that much later
 * and joins at its next step boundary after that, and a finished image's reply reaches the router
 * (which only then counts its row free) that much later; at 0, a queued image joins at the very
 * boundary a row frees.
 */
export interface ContinuousModelOptions extends StepModelOptions {
  /**
   * Images a replica may hold beyond its running set (waiting to join), so the router may send an
   * image before a row is free (0, default: only into room).
   */
  readonly waitingImages?: number;
  /** Default `most-room`. */
  readonly dispatch?: ContinuousDispatch;
}

interface SetState {
  /** Arrivals stepping in the set, and the steps each has left. */
  readonly members: Array<{ index: number; left: number }>;
  /** Arrivals that reached the replica and wait to join at its next step boundary. */
  readonly joining: number[];
  /** When the step running now ends; NaN when the replica is idle. */
  stepEndsMs: number;
  /** Images the router counts on the replica: sent, and not yet answered. */
  routerHeld: number;
  /** Images sent that have not reached it yet. */
  inTransit: number;
}

type Message = { atMs: number; kind: 'deliver'; set: SetState; index: number } | { atMs: number; kind: 'reply'; set: SetState };

/** Continuous batching (see the file comment). `arrivals`: ascending ms offsets. */
export function simulateContinuous(arrivals: readonly number[], o: ContinuousModelOptions): StepModelResult {
  const transportMs = o.transportMs ?? 0;
  const limit = o.maxBatch + (o.waitingImages ?? 0);
  const dispatch = o.dispatch ?? 'most-room';
  const latencies = new Array<number>(arrivals.length);
  const sets: SetState[] = Array.from({ length: o.replicas }, () => ({ members: [], joining: [], stepEndsMs: Number.NaN, routerHeld: 0, inTransit: 0 }));
  const queue: number[] = [];
  /** Messages on their way, in sending order (equal delays: also in arrival order). */
  const messages: Message[] = [];
  let next = 0;
  let lastDoneMs = 0;
  const startStep = (x: SetState, now: number) => {
    while (x.members.length < o.maxBatch && x.joining.length > 0) x.members.push({ index: x.joining.shift()!, left: o.steps });
    x.stepEndsMs = x.members.length > 0 ? now + o.stepMs(2 * x.members.length) : Number.NaN;
  };
  const deliver = (x: SetState, index: number, now: number) => {
    x.joining.push(index);
    if (Number.isNaN(x.stepEndsMs)) startStep(x, now);
  };
  /**
   * Steps until a row of `x` is free for one more image (0: free now): the router sees the steps
   * left of every image it has put there (in the model it knows them exactly); images already
   * waiting or on their way take the rows that free first, for all their steps.
   */
  const stepsToRow = (x: SetState): number => {
    const rows = x.members.map((mm) => mm.left);
    while (rows.length < o.maxBatch) rows.push(0);
    for (let i = 0; i < x.joining.length + x.inTransit; i++) {
      rows.sort((p, q) => p - q);
      rows[0]! += o.steps;
    }
    return Math.min(...rows);
  };
  const stepsHeld = (x: SetState): number => x.members.reduce((n, mm) => n + mm.left, 0) + (x.joining.length + x.inTransit) * o.steps;
  const better = (a: SetState, b: SetState): boolean => {
    if (dispatch === 'soonest-row') {
      const sa = stepsToRow(a);
      const sb = stepsToRow(b);
      if (sa !== sb) return sa < sb;
    }
    if (a.routerHeld !== b.routerHeld || dispatch !== 'soonest-row') return a.routerHeld < b.routerHeld;
    return stepsHeld(a) < stepsHeld(b);
  };
  /** Queued images go to the replica the dispatch rule prefers among those holding fewer than `limit`. */
  const place = (now: number) => {
    while (queue.length > 0) {
      let best: SetState | undefined;
      for (const x of sets) if (x.routerHeld < limit && (!best || better(x, best))) best = x;
      if (!best) return;
      best.routerHeld++;
      const index = queue.shift()!;
      if (transportMs > 0) {
        best.inTransit++;
        messages.push({ atMs: now + transportMs, kind: 'deliver', set: best, index });
      } else deliver(best, index, now);
    }
  };
  const answer = (x: SetState, now: number) => {
    x.routerHeld--;
    place(now);
  };
  for (;;) {
    let s: SetState | undefined;
    for (const x of sets) if (!Number.isNaN(x.stepEndsMs) && (!s || x.stepEndsMs < s.stepEndsMs)) s = x;
    let m = -1;
    for (let i = 0; i < messages.length; i++) if (m < 0 || messages[i]!.atMs < messages[m]!.atMs) m = i;
    const arrivalMs = next < arrivals.length ? arrivals[next]! : Number.POSITIVE_INFINITY;
    const stepMs = s ? s.stepEndsMs : Number.POSITIVE_INFINITY;
    const messageMs = m >= 0 ? messages[m]!.atMs : Number.POSITIVE_INFINITY;
    const now = Math.min(arrivalMs, stepMs, messageMs);
    if (!Number.isFinite(now)) break;
    if (messageMs === now) {
      const msg = messages.splice(m, 1)[0]!;
      if (msg.kind === 'deliver') {
        msg.set.inTransit--;
        deliver(msg.set, msg.index, now);
      } else answer(msg.set, now);
      continue;
    }
    if (arrivalMs === now && arrivalMs < stepMs) {
      queue.push(next++);
      place(now);
      continue;
    }
    // A step ends: every member advances, finished ones leave (their replies go out), then waiting images join.
    const x = s!;
    for (const mm of x.members) mm.left--;
    const done = x.members.filter((mm) => mm.left === 0);
    x.members.splice(0, x.members.length, ...x.members.filter((mm) => mm.left > 0));
    x.stepEndsMs = Number.NaN;
    for (const mm of done) {
      latencies[mm.index] = now + transportMs - arrivals[mm.index]!;
      lastDoneMs = Math.max(lastDoneMs, now + transportMs);
      if (transportMs > 0) messages.push({ atMs: now + transportMs, kind: 'reply', set: x });
      else answer(x, now);
    }
    startStep(x, now);
  }
  return { latencies, lastDoneMs };
}
