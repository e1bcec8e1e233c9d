/**
 * `make bench`: runs every `bench/<name>.bench.ts` (compiled to dist/bench/<name>.bench.js) in
 * name order, or only those whose name contains one of the arguments
 * (`node dist/bench/run.js core-serving`); an argument equal to a benchmark's name selects only
 * that one (`sdxl` runs sdxl, not sdxl-variants). Each exports `run(): Promise<BenchResult>`; this
 * writes its results to bench/results/<name>.{json,md} and prints the checks.
 *
 * Exit status: 0 when every selected benchmark ran (missed targets are results, not errors);
 * 1 when one failed to run or the filter matched nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { machineInfo } from './lib/machine.js';
import { writeResults } from './lib/report.js';
import type { BenchModule } from './lib/types.js';

async function main(): Promise<number> {
  const filters = process.argv.slice(2);
  const all = fs.readdirSync(__dirname).filter((f) => f.endsWith('.bench.js')).map((f) => f.slice(0, -'.bench.js'.length)).sort();
  const selected = filters.length ? all.filter((n) => filters.some((f) => (all.includes(f) ? n === f : n.includes(f)))) : all;
  if (selected.length === 0) {
    process.stderr.write(`bench: nothing matches ${filters.join(' ')} (known: ${all.join(', ') || 'none'})\n`);
    return 1;
  }
  let failed = 0;
  for (const name of selected) {
    process.stdout.write(`bench: ${name} ...\n`);
    const machine = machineInfo();
    const started = performance.now();
    try {
      const mod = require(path.join(__dirname, `${name}.bench.js`)) as BenchModule;
      const result = await mod.run();
      const seconds = (performance.now() - started) / 1000;
      const files = writeResults(result, machine, seconds);
      for (const c of result.checks) process.stdout.write(`  ${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.measured} ${c.unit} (target ${c.target})\n`);
      process.stdout.write(`bench: ${name} done in ${Math.round(seconds)} s; results in ${path.relative(process.cwd(), files.md)} and .json\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`bench: ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    }
  }
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`bench: ${String(err)}\n`);
  process.exit(1);
});
