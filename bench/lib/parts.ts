/**
 * A benchmark made of parts: `BENCH_PARTS=a,b` in the environment runs only those (while working
 * on one); without it every part runs, in order. Their checks, tables, notes and data are joined.
 */
import type { BenchResult } from './types.js';

export type PartResult = Pick<BenchResult, 'checks' | 'tables' | 'notes' | 'data'>;

export async function runParts(name: string, title: string, parts: Record<string, () => Promise<PartResult>>): Promise<BenchResult> {
  const wanted = process.env.BENCH_PARTS?.split(',') ?? Object.keys(parts);
  const results: Array<readonly [string, PartResult]> = [];
  for (const [part, run] of Object.entries(parts)) {
    if (!wanted.includes(part)) continue;
    process.stdout.write(`  part: ${part}\n`);
    results.push([part, await run()] as const);
  }
  return {
    name,
    title,
    checks: results.flatMap(([, r]) => r.checks),
    tables: results.flatMap(([, r]) => r.tables),
    notes: results.flatMap(([, r]) => r.notes),
    data: Object.fromEntries(results.map(([part, r]) => [part, r.data])),
  };
}
