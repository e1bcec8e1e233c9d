/**
 * Part 2 of the continuous-batching benchmark (issue 12): online images beside bulk images. A bulk
 * job fills one replica; online GenerateStream requests then arrive one at a time, at seeded
 * random moments, and the time from sending one to its first progress event (its first step done)
 * is measured — against the same on the idle replica. With continuous batching an online image
 * takes a bulk image's place at the next step boundary, so it waits at most one UNet call more
 * than on an idle replica; with request-level batching it waits for the bulk batch running there.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { JobClient } from '../../services/cli/job-client.js';
import { mulberry32 } from '../../services/models/demo-models.js';
import { benchConfig, startBenchCluster } from '../lib/bench-cluster.js';
import { round, summarize, type Summary } from '../lib/stats.js';
import type { Check, Table } from '../lib/types.js';
import { aloneStepMs, CB, deployment, fullStepMs, type Mode } from './setup.js';

const PROBES = Number(process.env.BENCH_CB_PROBES ?? 12);

/** Sends one GenerateStream request; resolves with the ms until its first progress event and until it ended. */
function firstStep(client: ImageServiceClient, req: object, deadlineMs: number): Promise<{ firstMs: number; totalMs: number }> {
  const t0 = performance.now();
  let firstMs = Number.NaN;
  return new Promise((resolve, reject) => {
    const call = client.GenerateStream(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs });
    call.on('data', (ev: { event: string }) => {
      if (ev.event === 'progress' && Number.isNaN(firstMs)) firstMs = performance.now() - t0;
    });
    call.on('error', reject);
    call.on('end', () => (Number.isNaN(firstMs) ? reject(new Error('the stream ended without a progress event')) : resolve({ firstMs, totalMs: performance.now() - t0 })));
  });
}

/** `PROBES` online requests one after another, each after a seeded random pause of up to one image time. */
async function probe(client: ImageServiceClient, pipeline: string, seed: number): Promise<Summary> {
  const rng = mulberry32(seed);
  const imageMs = CB.steps * fullStepMs();
  const first: number[] = [];
  for (let i = 0; i < PROBES; i++) {
    await sleep(Math.round(rng() * imageMs));
    first.push((await firstStep(client, { pipeline, prompt: `online ${i}`, seed: String(i), steps: CB.steps }, 120_000)).firstMs);
  }
  return summarize(first);
}

export async function mixedPart(): Promise<{ checks: Check[]; tables: Table[]; notes: string[]; data: Record<string, unknown> }> {
  const dep = (mode: Mode) => `mixed-${mode}`;
  const c = await startBenchCluster(benchConfig(Object.fromEntries(CB.modes.map((m) => [dep(m), deployment(m, 1, true)]))));
  const client = imageServiceClient(c.cluster.grpcAddress);
  const jobs = new JobClient(c.cluster.grpcAddress);
  const rows: Array<{ mode: Mode; idle: Summary; busy: Summary; bulkDone: number }> = [];
  let ok = false;
  try {
    for (const mode of CB.modes) {
      const idle = await probe(client, dep(mode), 31);
      // Enough bulk work to keep the replica full through the probe, cancelled after it.
      const items = Math.ceil(CB.capacityPerReplicaPerS * ((PROBES * 2 * CB.steps * fullStepMs()) / 1000 + 10)) + 20;
      const job = await jobs.submit({
        name: `bulk-${mode}`, template: { pipeline: dep(mode), seed: '1', steps: CB.steps },
        grid: { colors: Array.from({ length: items }, (_, i) => `colour ${i}`), atmospheres: ['haze'], seeds_per_prompt: 1 },
        output_uri: `file://${path.join(c.dir, 'out', mode)}`, job_key: `bench-cb-${mode}`,
      });
      // Let the bulk images fill the replica's running set (or its batches) first.
      await sleep(3 * CB.steps * fullStepMs());
      const busy = await probe(client, dep(mode), 32);
      const during = await jobs.get(job.job_id);
      await jobs.cancel(job.job_id);
      rows.push({ mode, idle, busy, bulkDone: Number(during.succeeded ?? 0) });
      process.stdout.write(`  continuous-batching mixed ${mode}: ${JSON.stringify(rows[rows.length - 1])}\n`);
    }
    const cont = rows.find((r) => r.mode === 'continuous')!;
    const req = rows.find((r) => r.mode === 'request')!;
    // Beside bulk work the image's own first step runs in a full set; on the idle replica, alone.
    const ownStepExtraMs = fullStepMs() - aloneStepMs();
    const waitMs = (r: { idle: Summary; busy: Summary }, q: 'p50' | 'max') => r.busy[q] - r.idle.p50 - ownStepExtraMs;
    const checks: Check[] = [{
      name: 'Online image beside bulk work (continuous): longest wait before its first step, transport excluded',
      measured: round(waitMs(cont, 'max')), unit: 'ms', target: `≤ one UNet call over a full set (${round(fullStepMs())} ms)`,
      pass: waitMs(cont, 'max') <= fullStepMs(),
      note: `p50 ${round(waitMs(cont, 'p50'))} ms; request-level batching: max ${round(waitMs(req, 'max'))} ms, p50 ${round(waitMs(req, 'p50'))} ms`,
    }];
    const tables: Table[] = [{
      title: `Online image beside bulk images on one replica: time from sending to its first step done (${PROBES} GenerateStream requests, one at a time)`,
      columns: ['batching', 'idle p50 / max ms', 'beside bulk p50 / max ms', 'wait before the first step p50 / max ms', 'bulk items done meanwhile'],
      rows: rows.map((r) => [r.mode, `${round(r.idle.p50)} / ${round(r.idle.max)}`, `${round(r.busy.p50)} / ${round(r.busy.max)}`, `${round(waitMs(r, 'p50'))} / ${round(waitMs(r, 'max'))}`, r.bulkDone]),
      note: `Each probe waits a seeded random pause of up to one image time (${round(CB.steps * fullStepMs())} ms) after the previous one ends, so it lands at a random point of the bulk work. Wait before the first step = time to the first progress event beside bulk work − the idle replica's p50 (transport and one step alone, ${round(aloneStepMs())} ms) − what the image's own first step costs more in a full set (${round(ownStepExtraMs)} ms). One UNet call over a full set: ${round(fullStepMs())} ms (H200 calibration × ${CB.stepTimeScale}).`,
    }];
    ok = true;
    return { checks, tables, notes: [], data: { rows } };
  } finally {
    client.close();
    jobs.close();
    await c.stop(!ok);
  }
}
