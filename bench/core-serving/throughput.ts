/**
 * Benchmark 2, throughput ceiling of one router: a zero-cost synthetic deployment with large
 * batches and several replicas, driven closed-loop by h2load (a C HTTP/2 client, so the router
 * gets the machine's CPU; bench/lib/h2load.ts) and by several grpc-js client processes (each with
 * a few HTTP/2 connections and many requests in flight), counting answers per second inside a
 * window after a warm-up, and the CPU each process group used. The same clients then drive a gRPC
 * stub that answers at once (echo-server.ts): the ceiling of grpc-js itself on this machine,
 * which no router built on it can pass.
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { benchConfig, startBenchCluster } from '../lib/bench-cluster.js';
import { forkHelper, spawnReady, stopChild } from '../lib/child.js';
import { generateRequestBody, h2loadGenerate, routerGrpcFailures, type H2loadRun } from '../lib/h2load.js';
import type { LoadJob, LoadReport } from '../lib/load-worker.js';
import { CpuMeter } from '../lib/proc-cpu.js';
import { delta, scrape } from '../lib/prometheus.js';
import { round, summarize, type Summary } from '../lib/stats.js';
import type { Check, Table } from '../lib/types.js';

export const THROUGHPUT = {
  deployment: {
    stage: 'synthetic', models: ['bulk'], replicas: 2, max_batch_size: 64, batch_wait_timeout_ms: 1,
    max_ongoing_batches: 8, max_queued_requests: 50_000, options: {},
  },
  clientProcesses: 2,
  channelsPerProcess: 2,
  inFlightPerProcess: 256,
  warmupMs: 3_000,
  windowMs: 10_000,
  stubWarmupMs: 2_000,
  stubWindowMs: 6_000,
  deadlineMs: 30_000,
  /** h2load: connections × streams in flight each (as many in flight as the grpc-js clients). */
  h2load: { clients: 4, streams: 128 },
  target: 20_000,
} as const;

const REQUEST = { pipeline: 'bulk', prompt: 'a small planet', seed: '1' };

function runWorker(child: ChildProcess, job: LoadJob): Promise<LoadReport> {
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as LoadReport));
    child.once('exit', (code) => reject(new Error(`load worker exited (${code}) before reporting`)));
    child.send(job);
  });
}

interface Driven {
  readonly perS: number;
  readonly failed: number;
  readonly latency: Summary;
  readonly cpu: Record<string, { cpuSeconds: number; cores: number }>;
}

/** Closed-loop load from fresh client processes on `address`; `around` runs at the window's edges. */
async function drive(address: string, warmupMs: number, windowMs: number, pids: Record<string, number[]>, around?: { begin(): Promise<void>; end(): Promise<void> }): Promise<Driven> {
  const T = THROUGHPUT;
  const workers = Array.from({ length: T.clientProcesses }, () => forkHelper('load-worker.js'));
  try {
    const startAtMs = Date.now() + 500;
    const job: LoadJob = { address, channels: T.channelsPerProcess, inFlight: T.inFlightPerProcess, startAtMs, warmupMs, durationMs: windowMs, request: REQUEST, deadlineMs: T.deadlineMs };
    const reports = Promise.all(workers.map((w) => runWorker(w, job)));
    const cpu = new CpuMeter({ ...pids, clients: workers.map((w) => w.pid!) });
    await new Promise((r) => setTimeout(r, startAtMs + warmupMs - Date.now()));
    cpu.begin();
    await around?.begin();
    await new Promise((r) => setTimeout(r, startAtMs + warmupMs + windowMs - Date.now()));
    const used = cpu.end();
    await around?.end();
    const all = await reports;
    return {
      perS: all.reduce((n, r) => n + r.ok, 0) / (windowMs / 1000),
      failed: all.reduce((n, r) => n + r.failed, 0),
      latency: summarize(all.flatMap((r) => r.latencies)),
      cpu: used,
    };
  } finally {
    await Promise.all(workers.map((w) => stopChild(w)));
  }
}

