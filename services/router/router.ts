/**
 * The router process: gRPC server (ImageService, health, reflection), one scheduler per
 * deployment, the replica registry fed by heartbeats, and /metrics. Lifecycle:
 * starting → running → draining → stopped (CONVENTIONS §6).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { ClusterConfig, ScaleTargetKind } from '../common/config.js';
import { NoReplicaError, OrreryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics-server.js';
import { connectNats } from '../common/nats-connection.js';
import { inboxPrefix } from '../common/nats-permissions.js';
import { PayloadStore } from '../common/payload-store.js';
import { subjects, type Subjects } from '../common/subjects.js';
import { imageServiceDefinition, reflectionDefinition } from '../common/grpc-protos.js';
import { wire } from '../common/wire.js';
import { parseModelId } from '../common/model-id.js';
import { AutoscalerLeadership } from './leadership/autoscaler-leadership.js';
import type { LeaderLock } from './leadership/leader-elector.js';
import { NatsKvLock } from './leadership/nats-kv-lock.js';
import { queueReportSubject } from './leadership/queue-reports.js';
import { BatchDispatcher } from './batch-dispatcher.js';
import { DeploymentScheduler } from './deployment-scheduler.js';
import { GrpcSecurity } from './grpc-security.js';
import { imageService } from './image-service.js';
import { JobManager } from './jobs/job-manager.js';
import { PipelineRunner } from './pipeline-runner.js';
import { ReplicaRegistry } from './replica-registry.js';
import { RouterMetrics } from './router-metrics.js';
import { LocalScaleTarget } from './scale-targets/local.js';
import type { ScaleTarget } from './scale-targets/scale-target.js';

export const SERVICE_NAME = 'orrery.v1.ImageService';

export interface RouterOptions {
  readonly config: ClusterConfig;
  readonly log: Logger;
  /** Overrides config.router.grpc_port (0: a free port). */
  readonly grpcPort?: number;
  readonly grpcHost?: string;
  /** Overrides config.router.metrics_port (0: a free port). */
  readonly metricsPort?: number;
  /** Fail queued work after a deployment has had no replica this long. */
  readonly noReplicaTimeoutMs?: number;
  /** Where autoscaling decisions go; overrides config autoscaler.scale_target (an object: tests). */
  readonly scaleTarget?: ScaleTargetKind | ScaleTarget;
}

export type RouterState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

export class Router {
  private stateValue: RouterState = 'starting';
  private nc!: NatsConnection;
  private server!: grpc.Server;
  private metricsServer!: MetricsServer;
  private readonly metrics = new RouterMetrics();
  private readonly registry: ReplicaRegistry;
  private readonly schedulers = new Map<string, DeploymentScheduler>();
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  private readonly subjects: Subjects;
  private readonly noReplicaSince = new Map<string, number>();
  /** This router's id on NATS (its inbox) and, with the host name, as autoscaler lease holder. */
  private readonly routerId = randomUUID();
  private tick: NodeJS.Timeout | undefined;
  private hbSub: Subscription | undefined;
  private dispatcher: BatchDispatcher | undefined;
  private autoscaler: AutoscalerLeadership | undefined;
  private jobs: JobManager | undefined;
  private security: GrpcSecurity | undefined;
  grpcAddress = '';

  private constructor(private readonly options: RouterOptions) {
    this.registry = new ReplicaRegistry(options.config.router.replicaTimeoutIntervals);
    this.subjects = subjects(options.config.nats.prefix);
  }

  get state(): RouterState {
    return this.stateValue;
  }

  get metricsUrl(): string {
    return this.metricsServer.url;
  }

  static async start(options: RouterOptions): Promise<Router> {
    const r = new Router(options);
    try {
      await r.startInner();
    } catch (err) {
      r.stateValue = 'failed';
      await r.stop(0).catch(() => undefined);
      throw err;
    }
    return r;
  }

