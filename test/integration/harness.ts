/**
 * Integration-test harness: a real local cluster (nats-server, router and replicas as separate
 * processes, via the same LocalCluster that `orrery serve-local` uses) and a real gRPC client.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { LocalCluster } from '../../services/cli/local-cluster.js';
import { loadConfig } from '../../services/cli/load-config.js';
import { prepareLocalModels } from '../../services/models/local-models.js';

export interface TestCluster {
  readonly cluster: LocalCluster;
  readonly client: ImageServiceClient;
  readonly dir: string;
  /** The children's logs (kept when ORRERY_KEEP_TEST_LOGS is set). */
  readonly logFile: string;
  /** Stops the cluster and removes its files. */
  stop(): Promise<void>;
}

/** A config for tests: fast heartbeats, the given deployments, NATS filled in by the cluster. */
export function testConfig(deployments: Record<string, object>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nats: { prefix: 'orrery' },
    // 1 s without a heartbeat drops a replica: fast for the failure tests, yet not tripped by a
    // replica starved of CPU while ONNX Runtime saturates both cores of a CI machine.
    router: { replica_timeout_intervals: 10 },
    worker: { heartbeat_interval_ms: 100, drain_timeout_ms: 30_000 },
    deployments,
    ...extra,
  };
}

/** Starts a cluster; the caller stops it (`after(() => c.stop())`). */
export async function startCluster(config: Record<string, unknown>, options: { restartReplicas?: boolean; natsAuth?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<TestCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-it-'));
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, toYaml({ model_repository: path.join(dir, 'models'), ...config }));
  const logFile = path.join(dir, 'cluster.log');
  const logFd = fs.openSync(logFile, 'w');
  const loaded = loadConfig(file, {}, {});
  await prepareLocalModels(loaded.config);
  let cluster: LocalCluster;
  try {
    cluster = await LocalCluster.start({ loaded, grpcPort: 0, logs: logFd, restartReplicas: options.restartReplicas ?? false, readyTimeoutMs: 30_000, natsAuth: options.natsAuth, ...(options.env ? { env: options.env } : {}) });
  } catch (err) {
    process.stderr.write(fs.readFileSync(logFile, 'utf8').slice(-8000));
    throw err;
  }
  const client = imageServiceClient(cluster.grpcAddress);
  const stop = async () => {
    client.close();
    await cluster.stop();
    fs.closeSync(logFd);
    if (process.env.ORRERY_KEEP_TEST_LOGS) process.stderr.write(`cluster logs: ${logFile}\n`);
    else fs.rmSync(dir, { recursive: true, force: true });
  };
  return { cluster, client, dir, logFile, stop };
}

/** Parses Prometheus text exposition; sums the samples of `name` whose labels include `labels`. */
export async function metricSum(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x): [string, string] => [x[1] ?? '', x[2] ?? '']));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

/** The gRPC error of a promise that must fail. */
export async function grpcError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}
