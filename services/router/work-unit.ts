/**
 * A work unit: one image of one pipeline stage of one request — the thing the scheduler queues
 * and batches. It settles exactly once; a late or duplicate answer for a settled unit is dropped,
 * which is what keeps a retried batch from answering a request twice.
 */
import { CancelledError, OrreryError } from '../common/errors.js';
import type { QcVerdictData } from '../common/qc-verdict.js';
import { paramsJson, type Priority, type WorkItemData } from '../common/work-item.js';

export interface UnitResult {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly mimeType: string;
  readonly replicaId: string;
  readonly queueSeconds: number;
  readonly runSeconds: number;
  /** The quality gate's verdict on this image, when its stage checked it (WorkItemData.qc). */
  readonly qc?: QcVerdictData;
}

/** Callbacks a streaming request uses to see its work move. */
export interface UnitObserver {
  readonly started?: (replicaId: string, batchSize: number) => void;
  readonly progress?: (step: number, totalSteps: number) => void;
}

export class WorkUnit {
  /** Times this unit was sent to a replica that was then lost (DESIGN §4: retried elsewhere once). */
  lostAttempts = 0;
  enqueuedAtMs = 0;
  /** When the unit was first queued, for the queue-wait metric and timings. */
  readonly createdAtMs: number;
  private settledFlag = false;
  readonly result: Promise<UnitResult>;
  private resolveFn!: (r: UnitResult) => void;
  private rejectFn!: (e: OrreryError) => void;

  constructor(
    readonly deployment: string,
    readonly modelId: string,
    /** Batch key: units with equal keys may share a batch. */
    readonly key: string,
    /** What the stage runs (sent to the replica as is, services/common/work-item.ts). */
    readonly input: WorkItemData,
    /** Absolute deadline in ms since the epoch; 0 = none. */
    readonly deadlineMs: number,
    /** Aborts when the request is cancelled or its deadline passes. */
    readonly signal: AbortSignal,
    nowMs: number,
    readonly observer: UnitObserver = {},
  ) {
    this.createdAtMs = nowMs;
    this.enqueuedAtMs = nowMs;
    this.result = new Promise<UnitResult>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    // The request owner always awaits `result`; this keeps an early rejection from being reported as unhandled.
    this.result.catch(() => undefined);
    // Cancellation and deadlines reach the unit wherever it is (queued or in a batch). One
    // listener on the signal per unit: the queue and the batch hook in through onAbort().
    const onAbort = () => {
      this.fail(signal.reason instanceof OrreryError ? signal.reason : new CancelledError('by the client'));
      for (const hook of [...this.abortHooks]) hook();
    };
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener('abort', onAbort, { once: true });
      void this.result.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
  }

  private readonly abortHooks = new Set<() => void>();

  /**
   * Calls `hook` (after the unit has failed) if the request is cancelled or its deadline passes
   * while the hook is registered. Returns the function that unregisters it.
   */
  onAbort(hook: () => void): () => void {
    this.abortHooks.add(hook);
    return () => this.abortHooks.delete(hook);
  }

  /** Online units are batched and run before bulk ones (work-item.ts Priority). */
  get priority(): Priority {
    return this.input.priority ?? 'online';
  }

  get settled(): boolean {
    return this.settledFlag;
  }

  /** Delivers the result; returns false (and does nothing) if the unit had already settled. */
  succeed(r: UnitResult): boolean {
    if (this.settledFlag) return false;
    this.settledFlag = true;
    this.resolveFn(r);
    return true;
  }

  fail(err: OrreryError): boolean {
    if (this.settledFlag) return false;
    this.settledFlag = true;
    this.rejectFn(err);
    return true;
  }
}

/**
 * The batch key: what must be equal for images to share one model call — model, size, steps,
 * stage parameters, and for image inputs the strength (it sets how many steps run).
 */
export function batchKey(modelId: string, input: WorkItemData): string {
  return [modelId, `${input.width}x${input.height}`, input.steps, input.initImage ? `init@${input.strength}` : 'noinit', paramsJson(input.params)].join('|');
}
