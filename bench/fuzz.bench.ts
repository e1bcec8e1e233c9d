/**
 * Mutation fuzzing of GenerateRequest at scale: 20,000 valid requests mutated field-wise and
 * byte-wise (test/support/generate-request-fuzz.ts) sent as raw bytes to a real router with two
 * synthetic replicas. Checks: every answer is OK or a non-INTERNAL status naming a field
 * (INTERNAL only for undecodable bytes), the router and deployment stay SERVING, no process logs
 * an escaped error, and the router's memory after the run is near where it started.
 * The integration test (test/integration/fuzz-generate-request.test.ts) runs 1,000 of the same cases.
 */
import fs from 'node:fs';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { checkHealth, healthClient } from '../services/cli/client.js';
import { fuzzCases } from '../test/support/generate-request-fuzz.js';
import { ESCAPED_ERROR, runFuzz } from '../test/support/fuzz-runner.js';
import { lcg } from '../test/support/rng.js';
import { benchConfig, startBenchCluster } from './lib/bench-cluster.js';
import type { BenchResult, Check } from './lib/types.js';

const CASES = Number(process.env.FUZZ_CASES ?? 20_000);
const SEED = 20261207;
const CONCURRENCY = 16;
/** The last cases again on GenerateStream (same edge, its own way of sending a status). */
const STREAM_CASES = Math.min(CASES, 2000);

/** Resident set size of a process in MiB (Linux /proc). */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : Number.NaN;
}

