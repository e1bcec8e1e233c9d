/**
 * Bulk jobs (docs/jobs.md), on real processes: nats-server with JetStream file storage, the
 * router, synthetic replicas.
 *
 * 1. Throughput: items/s through a job against the same images through Generate (closed loop,
 *    enough callers to keep every slot busy), on zero-cost replicas (what the router and JetStream
 *    cost per item) and on the GPU-like cost model (40 + 10·n ms a batch, at most 8: the ideal
 *    batched capacity is 66.7 images/s per replica) — target: a job keeps the replicas' batches
 *    full, ≥ 95 % of the ideal batched capacity.
 * 2. A large grid (1,000,000 items by default; BENCH_JOBS_GRID_ITEMS) run to completion on
 *    zero-cost replicas: wall time, router RSS over time, JetStream storage used.
 * 3. Resume after `kill -9` of the router mid-job (serve-local restarts it): time until the job
 *    answers again and until it finishes items again; 0 items lost, 0 written twice.
 * 4. Online Generate p50/p99 on the cost model at 30 % load, idle vs with a saturating job —
 *    target: online p99 ≤ idle p99 + one full batch time (120 ms).
 *
 * `BENCH_JOBS_PARTS=online` (a comma list of throughput, online, resume, grid) runs only some parts
 * (while working on one; the results file then holds only those).
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imageServiceClient } from '../services/cli/client.js';
import { JobClient } from '../services/cli/job-client.js';
import type { JobMessage } from '../services/cli/job-format.js';
import { benchConfig, startBenchCluster, timedGenerate, type BenchCluster } from './lib/bench-cluster.js';
import { openLoop } from './lib/load.js';
import { round, summarize } from './lib/stats.js';
import type { BenchResult, Check, Table } from './lib/types.js';

const COST = { fixed_ms: 40, per_item_ms: 10 };
const MAX_BATCH = 8;
const FULL_BATCH_MS = COST.fixed_ms + COST.per_item_ms * MAX_BATCH;
const CAPACITY_PER_REPLICA = (MAX_BATCH * 1000) / FULL_BATCH_MS;
const GRID_ITEMS = Number(process.env.BENCH_JOBS_GRID_ITEMS ?? 1_000_000);
const GRID_MAX_S = Number(process.env.BENCH_JOBS_GRID_MAX_S ?? 3600);

const PARTS = process.env.BENCH_JOBS_PARTS?.split(',');
/** Whether part `name` runs (BENCH_JOBS_PARTS). */
const wanted = (name: 'throughput' | 'online' | 'resume' | 'grid'): boolean => !PARTS || PARTS.includes(name);

const num = (v: string | number | undefined): number => Number(v ?? 0);

/** A grid of at least `n` items: 10 × 10 × 10 × 10 prompts × seeds. */
function gridOf(n: number): object {
  const axis = (name: string, k: number) => Array.from({ length: k }, (_, i) => `${name} ${i}`);
  const prompts = 10_000;
  if (n <= prompts) {
    const side = Math.ceil(Math.sqrt(n));
    return { colors: axis('colour', side), atmospheres: axis('atmosphere', Math.ceil(n / side)), seeds_per_prompt: 1, sample: n };
  }
  return { colors: axis('colour', 10), atmospheres: axis('atmosphere', 10), moons: axis('moons', 10), skies: axis('sky', 10), seeds_per_prompt: Math.ceil(n / prompts) };
}

/** Submits a grid job of `n` items on `pipeline` into a fresh folder of the cluster's. */
async function submit(jobs: JobClient, b: BenchCluster, pipeline: string, n: number, name: string): Promise<{ job: JobMessage; outDir: string }> {
  const outDir = path.join(b.dir, 'out', name);
  const req = { name, template: { pipeline, seed: '1' }, grid: gridOf(n), output_uri: `file://${outDir}`, job_key: `bench-${name}` };
  const job = await jobs.submit(req);
  return { job, outDir };
}

/** Polls the job every `everyMs` until it is final; returns its samples (time, succeeded) and the final Job. */
async function follow(jobs: JobClient, jobId: string, everyMs: number, onSample?: (j: JobMessage, tMs: number) => void, maxMs = Number.POSITIVE_INFINITY): Promise<{ samples: Array<[number, number]>; job: JobMessage; timedOut: boolean }> {
  const t0 = performance.now();
  const samples: Array<[number, number]> = [];
  for (;;) {
    const j = await jobs.get(jobId);
    const t = performance.now() - t0;
    samples.push([t, num(j.succeeded) + num(j.failed)]);
    onSample?.(j, t);
    if (j.state === 'completed' || j.state === 'cancelled') return { samples, job: j, timedOut: false };
    if (t > maxMs) return { samples, job: j, timedOut: true };
    await sleep(everyMs);
  }
}

