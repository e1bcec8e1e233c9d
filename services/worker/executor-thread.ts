/**
 * Entry point of the executor thread (worker_threads), started by executor.ts. Owns the stage,
 * the model cache and every running batch; talks to the main thread only through the messages
 * typed in executor.ts. Batches run concurrently, but their model work takes turns on the
 * replica's device (device-lock.ts): a batch waits for it after its model is loaded and frees it
 * when its stage calls computeDone (before encoding its images) or returns. A continuous-batching
 * deployment (StageContext.batching) takes no device lock per batch: each loaded model's running
 * set (services/stages/running-set.ts) merges concurrent batches step by step and takes the lock
 * per model call (StageContext.device), so the sets of two loaded models take turns on the device.
 */
import diagnostics from 'node:diagnostics_channel';
import { parentPort, workerData } from 'node:worker_threads';
import { CancelledError, OrreryError, toWire } from '../common/errors.js';
import { SESSION_LOAD_CHANNEL, type SessionLoadReport } from '../models/session-load-report.js';
import { loadStage } from '../stages/registry.js';
import { RUNNING_SET_CHANNEL, type RunningSetEvent } from '../stages/running-set.js';
import type { RunContext, StageOutput } from '../stages/stage.js';
import type { ExecutorItemResult, FromThread, ThreadInit, ToThread } from './executor.js';
import { DeviceLock } from './device-lock.js';
import { ModelCache, type ModelLease } from './model-cache.js';
import { canTransfer } from './transferable.js';

if (!parentPort) throw new Error('executor-thread.js must run as a worker thread (see executor.ts)');
const port = parentPort;
const init = workerData as ThreadInit;
const stage = loadStage(init.stage);

