/**
 * The chaos soak (issue 14): the whole system on loopback — nats-server, two routers, three
 * synthetic cost-model replicas (and one whose images go through the object store) and one
 * tiny-SDXL replica, as separate processes — under mixed
 * load (Generate, GenerateStream, calls cancelled by their callers; about 70 % of the synthetic
 * replicas' capacity, a share on tiny SDXL) while faults hit it at once: SIGKILL of a random
 * synthetic replica every few seconds (serve-local restarts it), a nats-server restart every
 * ~30 s, one kill -9 of a router (clients retry on the other with the README's retry policy),
 * and one replica paused with SIGSTOP for longer than the heartbeat timeout, then SIGCONT (its
 * late replies must answer nothing twice). A share of the images is big enough to go through the
 * NATS object store, so payloads left behind are counted. It counts every call's outcome and samples the RSS
 * of the long-lived processes. Used by test/integration/chaos-soak.test.ts (60 s) and
 * bench/soak.bench.ts (10 minutes).
 */
import fs from 'node:fs';
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { Metadata, status } from '@grpc/grpc-js';
import { Objm } from '@nats-io/obj';
import { connect } from '@nats-io/transport-node';
import { imageServiceClient, type GenerateEvent, type GenerateResponse, type ImageServiceClient } from '../../services/cli/client.js';
import { RETRYING_CHANNEL_OPTIONS } from '../../services/cli/retry-policy.js';
import { subjects } from '../../services/common/subjects.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { sleep, startCluster, testConfig, type TestCluster } from '../integration/harness.js';
import { lcg } from './rng.js';
import { startSecondRouter, type SecondRouter } from './second-router.js';

export interface SoakOptions {
  readonly durationMs: number;
  /** A random synthetic replica is killed this often (default 5 s). */
  readonly replicaKillEveryMs?: number;
  /** nats-server is restarted this often (default 30 s). */
  readonly natsRestartEveryMs?: number;
  /** Load as a fraction of the synthetic replicas' capacity (default 0.7). */
  readonly loadFraction?: number;
  readonly seed?: number;
  /** Progress lines (a person watching the 10-minute run). */
  readonly progress?: (line: string) => void;
}

export interface RssSeries {
  readonly process: string;
  readonly samples: number;
  readonly firstMiB: number;
  readonly lastMiB: number;
  /** Least-squares slope after the warm-up (the first quarter of the run), MiB per minute. */
  readonly slopeMiBPerMin: number;
}

/** The JS heap in use (V8, after the last GC) of a long-lived process, read from its /metrics every 5 s: tells a leak of JS objects from RSS noise. */
export interface HeapSeries {
  readonly process: string;
  readonly samples: number;
  readonly firstMiB: number;
  readonly lastMiB: number;
  /** Least-squares slope after the warm-up, MiB per minute. */
  readonly slopeMiBPerMin: number;
}

export interface SoakReport {
  readonly durationS: number;
  readonly arrivalsPerS: number;
  readonly sent: number;
  readonly ok: number;
  /** Calls the client cancelled itself (CANCELLED by the caller, as asked). */
  readonly cancelledByCaller: number;
  /** Calls that ended with a status other than OK, by status code name. */
  readonly failedByCode: Readonly<Record<string, number>>;
  /** Calls with no outcome by their deadline plus a grace period. */
  readonly lost: number;
  /** Calls answered more than once (a second unary answer, a second `done`, or an image twice). */
  readonly answeredTwice: number;
  /** Answers carrying another request's image. */
  readonly wrongAnswers: number;
  /** Objects left in the payload object store once every call ended. */
  readonly payloadsLeft: number;
  /** Those objects: name (its hint says whose: `out-<requestId>…`), size, and when stored (s after the start). */
  readonly payloadsLeftDetails: ReadonlyArray<{ readonly name: string; readonly size: number; readonly storedAtS: number }>;
  /** Every failure's status message, by status code name then message (ids replaced by `<id>`), with its count. */
  readonly failureMessages: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** When each nats-server restart, router kill and replica pause happened (s after the start), to match failures and leftovers against. */
  readonly faultTimes: ReadonlyArray<{ readonly atS: number; readonly fault: string }>;
  readonly faults: { readonly replicaKills: number; readonly natsRestarts: number; readonly natsRestartFailures: number; readonly routerKills: number; readonly replicaPauses: number };
  readonly rss: readonly RssSeries[];
  readonly heapUsed: readonly HeapSeries[];
}