/** Items/s between 10 % and 90 % of the total (the steady state, without ramp-up and tail). */
function steadyRate(samples: ReadonlyArray<[number, number]>, total: number): number {
  const a = samples.find(([, d]) => d >= total * 0.1);
  const b = samples.find(([, d]) => d >= total * 0.9);
  if (!a || !b || b[0] <= a[0]) return Number.NaN;
  return ((b[1] - a[1]) * 1000) / (b[0] - a[0]);
}

/** Closed loop: `callers` each send one-image Generate calls back to back for `ms`; images/s. */
async function generateRate(address: string, pipeline: string, callers: number, ms: number): Promise<number> {
  const client = imageServiceClient(address);
  const stopAt = performance.now() + ms;
  const warmAt = performance.now() + Math.min(2000, ms / 5);
  let counted = 0;
  try {
    await Promise.all(Array.from({ length: callers }, async (_, k) => {
      for (let i = 0; performance.now() < stopAt; i++) {
        const r = await timedGenerate(client, { pipeline, prompt: `p${k}-${i}`, seed: String(i) }, 30_000);
        if (r.ok && performance.now() > warmAt) counted++;
      }
    }));
  } finally {
    client.close();
  }
  return (counted * 1000) / (ms - Math.min(2000, ms / 5));
}

function filesIn(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => !f.startsWith('.')) : [];
}

function manifestLines(dir: string): string[] {
  const f = path.join(dir, 'manifest.jsonl');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 0) : [];
}

function rssMiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function duMiB(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.statSync(p).size;
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return total / (1 << 20);
}

