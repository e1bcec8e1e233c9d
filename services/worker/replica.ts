/**
 * A replica process of one deployment: takes batches addressed to it over NATS, runs them on
 * the executor thread, answers, heartbeats, and drains on SIGTERM (finish in-flight work, then
 * exit; batches that arrive while draining are refused with ORRERY_ERR_REPLICA_DRAINING so the
 * router queues them elsewhere). It admits at most max_ongoing_batches batches at once (with
 * continuous batching: max_batch_size + max_waiting_images images), whichever routers send them,
 * and refuses more with ORRERY_ERR_REPLICA_FULL (admission.ts).
 * Lifecycle: starting → running → draining → stopped.
 */
import { randomUUID } from 'node:crypto';
import { errors, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { ClusterConfig, DeploymentConfig } from '../common/config.js';
import { clampTimerMs } from '../common/deadline.js';
import { ConfigError, DeadlineExceededError, OrreryError, toWire, type WireError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics-server.js';
import { connectNats } from '../common/nats-connection.js';
import { inboxPrefix } from '../common/nats-permissions.js';
import { outputPayloadName, PayloadStore } from '../common/payload-store.js';
import { encodeQcVerdict } from '../common/qc-verdict.js';
import { subjects, type Subjects } from '../common/subjects.js';
import { wire, type BatchRequest, type ItemResult, type Payload } from '../common/wire.js';
import { decodeWorkItem } from '../common/work-item.js';
import type { SessionLoadReport } from '../models/session-load-report.js';
import type { RunningSetEvent } from '../stages/running-set.js';
import type { LoadReport, StageItem } from '../stages/stage.js';
import { admitsBatch } from './admission.js';
import { Executor } from './executor.js';
import { WorkerMetrics } from './worker-metrics.js';

export interface ReplicaOptions {
  readonly config: ClusterConfig;
  readonly deployment: string;
  readonly log: Logger;
  /** A NATS subject token; default `<deployment>-<random>`. */
  readonly replicaId?: string;
  /** Overrides config.worker.metrics_port (0: a free port). */
  readonly metricsPort?: number;
}

export type ReplicaState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

interface InFlight {
  readonly items: number;
  /** Online images among `items`. */
  readonly online: number;
}

/** How long a reply carrying stored images waits for its router's acknowledgement (only a "no responders" answer matters). */
const REPLY_ACK_TIMEOUT_MS = 10_000;

export class Replica {
  readonly id: string;
  private stateValue: ReplicaState = 'starting';
  private readonly dep: DeploymentConfig;
  private readonly subjects: Subjects;
  private readonly metrics = new WorkerMetrics();
  private readonly inFlight = new Map<string, InFlight>();
  /** Continuous batching: each loaded model's running set as last reported (executor 'running-set'). */
  private readonly runningSets = new Map<string, { occupied: number; waiting: number }>();
  private nc!: NatsConnection;
  private payloads!: PayloadStore;
  private executor!: Executor;
  private metricsServer!: MetricsServer;
  private subs: Subscription[] = [];
  private hbTimer: NodeJS.Timeout | undefined;
  private seq = 0;
  private drained: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  /** Most batches in flight at once since the start (admission keeps it ≤ max_ongoing_batches). */
  private peakInFlightBatches = 0;
  /** Most images in flight at once since the start (continuous batching: admission bounds it). */
  private peakInFlightItems = 0;
  /** A batch was refused (no free slot) since the last heartbeat. */
  private refusedSinceHeartbeat = false;

  private constructor(private readonly options: ReplicaOptions) {
    const dep = options.config.deployments[options.deployment];
    if (!dep) throw new ConfigError('--deployment', `unknown deployment "${options.deployment}" (known: ${Object.keys(options.config.deployments).join(', ')})`);
    this.dep = dep;
    this.id = options.replicaId ?? `${dep.name}-${randomUUID().slice(0, 8)}`;
    if (!/^[A-Za-z0-9_-]+$/.test(this.id)) throw new ConfigError('--replica-id', 'must be letters, digits, _ and -');
    this.subjects = subjects(options.config.nats.prefix);
  }

  get state(): ReplicaState {
    return this.stateValue;
  }

  get metricsUrl(): string {
    return this.metricsServer.url;
  }

  static async start(options: ReplicaOptions): Promise<Replica> {
    const r = new Replica(options);
    try {
      await r.startInner();
    } catch (err) {
      r.stateValue = 'failed';
      await r.close().catch(() => undefined);
      throw err;
    }
    return r;
  }

  private async startInner(): Promise<void> {
    const { config, log } = this.options;
    const labels = { deployment: this.dep.name };
    this.executor = await Executor.start({
      stage: this.dep.stage,
      stageContext: { options: this.dep.options, modelRepository: config.modelRepository, batching: this.dep.batching, maxBatchSize: this.dep.maxBatchSize },
      maxModels: this.dep.maxModelsPerReplica,
      ...(this.dep.maxModelBytesPerReplica !== undefined ? { maxModelBytes: this.dep.maxModelBytesPerReplica } : {}),
    });
    const budget = this.dep.maxModelBytesPerReplica;
    if (budget !== undefined) this.metrics.modelBytesLimit.set(labels, budget);
    this.executor.on('model-loaded', (e: { modelId: string; seconds: number; sizeBytes: number; report?: LoadReport }) => {
      this.metrics.modelLoads.inc({ ...labels, model: e.modelId });
      this.metrics.modelBytes.set({ ...labels, model: e.modelId }, e.sizeBytes);
      if (budget !== undefined && e.sizeBytes > budget) {
        log.warn({ modelId: e.modelId, sizeBytes: e.sizeBytes, maxModelBytesPerReplica: budget }, 'model is larger than max_model_bytes_per_replica: loaded alone (every idle model evicted)');
      }
      if (e.report) {
        this.metrics.loraModulesFused.inc({ ...labels, model: e.modelId }, e.report.loraModulesFused);
        const fields = { modelId: e.modelId, loraFile: e.report.loraFile, fused: e.report.loraModulesFused, unmatched: e.report.loraModulesUnmatched };
        if (e.report.loraModulesUnmatched.length) log.warn(fields, 'LoRA fused; some modules match no weight (lora_unmatched: warn)');
        else log.info(fields, 'LoRA fused');
      }
      this.metrics.modelLoadSeconds.observe(labels, e.seconds);
      this.metrics.modelsLoaded.set(labels, this.executor.loadedModels().length);
      this.heartbeat();
    });
    this.executor.on('model-evicted', (e: { modelId: string }) => {
      this.metrics.modelEvictions.inc({ ...labels, model: e.modelId });
      this.metrics.modelBytes.remove({ ...labels, model: e.modelId });
      this.metrics.modelsLoaded.set(labels, this.executor.loadedModels().length);
    });
    this.executor.on('session-load', (r: SessionLoadReport) => {
      this.metrics.optimizedModelCacheLoads.inc({ ...labels, outcome: r.outcome });
      const fields = { model: r.modelPath, outcome: r.outcome, seconds: r.seconds, hashSeconds: r.hashSeconds, entry: r.entryDir, reason: r.reason };
      // A failed save or a discarded entry costs every later load its optimization time: worth a warning.
      if (r.outcome === 'write-failed' || r.outcome === 'recovered') log.warn(fields, 'optimized-model cache: session created from the source');
      else log.info(fields, `optimized-model cache: ${r.outcome}`);
    });
    // A continuous deployment's running-set counters exist from the start, at 0: a dashboard's
    // rate() over them then reads 0 before the first preemption rather than no data.
    if (this.dep.batching === 'continuous') {
      for (const c of [this.metrics.runningSetJoins, this.metrics.runningSetLeaves, this.metrics.runningSetPreemptions]) c.inc(labels, 0);
    }
    this.executor.on('running-set', (e: RunningSetEvent) => {
      if (e.stepped) this.metrics.runningSetOccupancy.observe(labels, e.occupied);
      if (e.joins) this.metrics.runningSetJoins.inc(labels, e.joins);
      if (e.leaves) this.metrics.runningSetLeaves.inc(labels, e.leaves);
      if (e.preemptions) this.metrics.runningSetPreemptions.inc(labels, e.preemptions);
      if (e.occupied === 0 && e.waiting === 0) this.runningSets.delete(e.modelId);
      else this.runningSets.set(e.modelId, { occupied: e.occupied, waiting: e.waiting });
    });
    this.executor.on('crashed', (err: unknown) => {
      log.fatal({ err }, 'executor thread crashed; exiting so the supervisor restarts this replica');
      this.stateValue = 'failed';
      process.exitCode = 1;
      void this.close();
    });
    await this.preload();
    this.nc = await connectNats(config.nats.url, `orrery-${this.id}`, log, { security: config.nats, inboxPrefix: inboxPrefix(config.nats.prefix, 'worker'), registry: this.metrics.registry });
    this.payloads = new PayloadStore(this.nc, { bucket: this.subjects.payloadBucket, maxInlineBytes: config.maxInlinePayloadBytes });
    this.subs.push(
      this.nc.subscribe(this.subjects.batch(this.id), { callback: (err, msg) => void (err ? undefined : this.onBatch(msg)) }),
      this.nc.subscribe(this.subjects.cancel(this.id), {
        callback: (err, msg) => {
          if (err) return;
          const c = wire.cancel.decode(msg.data);
          this.executor.cancel(c.batchId, c.requestIds.length ? c.requestIds : undefined);
        },
      }),
      this.nc.subscribe(this.subjects.heartbeatRequest, { callback: () => this.heartbeat() }),
    );
    await this.nc.flush();
    this.metricsServer = await startMetricsServer(this.metrics.registry, this.options.metricsPort ?? config.worker.metricsPort, '0.0.0.0', () => this.stateValue === 'running');
    this.stateValue = 'running';
    this.heartbeat();
    this.hbTimer = setInterval(() => this.heartbeat(), config.worker.heartbeatIntervalMs);
    log.info({ replicaId: this.id, deployment: this.dep.name, metrics: this.metricsServer.url }, 'replica running');
  }

  /**
   * Loads the deployment's `preload_models` before the replica joins (its first heartbeat), so
   * routers place batches on a replica that already holds them. A model that fails to load is
   * logged and left to load on demand, where its requests get the error: the replica still
   * serves its other models.
   */
  private async preload(): Promise<void> {
    for (const modelId of this.dep.preloadModels) {
      const started = performance.now();
      try {
        await this.executor.load(modelId);
        this.options.log.info({ modelId, seconds: (performance.now() - started) / 1000 }, 'model preloaded');
      } catch (err) {
        this.options.log.error({ err, modelId }, 'preloading a model failed; it will be loaded on first use');
      }
    }
  }

  /** Publishes the replica's state now (also on a timer, and when a router asks). */
  private heartbeat(): void {
    if (!this.nc || this.nc.isClosed()) return;
    this.refusedSinceHeartbeat = false;
    const { items, online } = this.held();
    this.metrics.inFlightItems.set({ deployment: this.dep.name }, items);
    this.metrics.inFlightBatches.set({ deployment: this.dep.name }, this.inFlight.size);
    this.nc.publish(this.subjects.heartbeat(this.dep.name), wire.heartbeat.encode({
      replicaId: this.id, deployment: this.dep.name, state: this.stateValue, loadedModels: this.executor.loadedModels(),
      inFlightBatches: [...this.inFlight.keys()], inFlightItems: items, inFlightOnlineItems: online, maxOngoingBatches: this.dep.maxOngoingBatches,
      maxModelsPerReplica: this.dep.maxModelsPerReplica, seq: ++this.seq, intervalMs: this.options.config.worker.heartbeatIntervalMs,
      loadingModel: this.executor.loadingModel() ?? '', ...this.runningSetFields(),
    }));
  }

  /** The heartbeat's running-set fields: capacity max_batch_size with continuous batching (else 0), occupancy summed over models. */
  private runningSetFields(): { runningSetCapacity: number; runningSetOccupied: number; runningSetWaiting: number } {
    let occupied = 0;
    let waiting = 0;
    for (const s of this.runningSets.values()) {
      occupied += s.occupied;
      waiting += s.waiting;
    }
    return { runningSetCapacity: this.dep.batching === 'continuous' ? this.dep.maxBatchSize : 0, runningSetOccupied: occupied, runningSetWaiting: waiting };
  }

  private async onBatch(msg: Msg): Promise<void> {
    const req = wire.batchRequest.decode(msg.data);
    const log = this.options.log.child({ batchId: req.batchId, modelId: req.modelId });
    if (this.stateValue !== 'running') return this.refuse(msg, req, 'ORRERY_ERR_REPLICA_DRAINING', `replica ${this.id} is ${this.stateValue}`);
    const held = this.held();
    const batch = { items: req.items.length, online: req.items.filter((it) => it.priority !== 'bulk').length };
    if (!admitsBatch(this.dep, this.inFlight.size, held, batch)) {
      this.metrics.batchesRefused.inc({ deployment: this.dep.name });
      // The refused router waits for a heartbeat that shows a free slot: send one when one frees.
      this.refusedSinceHeartbeat = true;
      const why = this.dep.batching === 'continuous'
        ? `holds ${held.items} images (${held.online} online) and was sent ${batch.items} more (${batch.online} online); max_batch_size + max_waiting_images = ${this.dep.maxBatchSize + this.dep.maxWaitingImages}`
        : `is running ${this.inFlight.size} batches (max_ongoing_batches=${this.dep.maxOngoingBatches})`;
      return this.refuse(msg, req, 'ORRERY_ERR_REPLICA_FULL', `replica ${this.id} ${why}`);
    }
    this.inFlight.set(req.batchId, batch);
    if (this.inFlight.size > this.peakInFlightBatches) {
      this.peakInFlightBatches = this.inFlight.size;
      this.metrics.inFlightBatchesPeak.set({ deployment: this.dep.name }, this.peakInFlightBatches);
    }
    if (held.items + batch.items > this.peakInFlightItems) {
      this.peakInFlightItems = held.items + batch.items;
      this.metrics.inFlightItemsPeak.set({ deployment: this.dep.name }, this.peakInFlightItems);
    }
    const labels = { deployment: this.dep.name, model: req.modelId };
    let deadlineTimer: NodeJS.Timeout | undefined;
    let deadlinePassed = false;
    // A batch stopped at its deadline says so: its stage saw a cancellation, its caller a deadline
    // (this reply can reach the router before the router's own deadline timer fires).
    const why = (e: WireError): WireError => (deadlinePassed && e.code === 'ORRERY_ERR_CANCELLED' ? toWire(new DeadlineExceededError(`on replica ${this.id} (${e.message})`)) : e);
    let reply: Uint8Array;
    let stored: Payload[] = [];
    try {
      if (req.deadlineUnixMs) {
        deadlineTimer = setTimeout(() => {
          deadlinePassed = true;
          this.executor.cancel(req.batchId);
        }, clampTimerMs(req.deadlineUnixMs - Date.now()));
      }
      const items = await Promise.all(req.items.map((it) => this.toStageItem(it)));
      const onProgress = req.progressSubject
        ? (i: number, step: number, total: number) => this.nc.publish(req.progressSubject, wire.progress.encode({ batchId: req.batchId, requestId: items[i]!.requestId, imageIndex: items[i]!.imageIndex, step, totalSteps: total }))
        : () => undefined;
      const res = await this.executor.run({ batchId: req.batchId, modelId: req.modelId, items }, onProgress);
      const settled = await Promise.allSettled(res.results.map(async (r, i): Promise<ItemResult> => {
        const it = req.items[i]!;
        if ('error' in r) return { requestId: it.requestId, imageIndex: it.imageIndex, width: 0, height: 0, mimeType: '', error: why(r.error), qcJson: '' };
        this.metrics.images.inc(labels);
        // Named after the batch, so a router that declares the batch lost can delete it (batch-dispatcher.ts).
        const image = await this.payloads.put(r.data, 'out', outputPayloadName(req.batchId, i));
        return { requestId: it.requestId, imageIndex: it.imageIndex, width: r.width, height: r.height, mimeType: r.mimeType, image, qcJson: encodeQcVerdict(r.qc) };
      }));
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) {
        // The reply carries no image, so nobody would read the ones stored.
        for (const s of settled) if (s.status === 'fulfilled') void this.payloads.discard(s.value.image);
        throw failed.reason;
      }
      const results = settled.map((s) => (s as PromiseFulfilledResult<ItemResult>).value);
      stored = results.flatMap((r) => (r.image?.objectName ? [r.image] : []));
      this.metrics.batches.inc({ ...labels, outcome: 'ok' });
      this.metrics.batchRunSeconds.observe({ deployment: this.dep.name }, res.runSeconds);
      reply = wire.batchReply.encode({ batchId: req.batchId, attempt: req.attempt, replicaId: this.id, results, runSeconds: res.runSeconds, loadSeconds: res.loadSeconds });
    } catch (err) {
      const e = why(toWire(err));
      this.metrics.batches.inc({ ...labels, outcome: e.code });
      if (!(err instanceof OrreryError)) log.error({ err }, 'batch failed');
      reply = wire.batchReply.encode({ batchId: req.batchId, attempt: req.attempt, replicaId: this.id, results: [], error: e, runSeconds: 0, loadSeconds: 0 });
    } finally {
      clearTimeout(deadlineTimer);
    }
    // Answer first, then stop listing the batch: a heartbeat without it must never precede the reply.
    this.answer(msg, reply, stored);
    this.inFlight.delete(req.batchId);
    if (this.refusedSinceHeartbeat) this.heartbeat();
    if (this.inFlight.size === 0) this.idleWaiters.splice(0).forEach((w) => w());
  }

  /** Images in the batches in flight, and the online ones among them. */
  private held(): { items: number; online: number } {
    const held = { items: 0, online: 0 };
    for (const b of this.inFlight.values()) {
      held.items += b.items;
      held.online += b.online;
    }
    return held;
  }

  /**
   * Sends a batch's reply. A reply whose images are in the object store goes as a request that the
   * router acknowledges: when its router has died, nats-server answers "no responders" at once and
   * the images are deleted (nobody else would read them). An acknowledgement that never comes
   * (lost in a NATS restart) changes nothing: the router deletes the images of a batch it declared
   * lost (batch-dispatcher.ts).
   */
  private answer(msg: Msg, reply: Uint8Array, stored: readonly Payload[]): void {
    if (stored.length === 0 || !msg.reply) {
      msg.respond(reply);
      return;
    }
    this.nc.request(msg.reply, reply, { timeout: REPLY_ACK_TIMEOUT_MS }).catch((err: unknown) => {
      if (!(err instanceof errors.RequestError && err.isNoResponders())) return;
      this.options.log.warn({ replySubject: msg.reply, images: stored.length }, 'no router takes this reply (it died): deleting its stored images');
      for (const p of stored) void this.payloads.discard(p);
    });
  }

  /**
   * Answers a batch it will not run (draining, or no free slot): the router requeues it unrun and
   * stores its input images again when it resends it, so the ones stored for this send go now.
   */
  private refuse(msg: Msg, req: BatchRequest, code: 'ORRERY_ERR_REPLICA_DRAINING' | 'ORRERY_ERR_REPLICA_FULL', message: string): void {
    for (const it of req.items) void this.payloads.discard(it.initImage);
    msg.respond(wire.batchReply.encode({ batchId: req.batchId, attempt: req.attempt, replicaId: this.id, results: [], error: { code, message }, runSeconds: 0, loadSeconds: 0 }));
  }

  private async toStageItem(it: BatchRequest['items'][number]): Promise<StageItem> {
    return decodeWorkItem(it, it.initImage ? await this.payloads.take(it.initImage) : undefined);
  }

  /**
   * Drains: refuses new batches, finishes the ones in flight (up to drain_timeout_ms, then
   * stops waiting), says `stopped` — the router then retries what is still in flight elsewhere —
   * and closes.
   */
  drain(): Promise<void> {
    this.drained ??= (async () => {
      if (this.stateValue !== 'running') return this.close();
      this.stateValue = 'draining';
      this.options.log.info({ inFlight: this.inFlight.size }, 'draining');
      this.heartbeat();
      if (this.inFlight.size > 0) {
        const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), clampTimerMs(this.options.config.worker.drainTimeoutMs)).unref());
        if ((await Promise.race([idle, timeout])) === 'timeout') this.options.log.warn({ inFlight: this.inFlight.size }, 'drain timed out');
      }
      await this.close();
    })();
    return this.drained;
  }

  private async close(): Promise<void> {
    clearInterval(this.hbTimer);
    if (this.nc && !this.nc.isClosed()) {
      this.stateValue = 'stopped';
      this.heartbeat();
      await this.nc.drain().catch(() => undefined);
    }
    this.stateValue = this.stateValue === 'failed' ? 'failed' : 'stopped';
    await this.metricsServer?.close();
    await this.executor?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.drain();
  }
}