/**
 * Node options of the cluster's processes: a capped V8 young generation. Uncapped, V8 resizes it
 * with the allocation rate between 8 and 80 MiB (router, Node 24) and shrinks it back at a major
 * GC, which moved the router's RSS by 70 MiB within a minute while its heap after GC stayed flat:
 * the RSS slope then measured the resizing, not leaks. Capped, RSS follows the old generation and
 * native memory, where leaks accumulate.
 */
const MEASURED_NODE_OPTIONS = '--max-semi-space-size=4';
const CALL_TIMEOUT_MS = 20_000;
const GRACE_MS = 10_000;
/** The synthetic deployment's cost: a batch of n takes 200 + 10 n ms of (timer) device time. */
const SYNTHETIC = {
  stage: 'synthetic', models: ['syn-a'], replicas: 3, max_batch_size: 4, batch_wait_timeout_ms: 10, max_ongoing_batches: 2,
  max_queued_requests: 5000, options: { fixed_ms: 200, per_item_ms: 10, image_bytes: 2000, progress: true },
};
/** A share of the load whose images are too big to travel inline: they go through the object store. */
const SYNTHETIC_BIG = { ...SYNTHETIC, replicas: 1, options: { ...SYNTHETIC.options, image_bytes: 150_000 } };
/** Images per second the synthetic replicas can make: full batches back to back on each. */
const SYNTHETIC_CAPACITY_PER_S = SYNTHETIC.replicas * SYNTHETIC.max_batch_size * 1000 / (SYNTHETIC.options.fixed_ms + SYNTHETIC.options.per_item_ms * SYNTHETIC.max_batch_size);

type Kind = 'generate' | 'stream' | 'generate-cancel' | 'stream-cancel' | 'sdxl' | 'big';

interface Call {
  readonly kind: Kind;
  readonly prompt: string;
  readonly sentAtMs: number;
  outcome?: string;
  /** The status message of a failed call. */
  detail?: string;
  answers: number;
  wrong: boolean;
}

/** Least-squares slope of (t ms, y) in y units per minute. */
function slopePerMin(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60_000;
}

function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

const STATUS_NAMES: Record<number, string> = { 1: 'CANCELLED', 2: 'UNKNOWN', 3: 'INVALID_ARGUMENT', 4: 'DEADLINE_EXCEEDED', 5: 'NOT_FOUND', 8: 'RESOURCE_EXHAUSTED', 9: 'FAILED_PRECONDITION', 13: 'INTERNAL', 14: 'UNAVAILABLE' };

