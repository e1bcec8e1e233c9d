/**
 * Benchmark 3, batching efficiency with a GPU-like cost model: a batch of n costs
 * 40 + 10·n ms, at most 8 per batch, each replica's device running one batch at a time — so the
 * ideal batched capacity is 8 / 0.120 s ≈ 66.7 images/s per replica, and unbatched
 * 1 / 0.050 s = 20/s. Open-loop Poisson arrivals (seeded) at 50/80/95% of the batched capacity:
 * one replica with batching on and off; four replicas sharing one queue (how a deployment serves
 * at scale); and one replica with one slot (max_ongoing_batches 1: it idles for the round trip
 * between batches) beside the default two (the next batch waits at the replica).
 */
import { imageServiceClient } from '../../services/cli/client.js';
import { poissonArrivals } from '../lib/arrivals.js';
import { simulateBatching } from '../lib/batch-queue-model.js';
import { benchConfig, startBenchCluster, timedGenerate } from '../lib/bench-cluster.js';
import { openLoop } from '../lib/load.js';
import { CpuMeter } from '../lib/proc-cpu.js';
import { delta, scrape } from '../lib/prometheus.js';
import { round, summarize } from '../lib/stats.js';
import type { Check, Table } from '../lib/types.js';

const COST = { fixed_ms: 40, per_item_ms: 10 };
const MAX_BATCH = 8;
const FULL_BATCH_MS = COST.fixed_ms + COST.per_item_ms * MAX_BATCH;

export const BATCHING = {
  modes: {
    batched: { stage: 'synthetic', models: ['gpu'], replicas: 1, max_batch_size: MAX_BATCH, batch_wait_timeout_ms: 20, max_ongoing_batches: 2, options: COST },
    'batched-4-replicas': { stage: 'synthetic', models: ['gpu'], replicas: 4, max_batch_size: MAX_BATCH, batch_wait_timeout_ms: 20, max_ongoing_batches: 2, options: COST },
    'batched-one-slot': { stage: 'synthetic', models: ['gpu'], replicas: 1, max_batch_size: MAX_BATCH, batch_wait_timeout_ms: 20, max_ongoing_batches: 1, options: COST },
    unbatched: { stage: 'synthetic', models: ['gpu'], replicas: 1, max_batch_size: 1, batch_wait_timeout_ms: 0, max_ongoing_batches: 2, options: COST },
  },
  /** Ideal batched capacity of one replica. */
  capacityPerS: (MAX_BATCH * 1000) / FULL_BATCH_MS,
  loads: [0.5, 0.8, 0.95],
  /** The one-slot comparison runs only where it differs (high load). */
  loadsOf: { 'batched-one-slot': [0.8, 0.95] } as Record<string, readonly number[]>,
  runMs: 20_000,
  /** Answers before this are warm-up: not counted in the throughput. */
  warmupMs: 2_000,
  /** Client deadline per request: what "served" means for an overloaded configuration. */
  deadlineMs: 5_000,
  p99TargetMs: 2.5 * FULL_BATCH_MS,
} as const;

interface Point {
  mode: string;
  load: number;
  offeredPerS: number;
  sent: number;
  answered: number;
  servedPct: number;
  throughputPerS: number;
  p50Ms: number;
  p99Ms: number;
  meanBatch: number;
  /** Images the replica was sent whose request had ended before it answered (work thrown away). */
  wastedPct: number;
  /** Images failed before dispatch because their deadline was nearer than their batch takes (deadline shedding). */
  shed: number;
  /** The ideal batching server (batch-queue-model.ts) on the same arrivals; batched mode only. */
  model?: { p50Ms: number; p99Ms: number; meanBatch: number };
  failures: Record<string, number>;
}

