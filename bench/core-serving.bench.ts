/**
 * The core serving issue's benchmarks: router overhead, the throughput ceiling of one router, and
 * batching efficiency under a GPU-like cost model. Each part starts its own real cluster.
 * `BENCH_PARTS=overhead,throughput` runs only some parts (while working on one).
 */
import { batchingEfficiency } from './core-serving/batching.js';
import { routerOverhead } from './core-serving/overhead.js';
import { throughputCeiling } from './core-serving/throughput.js';
import type { BenchResult } from './lib/types.js';

const PARTS = { overhead: routerOverhead, throughput: throughputCeiling, batching: batchingEfficiency };

export async function run(): Promise<BenchResult> {
  const wanted = process.env.BENCH_PARTS?.split(',') ?? Object.keys(PARTS);
  const results = [];
  for (const [name, part] of Object.entries(PARTS)) {
    if (!wanted.includes(name)) continue;
    process.stdout.write(`  part: ${name}\n`);
    results.push([name, await part()] as const);
  }
  return {
    name: 'core-serving',
    title: 'Core serving: router overhead, throughput ceiling, batching efficiency',
    checks: results.flatMap(([, r]) => r.checks),
    tables: results.flatMap(([, r]) => r.tables),
    notes: results.flatMap(([, r]) => r.notes),
    data: Object.fromEntries(results.map(([name, r]) => [name, r.data])),
  };
}
