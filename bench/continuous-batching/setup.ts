/**
 * What the continuous-batching benchmark runs: synthetic replicas with issue 12's per-step cost
 * model (an SDXL UNet call at 1536x640 on an H200: 79 ms + 7.6 ms per row up to 8 rows, 270 ms at
 * 16 rows; rows = 2 × images with guidance), scaled by BENCH_CB_STEP_SCALE so a run fits in
 * minutes; `max_batch_size` 4 (DESIGN §6), 30 steps.
 */
import { DEFAULT_STEP_COST_MS, stepCostAt } from '../../services/stages/synthetic-steps.js';
import type { StepModelOptions } from './step-model.js';

export type Mode = 'request' | 'continuous';

const stepTimeScale = Number(process.env.BENCH_CB_STEP_SCALE ?? 0.25);
const maxBatch = 4;
const steps = 30;
const stepMs = (rows: number) => stepCostAt(DEFAULT_STEP_COST_MS, rows) * stepTimeScale;

export const CB = {
  modes: ['request', 'continuous'] as readonly Mode[],
  replicaCounts: [1, 4] as readonly number[],
  loads: [0.5, 0.8, 0.95] as readonly number[],
  stepTimeScale,
  maxBatch,
  steps,
  /** Images per second of one replica whose running set is always full. */
  capacityPerReplicaPerS: (maxBatch * 1000) / (steps * stepMs(2 * maxBatch)),
  runMs: Number(process.env.BENCH_CB_RUN_S ?? 60) * 1000,
  warmupMs: 5_000,
  /** Client deadline: long enough that queueing at 95 % load is measured, not cut off. */
  deadlineMs: 120_000,
  /** Request-level batch wait: the router's default. */
  batchWaitTimeoutMs: 10,
  /** Continuous: max_waiting_images (BENCH_CB_WAITING_IMAGES; default 1, the deployment default; 0: room only, as before). */
  waitingImages: Number(process.env.BENCH_CB_WAITING_IMAGES ?? 1),
} as const;

/** One UNet call over a full running set (ms, scaled). */
export const fullStepMs = (): number => stepMs(2 * CB.maxBatch);
/** One UNet call over one image (ms, scaled). */
export const aloneStepMs = (): number => stepMs(2);

/** The step-model options of bench/continuous-batching/step-model.ts for one replica. */
export const modelOptions = (): StepModelOptions => ({ steps: CB.steps, maxBatch: CB.maxBatch, replicas: 1, stepMs, waitMs: CB.batchWaitTimeoutMs });

/**
 * A synthetic deployment with the per-step cost model (options `step_cost_ms` and
 * `step_time_scale` of the synthetic stage); `progress` makes it report every step.
 */
export function deployment(mode: Mode, replicas: number, progress: boolean): object {
  return {
    stage: 'synthetic', models: ['sdxl-sim'], replicas, batching: mode, max_batch_size: CB.maxBatch,
    batch_wait_timeout_ms: CB.batchWaitTimeoutMs, max_ongoing_batches: 2, max_queued_requests: 100_000, default_steps: CB.steps,
    ...(mode === 'continuous' ? { max_waiting_images: CB.waitingImages } : {}),
    options: { step_cost_ms: DEFAULT_STEP_COST_MS, step_time_scale: CB.stepTimeScale, progress },
  };
}