export async function runChaosSoak(options: SoakOptions): Promise<SoakReport> {
  const say = options.progress ?? (() => undefined);
  const rng = lcg(options.seed ?? 14);
  const c: TestCluster = await startCluster(testConfig({
    synthetic: SYNTHETIC,
    'synthetic-big': SYNTHETIC_BIG,
    'sdxl-base': { stage: 'sdxl', models: ['tiny-sdxl'], default_steps: 2, max_batch_size: 2, replicas: 1 },
  }, { max_inline_payload_bytes: 100_000 }), { restartReplicas: true, env: { NODE_OPTIONS: [process.env.NODE_OPTIONS, MEASURED_NODE_OPTIONS].filter(Boolean).join(' ') } });
  let second: SecondRouter | undefined;
  let client: ImageServiceClient | undefined;
  const timers: NodeJS.Timeout[] = [];
  try {
    second = await startSecondRouter(c);
    client = imageServiceClient(`${c.cluster.grpcAddress},${second.grpcAddress}`, RETRYING_CHANNEL_OPTIONS);
    const calls: Call[] = [];
    const faults = { replicaKills: 0, natsRestarts: 0, natsRestartFailures: 0, routerKills: 0, replicaPauses: 0 };
    const arrivalsPerS = (options.loadFraction ?? 0.7) * SYNTHETIC_CAPACITY_PER_S;
    const started = Date.now();
    const endAt = started + options.durationMs;
    let paused: number | undefined;
    const faultTimes: Array<{ atS: number; fault: string }> = [];
    const fault = (what: string) => {
      faultTimes.push({ atS: Math.round((Date.now() - started) / 100) / 10, fault: what });
      say(what);
    };

    // RSS of the processes that live through the run: router A, the SDXL replica, this client.
    const sdxlPid = c.cluster.replicas.find((r) => r.deployment === 'sdxl-base')?.child.pid;
    const tracked: Array<{ name: string; pid: () => number | undefined; points: Array<[number, number]> }> = [
      { name: 'router', pid: () => c.cluster.router?.pid, points: [] },
      { name: 'sdxl replica', pid: () => sdxlPid, points: [] },
      { name: 'client (this process)', pid: () => process.pid, points: [] },
    ];
    timers.push(setInterval(() => {
      for (const t of tracked) {
        const mib = rssMiB(t.pid());
        if (mib !== undefined) t.points.push([Date.now() - started, mib]);
      }
    }, 1000));

    // Heap in use of the router and the SDXL replica (prom-client's nodejs_heap_size_used_bytes).
    const sdxlMetrics = c.cluster.replicas.find((r) => r.deployment === 'sdxl-base')?.metricsUrl;
    const heapTracked: Array<{ name: string; url: () => string | undefined; points: Array<[number, number]> }> = [
      { name: 'router', url: () => c.cluster.metricsUrl, points: [] },
      { name: 'sdxl replica', url: () => sdxlMetrics, points: [] },
    ];
    timers.push(setInterval(() => {
      for (const t of heapTracked) {
        const url = t.url();
        if (url) void heapUsedMiB(url).then((mib) => mib !== undefined && t.points.push([Date.now() - started, mib]));
      }
    }, 5000));

    const syntheticReplicas = () => c.cluster.replicas.filter((r) => r.deployment === 'synthetic' && r.child.pid !== paused && r.child.exitCode === null);
    timers.push(setInterval(() => {
      const live = syntheticReplicas();
      if (live.length < 2) return; // keep one serving while the others restart
      const victim = live[Math.floor(rng() * live.length)]!;
      faults.replicaKills++;
      void c.cluster.stopReplica(victim, 'SIGKILL', true);
    }, options.replicaKillEveryMs ?? 5000));
    let restarting = false;
    timers.push(setInterval(() => {
      if (restarting) return;
      restarting = true;
      faults.natsRestarts++;
      fault(`nats-server restart ${faults.natsRestarts}`);
      c.cluster.nats!.restart().catch((err: Error) => {
        // Counted and reported; the next interval starts it again.
        faults.natsRestartFailures++;
        say(`nats-server restart failed: ${err.message.split('\n')[0]}`);
      }).finally(() => {
        restarting = false;
      });
    }, options.natsRestartEveryMs ?? 30_000));
    timers.push(setTimeout(() => {
      faults.routerKills++;
      fault('kill -9 of the second router');
      second!.cluster.router?.kill('SIGKILL');
    }, options.durationMs * 0.4));
    timers.push(setTimeout(() => {
      const victim = syntheticReplicas()[0];
      if (!victim?.child.pid) return;
      paused = victim.child.pid;
      faults.replicaPauses++;
      fault(`SIGSTOP of replica ${victim.id} for 3 s`);
      process.kill(paused, 'SIGSTOP');
      // 3 s: three times the heartbeat timeout of the test config (10 intervals of 100 ms).
      timers.push(setTimeout(() => {
        if (paused !== undefined) process.kill(paused, 'SIGCONT');
        paused = undefined;
      }, 3000));
    }, options.durationMs * 0.6));

    const pending = new Set<Promise<void>>();
    let i = 0;
    let next = started;
    while (Date.now() < endAt) {
      // Poisson arrivals: exponential gaps at the mean rate.
      next += -Math.log(1 - rng()) * 1000 / arrivalsPerS;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      const r = rng();
      const kind: Kind = r < 0.03 ? 'sdxl' : r < 0.08 ? 'big' : r < 0.6 ? 'generate' : r < 0.85 ? 'stream' : r < 0.95 ? 'generate-cancel' : 'stream-cancel';
      const call: Call = { kind, prompt: `soak ${i} planet`, sentAtMs: Date.now(), answers: 0, wrong: false };
      calls.push(call);
      const p = runCall(client, call, i, rng());
      pending.add(p);
      void p.finally(() => pending.delete(p));
      i++;
      if (i % 500 === 0) say(`${i} calls sent, ${Math.round((Date.now() - started) / 1000)} s`);
    }
    for (const t of timers) clearInterval(t);
    if (paused !== undefined) process.kill(paused, 'SIGCONT');
    // Every call has a deadline: wait for them, at most its deadline and the grace period.
    await Promise.race([Promise.all([...pending]), sleep(CALL_TIMEOUT_MS + GRACE_MS)]);
    const lost = calls.filter((x) => x.outcome === undefined).length;
    const failedByCode: Record<string, number> = {};
    const failureMessages: Record<string, Record<string, number>> = {};
    for (const x of calls) {
      if (!x.outcome || x.outcome === 'OK' || x.outcome === 'CANCELLED_BY_CALLER') continue;
      failedByCode[x.outcome] = (failedByCode[x.outcome] ?? 0) + 1;
      const byMessage = (failureMessages[x.outcome] ??= {});
      const message = genericMessage(x.detail ?? '');
      byMessage[message] = (byMessage[message] ?? 0) + 1;
    }
    const payloadsLeftDetails = await storedPayloads(c, started);
    return {
      durationS: options.durationMs / 1000,
      arrivalsPerS,
      sent: calls.length,
      ok: calls.filter((x) => x.outcome === 'OK').length,
      cancelledByCaller: calls.filter((x) => x.outcome === 'CANCELLED_BY_CALLER').length,
      failedByCode,
      lost,
      answeredTwice: calls.filter((x) => x.answers > 1).length,
      wrongAnswers: calls.filter((x) => x.wrong).length,
      payloadsLeft: payloadsLeftDetails.length,
      payloadsLeftDetails,
      failureMessages,
      faultTimes,
      faults,
      rss: tracked.map((t) => series(t.name, t.points, options.durationMs)),
      heapUsed: heapTracked.map((t) => series(t.name, t.points, options.durationMs)),
    };
  } finally {
    for (const t of timers) clearInterval(t);
    client?.close();
    await second?.stop();
    await c.stop();
  }
}