export async function batchingEfficiency(): Promise<{ checks: Check[]; tables: Table[]; notes: string[]; data: Record<string, unknown> }> {
  const B = BATCHING;
  const c = await startBenchCluster(benchConfig(B.modes));
  const client = imageServiceClient(c.cluster.grpcAddress);
  const points: Point[] = [];
  const cpu = new CpuMeter({ router: c.pids.router, replicas: c.pids.replicas, 'nats-server': c.pids.nats });
  let ok = false;
  try {
    cpu.begin();
    for (const mode of Object.keys(B.modes)) {
      const dep = B.modes[mode as keyof typeof B.modes];
      for (const load of B.loadsOf[mode] ?? B.loads) {
        const rate = load * B.capacityPerS * dep.replicas;
        const seed = 100 + (B.loads as readonly number[]).indexOf(load);
        const m0 = await scrape(c.cluster.metricsUrl);
        const res = await openLoop(rate, B.runMs, seed, () => timedGenerate(client, { pipeline: mode, prompt: 'a small planet', seed: '1' }, B.deadlineMs));
        const m1 = await scrape(c.cluster.metricsUrl);
        const good = res.filter((r) => r.ok);
        const lat = summarize(good.map((r) => r.ms));
        const inWindow = good.filter((r) => r.doneMs >= B.warmupMs && r.doneMs <= B.runMs).length;
        const failures: Record<string, number> = {};
        for (const r of res) if (!r.ok) failures[String(r.code)] = (failures[String(r.code)] ?? 0) + 1;
        const dispatched = delta(m0, m1, 'orrery_batch_size_sum', { deployment: mode });
        const produced = delta(m0, m1, 'orrery_images_total', { deployment: mode });
        const model = dep.max_batch_size > 1
          ? simulateBatching(poissonArrivals(rate, B.runMs, seed), { maxBatch: dep.max_batch_size, fixedMs: COST.fixed_ms, perItemMs: COST.per_item_ms, waitMs: dep.batch_wait_timeout_ms, replicas: dep.replicas })
          : undefined;
        const modelLat = model ? summarize(model.latencies) : undefined;
        points.push({
          mode, load, offeredPerS: round(rate), sent: res.length, answered: good.length,
          servedPct: round((100 * good.length) / res.length),
          throughputPerS: round(inWindow / ((B.runMs - B.warmupMs) / 1000)),
          p50Ms: round(lat.p50), p99Ms: round(lat.p99),
          meanBatch: round(dispatched / delta(m0, m1, 'orrery_batch_size_count', { deployment: mode })),
          wastedPct: round((100 * (dispatched - produced)) / dispatched),
          shed: delta(m0, m1, 'orrery_deadline_shed_images_total', { deployment: mode }),
          ...(model && modelLat ? { model: { p50Ms: round(modelLat.p50), p99Ms: round(modelLat.p99), meanBatch: round(model.meanBatch) } } : {}),
          failures,
        });
        process.stdout.write(`  batching ${mode} at ${load * 100}%: ${JSON.stringify(points[points.length - 1])}\n`);
      }
    }
    const used = cpu.end();
    const point = (mode: string, load: number) => points.find((p) => p.mode === mode && p.load === load)!;
    const at95 = point('batched', 0.95);
    const at95x4 = point('batched-4-replicas', 0.95);
    const oneSlot = (load: number) => point('batched-one-slot', load);
    const label = (mode: string) => {
      const dep = B.modes[mode as keyof typeof B.modes];
      const slots = `${dep.max_ongoing_batches} slot${dep.max_ongoing_batches > 1 ? 's' : ''}`;
      const replicas = `${dep.replicas} replica${dep.replicas > 1 ? 's' : ''}`;
      return dep.max_batch_size > 1 ? `on (max ${dep.max_batch_size}, wait ${dep.batch_wait_timeout_ms} ms), ${replicas}, ${slots}` : `off (max 1), ${replicas}, ${slots}`;
    };
    const checks: Check[] = [
      { name: 'Batching on, 95% load, 1 replica: offered load served', measured: at95.servedPct, unit: '%', target: '≥ 95%', pass: at95.servedPct >= 95, note: `${at95.throughputPerS}/s of ${at95.offeredPerS}/s offered` },
      {
        name: 'Batching on, 95% load, 1 replica: p99 latency', measured: at95.p99Ms, unit: 'ms', target: `≤ ${B.p99TargetMs} ms (2.5 × ${FULL_BATCH_MS} ms)`, pass: at95.p99Ms <= B.p99TargetMs,
        note: `the ideal batcher (no overhead) on the same arrivals: p99 ${at95.model!.p99Ms} ms — the target is below what queueing allows with one replica`,
      },
      { name: 'Batching on, 95% load, 4 replicas: offered load served', measured: at95x4.servedPct, unit: '%', target: '≥ 95%', pass: at95x4.servedPct >= 95, note: `${at95x4.throughputPerS}/s of ${at95x4.offeredPerS}/s offered` },
      {
        name: 'Batching on, 95% load, 4 replicas: p99 latency', measured: at95x4.p99Ms, unit: 'ms', target: `≤ ${B.p99TargetMs} ms (2.5 × ${FULL_BATCH_MS} ms)`, pass: at95x4.p99Ms <= B.p99TargetMs,
        note: `the ideal batcher on the same arrivals: p99 ${at95x4.model!.p99Ms} ms`,
      },
    ];
    const tables: Table[] = [{
      title: '3. Batching efficiency (cost 40 + 10·n ms per batch; each replica\'s device runs 1 batch at a time)',
      columns: ['batching, replicas, slots (max_ongoing_batches)', 'load', 'offered/s', 'throughput/s', 'served %', 'p50 ms', 'p99 ms', 'mean batch', 'ideal p50 / p99 ms, mean batch', 'wasted %', 'shed', 'failures (gRPC code: n)'],
      rows: points.map((p) => [
        label(p.mode), `${p.load * 100}%`, p.offeredPerS, p.throughputPerS, p.servedPct,
        p.p50Ms, p.p99Ms, p.meanBatch, p.model ? `${p.model.p50Ms} / ${p.model.p99Ms}, ${p.model.meanBatch}` : '–', p.wastedPct, p.shed,
        Object.entries(p.failures).map(([k, v]) => `${k}: ${v}`).join(', ') || '–',
      ]),
      note: `Load is relative to the ideal batched capacity, ${round(B.capacityPerS)} images/s per replica (unbatched 20/s). ${B.runMs / 1000} s of Poisson arrivals per point; served % = answered within the ${B.deadlineMs / 1000} s client deadline ÷ sent; throughput counts answers between ${B.warmupMs / 1000} s and the end of arrivals; latency percentiles over answered requests; mean batch from orrery_batch_size_sum / _count; ideal = the same arrivals through a simulated zero-overhead FIFO batcher with the same settings and replicas, one slot each (bench/lib/batch-queue-model.ts); wasted = images sent to the replica whose request had already ended (deadline or cancel) when it answered, from orrery_batch_size_sum − orrery_images_total; shed = images failed with DEADLINE_EXCEEDED before dispatch because their deadline was nearer than their batch takes (orrery_deadline_shed_images_total). gRPC codes: 1 CANCELLED, 4 DEADLINE_EXCEEDED. CPU over the whole part (cores busy): ${Object.entries(used).map(([k, v]) => `${k} ${v.cores}`).join(', ')}.`,
    }];
    const off = points.filter((p) => p.mode === 'unbatched');
    const notes = [
      `Batching, 1 replica: at 95% of the ideal capacity the router served ${at95.servedPct}% with batches of ${at95.meanBatch} on average, p99 ${at95.p99Ms} ms — the simulated zero-overhead FIFO batcher on the same arrivals gives p99 ${at95.model!.p99Ms} ms, so what is left is queueing, not router overhead. With one replica, max_batch_size ${MAX_BATCH} and Poisson arrivals, no batch-forming policy meets p99 ≤ ${B.p99TargetMs} ms at 95% load (in the model the p99 stays under it only up to about 80% load; batch_wait_timeout_ms between 0 and 40 ms changes the model's p99 by a few ms; even max_batch_size 16 at the same rate still gives p99 ≈ 360 ms).`,
      `Batching, 4 replicas sharing the queue, at 95% of their combined capacity (${at95x4.offeredPerS}/s): served ${at95x4.servedPct}%, p99 ${at95x4.p99Ms} ms (ideal ${at95x4.model!.p99Ms} ms), mean batch ${at95x4.meanBatch}. The same utilisation spread over more replicas queues far less, which is how a deployment at scale meets the target.`,
      `One slot per replica (max_ongoing_batches 1) at 95%: p50 ${oneSlot(0.95).p50Ms} ms, p99 ${oneSlot(0.95).p99Ms} ms. The replica idles for the round trip between batches (reply, next dispatch: a few ms on 120 ms batches), which at 95% load is enough to push the queue toward saturation. Two slots with prefetch timing (a full batch waits at the replica; a partial one leaves the queue only when the replica is about to be free, services/router/batch-policy.ts) hide that gap without forming batches early: at 80% load p99 ${points.find((p) => p.mode === 'batched' && p.load === 0.8)!.p99Ms} ms with two slots against ${oneSlot(0.8).p99Ms} ms with one.`,
      `Batching off is overloaded at every point (capacity 20/s): throughput ${off.map((p) => `${p.throughputPerS}/s at ${p.load * 100}%`).join(', ')}. The FIFO queue grows until requests wait about their ${B.deadlineMs / 1000} s deadline. Deadline shedding (services/router/deployment-scheduler.ts) fails at dispatch the images that could no longer finish in time (${off.map((p) => p.shed).join(', ')} shed), so the replica spends its time on requests that can still be answered: ${off.map((p) => `${p.wastedPct}%`).join(', ')} of the images it was sent were thrown away (before shedding, in this benchmark's results of 2026-11-27 10:08 UTC with one slot: 50%, 80%, 84%, and throughput 13.8, 8.3, 7.3/s).`,
      `batch_wait_timeout_ms ${B.modes.batched.batch_wait_timeout_ms} ms: about half the fixed batch cost. It only applies when the replica is idle (a queue that waited for a busy replica leaves at once), so it grows batches at low load (mean ${points[0]!.meanBatch} at 50%) at no cost to p99 in the model.`,
    ];
    if ((used.other?.cores ?? 0) > 0.25) notes.push(`Caution: other work on the machine used ${used.other!.cores} cores on average during the batching runs.`);
    ok = true;
    return { checks, tables, notes, data: { config: B, points, cpu: used } };
  } finally {
    client.close();
    await c.stop(!ok);
  }
}