  private async startInner(): Promise<void> {
    const { config, log } = this.options;
    this.nc = await connectNats(config.nats.url, 'orrery-router', log, { security: config.nats, inboxPrefix: inboxPrefix(config.nats.prefix, 'router'), registry: this.metrics.registry });
    const payloads = new PayloadStore(this.nc, { bucket: this.subjects.payloadBucket, maxInlineBytes: config.maxInlinePayloadBytes });
    const dispatcher = new BatchDispatcher(this.nc, this.subjects, this.routerId, payloads, log, { maxBatchWaitMs: 3_600_000 });
    this.dispatcher = dispatcher;
    for (const dep of Object.values(config.deployments)) {
      this.schedulers.set(dep.name, new DeploymentScheduler(dep, {
        registry: this.registry, dispatcher, metrics: this.metrics, log: log.child({ deployment: dep.name }),
        rng: Math.random, now: Date.now, affinityWaitMs: dep.affinityWaitMs, maxLostAttempts: 2,
        ...(dep.autoscaling ? { scaleFromZero: { maxHoldMs: dep.autoscaling.maxHoldMs, onHold: () => this.autoscaler?.wake(dep.name) } } : {}),
      }));
      this.health.setStatus(dep.name, 'NOT_SERVING');
    }
    this.hbSub = this.nc.subscribe(this.subjects.heartbeatAll, {
      callback: (err, msg) => {
        if (err) return;
        const hb = wire.heartbeat.decode(msg.data);
        const scheduler = this.schedulers.get(hb.deployment);
        if (!scheduler) return; // a replica of a deployment this router's config does not know
        // The replica's handle takes it all: state, lost-batch detection, a stop's unfinished batches.
        if (this.registry.observe(hb, Date.now()) === 'new') log.info({ replicaId: hb.replicaId, deployment: hb.deployment }, 'replica joined');
        this.updateHealth();
        scheduler.replicaHeartbeat();
      },
    });
    // Replicas already running answer at once instead of at their next interval.
    this.nc.publish(this.subjects.heartbeatRequest);
    this.tick = setInterval(() => this.onTick(), 100);
    await this.startAutoscaler();

    const runner = new PipelineRunner(config, this.schedulers, Date.now, this.metrics);
    // Bulk jobs (docs/jobs.md): every router runs them, claiming items through JetStream.
    if (config.jobs.enabled) this.jobs = await JobManager.start({ nc: this.nc, config, runner, metrics: this.metrics, log, routerId: randomUUID() });
    // Channelz off: nothing here serves it, and its per-call accounting cost ~4 % of the router's
    // CPU per request (bench/results/core-serving.md, throughput).
    // TLS, mTLS and bearer tokens (docs/security-grpc.md); the interceptor runs only when one is configured.
    const security = await GrpcSecurity.start(config.router, this.metrics.registry, log);
    this.security = security;
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': 80 * 1024 * 1024, 'grpc.max_send_message_length': 256 * 1024 * 1024, 'grpc.enable_channelz': 0, interceptors: security.interceptors });
    this.server.addService(imageServiceDefinition().service, imageService({
      runner, metrics: this.metrics, log, listModels: () => this.listModels(), defaultPipeline: config.defaultPipeline, maxRequestBytesInFlight: config.router.maxRequestBytesInFlight,
      ...(this.jobs ? { jobs: this.jobs } : {}),
    }));
    this.health.addToServer(this.server);
    if (config.router.reflection) new ReflectionService(reflectionDefinition()).addToServer(this.server);
    const host = this.options.grpcHost ?? '0.0.0.0';
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${this.options.grpcPort ?? config.router.grpcPort}`, security.credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.grpcAddress = `${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
    this.metricsServer = await startMetricsServer(this.metrics.registry, this.options.metricsPort ?? config.router.metricsPort, host, () => this.stateValue === 'running');
    this.stateValue = 'running';
    this.updateHealth();
    log.info({ grpc: this.grpcAddress, metrics: this.metricsServer.url }, 'router running');
  }

  /**
   * Starts competing for the autoscaler when some deployment has `autoscaling` (DESIGN §4): the
   * router holding the lease runs it (docs/high-availability.md); a Kubernetes Lease under scale
   * target kubernetes, else a NATS KV lock.
   */
  private async startAutoscaler(): Promise<void> {
    const { config, log } = this.options;
    const deployments = Object.values(config.deployments).filter((d) => d.autoscaling);
    if (deployments.length === 0) return;
    const choice = this.options.scaleTarget ?? config.autoscaler.scaleTarget;
    const leaseMs = config.autoscaler.leaderLeaseMs;
    // The pod name in Kubernetes: operators see who leads in the Lease or the KV key.
    const holder = `${os.hostname()}-${this.routerId.slice(0, 8)}`;
    let lock: LeaderLock;
    if (choice === 'kubernetes') {
      // Loaded on demand: only a router that scales Kubernetes Deployments needs the client.
      const { KubernetesLeaseLock } = await import('./leadership/kubernetes-lease-lock.js');
      lock = await KubernetesLeaseLock.create({ namespace: config.autoscaler.kubernetesNamespace, name: config.autoscaler.leaderLeaseName, holder, leaseMs, now: Date.now });
    } else lock = new NatsKvLock(this.nc, NatsKvLock.bucketFor(config.nats.prefix), holder, leaseMs);
    const makeTarget = async (): Promise<ScaleTarget | undefined> => {
      if (typeof choice === 'object') return choice;
      if (choice === 'local') return new LocalScaleTarget(this.nc, config.nats.prefix);
      if (choice !== 'kubernetes') return undefined;
      const { KubernetesScaleTarget } = await import('./scale-targets/kubernetes.js');
      return KubernetesScaleTarget.create({ namespace: config.autoscaler.kubernetesNamespace });
    };
    this.autoscaler = new AutoscalerLeadership({
      nc: this.nc, routerId: this.routerId, lock, leaseMs, reportSubject: queueReportSubject(config.nats.prefix), makeTarget,
      autoscaler: { deployments, registry: this.metrics.registry, log: log.child({ component: 'autoscaler' }), intervalMs: config.autoscaler.intervalMs, now: Date.now },
      observe: (name) => ({ queued: this.schedulers.get(name)!.queueDepth, inFlight: this.inFlightImages(name), runningReplicas: this.registry.serving(name).length }),
      leaderGauge: this.metrics.autoscalerLeader, log: log.child({ component: 'autoscaler' }),
    });
    this.autoscaler.start();
  }

  /** Images the replicas of `deployment` are working on, as their last heartbeats said. */
  private inFlightImages(deployment: string): number {
    return this.registry.all().reduce((n, r) => (r.deployment === deployment ? n + r.heartbeat.inFlightItems : n), 0);
  }

  /** Every 100 ms: replicas that stopped heartbeating, queues of deployments without replicas, gauges, health. */
  private onTick(): void {
    const now = Date.now();
    this.expireSilentReplicas(now);
    for (const s of this.schedulers.values()) this.failUnservedQueue(s, now);
    this.updateGauges();
    this.updateHealth();
  }

  /** Drops replicas whose heartbeats stopped; their batches end as lost and are retried elsewhere. */
  private expireSilentReplicas(now: number): void {
    for (const lost of this.registry.expire(now)) {
      this.options.log.warn({ replicaId: lost.id, deployment: lost.deployment }, 'replica stopped heartbeating; retrying its batches elsewhere');
    }
  }

  /**
   * A deployment without replicas: an autoscaled one holds requests while it scales up from zero
   * (each for at most max_hold_s); another fails its queue after noReplicaTimeoutMs.
   */
  private failUnservedQueue(s: DeploymentScheduler, now: number): void {
    const name = s.config.name;
    if (s.config.autoscaling) s.expireHeld(now);
    else if (s.servingReplicas > 0) this.noReplicaSince.delete(name);
    else if (!this.noReplicaSince.has(name)) this.noReplicaSince.set(name, now);
    else if (s.queueDepth > 0 && now - this.noReplicaSince.get(name)! > (this.options.noReplicaTimeoutMs ?? 30_000)) s.failQueued(new NoReplicaError(name));
  }

  private updateGauges(): void {
    for (const [name, s] of this.schedulers) {
      this.metrics.queueDepth.set({ deployment: name }, s.queueDepth);
      this.metrics.inFlight.set({ deployment: name }, this.inFlightImages(name));
    }
    this.metrics.replicas.reset();
    for (const r of this.registry.all()) this.metrics.replicas.inc({ deployment: r.deployment, state: r.heartbeat.state });
  }

  private updateHealth(): void {
    const running = this.stateValue === 'running';
    for (const name of this.schedulers.keys()) {
      this.health.setStatus(name, running && this.registry.serving(name).length > 0 ? 'SERVING' : 'NOT_SERVING');
    }
    const status: ServingStatus = running ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(SERVICE_NAME, status);
  }

  private listModels() {
    const { config } = this.options;
    const models = Object.values(config.deployments).flatMap((d) =>
      d.models.map((m) => ({
        model_id: m, deployment: d.name, ...modelIdParts(m),
        loaded_on: this.registry.serving(d.name).filter((r) => r.heartbeat.loadedModels.includes(m)).map((r) => r.id),
      })),
    );
    const pipelines = Object.values(config.pipelines).map((p) => ({
      name: p.name, stages: p.stages.map((s) => s.deployment), default_model_id: p.stages[0]!.model || config.deployments[p.stages[0]!.deployment]!.models[0]!,
    }));
    const deployments = [...this.schedulers.values()].map((s) => ({
      name: s.config.name, ready_replicas: this.registry.serving(s.config.name).length, queued_requests: s.queueDepth,
    }));
    return { models, pipelines, deployments };
  }

  /**
   * Stops accepting calls, lets running calls finish for up to `forceAfterMs`, then closes
   * everything. Queued work still unanswered at the force point fails with UNAVAILABLE.
   */
  async stop(forceAfterMs = 30_000): Promise<void> {
    if (this.stateValue === 'stopped') return;
    this.stateValue = 'draining';
    this.updateHealth();
    // Job items running here go back to the work queue (no attempt used) for another router.
    await this.jobs?.stop();
    if (this.server) {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          for (const s of this.schedulers.values()) s.failQueued(new OrreryError('ORRERY_ERR_NO_REPLICA', 'router is shutting down'));
          this.server.forceShutdown();
          resolve();
        }, forceAfterMs);
        this.server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    }
    clearInterval(this.tick);
    this.security?.close();
    await this.autoscaler?.stop();
    for (const s of this.schedulers.values()) s.close();
    this.dispatcher?.close();
    this.hbSub?.unsubscribe();
    await this.metricsServer?.close();
    await this.nc?.close();
    this.stateValue = 'stopped';
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** The base, adapter and variant of a configured model id (config.ts checked its grammar) for ListModels. */
function modelIdParts(modelId: string): { base: string; adapter: string; variant: string } {
  const id = parseModelId(modelId);
  return { base: id.base, adapter: id.lora ?? '', variant: id.variant ?? '' };
}