/** First, last and the slope after the warm-up (the first quarter of the run) of a memory series. */
function series(name: string, points: ReadonlyArray<readonly [number, number]>, durationMs: number): RssSeries {
  const after = points.filter(([ms]) => ms >= durationMs / 4);
  return { process: name, samples: points.length, firstMiB: points[0]?.[1] ?? 0, lastMiB: points.at(-1)?.[1] ?? 0, slopeMiBPerMin: slopePerMin(after) };
}

/** A process's JS heap in use (MiB) from its Prometheus metrics, or undefined when it does not answer. */
async function heapUsedMiB(metricsUrl: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(2000) })).text();
    const m = /^\w*nodejs_heap_size_used_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
    return m ? Number(m[1]) / 1048576 : undefined;
  } catch {
    return undefined;
  }
}

/** Payload objects still stored (the reader deletes each after reading it). */
async function storedPayloads(c: TestCluster, startedMs: number): Promise<SoakReport['payloadsLeftDetails']> {
  const nc = await connect({ servers: c.cluster.natsUrl });
  try {
    const infos = await (await new Objm(nc).open(subjects('orrery').payloadBucket)).list();
    return infos.filter((o) => !o.deleted).map((o) => ({ name: o.name, size: o.size, storedAtS: Math.round((Date.parse(o.mtime) - startedMs) / 100) / 10 }));
  } finally {
    await nc.close();
  }
}

