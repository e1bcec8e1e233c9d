/**
 * Step-level continuous batching: the running set of one loaded model and the step loop that owns
 * its device. Images join and leave at step boundaries instead of riding one batch from first step
 * to last. At every boundary the loop
 *   1. drops images whose signal aborted (cancelled request or batch, passed deadline),
 *   2. asks the pure policy (step-admission.ts) which images step now (online first, then by
 *      arrival, up to `capacity`); a stepping bulk image that no longer ranks pauses,
 *   3. readies the images that join now ({@link StepModel.start}: e.g. text encoding),
 *   4. runs one model call per group of images with equal `key` ({@link StepModel.step}), each
 *      image advancing one step of its own schedule,
 *   5. lets the images whose last step is done leave ({@link StepModel.finish}: e.g. VAE decode).
 * Model work of one set never overlaps, and with a {@link DeviceTurns} (the replica's device lock)
 * neither does that of the sets of other models on the same device: every model call takes a turn.
 * What an image carries between steps (latents, step index, noise stream) is the member's own, so
 * pausing is not stepping it, and resuming continues it.
 * The stage decides what a member is (sdxl/sdxl-step-model.ts, synthetic-step-model.ts).
 */
import diagnostics from 'node:diagnostics_channel';
import { CancelledError, OrreryError } from '../common/errors.js';
import type { Priority } from '../common/work-item.js';
import { admit } from './step-admission.js';

/** One image in a running set. */
export interface StepMember {
  readonly priority: Priority;
  /** Aborts when the image's request or batch is cancelled or its deadline passes: it leaves at the next boundary. */
  readonly signal: AbortSignal;
  /** Images with equal keys can share a model call (same size, …). */
  readonly key: string;
  /** True once the image needs no more steps. */
  readonly finished: boolean;
}

/** The model work of a running set; calls never overlap. A rejection fails the images of that call only. */
export interface StepModel<M extends StepMember> {
  /** Readies images that step for the first time now. */
  start(members: readonly M[]): Promise<void>;
  /** One model call: every member (all of one key) advances one step. */
  step(members: readonly M[]): Promise<void>;
  /** The last model work of images whose steps are done. */
  finish(members: readonly M[]): Promise<void>;
  /** The set has no images left: drop what was kept between steps. */
  idle?(): void;
}

/** What changed since the previous report (counts are deltas). */
export interface RunningSetReport {
  /** True when a step just ran (`occupied` images stepped); false for a report on arrival or when idle. */
  readonly stepped: boolean;
  /** Images stepping now. */
  readonly occupied: number;
  /** Images the set holds that do not step now (waiting to join, or paused). */
  readonly waiting: number;
  readonly joins: number;
  readonly leaves: number;
  readonly preemptions: number;
}

/**
 * Diagnostics channel on which stages publish their running sets' reports ({@link RunningSetEvent});
 * the executor thread forwards them to the replica (heartbeat fields, metrics). Stages have no logger
 * or metrics of their own, as with the optimized-model cache's SESSION_LOAD_CHANNEL.
 */
export const RUNNING_SET_CHANNEL = 'orrery:running-set';

export interface RunningSetEvent extends RunningSetReport {
  readonly modelId: string;
}

const channel = diagnostics.channel(RUNNING_SET_CHANNEL);

/** A set does not stop waiting for its turn: its images' signals are checked at the next boundary. */
const NEVER_ABORTED = new AbortController().signal;

/** An `onReport` that publishes model `modelId`'s reports on {@link RUNNING_SET_CHANNEL}. */
export function publishRunningSet(modelId: string): (report: RunningSetReport) => void {
  return (report) => {
    if (channel.hasSubscribers) channel.publish({ modelId, ...report } satisfies RunningSetEvent);
  };
}

/**
 * The device the running sets of one replica share (services/worker/device-lock.ts): one model
 * call at a time, online callers before bulk ones, each kind in the order asked. A set keeps its
 * turn from one of its calls to the next unless another set waits whose call ranks as high (an
 * online call over a bulk one; equal: the one waiting goes first). So two busy models alternate
 * call by call, an online image of one model waits for at most one call of another, and a model
 * stepping online images is not interrupted by another model's bulk images.
 */
export interface DeviceTurns {
  /** Resolves with the release function once the device is the caller's. */
  acquire(signal: AbortSignal, priority: Priority): Promise<() => void>;
  /** Priority of the first caller waiting for the device; undefined when none waits. */
  readonly nextPriority: Priority | undefined;
}

export interface RunningSetOptions {
  /** Most images stepping at once (the deployment's max_batch_size). */
  readonly capacity: number;
  /** The replica's device, shared with other models' sets; absent: this set's calls need no turn. */
  readonly device?: DeviceTurns;
  /** Called after every step, on arrivals and when the set becomes idle. */
  readonly onReport?: (report: RunningSetReport) => void;
}

interface Entry<M> {
  readonly member: M;
  readonly seq: number;
  started: boolean;
  stepping: boolean;
  settle(result: M | Error): void;
}