export async function throughputCeiling(): Promise<{ checks: Check[]; tables: Table[]; notes: string[]; data: Record<string, unknown> }> {
  const T = THROUGHPUT;
  const c = await startBenchCluster(benchConfig({ bulk: T.deployment }));
  let ok = false;
  try {
    let m0 = await scrape(c.cluster.metricsUrl);
    let m1 = m0;
    const routed = await drive(c.cluster.grpcAddress, T.warmupMs, T.windowMs, { router: c.pids.router, replicas: c.pids.replicas, 'nats-server': c.pids.nats }, {
      begin: async () => { m0 = await scrape(c.cluster.metricsUrl); },
      end: async () => { m1 = await scrape(c.cluster.metricsUrl); },
    });
    const body = generateRequestBody(c.dir, { pipeline: REQUEST.pipeline, prompt: REQUEST.prompt, seed: Number(REQUEST.seed) });
    const h2 = { bodyFile: body, clients: T.h2load.clients, streams: T.h2load.streams };
    const h0 = await scrape(c.cluster.metricsUrl);
    const h2Routed = await h2loadGenerate({ ...h2, address: c.cluster.grpcAddress, warmupS: T.warmupMs / 1000, durationS: T.windowMs / 1000, pids: { router: c.pids.router, replicas: c.pids.replicas, 'nats-server': c.pids.nats } });
    const h1 = await scrape(c.cluster.metricsUrl);
    const h2GrpcFailed = routerGrpcFailures(h0, h1);
    const h2MeanBatch = delta(h0, h1, 'orrery_batch_size_sum', { deployment: 'bulk' }) / delta(h0, h1, 'orrery_batch_size_count', { deployment: 'bulk' });
    const stubProc = await spawnReady('echo-server.js', [c.cluster.natsUrl, 'bench.echo', '16']);
    let stub: Driven;
    let h2Stub: H2loadRun;
    try {
      stub = await drive(stubProc.fields.grpc!, T.stubWarmupMs, T.stubWindowMs, { 'gRPC stub': [stubProc.child.pid!] });
      h2Stub = await h2loadGenerate({ ...h2, address: stubProc.fields.grpc!, warmupS: T.stubWarmupMs / 1000, durationS: T.stubWindowMs / 1000, pids: { 'gRPC stub': [stubProc.child.pid!] } });
    } finally {
      await stopChild(stubProc.child);
    }
    const h2Us = (r: H2loadRun, who: string) => Math.round((r.cpu[who]!.cores / r.perS) * 1e6);
    const h2RouterUs = h2Us(h2Routed, 'router');
    const h2StubUs = h2Us(h2Stub, 'gRPC stub');

    const batches = delta(m0, m1, 'orrery_batch_size_count', { deployment: 'bulk' });
    const meanBatch = delta(m0, m1, 'orrery_batch_size_sum', { deployment: 'bulk' }) / batches;
    const usPerReq = (d: Driven, who: string) => Math.round((d.cpu[who]!.cpuSeconds / (d.perS * (who === 'gRPC stub' ? T.stubWindowMs : T.windowMs) / 1000)) * 1e6);
    const routerUs = usPerReq(routed, 'router');
    const checks: Check[] = [{
      name: 'Throughput of one router (zero-cost replicas, batching; h2load)', measured: Math.round(h2Routed.perS), unit: 'req/s', target: `≥ ${T.target.toLocaleString('en')} req/s`,
      pass: h2Routed.perS >= T.target && h2Routed.failed + h2GrpcFailed === 0,
      note: `${h2Routed.failed + h2GrpcFailed ? `${h2Routed.failed + h2GrpcFailed} failed; ` : ''}a bare grpc-js stub under the same load: ${Math.round(h2Stub.perS)} req/s; with grpc-js clients: router ${Math.round(routed.perS)}, stub ${Math.round(stub.perS)} req/s`,
    }];
    const cpuCols = (d: { cpu: Driven['cpu'] }) => Object.entries(d.cpu).map(([k, v]) => `${k} ${v.cores}`).join(', ');
    const tables: Table[] = [
      {
        title: '2. Throughput ceiling of one router',
        columns: ['server', 'answered/s', 'failed', 'p50 ms', 'p99 ms', 'mean batch', 'batches/s', 'server CPU µs/req', 'client CPU µs/req'],
        rows: [
          ['router → NATS → 2 replicas, h2load', Math.round(h2Routed.perS), h2Routed.failed + h2GrpcFailed, round(h2Routed.latency.p50), round(h2Routed.latency.p99), round(h2MeanBatch), '–', h2RouterUs, h2Us(h2Routed, 'h2load')],
          ['grpc-js stub (answers at once), h2load', Math.round(h2Stub.perS), h2Stub.failed, round(h2Stub.latency.p50), round(h2Stub.latency.p99), '–', '–', h2StubUs, h2Us(h2Stub, 'h2load')],
          ['router → NATS → 2 replicas, grpc-js clients', Math.round(routed.perS), routed.failed, round(routed.latency.p50), round(routed.latency.p99), round(meanBatch), Math.round(batches / (T.windowMs / 1000)), routerUs, usPerReq(routed, 'clients')],
          ['grpc-js stub (answers at once), grpc-js clients', Math.round(stub.perS), stub.failed, round(stub.latency.p50), round(stub.latency.p99), '–', '–', usPerReq(stub, 'gRPC stub'), usPerReq(stub, 'clients')],
        ],
        note: `h2load: ${T.h2load.clients} connections × ${T.h2load.streams} streams in flight, one thread; its failed count includes calls the router ended with a gRPC status other than OK (orrery_requests_total; CANCELLED excepted: the calls h2load abandons in flight when it stops). CPU in cores busy during the h2load windows — router run: ${cpuCols(h2Routed)}; stub run: ${cpuCols(h2Stub)}. grpc-js clients: ${T.clientProcesses} client processes × ${T.channelsPerProcess} HTTP/2 connections, ${T.inFlightPerProcess} requests in flight each; ${T.deployment.replicas} zero-cost replicas, max_batch_size ${T.deployment.max_batch_size}, max_ongoing_batches ${T.deployment.max_ongoing_batches}, batch_wait_timeout_ms ${T.deployment.batch_wait_timeout_ms}; ${T.warmupMs / 1000} s warm-up, ${T.windowMs / 1000} s window (stub: ${T.stubWarmupMs / 1000} s, ${T.stubWindowMs / 1000} s). CPU in cores busy during the window — router run: ${cpuCols(routed)}; stub run: ${cpuCols(stub)}.`,
      },
    ];
    const clientUs = usPerReq(routed, 'clients');
    const notes = [
      `Throughput: driven by h2load, the router answered ${Math.round(h2Routed.perS)} req/s using ${h2Routed.cpu.router!.cores} cores (${h2RouterUs} µs of CPU per request, batches of ${round(h2MeanBatch)}; above one core because V8's garbage collector and libuv run on threads beside the event loop), with h2load itself at ${h2Us(h2Routed, 'h2load')} µs per request. `
        + `With grpc-js clients on the same two cores it answered ${Math.round(routed.perS)} req/s: those clients needed ${clientUs} µs per request and the machine was busy (${routed.cpu.machine?.cores} of ${os.cpus().length} cores, ${routed.cpu.other?.cores} of them other work). `
        + `20,000 req/s on one event loop leaves 50 µs of CPU per request, gRPC included; the bare grpc-js stub alone costs ${h2StubUs} µs per request server-side (its ceiling under h2load: ${Math.round(h2Stub.perS)} req/s), and the router ${h2RouterUs} µs, ${round(h2RouterUs / h2StubUs)}× the stub; at these costs 20,000 req/s takes ≈ ${round((20_000 * h2RouterUs) / 1e6)} cores of router. `
        + `Closing the gap takes both: less work per request in the router (its ${h2RouterUs - h2StubUs} µs over the stub are spread thin: a CPU profile, BENCH_CPU_PROF=<dir>, shows the router's own code, garbage collection, AbortController/EventTarget and protobuf encoding, none dominant) and several router processes behind one address (SO_REUSEPORT or a load balancer) on a machine with the cores for them and for the clients.`,
    ];
    const other = Math.max(...[routed, stub, h2Routed, h2Stub].map((d) => d.cpu.other?.cores ?? 0));
    if (other > 0.25) notes.push(`Caution: other work on the machine used up to ${other} cores during the throughput runs; the req/s figures are lower than this machine gives when it is otherwise idle.`);
    ok = true;
    return {
      checks, tables, notes,
      data: {
        config: T,
        h2load: { router: { ...h2Routed, grpcFailed: h2GrpcFailed, meanBatchSize: h2MeanBatch, cpuUsPerRequest: h2RouterUs }, grpcStub: { ...h2Stub, cpuUsPerRequest: h2StubUs } },
        grpcJsClients: { router: { ...routed, meanBatchSize: meanBatch, batchesPerS: batches / (T.windowMs / 1000), cpuUsPerRequest: routerUs }, grpcStub: stub },
      },
    };
  } finally {
    await c.stop(!ok);
  }
}