export async function run(): Promise<BenchResult> {
  const checks: Check[] = [];
  const tables: Table[] = [];
  const notes: string[] = [];
  const data: Record<string, unknown> = {};

  // --- 1. throughput ---
  const throughputRows: Array<Array<string | number>> = [];
  for (const [mode, options, replicas, items] of wanted('throughput') ? [['zero-cost', {}, 1, 4000], ['cost-model', COST, 2, 4000]] as const : []) {
    const b = await startBenchCluster(benchConfig({
      gpu: { stage: 'synthetic', models: ['gpu'], replicas, max_batch_size: MAX_BATCH, batch_wait_timeout_ms: 20, max_ongoing_batches: 2, max_queued_requests: 10_000, options },
    }));
    const jobs = new JobClient(b.cluster.grpcAddress);
    try {
      const genPerS = await generateRate(b.cluster.grpcAddress, 'gpu', replicas * MAX_BATCH * 2 + MAX_BATCH, 15_000);
      const { job } = await submit(jobs, b, 'gpu', items, `throughput-${mode}`);
      const t0 = performance.now();
      const f = await follow(jobs, job.job_id, 250);
      const wallS = (performance.now() - t0) / 1000;
      const jobPerS = steadyRate(f.samples, items);
      const ideal = mode === 'cost-model' ? CAPACITY_PER_REPLICA * replicas : Number.NaN;
      throughputRows.push([mode, replicas, items, round(jobPerS), round(items / wallS), round(genPerS), Number.isFinite(ideal) ? round(ideal) : '—', Number.isFinite(ideal) ? `${round((100 * jobPerS) / ideal)} %` : '—']);
      data[`throughput-${mode}`] = { jobPerS, jobWallS: wallS, genPerS, ideal, final: f.job };
      if (mode === 'cost-model') {
        checks.push({ name: 'job throughput on the cost model, share of the ideal batched capacity', measured: round((100 * jobPerS) / ideal), unit: '%', target: '≥ 95 %', pass: jobPerS >= 0.95 * ideal, note: `${round(jobPerS)} items/s on ${replicas} replicas (ideal ${round(ideal)}); Generate closed loop ${round(genPerS)} images/s` });
      }
    } finally {
      jobs.close();
      await b.stop();
    }
  }
  if (wanted('throughput')) tables.push({
    title: 'Throughput: a job vs the same images through Generate',
    columns: ['replicas', 'n', 'items', 'job items/s (10–90 %)', 'job items/s (whole run)', 'Generate images/s (closed loop)', 'ideal batched capacity', 'job / ideal'],
    rows: throughputRows,
    note: `Generate: ${MAX_BATCH * 2}·replicas + ${MAX_BATCH} callers sending one-image requests back to back for 15 s (first 2 s not counted). Cost model: ${COST.fixed_ms} + ${COST.per_item_ms}·n ms per batch, at most ${MAX_BATCH} images, two slots per replica.`,
  });

  // --- 4. online latency with and without a saturating job ---
  if (wanted('online')) {
    const b = await startBenchCluster(benchConfig({
      gpu: { stage: 'synthetic', models: ['gpu'], replicas: 1, max_batch_size: MAX_BATCH, batch_wait_timeout_ms: 20, max_ongoing_batches: 2, max_queued_requests: 10_000, options: COST },
    }));
    const jobs = new JobClient(b.cluster.grpcAddress);
    const client = imageServiceClient(b.cluster.grpcAddress);
    try {
      const rate = 0.3 * CAPACITY_PER_REPLICA;
      const probe = async (seed: number) => {
        const done = await openLoop(rate, 20_000, seed, (i) => timedGenerate(client, { pipeline: 'gpu', prompt: `online ${seed}-${i}`, seed: String(i) }, 10_000));
        return summarize(done.filter((d) => d.ok && d.scheduledMs > 2000).map((d) => d.ms));
      };
      const idle = await probe(11);
      const { job } = await submit(jobs, b, 'gpu', 20_000, 'saturating');
      await sleep(3000);
      const busy = await probe(12);
      const during = await jobs.get(job.job_id);
      await jobs.cancel(job.job_id);
      data.online = { idle, busy, jobDuring: during };
      tables.push({
        title: 'Online Generate latency (cost model, one replica, Poisson arrivals at 30 % of capacity for 20 s)',
        columns: ['condition', 'answered', 'p50 ms', 'p99 ms', 'max ms'],
        rows: [['idle', idle.n, round(idle.p50), round(idle.p99), round(idle.max)], ['a job saturating the replica', busy.n, round(busy.p50), round(busy.p99), round(busy.max)]],
        note: `The job had ${num(during.succeeded)} items done at ${round(during.items_per_second)} items/s when the probe ended (the replica's spare capacity).`,
      });
      checks.push({ name: 'online p99 with a saturating job running', measured: round(busy.p99), unit: 'ms', target: `≤ idle p99 + one batch (${round(idle.p99)} + ${FULL_BATCH_MS})`, pass: busy.p99 <= idle.p99 + FULL_BATCH_MS });
    } finally {
      client.close();
      jobs.close();
      await b.stop();
    }
  }

  // --- 3. resume after kill -9 of the router ---
  if (wanted('resume')) {
    const b = await startBenchCluster(benchConfig({
      gpu: { stage: 'synthetic', models: ['gpu'], replicas: 2, max_batch_size: MAX_BATCH, batch_wait_timeout_ms: 20, max_ongoing_batches: 2, options: COST },
    }));
    const jobs = new JobClient(b.cluster.grpcAddress, { attempts: 60 });
    try {
      const items = 3000;
      const { job, outDir } = await submit(jobs, b, 'gpu', items, 'resume');
      await follow(jobs, job.job_id, 100, undefined, 0);
      for (;;) {
        const j = await jobs.get(job.job_id);
        if (num(j.succeeded) >= items * 0.3) break;
        await sleep(100);
      }
      const before = num((await jobs.get(job.job_id)).succeeded);
      const killedAt = performance.now();
      b.cluster.router!.kill('SIGKILL');
      let answeredMs = Number.NaN;
      let progressMs = Number.NaN;
      for (;;) {
        try {
          const j = await jobs.get(job.job_id);
          if (Number.isNaN(answeredMs)) answeredMs = performance.now() - killedAt;
          if (num(j.succeeded) > before + MAX_BATCH) {
            progressMs = performance.now() - killedAt;
            break;
          }
        } catch {
          // the router is restarting
        }
        await sleep(50);
      }
      const f = await follow(jobs, job.job_id, 250);
      const files = filesIn(outDir).filter((x) => x.endsWith('.bin') || x.endsWith('.png') || !/\.(jsonl|json)$/.test(x)).filter((x) => x !== 'contact-sheet.png');
      const lines = manifestLines(outDir);
      const ids = new Set(lines.map((l) => (JSON.parse(l) as { custom_id: string }).custom_id));
      data.resume = { answeredMs, progressMs, final: f.job, files: files.length, manifestLines: lines.length, uniqueIds: ids.size };
      tables.push({
        title: 'Resume after kill -9 of the router (cost model, two replicas, a 3,000-item job killed at 30 %)',
        columns: ['job answers again after', 'job finishes items again after', 'succeeded', 'failed', 'output files', 'manifest lines', 'distinct ids in the manifest'],
        rows: [[`${round(answeredMs)} ms`, `${round(progressMs)} ms`, num(f.job.succeeded), num(f.job.failed), files.length, lines.length, ids.size]],
      });
      checks.push({ name: 'time to resume a job after kill -9 of the router', measured: round(progressMs / 1000), unit: 's', target: 'recorded (serve-local restarts the router)', pass: Number.isFinite(progressMs) });
      checks.push({ name: 'items lost or written twice across the router kill', measured: Math.abs(items - ids.size) + (lines.length - ids.size), unit: 'items', target: '0', pass: ids.size === items && lines.length === items && num(f.job.succeeded) === items });
    } finally {
      jobs.close();
      await b.stop();
    }
  }

  // --- 2. a large grid to completion on zero-cost replicas ---
  if (wanted('grid')) {
    const b = await startBenchCluster(benchConfig({
      zero: { stage: 'synthetic', models: ['zero'], replicas: 2, max_batch_size: 32, batch_wait_timeout_ms: 5, max_ongoing_batches: 2, max_queued_requests: 100_000 },
    }));
    const jobs = new JobClient(b.cluster.grpcAddress);
    const storeDir = b.cluster.nats?.storeDir ?? '';
    try {
      const rssBefore = rssMiB(b.cluster.router?.pid);
      const t0 = performance.now();
      const { job, outDir } = await submit(jobs, b, 'zero', GRID_ITEMS, 'large-grid');
      const submitMs = performance.now() - t0;
      // RSS at every poll (2 s, so finalizing's peak is seen); every 10 s in the report.
      const samples: Array<[number, number]> = [];
      const rss: Array<[number, number]> = [];
      let storePeak = 0;
      let lastSample = 0;
      const f = await follow(jobs, job.job_id, 2000, (_j, t) => {
        const sample: [number, number] = [t / 1000, round(rssMiB(b.cluster.router?.pid))];
        samples.push(sample);
        if (t - lastSample >= 10_000 || rss.length === 0) {
          lastSample = t;
          rss.push([Math.round(sample[0]), sample[1]]);
          storePeak = Math.max(storePeak, duMiB(storeDir));
        }
      }, GRID_MAX_S * 1000);
      const wallS = (performance.now() - t0) / 1000;
      const done = num(f.job.succeeded) + num(f.job.failed);
      const storeEnd = duMiB(storeDir);
      const outMiB = duMiB(outDir);
      const rssValues = samples.map(([, v]) => v).filter(Number.isFinite);
      // Flat = no more memory for the second half of the items than for the first: memory that
      // grows with progress (or with finalizing's size) makes the second half's peak the higher.
      const firstPeak = Math.max(...rssValues.slice(0, Math.floor(rssValues.length / 2)));
      const secondPeak = Math.max(...rssValues.slice(Math.floor(rssValues.length / 2)));
      data.largeGrid = { items: GRID_ITEMS, submitMs, wallS, done, final: f.job, timedOut: f.timedOut, rssBefore, rss, storePeakMiB: storePeak, storeEndMiB: storeEnd, outMiB };
      tables.push({
        title: `A ${GRID_ITEMS.toLocaleString('en-US')}-item grid on zero-cost replicas (two replicas, batches of 32)`,
        columns: ['submit', 'wall time', 'items finished', 'items/s', 'router RSS before / min / max (MiB)', 'JetStream store peak / end (MiB)', 'outputs + manifest (MiB)'],
        rows: [[`${round(submitMs)} ms`, `${round(wallS)} s${f.timedOut ? ' (stopped at the time cap)' : ''}`, done, round(done / wallS), `${round(rssBefore)} / ${round(Math.min(...rssValues))} / ${round(Math.max(...rssValues))}`, `${round(storePeak)} / ${round(storeEnd)}`, round(outMiB)]],
        note: `Router RSS every 10 s (s, MiB): ${rss.map(([t, v]) => `${t}:${v}`).join(' ')}`,
      });
      checks.push({ name: `${GRID_ITEMS.toLocaleString('en-US')}-item grid finished`, measured: done, unit: 'items', target: `${GRID_ITEMS} within ${GRID_MAX_S} s`, pass: !f.timedOut && done === GRID_ITEMS });
      checks.push({
        name: 'router RSS peak, second half of the run (finalizing included) − first half', measured: round(secondPeak - firstPeak), unit: 'MiB', target: '≤ 64 MiB (flat)',
        pass: rssValues.length >= 2 && secondPeak - firstPeak <= 64, note: `peaks ${round(firstPeak)} / ${round(secondPeak)} MiB, sampled every 2 s`,
      });
      if (f.timedOut) await jobs.cancel(job.job_id);
    } finally {
      jobs.close();
      await b.stop();
    }
  }

  notes.push('Every cluster is real: nats-server with JetStream file storage, the router and synthetic replicas as separate processes (bench/lib/bench-cluster.ts). Synthetic replicas stand for GPU time with timers, so the CPU here is the router\'s, NATS\'s and the file sink\'s.');
  return { name: 'jobs', title: 'Bulk jobs: throughput, a large grid, resume after a router kill, online latency beside a job', checks, tables, notes, data };
}
