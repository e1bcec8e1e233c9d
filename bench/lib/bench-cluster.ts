/**
 * A real local cluster for one benchmark: nats-server, the router and the replicas as separate
 * processes (services/cli/local-cluster.ts), from a config written to a temp dir, plus gRPC
 * clients on loopback. Children's logs go to a file that is kept only when the run fails.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { generate, imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { LocalCluster } from '../../services/cli/local-cluster.js';
import { loadConfig } from '../../services/cli/load-config.js';
import { descendantPids } from './proc-cpu.js';

export interface BenchCluster {
  readonly cluster: LocalCluster;
  readonly dir: string;
  /** Process ids by role, for CPU accounting. */
  readonly pids: { router: number[]; replicas: number[]; nats: number[] };
  /** Stops everything; keeps the logs (and says where) when `keepLogs`. */
  stop(keepLogs?: boolean): Promise<void>;
}

/** Fast heartbeats, quiet logs, the given deployments. */
export function benchConfig(deployments: Record<string, object>): Record<string, unknown> {
  return {
    nats: { prefix: 'orrery' },
    router: { replica_timeout_intervals: 5 },
    worker: { heartbeat_interval_ms: 500, drain_timeout_ms: 10_000 },
    deployments,
  };
}

/**
 * Starts a cluster. With BENCH_CPU_PROF=<dir> in the environment, the router and replicas run
 * the V8 CPU profiler (cpu-prof-preload.ts) and write their profiles there when they stop (read
 * them with `node dist/bench/lib/cpu-profile.js <file>`).
 */
export async function startBenchCluster(config: Record<string, unknown>): Promise<BenchCluster> {
  const profDir = process.env.BENCH_CPU_PROF;
  const env: NodeJS.ProcessEnv = profDir
    ? { BENCH_CPU_PROF: path.resolve(profDir), NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${path.join(__dirname, 'cpu-prof-preload.js')}`.trim() }
    : {};
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-'));
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, toYaml({ model_repository: path.join(dir, 'models'), ...config }));
  const logFile = path.join(dir, 'cluster.log');
  const logFd = fs.openSync(logFile, 'w');
  let cluster: LocalCluster;
  try {
    cluster = await LocalCluster.start({ loaded: loadConfig(file, {}, {}), grpcPort: 0, logs: logFd, restartReplicas: false, readyTimeoutMs: 30_000, env });
  } catch (err) {
    process.stderr.write(fs.readFileSync(logFile, 'utf8').slice(-8000));
    fs.closeSync(logFd);
    throw err;
  }
  const pids = {
    router: [cluster.router!.pid!],
    replicas: cluster.replicas.map((r) => r.child.pid!),
    nats: descendantPids(process.pid, 'nats-server'),
  };
  const stop = async (keepLogs = false) => {
    await cluster.stop();
    fs.closeSync(logFd);
    if (keepLogs) process.stderr.write(`bench: cluster logs kept in ${logFile}\n`);
    else fs.rmSync(dir, { recursive: true, force: true });
  };
  return { cluster, dir, pids, stop };
}

/**
 * An ImageService client on its own HTTP/2 connection: grpc-js shares one connection between
 * clients with equal options, so `channel` goes into the options to keep them apart.
 */
export function channelClient(address: string, channel = 0): ImageServiceClient {
  return imageServiceClient(address, { 'orrery.bench_channel': channel });
}

/** Generate (services/cli/client.ts), resolving with the latency in ms or the failure's gRPC code. */
export async function timedGenerate(client: ImageServiceClient, req: object, deadlineMs: number): Promise<{ ok: boolean; ms: number; code?: number }> {
  const t0 = performance.now();
  try {
    await generate(client, req, deadlineMs);
    return { ok: true, ms: performance.now() - t0 };
  } catch (err) {
    return { ok: false, ms: performance.now() - t0, code: (err as grpc.ServiceError).code };
  }
}
