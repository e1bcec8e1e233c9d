/**
 * Step-level continuous batching (issue 12) against request-level batching, on real processes
 * (nats-server, router, synthetic replicas with the per-step cost model calibrated on an H200):
 * 1. `load`: Poisson arrivals at 50/80/95 % of capacity, 30 steps, one and four replicas — p50/p99
 *    time to image and throughput, both modes on the same seeded arrivals, beside discrete-event
 *    models of both (bench/continuous-batching/step-model.ts). Targets: p50 ≥ 25 % lower at
 *    50–80 % load; throughput not lower at 95 %.
 * 2. `mixed`: an online image's wait before its first step while bulk images fill the replica —
 *    target: at most one UNet call + transport.
 * 3. `dispatch`: router dispatch policies in the step model alone (no processes): why targets
 *    were missed and what closes them.
 * `BENCH_PARTS=load`, `mixed` or `dispatch` runs one part; BENCH_CB_STEP_SCALE (0.25) scales the step costs,
 * BENCH_CB_RUN_S (60) is the arrival time per load point, BENCH_CB_WAITING_IMAGES (1) the continuous
 * deployments' max_waiting_images (0: the room-only dispatch from before).
 */
import { loadPart } from './continuous-batching/load.js';
import { dispatchPart } from './continuous-batching/dispatch.js';
import { mixedPart } from './continuous-batching/mixed.js';
import { runParts } from './lib/parts.js';
import type { BenchResult } from './lib/types.js';

const PARTS = { load: loadPart, mixed: mixedPart, dispatch: dispatchPart };

export function run(): Promise<BenchResult> {
  return runParts('continuous-batching', 'Continuous (step-level) batching vs request-level batching', PARTS);
}
