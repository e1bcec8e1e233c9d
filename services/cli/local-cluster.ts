/**
 * `orrery serve-local`: a whole cluster on one machine — nats-server (unless given a URL), the
 * router and each deployment's replicas — as separate processes, like in Kubernetes. Replicas
 * that die are restarted (as a Deployment would); stop() drains in order: router, replicas, NATS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { stringify as toYaml } from 'yaml';
import type { ClusterConfig } from '../common/config.js';
import { packageRoot } from '../common/package-root.js';
import { checkHealth, healthClient } from './client.js';
import type { LoadedConfig } from './load-config.js';
import { NatsServerProcess, freePort } from './nats-server-process.js';

export interface LocalClusterOptions {
  readonly loaded: LoadedConfig;
  /** Use this NATS instead of starting one. */
  readonly natsUrl?: string;
  /** 0: a free port. Default: the config's. */
  readonly grpcPort?: number;
  /** Where children's logs go: inherit (a person watching) or ignore/a file descriptor. */
  readonly logs?: 'inherit' | 'ignore' | number;
  /** Restart replicas that exit without being asked to (default true). */
  readonly restartReplicas?: boolean;
  /** Extra environment for the children. */
  readonly env?: NodeJS.ProcessEnv;
  readonly readyTimeoutMs?: number;
}

export interface ReplicaProcess {
  readonly deployment: string;
  readonly id: string;
  readonly child: ChildProcess;
  readonly metricsUrl: string;
  /** Set when the cluster (not a crash) ended it. */
  stopping: boolean;
}

const CLI = (): string => path.join(packageRoot(), 'bin/orrery.js');

/** Spawns `orrery <args>` and resolves with the fields of its first `ready k=v ...` line on stdout. */
function spawnReady(args: string[], logs: LocalClusterOptions['logs'], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ child: ChildProcess; fields: Record<string, string> }> {
  const child = spawn(process.execPath, [CLI(), ...args], { stdio: ['ignore', 'pipe', logs ?? 'inherit'], env: { ...process.env, ...env } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`orrery ${args[0]} did not print its ready line within ${timeoutMs} ms`));
    }, timeoutMs);
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith('ready ')) return;
      clearTimeout(timer);
      const fields = Object.fromEntries(line.slice(6).split(' ').map((kv) => kv.split('=') as [string, string]));
      resolve({ child, fields });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`orrery ${args[0]} exited (${signal ?? code}) before it was ready`));
    });
  });
}

export class LocalCluster {
  nats: NatsServerProcess | undefined;
  natsUrl = '';
  router: ChildProcess | undefined;
  grpcAddress = '';
  metricsUrl = '';
  readonly replicas: ReplicaProcess[] = [];
  private configFile = '';
  private tmpDir = '';
  private stopping = false;
  private config!: ClusterConfig;

  private constructor(private readonly options: LocalClusterOptions) {}

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const c = new LocalCluster(options);
    try {
      await c.startInner();
    } catch (err) {
      await c.stop().catch(() => undefined);
      throw err;
    }
    return c;
  }

  private get env(): NodeJS.ProcessEnv {
    return this.options.env ?? {};
  }

  private get timeoutMs(): number {
    return this.options.readyTimeoutMs ?? 60_000;
  }

  private async startInner(): Promise<void> {
    const { loaded } = this.options;
    if (this.options.natsUrl) this.natsUrl = this.options.natsUrl;
    else {
      this.nats = await NatsServerProcess.start();
      this.natsUrl = this.nats.url;
    }
    const raw = structuredClone(loaded.raw) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    raw.nats = { ...(raw.nats ?? {}), url: this.natsUrl };
    this.config = (await import('../common/config.js')).compileConfig(raw);
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-local-'));
    this.configFile = path.join(this.tmpDir, 'config.yaml');
    fs.writeFileSync(this.configFile, toYaml(raw));

    const grpcPort = this.options.grpcPort ?? this.config.router.grpcPort;
    const routerArgs = ['router', '--config', this.configFile, '--grpc-port', String(grpcPort === 0 ? await freePort() : grpcPort), '--metrics-port', '0'];
    const r = await spawnReady(routerArgs, this.options.logs, this.env, this.timeoutMs);
    this.router = r.child;
    this.grpcAddress = r.fields.grpc!;
    this.metricsUrl = r.fields.metrics!;
    this.router.once('exit', (code, signal) => {
      if (!this.stopping) process.stderr.write(`orrery: the router exited unexpectedly (${signal ?? code})\n`);
    });

    await Promise.all(Object.values(this.config.deployments).flatMap((d) => Array.from({ length: d.replicas }, () => this.addReplica(d.name))));
    await this.waitServing();
  }

  /** Starts one more replica of `deployment` and resolves when it is running. */
  async addReplica(deployment: string): Promise<ReplicaProcess> {
    const { child, fields } = await spawnReady(['worker', '--deployment', deployment, '--config', this.configFile, '--metrics-port', '0'], this.options.logs, this.env, this.timeoutMs);
    const rp: ReplicaProcess = { deployment, id: fields.replica!, child, metricsUrl: fields.metrics!, stopping: false };
    this.replicas.push(rp);
    child.once('exit', (code, signal) => {
      const i = this.replicas.indexOf(rp);
      if (i >= 0) this.replicas.splice(i, 1);
      if (this.stopping || rp.stopping || this.options.restartReplicas === false) return;
      process.stderr.write(`orrery: replica ${rp.id} exited (${signal ?? code}); starting a new one\n`);
      setTimeout(() => void this.addReplica(deployment).catch((err: Error) => process.stderr.write(`orrery: restart failed: ${err.message}\n`)), 500);
    });
    return rp;
  }

  /** Stops one replica with `signal` (SIGTERM drains, SIGKILL crashes) and waits for it to exit. */
  async stopReplica(rp: ReplicaProcess, signal: NodeJS.Signals = 'SIGTERM', expectRestart = false): Promise<number | null> {
    rp.stopping = !expectRestart;
    const exited = new Promise<number | null>((resolve) => rp.child.once('exit', (code) => resolve(code)));
    rp.child.kill(signal);
    return exited;
  }

  /** Resolves when every deployment with replicas reports SERVING through gRPC health. */
  async waitServing(): Promise<void> {
    const health = healthClient(this.grpcAddress);
    try {
      const deadline = Date.now() + this.timeoutMs;
      const wanted = Object.values(this.config.deployments).filter((d) => d.replicas > 0).map((d) => d.name);
      for (;;) {
        const statuses = await Promise.all(['', ...wanted].map((s) => checkHealth(health, s)));
        if (statuses.every((s) => s === 'SERVING')) return;
        if (Date.now() > deadline) throw new Error(`cluster not serving after ${this.timeoutMs} ms: ${['(server)', ...wanted].map((n, i) => `${n}=${statuses[i]}`).join(' ')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      health.close();
    }
  }

  /** Drains the router (running calls finish), then the replicas, then stops NATS. */
  async stop(): Promise<void> {
    this.stopping = true;
    const exit = (c: ChildProcess | undefined) =>
      !c || c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGTERM');
      });
    await exit(this.router);
    await Promise.all(this.replicas.map((r) => exit(r.child)));
    await this.nats?.close();
    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true });
  }
}
