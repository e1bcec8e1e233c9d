/**
 * gRPC unary load from h2load (nghttp2's HTTP/2 load generator, Debian package nghttp2-client;
 * `make bench` installs it). A C client costs the machine a small fraction of what a grpc-js
 * client does per call, so on a 2-core machine the server under test gets the CPU, and its
 * latency is not the client's event-loop lag: what a client on another machine would see.
 *
 * A gRPC unary call is an HTTP/2 POST of one length-prefixed message with `content-type:
 * application/grpc` and `te: trailers`. h2load sees the HTTP status, not the gRPC status in the
 * trailers: callers check the server's own request counters for that.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { protoDir } from '../../services/common/wire.js';
import { CpuMeter } from './proc-cpu.js';
import { delta, type Scrape } from './prometheus.js';
import { summarize, type Summary } from './stats.js';

/** Writes `request` (an orrery.v1.GenerateRequest, proto field names) as a gRPC request body; returns the file. */
export function generateRequestBody(dir: string, request: Record<string, unknown>): string {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(protoDir(), target);
  root.loadSync('orrery/v1/image_service.proto', { keepCase: true });
  const type = root.lookupType('orrery.v1.GenerateRequest');
  const message = type.encode(type.fromObject(request)).finish();
  const body = Buffer.alloc(5 + message.length); // 1 byte "compressed" = 0, 4 bytes length, message
  body.writeUInt32BE(message.length, 1);
  body.set(message, 5);
  const file = path.join(dir, 'generate-request.bin');
  fs.writeFileSync(file, body);
  return file;
}

export interface H2loadRun {
  readonly answered: number;
  /** Answered requests per second over the measured part. */
  readonly perS: number;
  /** Requests h2load counted failed, errored or timed out. */
  readonly failed: number;
  /** Latency of each answered request (HTTP 200), from h2load's per-request log (ms). */
  readonly latency: Summary;
  /** CPU used while the measured part ran (cores busy), by h2load and the processes in `pids`. */
  readonly cpu: Record<string, { cpuSeconds: number; cores: number }>;
}

export interface H2loadOptions {
  /** host:port of a plaintext gRPC server. */
  readonly address: string;
  readonly bodyFile: string;
  readonly clients: number;
  /** Requests in flight per client (HTTP/2 streams). */
  readonly streams: number;
  /** Paced load: requests per second per client (h2load --rps); absent: closed loop. */
  readonly ratePerClient?: number;
  readonly warmupS: number;
  readonly durationS: number;
  /** Processes whose CPU is metered beside h2load's. */
  readonly pids: Record<string, number[]>;
}

/** Runs h2load against ImageService.Generate; only the `durationS` after `warmupS` is reported. */
export async function h2loadGenerate(o: H2loadOptions): Promise<H2loadRun> {
  const log = path.join(path.dirname(o.bodyFile), `h2load-${process.pid}-${Date.now()}.log`);
  const args = [
    `http://${o.address}/orrery.v1.ImageService/Generate`, '-d', o.bodyFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers',
    '-c', String(o.clients), '-m', String(o.streams), '-t', '1', '-D', String(o.durationS), '--warm-up-time', String(o.warmupS), '--log-file', log,
    ...(o.ratePerClient ? ['--rps', String(o.ratePerClient)] : []),
  ];
  const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`h2load could not start (${err.message}); make bench installs it (Debian package nghttp2-client)`)));
    child.once('exit', (code) => resolve(code ?? 1));
  });
  const cpu = new CpuMeter({ ...o.pids, h2load: [child.pid!] });
  // Meter the measured part only: from the end of the warm-up to just before h2load stops.
  await new Promise((r) => setTimeout(r, (o.warmupS + 0.3) * 1000));
  cpu.begin();
  await new Promise((r) => setTimeout(r, (o.durationS - 0.6) * 1000));
  const used = cpu.end();
  const code = await exited;
  if (code !== 0) throw new Error(`h2load exited with ${code}: ${output.slice(-2000)}`);
  // Counts from h2load's summary (the measured part only; requests still in flight when it stops
  // are abandoned, not counted). Latencies from its per-request log: start (µs), HTTP status,
  // duration (µs); its rows without a status are not answers.
  const m = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
  if (!m) throw new Error(`unexpected h2load output: ${output.slice(-2000)}`);
  const rows = fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split('\t').map(Number));
  fs.rmSync(log, { force: true });
  const succeeded = Number(m[2]);
  return {
    answered: succeeded, perS: succeeded / o.durationS, failed: Number(m[3]) + Number(m[4]) + Number(m[5]),
    latency: summarize(rows.filter((r) => r[1] === 200).map((r) => r[2]! / 1000)), cpu: used,
  };
}

/**
 * Generate calls the router ended with a gRPC status other than OK between two scrapes of its
 * metrics — what h2load, seeing HTTP statuses only, cannot tell. CANCELLED is left out: those are
 * the calls h2load abandons in flight when it stops.
 */
export function routerGrpcFailures(before: Scrape, after: Scrape): number {
  const n = (labels: Record<string, string>) => delta(before, after, 'orrery_requests_total', { method: 'Generate', ...labels });
  return n({}) - n({ code: 'OK' }) - n({ code: 'CANCELLED' });
}
