/**
 * `orrery serve-local`: a whole cluster on one machine — nats-server (unless given a URL), the
 * router and each deployment's replicas — as separate processes, like in Kubernetes. Replicas
 * and a router that dies are restarted (as a Deployment would; the router on the same gRPC and
 * metrics ports, so clients reconnect); stop() drains in order: router, replicas, NATS.
 * For deployments with `autoscaling`, it plays the part of the Kubernetes Deployment controller:
 * the router's autoscaler (scale target `local`) asks over NATS for N replicas and this starts
 * processes, or stops some with SIGTERM, which drains them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { stringify as toYaml } from 'yaml';
import type { ClusterConfig } from '../common/config.js';
import { packageRoot } from '../common/package-root.js';
import { decodeScaleMessage, encodeScaleMessage, scaleSubject, type ScaleRequest } from '../router/scale-targets/local.js';
import { checkHealth, healthClient } from './client.js';
import { asMapping, type LoadedConfig } from './load-config.js';
import { NatsServerProcess, freePort } from './nats-server-process.js';
import { writeLocalNatsAuth, type LocalNatsAuth } from './local-nats-auth.js';
import { natsAuthOptions } from '../common/nats-auth-options.js';
import { compileNatsSecurity } from '../common/nats-security-config.js';
import { inboxPrefix, type NatsRole } from '../common/nats-permissions.js';

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
  /** Restart the router when it exits without being asked to, on the same ports (default true). */
  readonly restartRouter?: boolean;
  /** Extra environment for the children. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Run the started nats-server with authorization: throwaway router and worker users with
   * least-privilege permissions (local-nats-auth.ts). Ignored with `natsUrl`.
   */
  readonly natsAuth?: boolean;
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

/** The port of a URL as a string ("http://127.0.0.1:9464/metrics" → "9464"). */
const portOf = (url: string): string => new URL(url).port;