/** A status message with its ids (UUIDs, replica ids' random suffixes, numbers) replaced, so equal causes group. */
function genericMessage(message: string): string {
  return message.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>').replace(/-[0-9a-f]{8}\b/g, '-<id>').replace(/\d+/g, 'N').slice(0, 300);
}

/** One call of `call.kind`; records its outcome, its answers, and whether it got its own image. */
function runCall(client: ImageServiceClient, call: Call, i: number, cancelAt: number): Promise<void> {
  const sdxl = call.kind === 'sdxl';
  const req = sdxl
    ? { prompt: call.prompt, seed: String(i), num_images: 1, pipeline: 'sdxl-base', width: 128, height: 64 }
    : { prompt: call.prompt, seed: String(i), num_images: 1, pipeline: call.kind === 'big' ? 'synthetic-big' : 'synthetic', steps: 3 };
  const deadline = Date.now() + CALL_TIMEOUT_MS;
  const end = (outcome: string, err?: ServiceError) => {
    if (call.outcome !== undefined) return;
    call.outcome = outcome;
    if (err && outcome !== 'CANCELLED_BY_CALLER') call.detail = err.details || err.message;
  };
  const codeName = (err: ServiceError) => STATUS_NAMES[err.code] ?? String(err.code);
  // Cancelled calls end at a random point between 0 and 400 ms: queued, running, or done.
  const cancelAfterMs = Math.floor(cancelAt * 400);
  if (call.kind === 'stream' || call.kind === 'stream-cancel') {
    return new Promise((resolve) => {
      const s: ClientReadableStream<GenerateEvent> = client.GenerateStream(req, new Metadata(), { deadline });
      const chunks: Buffer[] = [];
      let done = 0;
      let cancelled = false;
      if (call.kind === 'stream-cancel') setTimeout(() => {
        cancelled = true;
        s.cancel();
      }, cancelAfterMs);
      s.on('data', (e: GenerateEvent) => {
        if (e.image_chunk) {
          chunks.push(e.image_chunk.data);
          if (e.image_chunk.last && chunks.length > 0 && !ownImage(Buffer.concat(chunks), call.prompt, sdxl)) call.wrong = true;
        }
        if (e.done && ++done > 1) call.answers = done;
      });
      s.on('error', (err: ServiceError) => {
        end(cancelled && err.code === status.CANCELLED ? 'CANCELLED_BY_CALLER' : codeName(err), err);
        resolve();
      });
      s.on('end', () => {
        if (done >= 1) call.answers = Math.max(call.answers, done);
        end(done >= 1 ? 'OK' : 'NO_DONE_EVENT');
        resolve();
      });
    });
  }
  return new Promise((resolve) => {
    let cancelled = false;
    const unary = client.Generate(req, new Metadata(), { deadline }, (err: ServiceError | null, res: GenerateResponse) => {
      call.answers++;
      if (err) end(cancelled && err.code === status.CANCELLED ? 'CANCELLED_BY_CALLER' : codeName(err), err);
      else {
        if (res.images.length !== 1 || !ownImage(res.images[0]!.data, call.prompt, sdxl)) call.wrong = true;
        end('OK');
      }
      resolve();
    });
    if (call.kind === 'generate-cancel') setTimeout(() => {
      cancelled = true;
      unary.cancel();
    }, cancelAfterMs);
  });
}

/** True when `data` is this request's image: the synthetic payload's header names its prompt; SDXL gives a PNG. */
function ownImage(data: Buffer, prompt: string, sdxl: boolean): boolean {
  if (sdxl) return data.subarray(1, 4).toString('latin1') === 'PNG';
  try {
    return parseSyntheticPayload(data).prompt === prompt;
  } catch {
    return false;
  }
}
