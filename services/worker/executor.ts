/**
 * The replica's handle on its executor thread (executor-thread.ts): stages, ONNX Runtime and
 * sharp run there, so a long batch never stalls the main thread's heartbeats, NATS or /metrics.
 * One thread per replica; concurrent runs are allowed (the thread awaits them concurrently).
 *
 * Buffers cross the boundary as transferables: init images in, encoded outputs out. Errors cross
 * as {code, message} (errors.ts toWire/fromWire). If the thread dies, every pending call rejects
 * with ORRERY_ERR_STAGE_FAILED and the executor emits `crashed`: the replica should exit and let
 * its supervisor restart it.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { fromWire, OrreryError, type WireError } from '../common/errors.js';
import { knownStages, loadStage } from '../stages/registry.js';
import type { SessionLoadReport } from '../models/session-load-report.js';
import type { RunningSetEvent } from '../stages/running-set.js';
import type { LoadReport, StageContext, StageItem, StageOutput } from '../stages/stage.js';
import { canTransfer } from './transferable.js';

export interface ExecutorOptions {
  /** Stage name (services/stages/registry.ts). */
  readonly stage: string;
  readonly stageContext: StageContext;
  /** Loaded models kept (LRU beyond; exceeded only while more are in use). */
  readonly maxModels: number;
  /** Bytes of loaded models kept (LoadedModel.sizeBytes; LRU beyond); absent: unlimited. */
  readonly maxModelBytes?: number;
}

export interface ExecutorBatch {
  readonly batchId: string;
  readonly modelId: string;
  /** initImage buffers are handed over: transferred (detached here) when a view spans its whole ArrayBuffer, else copied. */
  readonly items: readonly StageItem[];
}

/** One item's outcome: its image, or why it failed alone (e.g. its request was cancelled). */
export type ExecutorItemResult = StageOutput | { readonly error: WireError };

export interface ExecutorRunResult {
  readonly results: ExecutorItemResult[];
  /** Time this batch waited for its model (0 when it was loaded). */
  readonly loadSeconds: number;
  /** Time the stage ran the batch. */
  readonly runSeconds: number;
}

export type ProgressListener = (itemIndex: number, step: number, totalSteps: number) => void;

export interface ExecutorEvents {
  /** `sizeBytes`: LoadedModel.sizeBytes, what the model counts against max_model_bytes_per_replica. */
  'model-loaded': [{ modelId: string; seconds: number; sizeBytes: number; report?: LoadReport }];
  'model-evicted': [{ modelId: string }];
  /** A session was created through the optimized-model cache (services/models/optimized-model-cache.ts). */
  'session-load': [SessionLoadReport];
  /** A loaded model's running set stepped, took images or went idle (continuous batching). */
  'running-set': [RunningSetEvent];
  /** The thread died; every pending call has been rejected. */
  crashed: [OrreryError];
}

export type ExecutorState = 'running' | 'closing' | 'stopped' | 'failed';

/** Messages to the thread. */
export type ToThread =
  | { type: 'run'; runId: number; batchId: string; modelId: string; items: readonly StageItem[] }
  | { type: 'load'; runId: number; modelId: string }
  | { type: 'cancel'; batchId: string; requestIds?: readonly string[] }
  | { type: 'close' };

/** Messages from the thread; model lists ride along so loadedModels() is current when events fire. */
export type FromThread =
  | { type: 'ready' }
  | { type: 'progress'; runId: number; index: number; step: number; total: number }
  | { type: 'result'; runId: number; results: ExecutorItemResult[]; loadSeconds: number; runSeconds: number }
  | { type: 'failed'; runId: number; error: WireError }
  | { type: 'model-loaded'; modelId: string; seconds: number; sizeBytes: number; loaded: string[]; loading?: string; report?: LoadReport }
  | { type: 'session-load'; report: SessionLoadReport }
  | { type: 'running-set'; event: RunningSetEvent }
  | { type: 'model-evicted'; modelId: string; loaded: string[]; loading?: string }
  | { type: 'models'; loaded: string[]; loading?: string }
  | { type: 'closed' };

/** The data of the thread at start (workerData). */
export interface ThreadInit {
  readonly stage: string;
  readonly stageContext: StageContext;
  readonly maxModels: number;
  readonly maxModelBytes?: number;
}

interface Pending {
  readonly batchId: string;
  readonly onProgress?: ProgressListener;
  resolve(result: ExecutorRunResult): void;
  reject(err: OrreryError): void;
}