/** Spawns `orrery <args>` and resolves with the fields of its first `ready k=v ...` line on stdout (also the tests' way to start one process). */
export function spawnReady(args: string[], logs: LocalClusterOptions['logs'], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ child: ChildProcess; fields: Record<string, string> }> {
  // The IPC channel is a lifeline: a child whose parent dies sees it close and drains (commands-serve.ts).
  const child = spawn(process.execPath, [CLI(), ...args], { stdio: ['ignore', 'pipe', logs ?? 'inherit', 'ipc'], env: { ...process.env, ...env } });
  child.channel?.unref();
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
  /** Autoscaled deployments: the replica count the router last asked for. */
  private readonly desired = new Map<string, number>();
  /** Replicas being started per autoscaled deployment (counted as running when reconciling). */
  private readonly starting = new Map<string, number>();
  private readonly pendingStarts = new Set<Promise<unknown>>();
  private scaleConnection: NatsConnection | undefined;
  /** The router's command line, with its ports fixed after the first start so a restart keeps them. */
  private routerArgs: string[] = [];
  /** A router restart under way; stop() waits for it so it never races a new router into life. */
  private routerRestart: Promise<void> | undefined;
  /** How many times the router was restarted (for tests and logs). */
  routerRestarts = 0;

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

  /** serve-local --nats-auth's credentials (undefined: NATS as configured). */
  private natsAuth: LocalNatsAuth | undefined;

  /** The environment of a child of `role`: the options' plus its NATS identity under --nats-auth. */
  private env(role: NatsRole): NodeJS.ProcessEnv {
    return { ...this.options.env, ...this.natsAuth?.env[role] };
  }

  private get timeoutMs(): number {
    return this.options.readyTimeoutMs ?? 60_000;
  }

  private async startInner(): Promise<void> {
    const { loaded } = this.options;
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-local-'));
    if (this.options.natsUrl) this.natsUrl = this.options.natsUrl;
    else {
      if (this.options.natsAuth) this.natsAuth = writeLocalNatsAuth(this.tmpDir, loaded.config.nats.prefix);
      this.nats = await NatsServerProcess.start({ configFile: this.natsAuth?.serverConfigFile });
      this.natsUrl = this.nats.url;
    }
    const raw = structuredClone(loaded.raw);
    raw.nats = { ...asMapping(raw.nats), url: this.natsUrl };
    this.config = (await import('../common/config.js')).compileConfig(raw);
    this.configFile = path.join(this.tmpDir, 'config.yaml');
    fs.writeFileSync(this.configFile, toYaml(raw));

    const autoscaled = Object.values(this.config.deployments).filter((d) => d.autoscaling);
    for (const d of autoscaled) this.desired.set(d.name, d.replicas);
    // Listening before the router starts, so its autoscaler learns the counts from here.
    if (autoscaled.length > 0) await this.listenForScale();

    const grpcPort = this.options.grpcPort ?? this.config.router.grpcPort;
    const routerArgs = ['router', '--config', this.configFile, '--grpc-port', String(grpcPort === 0 ? await freePort() : grpcPort), '--metrics-port', '0'];
    if (autoscaled.length > 0) routerArgs.push('--scale-target', 'local');
    const r = await spawnReady(routerArgs, this.options.logs, this.env('router'), this.timeoutMs);
    this.grpcAddress = r.fields.grpc!;
    this.metricsUrl = r.fields.metrics!;
    // A restarted router listens where this one did: clients and scrapers keep their addresses.
    this.routerArgs = routerArgs.map((a, i) => (routerArgs[i - 1] === '--grpc-port' ? portOf(`http://${this.grpcAddress}`) : routerArgs[i - 1] === '--metrics-port' ? portOf(this.metricsUrl) : a));
    this.watchRouter(r.child);

    await Promise.all(Object.values(this.config.deployments).flatMap((d) => Array.from({ length: d.replicas }, () => this.addReplica(d.name))));
    await this.waitServing();
  }

  /** Takes `child` as the router and restarts it if it exits while the cluster is not stopping. */
  private watchRouter(child: ChildProcess): void {
    this.router = child;
    child.once('exit', (code, signal) => {
      if (this.stopping || this.router !== child) return;
      if (this.options.restartRouter === false) {
        process.stderr.write(`orrery: the router exited unexpectedly (${signal ?? code})\n`);
        return;
      }
      process.stderr.write(`orrery: the router exited unexpectedly (${signal ?? code}); starting a new one on ${this.grpcAddress}\n`);
      this.routerRestart = this.restartRouter().finally(() => {
        this.routerRestart = undefined;
      });
    });
  }

  /**
   * Starts a new router with the first one's arguments (same ports), retrying with backoff while it
   * cannot start (its port still held, NATS away) until it runs or the cluster stops. A router that
   * becomes ready after stop() began is left to stop(), which waits for this.
   */
  private async restartRouter(): Promise<void> {
    for (let attempt = 1; !this.stopping; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** (attempt - 1), 5000)));
      if (this.stopping) return;
      try {
        const r = await spawnReady(this.routerArgs, this.options.logs, this.env('router'), this.timeoutMs);
        this.routerRestarts++;
        this.watchRouter(r.child);
        return;
      } catch (err) {
        process.stderr.write(`orrery: restarting the router failed (${(err as Error).message}); trying again\n`);
      }
    }
  }

  /** Starts one more replica of `deployment` and resolves when it is running. */
  async addReplica(deployment: string): Promise<ReplicaProcess> {
    const { child, fields } = await spawnReady(['worker', '--deployment', deployment, '--config', this.configFile, '--metrics-port', '0'], this.options.logs, this.env('worker'), this.timeoutMs);
    const rp: ReplicaProcess = { deployment, id: fields.replica!, child, metricsUrl: fields.metrics!, stopping: false };
    this.replicas.push(rp);
    child.once('exit', (code, signal) => {
      const i = this.replicas.indexOf(rp);
      if (i >= 0) this.replicas.splice(i, 1);
      if (this.stopping || rp.stopping || this.options.restartReplicas === false) return;
      if (this.desired.has(deployment)) {
        process.stderr.write(`orrery: replica ${rp.id} exited (${signal ?? code}); starting a new one\n`);
        setTimeout(() => this.reconcile(deployment), 500);
        return;
      }
      process.stderr.write(`orrery: replica ${rp.id} exited (${signal ?? code}); starting a new one\n`);
      setTimeout(() => void this.addReplica(deployment).catch((err: Error) => process.stderr.write(`orrery: restart failed: ${err.message}\n`)), 500);
    });
    return rp;
  }

  /** The replica count the autoscaler last asked for (undefined: `deployment` does not autoscale). */
  desiredReplicas(deployment: string): number | undefined {
    return this.desired.get(deployment);
  }

  /** Answers the router's scale requests (scale target `local`, services/router/scale-targets/local.ts). */
  private async listenForScale(): Promise<void> {
    // The supervisor answers scale requests as the router's NATS user (nats-permissions.ts).
    const routerEnv = this.env('router');
    const security = this.natsAuth ? compileNatsSecurity({ user: routerEnv.ORRERY_NATS_USER, password_file: routerEnv.ORRERY_NATS_PASSWORD_FILE }, undefined) : this.config.nats;
    const auth = natsAuthOptions(security);
    this.scaleConnection = await connect({ servers: this.natsUrl, name: 'orrery-serve-local', maxReconnectAttempts: -1, reconnectTimeWait: 250, ...auth, inboxPrefix: inboxPrefix(this.config.nats.prefix, 'router') });
    this.scaleConnection.subscribe(scaleSubject(this.config.nats.prefix, '*'), {
      callback: (err, msg) => {
        if (err) return;
        let req: ScaleRequest;
        try {
          req = decodeScaleMessage<ScaleRequest>(msg.data);
        } catch (e) {
          msg.respond(encodeScaleMessage({ error: `not a scale request: ${(e as Error).message}` }));
          return;
        }
        const current = this.desired.get(req.deployment);
        if (current === undefined) {
          msg.respond(encodeScaleMessage({ error: `deployment ${req.deployment} does not autoscale here` }));
          return;
        }
        if (typeof req.replicas === 'number' && Number.isInteger(req.replicas) && req.replicas >= 0 && req.replicas !== current) {
          if (this.options.logs === 'inherit') process.stderr.write(`orrery: scaling ${req.deployment} from ${current} to ${req.replicas} replicas (${req.reason ?? 'no reason given'})\n`);
          this.desired.set(req.deployment, req.replicas);
          this.reconcile(req.deployment);
        }
        msg.respond(encodeScaleMessage({ replicas: this.desired.get(req.deployment)! }));
      },
    });
    await this.scaleConnection.flush();
  }

  /**
   * Starts or stops replicas of an autoscaled deployment until running + starting equals the
   * desired count. Stopping is a SIGTERM: the replica drains (refuses new batches, finishes its
   * own) and exits, so nothing in flight is lost. The newest replicas go first.
   */
  private reconcile(deployment: string): void {
    const want = this.desired.get(deployment);
    if (want === undefined || this.stopping) return;
    const live = this.replicas.filter((r) => r.deployment === deployment && !r.stopping);
    const starting = this.starting.get(deployment) ?? 0;
    const have = live.length + starting;
    for (let i = have; i < want; i++) {
      this.starting.set(deployment, (this.starting.get(deployment) ?? 0) + 1);
      const p = this.addReplica(deployment).then(
        (rp) => {
          if (this.stopping) void this.stopReplica(rp);
        },
        (err: Error) => process.stderr.write(`orrery: starting a replica of ${deployment} failed: ${err.message}\n`),
      ).finally(() => {
        this.starting.set(deployment, this.starting.get(deployment)! - 1);
        this.pendingStarts.delete(p);
        this.reconcile(deployment);
      });
      this.pendingStarts.add(p);
    }
    // Replicas still starting cannot be stopped yet; the reconcile after their start does it.
    if (have > want) for (const rp of live.slice(-Math.min(have - want, live.length))) void this.stopReplica(rp, 'SIGTERM');
  }

  /** Stops one replica with `signal` (SIGTERM drains, SIGKILL crashes) and waits for it to exit. */
  async stopReplica(rp: ReplicaProcess, signal: NodeJS.Signals = 'SIGTERM', expectRestart = false): Promise<number | null> {
    rp.stopping = !expectRestart;
    const exited = new Promise<number | null>((resolve) => rp.child.once('exit', (code) => resolve(code)));
    rp.child.kill(signal);
    return exited;
  }

  /**
   * Resolves when every deployment with replicas reports SERVING through gRPC health. A router
   * with router.tls is probed over TLS without checking its certificate: the probe sends no
   * secret (health needs no token), and serve-local has no CA to check against. A router with
   * client_auth: required refuses the probe, which has no client certificate.
   */
  async waitServing(): Promise<void> {
    const health = healthClient(this.grpcAddress, this.config.router.tls ? grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false }) : undefined);
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
    await this.scaleConnection?.close();
    // Replicas still starting are stopped as soon as they are up (see reconcile).
    await Promise.allSettled([...this.pendingStarts]);
    await this.routerRestart;
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
