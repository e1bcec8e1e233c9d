/**
 * The stage interface: what a deployment's replicas run. A stage loads models (by model id) and
 * runs batches of work items on a loaded model. Stages execute inside the replica's executor
 * thread (services/worker/executor-thread.ts), never on the replica's main thread, so a long
 * ONNX Runtime call cannot stall heartbeats, NATS or /metrics.
 *
 * SDXL, img2img and the upscaler plug in here the same way `synthetic` and `texture` do.
 */
import type { QcVerdictData } from '../common/qc-verdict.js';
import type { DeviceTurns } from './running-set.js';
import type { WorkItemData } from '../common/work-item.js';

/**
 * One image to produce: the work item the router built (services/common/work-item.ts), the same
 * type on every hop. Bytes are owned by the stage for the duration of the call.
 */
export type StageItem = WorkItemData;

export interface StageOutput {
  /** Encoded image bytes. */
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly mimeType: string;
  /** The quality gate's verdict, when the item asked for the check (StageItem.qc). */
  readonly qc?: QcVerdictData;
}

export interface RunContext {
  /** Aborts when the whole batch is cancelled or its deadline passes. */
  readonly signal: AbortSignal;
  /** Aborts when one item's request is cancelled (the item's result is then discarded). */
  itemSignal(index: number): AbortSignal;
  /** Reports progress of item `index` (e.g. a denoising step). Cheap; may be called often. */
  progress(index: number, step: number, totalSteps: number): void;
  /**
   * The batch's model work is over (its last model call returned): the replica may start the
   * next batch's model work while this one encodes its outputs (services/worker/device-lock.ts).
   * Optional to call — the end of run() implies it — and idempotent.
   */
  computeDone?(): void;
}

/** A LoRA fused at load: modules fused, and those the graph lacked (with `lora_unmatched: warn`). */
export interface LoadReport {
  readonly loraFile?: string;
  readonly loraModulesFused: number;
  readonly loraModulesUnmatched: readonly string[];
}

export interface LoadedModel {
  readonly modelId: string;
  /** Approximate bytes held (weights, sessions), for metrics and memory budgets. */
  readonly sizeBytes: number;
  /** What the load did beyond reading the model (a fused LoRA), for the replica's logs and metrics. */
  readonly loadReport?: LoadReport;
  /**
   * Runs one batch. Returns one entry per item, in order: an output, or an Error for an item that
   * failed alone (e.g. its request was cancelled). Throws if the whole batch failed.
   */
  run(items: readonly StageItem[], ctx: RunContext): Promise<Array<StageOutput | Error>>;
  dispose(): Promise<void>;
}

export interface StageContext {
  /** The deployment's `options` mapping from the config. */
  readonly options: Readonly<Record<string, unknown>>;
  /** Root of the model repository (a directory; a PVC in Kubernetes). */
  readonly modelRepository: string;
  /**
   * The deployment's `batching` (default `request`). `continuous` (stages that step: `sdxl`,
   * `synthetic`): each loaded model keeps a running set (running-set.ts) that run() puts its items
   * into; concurrent run() calls share it, and the executor takes no device lock for whole
   * batches: the sets take turns on `device` call by call instead.
   */
  readonly batching?: 'request' | 'continuous';
  /** The deployment's max_batch_size: with `continuous`, the images a step holds. */
  readonly maxBatchSize?: number;
  /**
   * With `continuous`: the replica's device (its executor thread's device lock), which the running
   * sets of all its loaded models share, one model call at a time. Set by the executor thread.
   */
  readonly device?: DeviceTurns;
}

export interface Stage {
  readonly name: string;
  /** Loads a model. Throws OrreryError(ORRERY_ERR_MODEL_LOAD_FAILED / _MODEL_NOT_FOUND) on failure. */
  load(modelId: string, ctx: StageContext): Promise<LoadedModel>;
}