/** How long close() waits for the thread to dispose its models before terminating it. */
const DISPOSE_TIMEOUT_MS = 10_000;

export class Executor extends EventEmitter<ExecutorEvents> {
  private stateValue: ExecutorState = 'running';
  private nextRunId = 1;
  private readonly pending = new Map<number, Pending>();
  private loaded: string[] = [];
  private loading: string | undefined;
  private closedByThread?: () => void;
  private readonly idleWaiters: Array<() => void> = [];
  private closing?: Promise<void>;

  private constructor(private readonly worker: Worker) {
    super();
  }

  /**
   * Spawns the thread and resolves once it is ready. Throws ConfigError for an unknown stage
   * (checked here, before any thread starts).
   */
  static async start(options: ExecutorOptions): Promise<Executor> {
    if (!knownStages().includes(options.stage)) loadStage(options.stage);
    const init: ThreadInit = {
      stage: options.stage, stageContext: options.stageContext, maxModels: options.maxModels,
      ...(options.maxModelBytes !== undefined ? { maxModelBytes: options.maxModelBytes } : {}),
    };
    const worker = new Worker(path.join(__dirname, 'executor-thread.js'), { workerData: init, name: `executor-${options.stage}` });
    const executor = new Executor(worker);
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number) => reject(new OrreryError('ORRERY_ERR_STAGE_FAILED', `executor thread exited during start (code ${code})`));
      const onError = (err: Error) => reject(new OrreryError('ORRERY_ERR_STAGE_FAILED', `executor thread failed to start: ${err.message}`, { cause: err }));
      worker.once('exit', onExit).once('error', onError).once('message', (m: FromThread) => {
        worker.off('exit', onExit).off('error', onError);
        if (m.type === 'ready') resolve();
        else reject(new OrreryError('ORRERY_ERR_STAGE_FAILED', `unexpected first message ${m.type} from executor thread`));
      });
    });
    worker.on('message', (m: FromThread) => executor.onMessage(m));
    worker.on('error', (err) => executor.fail(err));
    worker.on('messageerror', (err) => executor.fail(err));
    worker.on('exit', (code) => {
      if (executor.stateValue === 'running' || executor.stateValue === 'closing') executor.fail(new Error(`exited with code ${code}`));
    });
    return executor;
  }

  get state(): ExecutorState {
    return this.stateValue;
  }

  /**
   * Runs one batch on `batch.modelId` (loading it if needed). Resolves with one result per item, in
   * order; rejects with the batch's error (e.g. ORRERY_ERR_CANCELLED, _MODEL_NOT_FOUND) if the
   * whole batch failed. `onProgress` is called on this thread.
   */
  run(batch: ExecutorBatch, onProgress?: ProgressListener): Promise<ExecutorRunResult> {
    const runId = this.nextRunId++;
    const transfer = new Set<ArrayBuffer>();
    const items = batch.items.map((it) => (it.initImage ? { ...it, initImage: transferable(it.initImage, transfer) } : it));
    return this.call(runId, { batchId: batch.batchId, onProgress }, () =>
      this.worker.postMessage({ type: 'run', runId, batchId: batch.batchId, modelId: batch.modelId, items } satisfies ToThread, [...transfer]));
  }

  /** Loads a model ahead of its first batch (a control message). Resolves when it is loaded. */
  async load(modelId: string): Promise<void> {
    const runId = this.nextRunId++;
    await this.call(runId, { batchId: '' }, () => this.worker.postMessage({ type: 'load', runId, modelId } satisfies ToThread));
  }

  /**
   * Cancels a batch: all of it, or only the items of `requestIds` (their results become
   * ORRERY_ERR_CANCELLED; the rest of the batch completes). Unknown batch ids are ignored.
   */
  cancel(batchId: string, requestIds?: readonly string[]): void {
    if (this.stateValue !== 'running' && this.stateValue !== 'closing') return;
    this.worker.postMessage({ type: 'cancel', batchId, requestIds } satisfies ToThread);
  }

  /** Models loaded in the thread, most recently used first. */
  loadedModels(): string[] {
    return [...this.loaded];
  }

  /** A model being loaded, if any. */
  loadingModel(): string | undefined {
    return this.loading;
  }

  /**
   * Stops taking work, waits for running batches (at most `timeoutMs`, default 60 s), disposes
   * the models and ends the thread. Every call returns the same promise; safe after a crash.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.timeoutMs ?? 60_000);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    if (this.stateValue === 'running') {
      this.stateValue = 'closing';
      if (this.pending.size > 0) await withTimeout(new Promise<void>((resolve) => this.idleWaiters.push(resolve)), timeoutMs);
    }
    // Checked again: the thread may have crashed while batches were finishing.
    if (this.stateValue === 'closing') {
      const closed = new Promise<void>((resolve) => { this.closedByThread = resolve; });
      this.worker.postMessage({ type: 'close' } satisfies ToThread);
      await withTimeout(closed, DISPOSE_TIMEOUT_MS);
      this.stateValue = 'stopped';
    }
    await this.worker.terminate();
    this.rejectAll(new OrreryError('ORRERY_ERR_STAGE_FAILED', 'executor closed before the batch finished'));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private call(runId: number, p: Omit<Pending, 'resolve' | 'reject'>, send: () => void): Promise<ExecutorRunResult> {
    if (this.stateValue !== 'running') {
      const code = this.stateValue === 'failed' ? 'ORRERY_ERR_STAGE_FAILED' : 'ORRERY_ERR_REPLICA_DRAINING';
      return Promise.reject(new OrreryError(code, `executor is ${this.stateValue}`));
    }
    return new Promise((resolve, reject) => {
      this.pending.set(runId, { ...p, resolve, reject });
      send();
    });
  }

  private onMessage(m: FromThread): void {
    switch (m.type) {
      case 'progress': {
        const listener = this.pending.get(m.runId)?.onProgress;
        try {
          listener?.(m.index, m.step, m.total);
        } catch {
          // A progress listener's failure must not fail the batch; progress is best effort.
        }
        return;
      }
      case 'result':
      case 'failed': {
        const p = this.pending.get(m.runId);
        if (!p) return;
        this.pending.delete(m.runId);
        if (m.type === 'result') p.resolve({ results: m.results, loadSeconds: m.loadSeconds, runSeconds: m.runSeconds });
        else p.reject(fromWire(m.error));
        if (this.pending.size === 0) this.idleWaiters.splice(0).forEach((w) => w());
        return;
      }
      case 'model-loaded':
      case 'model-evicted':
      case 'models':
        this.loaded = m.loaded;
        this.loading = m.loading;
        if (m.type === 'model-loaded') this.emit('model-loaded', { modelId: m.modelId, seconds: m.seconds, sizeBytes: m.sizeBytes, ...(m.report ? { report: m.report } : {}) });
        if (m.type === 'model-evicted') this.emit('model-evicted', { modelId: m.modelId });
        return;
      case 'session-load':
        this.emit('session-load', m.report);
        return;
      case 'running-set':
        this.emit('running-set', m.event);
        return;
      case 'closed':
        this.closedByThread?.();
        return;
      case 'ready':
        return;
    }
  }

  private fail(cause: unknown): void {
    if (this.stateValue === 'failed' || this.stateValue === 'stopped') return;
    this.stateValue = 'failed';
    const why = cause instanceof Error ? cause.message : String(cause);
    const err = new OrreryError('ORRERY_ERR_STAGE_FAILED', `executor thread crashed: ${why}`, { cause });
    this.loaded = [];
    this.loading = undefined;
    this.rejectAll(err);
    this.closedByThread?.();
    this.emit('crashed', err);
  }

  private rejectAll(err: OrreryError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    this.idleWaiters.splice(0).forEach((w) => w());
  }
}

/**
 * `bytes` in a form that can be transferred: itself when it spans its whole ArrayBuffer, else a
 * copy of just its bytes (transferring a view's buffer would detach memory the caller shares,
 * e.g. a NATS read buffer, and cloning would copy all of it).
 */
function transferable(bytes: Uint8Array, transfer: Set<ArrayBuffer>): Uint8Array {
  // A buffer Node cannot transfer (transferable.ts) is copied too.
  const whole = canTransfer(bytes.buffer) && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  // Not bytes.slice(): on a Node Buffer that is a view of the same memory, and transferring it
  // would detach the NATS message it came from (its reply subject included).
  const out = whole ? bytes : new Uint8Array(bytes);
  transfer.add(out.buffer as ArrayBuffer);
  return out;
}

async function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.min(ms, 2 ** 31 - 1)); })]);
  clearTimeout(timer);
}