export class RunningSet<M extends StepMember> {
  private readonly entries: Array<Entry<M>> = [];
  private nextSeq = 0;
  private looping = false;
  private counts = { joins: 0, leaves: 0, preemptions: 0 };
  /** Releases the device turn this set holds between its calls (with `options.device`). */
  private turn: (() => void) | undefined;

  constructor(private readonly model: StepModel<M>, private readonly options: RunningSetOptions) {
    if (!(Number.isInteger(options.capacity) && options.capacity >= 1)) throw new RangeError(`capacity must be an integer ≥ 1, got ${options.capacity}`);
  }

  /** Images stepping at the last boundary, and images held that did not. */
  get state(): { readonly occupied: number; readonly waiting: number } {
    const occupied = this.entries.filter((e) => e.stepping).length;
    return { occupied, waiting: this.entries.length - occupied };
  }

  /**
   * Adds the images; they join at the next step boundary. Resolves when every one of them has
   * left: with the member (its steps and finish done), or the Error it left with (its signal's
   * reason, or its model call's failure). Never rejects.
   */
  run(members: readonly M[]): Promise<Array<M | Error>> {
    const results = Promise.all(members.map((member) => new Promise<M | Error>((settle) => {
      this.entries.push({ member, seq: this.nextSeq++, started: false, stepping: false, settle });
    })));
    this.report(false);
    if (!this.looping) {
      this.looping = true;
      // From a microtask: batches handed over in the same turn join at the same first boundary.
      queueMicrotask(() => void this.loop());
    }
    return results;
  }

  private async loop(): Promise<void> {
    try {
      while (this.entries.length > 0) await this.boundary();
    } catch (err) {
      // Not reached by model failures (they fail their images): a bug in the loop itself.
      for (const e of this.entries.splice(0)) e.settle(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.turn?.();
      this.turn = undefined;
      this.looping = false;
      this.model.idle?.();
      this.report(false);
    }
  }

  private async boundary(): Promise<void> {
    for (const e of [...this.entries]) {
      if (e.member.signal.aborted) this.leave(e, abortReason(e.member.signal));
    }
    if (this.entries.length === 0) return;
    const plan = admit(this.entries.map((e) => ({ seq: e.seq, priority: e.member.priority, stepping: e.stepping, started: e.started })), this.options.capacity);
    const bySeq = new Map(this.entries.map((e) => [e.seq, e]));
    const chosen = plan.step.map((s) => bySeq.get(s)!);
    for (const e of this.entries) e.stepping = false;
    this.counts.preemptions += plan.preempted.length;
    const joining = chosen.filter((e) => !e.started);
    for (const e of chosen) {
      e.started = true;
      e.stepping = true;
    }
    this.counts.joins += joining.length;
    if (joining.length) await this.attempt(joining, (ms) => this.model.start(ms));
    const stepping = chosen.filter((e) => this.has(e) && !e.member.finished);
    const groups = new Map<string, Array<Entry<M>>>();
    for (const e of stepping) {
      const g = groups.get(e.member.key);
      if (g) g.push(e);
      else groups.set(e.member.key, [e]);
    }
    for (const group of groups.values()) await this.attempt(group, (ms) => this.model.step(ms));
    this.report(stepping.length > 0, stepping.length);
    const done = chosen.filter((e) => this.has(e) && e.member.finished);
    if (done.length) {
      await this.attempt(done, (ms) => this.model.finish(ms));
      for (const e of done) if (this.has(e)) this.leave(e, e.member);
    }
  }

  /** Runs model work for `entries` in a turn on the device; if it fails, they leave with the error. */
  private async attempt(entries: Array<Entry<M>>, work: (members: readonly M[]) => Promise<void>): Promise<void> {
    await this.takeTurn(entries.some((e) => e.member.priority === 'online') ? 'online' : 'bulk');
    try {
      await work(entries.map((e) => e.member));
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      for (const e of entries) if (this.has(e)) this.leave(e, error);
    }
  }

  /** Holds the device for a call of `priority` (see DeviceTurns): keeps the turn held, or gives it up to a waiter that ranks as high. */
  private async takeTurn(priority: Priority): Promise<void> {
    const device = this.options.device;
    if (!device) return;
    const waiting = device.nextPriority;
    if (this.turn && waiting !== undefined && !(priority === 'online' && waiting === 'bulk')) {
      this.turn();
      this.turn = undefined;
    }
    this.turn ??= await device.acquire(NEVER_ABORTED, priority);
  }

  private has(e: Entry<M>): boolean {
    return this.entries.includes(e);
  }

  private leave(e: Entry<M>, result: M | Error): void {
    this.entries.splice(this.entries.indexOf(e), 1);
    if (e.started) this.counts.leaves++;
    e.settle(result);
  }

  private report(stepped: boolean, occupied = this.state.occupied): void {
    const onReport = this.options.onReport;
    if (!onReport) return;
    const { joins, leaves, preemptions } = this.counts;
    this.counts = { joins: 0, leaves: 0, preemptions: 0 };
    onReport({ stepped, occupied, waiting: this.entries.length - occupied, joins, leaves, preemptions });
  }
}

/** The signal's reason when it is one of ours (a CancelledError naming the request or batch), else a CancelledError. */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof OrreryError ? reason : new CancelledError('between steps of a running set');
}