export async function run(): Promise<BenchResult> {
  const cases = fuzzCases(CASES, lcg(SEED));
  const c = await startBenchCluster(benchConfig({ synthetic: { stage: 'synthetic', models: ['syn-a', 'syn-b'], replicas: 2, max_batch_size: 8, options: {} } }));
  let keepLogs = true;
  try {
    const routerPid = c.pids.router[0]!;
    // RSS after each quarter: the first half grows the heap to its working size (how far depends
    // on the machine's speed); a leak shows as growth over the second half.
    const rss = [rssMiB(routerPid)];
    const t0 = performance.now();
    const outcomes = [];
    const quarter = Math.ceil(CASES / 4);
    for (let i = 0; i < CASES; i += quarter) {
      outcomes.push(...(await runFuzz(c.cluster.grpcAddress, cases.slice(i, i + quarter), { concurrency: CONCURRENCY, deadlineMs: 30_000 })));
      rss.push(rssMiB(routerPid));
    }
    const seconds = (performance.now() - t0) / 1000;
    const streamOutcomes = await runFuzz(c.cluster.grpcAddress, cases.slice(-STREAM_CASES), { concurrency: CONCURRENCY, deadlineMs: 30_000, method: 'GenerateStream' });
    const streamFailed = streamOutcomes.filter((o) => !o.pass);
    const rssBefore = rss[2]!;
    const rssAfter = rss[rss.length - 1]!;
    const health = healthClient(c.cluster.grpcAddress);
    const healthStates = await Promise.all(['', 'orrery.v1.ImageService', 'synthetic'].map((s) => checkHealth(health, s)));
    health.close();
    const alive = [c.cluster.router!, ...c.cluster.replicas.map((r) => r.child)].every((p) => p.exitCode === null);
    const logFile = path.join(c.dir, 'cluster.log');
    const escaped = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => ESCAPED_ERROR.test(l));

    const failed = outcomes.filter((o) => !o.pass);
    const byCode = new Map<string, number>();
    const byMutation = new Map<string, { n: number; ok: number; invalid: number; other: number; internal: number; bad: number }>();
    for (const o of outcomes) {
      const code = status[o.code] ?? String(o.code);
      byCode.set(code, (byCode.get(code) ?? 0) + 1);
      const kind = o.mutation.split(' + ')[0]!;
      const row = byMutation.get(kind) ?? { n: 0, ok: 0, invalid: 0, other: 0, internal: 0, bad: 0 };
      row.n++;
      if (o.code === status.OK) row.ok++;
      else if (o.code === status.INVALID_ARGUMENT) row.invalid++;
      else if (o.code === status.INTERNAL) row.internal++;
      else row.other++;
      if (!o.pass) row.bad++;
      byMutation.set(kind, row);
    }
    const checks: Check[] = [
      { name: 'answers that are INTERNAL for decodable bytes, do not name a field, or never came', measured: failed.length, unit: `of ${CASES}`, target: '0', pass: failed.length === 0 },
      { name: `GenerateStream: bad answers of ${STREAM_CASES} cases`, measured: streamFailed.length, unit: `of ${STREAM_CASES}`, target: '0', pass: streamFailed.length === 0 },
      { name: 'router and deployment health after the run', measured: healthStates.filter((s) => s === 'SERVING').length, unit: 'of 3 SERVING', target: '3 of 3', pass: healthStates.every((s) => s === 'SERVING') && alive },
      { name: 'log lines of escaped errors (unhandled rejection, uncaught exception, crash)', measured: escaped.length, unit: 'lines', target: '0', pass: escaped.length === 0 },
      { name: 'router RSS growth over the second half of the run', measured: Math.round((rssAfter - rssBefore) * 10) / 10, unit: 'MiB', target: '≤ 32 MiB', pass: rssAfter - rssBefore <= 32, note: `RSS at start and after each quarter: ${rss.join(' → ')} MiB` },
    ];
    keepLogs = checks.some((ch) => !ch.pass);
    return {
      name: 'fuzz',
      title: `Mutation fuzzing of GenerateRequest: ${CASES} cases against a real router`,
      checks,
      tables: [
        {
          title: 'Answers by status',
          columns: ['status', 'answers', 'share'],
          rows: [...byCode].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, n, `${((100 * n) / CASES).toFixed(1)} %`]),
          note: 'INTERNAL answers are the bytes grpc-js cannot deserialize ("Error deserializing request"); every one of them is checked undecodable by the same deserializer.',
        },
        {
          title: 'Answers by mutation (the first mutation of a stacked pair)',
          columns: ['mutation', 'cases', 'OK', 'INVALID_ARGUMENT', 'other non-INTERNAL', 'INTERNAL (undecodable)', 'bad'],
          rows: [...byMutation].sort((a, b) => a[0].localeCompare(b[0])).map(([k, r]) => [k, r.n, r.ok, r.invalid, r.other, r.internal, r.bad]),
        },
        ...(failed.length
          ? [{ title: 'First bad answers', columns: ['case', 'mutation', 'status', 'message', 'why'], rows: failed.slice(0, 20).map((o) => [o.index, o.mutation, status[o.code] ?? o.code, o.details.slice(0, 120), o.why]) }]
          : []),
      ],
      notes: [
        `Cases: fuzzCases(${CASES}, lcg(${SEED})) from test/support/generate-request-fuzz.ts — about 10 % valid requests unchanged, 60 % field-wise mutations (wrong wire types, out-of-range numbers, odd strings incl. 100,000 characters and control characters, unknown enum values, oneof conflicts, NaN/Inf floats, odd seeds, unknown/duplicated/dropped fields; a quarter stacked two deep), 30 % byte-wise (bit flips, truncation, splicing, insertion, random bytes).`,
        `Sent as raw bytes by a grpc-js client with a passthrough serializer, ${CONCURRENCY} at a time, deadline 30 s each: ${CASES} cases in ${seconds.toFixed(1)} s (${Math.round(CASES / seconds)} cases/s).`,
        'Cluster: router + 2 synthetic replicas (no cost model), so the run measures the edge, not the stages.',
        `GenerateStream: the last ${STREAM_CASES} cases again, judged by the same rule. The fuzzer found that every refused GenerateStream call (bad field, unknown model, …) was never answered: image-service.ts ended the stream with destroy(err), which in grpc-js skips sending the status, so the caller waited for its deadline (forever without one). It now emits the error, which grpc-js turns into the status with its trailers.`,
        'A bad answer the fuzzer found and the fix: a 100,000-character aspect, model_id or pipeline was quoted whole in the INVALID_ARGUMENT message; the status did not fit gRPC\'s trailers and the caller waited for its deadline. Messages now quote at most 80 characters with control characters escaped (request-validation.ts).',
      ],
      data: { cases: CASES, seed: SEED, seconds, byCode: Object.fromEntries(byCode), byMutation: Object.fromEntries(byMutation), failed: failed.slice(0, 100), streamFailed: streamFailed.slice(0, 100), healthStates, rss, escaped: escaped.slice(0, 20) },
    };
  } finally {
    await c.stop(keepLogs);
  }
}
