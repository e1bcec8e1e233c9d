/**
 * A closed-loop load generator process for the throughput benchmark: `inFlight` requests kept
 * outstanding over `channels` HTTP/2 connections. Forked with IPC; gets one `LoadJob`, answers
 * with one `LoadReport` counting only answers inside the measurement window, then waits to be
 * stopped (SIGTERM).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { channelClient, timedGenerate } from './bench-cluster.js';

export interface LoadJob {
  readonly address: string;
  readonly channels: number;
  readonly inFlight: number;
  /** Epoch ms when sending starts (all workers start together). */
  readonly startAtMs: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly request: object;
  readonly deadlineMs: number;
}

export interface LoadReport {
  readonly ok: number;
  readonly failed: number;
  readonly codes: Record<string, number>;
  /** Latencies (ms) of the answers inside the window. */
  readonly latencies: number[];
}

async function runJob(job: LoadJob): Promise<LoadReport> {
  const clients = Array.from({ length: job.channels }, (_, i) => channelClient(job.address, process.pid * 100 + i));
  const windowStart = job.startAtMs + job.warmupMs;
  const windowEnd = windowStart + job.durationMs;
  const report = { ok: 0, failed: 0, codes: {} as Record<string, number>, latencies: [] as number[] };
  await sleep(Math.max(0, job.startAtMs - Date.now()));
  const loop = async (k: number) => {
    const client = clients[k % clients.length]!;
    while (Date.now() < windowEnd) {
      const r = await timedGenerate(client, job.request, job.deadlineMs);
      const now = Date.now();
      if (now < windowStart || now > windowEnd) continue;
      if (r.ok) {
        report.ok++;
        report.latencies.push(Math.round(r.ms * 1000) / 1000);
      } else {
        report.failed++;
        report.codes[String(r.code)] = (report.codes[String(r.code)] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: job.inFlight }, (_, k) => loop(k)));
  for (const c of clients) c.close();
  return report;
}

// After reporting, the worker stays until the parent ends it (so the parent can still read its CPU time).
process.once('message', (job: LoadJob) => {
  runJob(job).then(
    (report) => {
      process.send!(report);
      setInterval(() => undefined, 60_000); // the IPC channel alone does not keep this process alive
    },
    (err: unknown) => {
      process.stderr.write(`load-worker: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
});
