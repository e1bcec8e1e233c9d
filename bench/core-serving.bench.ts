/**
 * The core serving issue's benchmarks: router overhead, the throughput ceiling of one router, and
 * batching efficiency under a GPU-like cost model. Each part starts its own real cluster.
 * `BENCH_PARTS=overhead,throughput` runs only some parts (while working on one).
 */
import { batchingEfficiency } from './core-serving/batching.js';
import { routerOverhead } from './core-serving/overhead.js';
import { throughputCeiling } from './core-serving/throughput.js';
import { runParts } from './lib/parts.js';
import type { BenchResult } from './lib/types.js';

const PARTS = { overhead: routerOverhead, throughput: throughputCeiling, batching: batchingEfficiency };

export function run(): Promise<BenchResult> {
  return runParts('core-serving', 'Core serving: router overhead, throughput ceiling, batching efficiency', PARTS);
}