function post(msg: FromThread, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

const continuous = init.stageContext.batching === 'continuous';
/** The replica's device: batches take it whole; continuous running sets take it per model call. */
const device = new DeviceLock();

const cache: ModelCache = new ModelCache({
  maxModels: init.maxModels,
  ...(init.maxModelBytes !== undefined ? { maxBytes: init.maxModelBytes } : {}),
  load: (modelId) => stage.load(modelId, continuous ? { ...init.stageContext, device } : init.stageContext),
  onLoad: (modelId, seconds, model) => post({
    type: 'model-loaded', modelId, seconds, sizeBytes: model.sizeBytes, loaded: cache.loadedModels(), loading: cache.loadingModel(),
    ...(model.loadReport ? { report: { ...model.loadReport, loraModulesUnmatched: [...model.loadReport.loraModulesUnmatched] } } : {}),
  }),
  onEvict: (modelId) => post({ type: 'model-evicted', modelId, loaded: cache.loadedModels(), loading: cache.loadingModel() }),
  onChange: () => post({ type: 'models', loaded: cache.loadedModels(), loading: cache.loadingModel() }),
});

// Stages create sessions through the optimized-model cache, which reports each load here (stages
// have no logger); the replica logs and counts them.
diagnostics.subscribe(SESSION_LOAD_CHANNEL, (report) => post({ type: 'session-load', report: report as SessionLoadReport }));
// Running sets report every step (occupancy, joins, leaves, preemptions) for heartbeats and metrics.
diagnostics.subscribe(RUNNING_SET_CHANNEL, (event) => post({ type: 'running-set', event: event as RunningSetEvent }));

interface Run {
  readonly batchId: string;
  readonly requestIds: readonly string[];
  readonly batch: AbortController;
  readonly items: readonly AbortController[];
}
const runs = new Map<number, Run>();

/** `p`, or a CancelledError as soon as `signal` aborts (a lease that arrives late is released). */
function unlessAborted(p: Promise<ModelLease>, signal: AbortSignal, what: string): Promise<ModelLease> {
  if (signal.aborted) {
    void p.then((l) => l.release(), () => undefined);
    return Promise.reject(new CancelledError(what));
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      void p.then((l) => l.release(), () => undefined);
      reject(new CancelledError(what));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((lease) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) lease.release();
      else resolve(lease);
    }, (err: unknown) => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

/**
 * Encoded outputs leave as transferables. A view that does not span its buffer (a pooled Buffer)
 * is copied first so the transfer cannot take memory that other objects share (into new memory:
 * a Buffer's slice() would be a view again). ArrayBuffers that Node cannot transfer (sharp's
 * external memory) stay off the transfer list, and postMessage copies them (transferable.ts).
 */
function transferOut(out: StageOutput, transfer: ArrayBuffer[]): StageOutput {
  let data = out.data;
  if (!(data.buffer instanceof ArrayBuffer) || data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = new Uint8Array(data);
  if (canTransfer(data.buffer) && !transfer.includes(data.buffer)) transfer.push(data.buffer);
  return { data, width: out.width, height: out.height, mimeType: out.mimeType, ...(out.qc ? { qc: out.qc } : {}) };
}

async function run(msg: Extract<ToThread, { type: 'run' }>): Promise<void> {
  const { runId, batchId, modelId, items } = msg;
  const state: Run = {
    batchId, requestIds: items.map((it) => it.requestId),
    batch: new AbortController(), items: items.map(() => new AbortController()),
  };
  runs.set(runId, state);
  const started = performance.now();
  let lease: ModelLease | undefined;
  let releaseDevice: (() => void) | undefined;
  try {
    lease = await unlessAborted(cache.acquire(modelId), state.batch.signal, `batch ${batchId} while loading ${modelId}`);
    const loadSeconds = (performance.now() - started) / 1000;
    // A batch with any online item is online: it goes ahead of waiting bulk-only batches.
    if (!continuous) releaseDevice = await device.acquire(state.batch.signal, items.some((it) => (it.priority ?? 'online') === 'online') ? 'online' : 'bulk');
    // An item's signal also aborts with the batch, so stages need to watch only one per item.
    const itemSignals = state.items.map((c) => AbortSignal.any([state.batch.signal, c.signal]));
    const ctx: RunContext = {
      signal: state.batch.signal,
      itemSignal: (i) => itemSignals[i] ?? state.batch.signal,
      progress: (index, step, total) => post({ type: 'progress', runId, index, step, total }),
      ...(releaseDevice ? { computeDone: releaseDevice } : {}),
    };
    const runStarted = performance.now();
    const outputs = await lease.model.run(items, ctx);
    const runSeconds = (performance.now() - runStarted) / 1000;
    if (state.batch.signal.aborted) throw new CancelledError(`batch ${batchId}`);
    if (outputs.length !== items.length) {
      throw new OrreryError('ORRERY_ERR_STAGE_FAILED', `stage ${stage.name} returned ${outputs.length} results for ${items.length} items`);
    }
    const transfer: ArrayBuffer[] = [];
    const results = outputs.map((out, i): ExecutorItemResult => {
      if (out instanceof Error) return { error: toWire(out) };
      // Cancelled after the stage made it: the result is discarded, as RunContext promises.
      if (state.items[i]?.signal.aborted) return { error: toWire(new CancelledError(`request ${items[i]?.requestId}`)) };
      return transferOut(out, transfer);
    });
    post({ type: 'result', runId, results, loadSeconds, runSeconds }, transfer);
  } catch (err) {
    post({ type: 'failed', runId, error: toWire(err) });
  } finally {
    releaseDevice?.();
    lease?.release();
    runs.delete(runId);
  }
}

async function load(runId: number, modelId: string): Promise<void> {
  const started = performance.now();
  try {
    await cache.get(modelId);
    post({ type: 'result', runId, results: [], loadSeconds: (performance.now() - started) / 1000, runSeconds: 0 });
  } catch (err) {
    post({ type: 'failed', runId, error: toWire(err) });
  }
}

function cancel(batchId: string, requestIds?: readonly string[]): void {
  for (const r of runs.values()) {
    if (r.batchId !== batchId) continue;
    if (!requestIds) {
      r.batch.abort(new CancelledError(`batch ${batchId}`));
      continue;
    }
    r.requestIds.forEach((id, i) => {
      if (requestIds.includes(id)) r.items[i]?.abort(new CancelledError(`request ${id}`));
    });
    // Nobody waits for any item any more: stop the whole batch so the replica's slot frees now.
    if (r.items.every((c) => c.signal.aborted)) r.batch.abort(new CancelledError(`batch ${batchId}: every request cancelled`));
  }
}

port.on('message', (msg: ToThread) => {
  switch (msg.type) {
    case 'run': void run(msg); return;
    case 'load': void load(msg.runId, msg.modelId); return;
    case 'cancel': cancel(msg.batchId, msg.requestIds); return;
    case 'close':
      void cache.close().finally(() => post({ type: 'closed' }));
      return;
  }
});

post({ type: 'ready' });
