/**
 * The cluster configuration: one YAML file with deployments and pipelines. `compileConfig`
 * validates it (errors name the key, e.g. `deployments.sdxl-base.max_batch_size`), fills the
 * documented defaults and freezes the result. Files are read by the caller (main.ts), not here.
 */
import { parse as parseYaml } from 'yaml';
import { parseModelId } from './model-id.js';
import { ConfigError } from './errors.js';
import { compileQcOptions, type QcOptions } from './qc-config.js';
import { compileNatsSecurity, type NatsSecurityConfig } from './nats-security-config.js';
import { compileGrpcSecurity, GRPC_SECURITY_KEYS, type GrpcSecurityConfig } from './grpc-security-config.js';

/** Options of one deployment (a separately scaled group of identical replicas). */
export interface DeploymentConfig {
  readonly name: string;
  /** Stage implementation the replicas run (see services/stages/registry.ts). */
  readonly stage: string;
  /** Model ids this deployment serves; the first is its default. */
  readonly models: readonly string[];
  /** Replicas `serve-local` starts. */
  readonly replicas: number;
  /** Most images in one batch. */
  readonly maxBatchSize: number;
  /** Longest a partial batch waits for company while a replica is idle. */
  readonly batchWaitTimeoutMs: number;
  /** Batches one replica runs (or holds ready) at once. */
  readonly maxOngoingBatches: number;
  /** Queued images past which new requests get RESOURCE_EXHAUSTED. */
  readonly maxQueuedRequests: number;
  /** Loaded models per replica (LRU beyond). */
  readonly maxModelsPerReplica: number;
  /**
   * `preload_models`: models each replica loads before it announces itself (default: the first
   * model), so requests never wait for them and placement sees every replica holding them.
   */
  readonly preloadModels: readonly string[];
  /**
   * `max_model_bytes_per_replica`: bytes of loaded models (LoadedModel.sizeBytes: the model files
   * for ONNX stages) per replica, LRU beyond; absent: unlimited. A larger model still loads, alone.
   */
  readonly maxModelBytesPerReplica?: number;
  /** Longest a group waits for busy replicas holding its model before another replica loads it. */
  readonly affinityWaitMs: number;
  /** A group also spills past this many full batches queued per replica holding its model. */
  readonly spillBacklogBatches: number;
  /** Defaults applied to requests that leave these unset. */
  readonly defaultSteps: number;
  readonly defaultGuidanceScale: number;
  /** Stage-specific options (cost model, model repository paths, ...), passed to the stage as is. */
  readonly options: Readonly<Record<string, unknown>>;
  /** Load-based replica count (Ray Serve's autoscaling_config); absent: a fixed `replicas`. */
  readonly autoscaling?: AutoscalingConfig;
  /**
   * `batching` (default `request`): `request` forms whole batches that run all their steps
   * together; `continuous` (stages that step: sdxl, synthetic) lets images join and leave a
   * replica's running set at every step, and the router sends work whenever a replica has room.
   */
  readonly batching: Batching;
  /**
   * `max_waiting_images` (continuous batching; default 1): images a replica holds beyond its
   * running set's `max_batch_size`, waiting to join. Routers send that many ahead, so a row that
   * frees is filled at the same step boundary instead of one step later (after the reply's round
   * trip); the replica refuses a batch past the limit with ORRERY_ERR_REPLICA_FULL (several routers).
   */
  readonly maxWaitingImages: number;
}

/** How a deployment batches images: whole batches, or step-level (docs/configuration.md). */
export type Batching = 'request' | 'continuous';
/** Stages whose replicas run a step loop, so they can batch continuously. */
export const STEPPING_STAGES: readonly string[] = ['sdxl', 'synthetic'];

/**
 * Autoscaling of one deployment, with Ray Serve's semantics and defaults (key `autoscaling` of a
 * deployment; every key optional). The policy is services/router/autoscale-policy.ts.
 */
export interface AutoscalingConfig {
  /** `min_replicas` (default 1); 0 lets the deployment scale to zero. */
  readonly minReplicas: number;
  /** `max_replicas` (default max(min_replicas, 1)). */
  readonly maxReplicas: number;
  /** `initial_replicas` (default min_replicas): what serve-local and a fresh install start with. */
  readonly initialReplicas: number;
  /** `target_ongoing_requests` (default 2): queued + in-flight images per replica the policy aims at. */
  readonly targetOngoingRequests: number;
  /** `upscale_delay_s` (default 30): how long the load must ask for more replicas before scaling up. */
  readonly upscaleDelayMs: number;
  /** `downscale_delay_s` (default 600): how long the load must ask for fewer before scaling down. */
  readonly downscaleDelayMs: number;
  /** `downscale_to_zero_delay_s` (default downscale_delay_s): the delay of the last step, 1 → 0. */
  readonly downscaleToZeroDelayMs: number;
  /** `upscaling_factor` (default 1): gain applied to an upscale step (< 1 smooths, > 1 jumps). */
  readonly upscalingFactor: number;
  /** `downscaling_factor` (default 1): gain applied to a downscale step. */
  readonly downscalingFactor: number;
  /**
   * `max_hold_s` (default 300): longest a request waits in the queue for a replica while the
   * deployment has none (scaling from zero, or every replica gone); then UNAVAILABLE.
   */
  readonly maxHoldMs: number;
  /** `kubernetes_deployment` (default: the deployment's name): the Deployment the kubernetes target scales (in autoscaler.kubernetes_namespace). */
  readonly kubernetesDeployment: string;
}

/** Where the router's autoscaler applies its decisions (services/router/scale-targets/). */
export type ScaleTargetKind = 'none' | 'local' | 'kubernetes';
export const SCALE_TARGETS: readonly ScaleTargetKind[] = ['none', 'local', 'kubernetes'];

/**
 * The size a stage is asked to produce: `target` (the request's final size), `bucket` (the SDXL
 * bucket nearest the final aspect ratio — SDXL generates best there), or `scaled` (the input's
 * size × `params.scale`, 1 when unset).
 */
export type StageSize = 'target' | 'bucket' | 'scaled';

export interface PipelineStageConfig {
  readonly deployment: string;
  readonly size: StageSize;
  /** Fixed model for this stage; empty: the request's model_id. */
  readonly model: string;
  /** Stage parameters (JSON-serialisable), e.g. `{ scale: 2 }`. */
  readonly params: Readonly<Record<string, unknown>>;
}

export interface PipelineConfig {
  readonly name: string;
  readonly stages: readonly PipelineStageConfig[];
  /** Final size of requests that give no width/height (an `aspect` keeps this width). */
  readonly defaultSize?: { readonly width: number; readonly height: number };
  /** The spatial quality gate (`qc`, issue 13; qc-config.ts); absent: images are not checked. */
  readonly qc?: QcOptions;
}

export interface ClusterConfig {
  /** `nats.auth`/`nats.tls` (services/common/nats-security-config.ts): credentials and TLS, from files. */
  readonly nats: { readonly url: string; readonly prefix: string } & NatsSecurityConfig;
  /** `router.tls`, `router.auth` and `router.reflection` are in grpc-security-config.ts. */
  readonly router: GrpcSecurityConfig & {
    readonly grpcPort: number;
    readonly metricsPort: number;
    /** Heartbeats older than this many intervals drop the replica. */
    readonly replicaTimeoutIntervals: number;
    /**
     * `max_request_bytes_in_flight` (default 512 MiB): bytes of requests (init_image plus a fixed
     * overhead each) the router holds at once; past it a request gets RESOURCE_EXHAUSTED.
     */
    readonly maxRequestBytesInFlight: number;
  };
  /** The router's autoscaler (section `autoscaler`); it manages deployments that have `autoscaling`. */
  readonly autoscaler: {
    /**
     * `scale_target` (default none: decisions are computed and exported as metrics only, e.g.
     * when KEDA scales): `local` (serve-local starts and stops replica processes) or `kubernetes`.
     */
    readonly scaleTarget: ScaleTargetKind;
    /** `interval_ms` (default 1000): how often the autoscaler looks at the load. */
    readonly intervalMs: number;
    /** `kubernetes_namespace` (default `default`): namespace of the Deployments the kubernetes target scales. */
    readonly kubernetesNamespace: string;
    /**
     * `leader_lease_ms` (default 15000): with several routers only the holder of the autoscaler
     * lease scales (a Kubernetes Lease under scale_target kubernetes, else a NATS KV lock); a dead
     * holder's lease is taken over at most this long after its last renewal.
     */
    readonly leaderLeaseMs: number;
    /** `leader_lease_name` (default `orrery-autoscaler`): the Kubernetes Lease's name (the chart sets `<release>-orrery-autoscaler`). */
    readonly leaderLeaseName: string;
  };
  readonly worker: { readonly heartbeatIntervalMs: number; readonly metricsPort: number; readonly drainTimeoutMs: number };
  /** Payloads above this many bytes go through the NATS object store. */
  readonly maxInlinePayloadBytes: number;
  readonly modelRepository: string;
  readonly deployments: Readonly<Record<string, DeploymentConfig>>;
  readonly pipelines: Readonly<Record<string, PipelineConfig>>;
  readonly defaultPipeline: string;
  /** Bulk jobs (section `jobs`, docs/jobs.md). */
  readonly jobs: JobsConfig;
}

/** Bulk jobs run by the routers through JetStream (section `jobs`; every key optional). */
export interface JobsConfig {
  /** `enabled` (default true): routers serve the job RPCs and run job items. */
  readonly enabled: boolean;
  /** `max_job_items` (default 50,000,000): most items in one job (a grid's size or explicit items). */
  readonly maxJobItems: number;
  /** `max_attempts` (default 3): attempts per item when a job does not say. */
  readonly maxAttempts: number;
  /** `default_output_uri` (default file://./out/jobs): a job without output_uri writes to `<this>/<job_id>`. */
  readonly defaultOutputUri: string;
  /** `ack_wait_s` (default 60): how long a claimed item may run without a sign of life before another router takes it, until item times are measured. */
  readonly ackWaitMs: number;
  /** `min_ack_wait_s` (default 30) / `max_ack_wait_s` (default 600): bounds of the measured ack wait (4 × recent p99 item time). */
  readonly minAckWaitMs: number;
  readonly maxAckWaitMs: number;
  /** `retry_backoff_ms` (default 1000): delay before an item's second attempt; doubles per attempt, at most 60 s. */
  readonly retryBackoffMs: number;
  /** `max_in_flight` (default 0: the pipeline's bulk capacity): items one router runs at once, when set. */
  readonly maxInFlight: number;
  /** `queued_window` (default 1000): items queued in JetStream per job beyond 2 × capacity (lazy expansion). */
  readonly queuedWindow: number;
  /** `sink_check_interval_s` (default 5): how often a paused job's sink is checked to resume it. */
  readonly sinkCheckIntervalMs: number;
  /**
   * `default_completion_window_h` (default 24; fractions allowed; 0: no window): the completion
   * window of a job that does not set `completion_window_s`. A job not finished within its window
   * expires (docs/jobs.md).
   */
  readonly defaultCompletionWindowMs: number;
  /**
   * `retention_h` (default 168 = 7 days; fractions allowed; 0: keep for ever): how long a finished
   * job's records (spec, state, item records) stay in JetStream before the routers delete them.
   * Its outputs in the sink are never deleted.
   */
  readonly retentionMs: number;
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `a.b` for a nested key, `b` at the top level. */
const keyPath = (path: string, key: string): string => (path ? `${path}.${key}` : key);

function checkKeys(obj: Obj, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new ConfigError(keyPath(path, k), `unknown key (allowed: ${allowed.join(', ')})`);
  }
}

function int(obj: Obj, key: string, path: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(keyPath(path, key), `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(obj: Obj, key: string, path: string, def: number, min: number): number {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new ConfigError(keyPath(path, key), `must be a number ≥ ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function str(obj: Obj, key: string, path: string, def: string): string {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'string') throw new ConfigError(keyPath(path, key), `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function section(obj: Obj, key: string, path: string): Obj {
  const v = obj[key];
  if (v === undefined) return {};
  if (!isObj(v)) throw new ConfigError(keyPath(path, key), 'must be a mapping');
  return v;
}

const DEPLOYMENT_KEYS = [
  'stage', 'models', 'replicas', 'max_batch_size', 'batch_wait_timeout_ms', 'max_ongoing_batches',
  'max_queued_requests', 'max_models_per_replica', 'preload_models', 'max_model_bytes_per_replica', 'affinity_wait_ms', 'spill_backlog_batches', 'default_steps', 'default_guidance_scale', 'options', 'autoscaling', 'batching', 'max_waiting_images',
] as const;

const AUTOSCALING_KEYS = [
  'min_replicas', 'max_replicas', 'initial_replicas', 'target_ongoing_requests', 'upscale_delay_s', 'downscale_delay_s',
  'downscale_to_zero_delay_s', 'upscaling_factor', 'downscaling_factor', 'max_hold_s', 'kubernetes_deployment',
] as const;

/** A number > 0 (targets and gains: zero would divide by zero or freeze the policy). */
function positive(obj: Obj, key: string, path: string, def: number): number {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(keyPath(path, key), `must be a number > 0, got ${JSON.stringify(v)}`);
  return v;
}

function compileAutoscaling(name: string, raw: unknown): AutoscalingConfig {
  const path = `deployments.${name}.autoscaling`;
  if (!isObj(raw)) throw new ConfigError(path, 'must be a mapping');
  checkKeys(raw, AUTOSCALING_KEYS, path);
  const minReplicas = int(raw, 'min_replicas', path, 1, 0, 1000);
  const maxReplicas = int(raw, 'max_replicas', path, Math.max(minReplicas, 1), 1, 1000);
  if (maxReplicas < minReplicas) throw new ConfigError(`${path}.max_replicas`, `must be ≥ min_replicas (${minReplicas}), got ${maxReplicas}`);
  const initialReplicas = int(raw, 'initial_replicas', path, minReplicas, 0, 1000);
  if (initialReplicas < minReplicas || initialReplicas > maxReplicas) {
    throw new ConfigError(`${path}.initial_replicas`, `must be in [min_replicas, max_replicas] = [${minReplicas}, ${maxReplicas}], got ${initialReplicas}`);
  }
  const seconds = (key: string, def: number) => Math.round(num(raw, key, path, def, 0) * 1000);
  const downscaleDelayMs = seconds('downscale_delay_s', 600);
  const kubernetesDeployment = str(raw, 'kubernetes_deployment', path, name);
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(kubernetesDeployment)) throw new ConfigError(`${path}.kubernetes_deployment`, `must be a Kubernetes object name, got ${JSON.stringify(kubernetesDeployment)}`);
  return {
    minReplicas,
    maxReplicas,
    initialReplicas,
    targetOngoingRequests: positive(raw, 'target_ongoing_requests', path, 2),
    upscaleDelayMs: seconds('upscale_delay_s', 30),
    downscaleDelayMs,
    downscaleToZeroDelayMs: raw.downscale_to_zero_delay_s === undefined ? downscaleDelayMs : seconds('downscale_to_zero_delay_s', 0),
    upscalingFactor: positive(raw, 'upscaling_factor', path, 1),
    downscalingFactor: positive(raw, 'downscaling_factor', path, 1),
    maxHoldMs: seconds('max_hold_s', 300),
    kubernetesDeployment,
  };
}

function compileDeployment(name: string, raw: unknown): DeploymentConfig {
  const path = `deployments.${name}`;
  if (!NAME.test(name)) throw new ConfigError(path, 'deployment names are lower-case letters, digits and dashes');
  if (!isObj(raw)) throw new ConfigError(path, 'must be a mapping');
  checkKeys(raw, DEPLOYMENT_KEYS, path);
  const stage = str(raw, 'stage', path, '');
  if (!stage) throw new ConfigError(`${path}.stage`, 'is required (e.g. synthetic, texture)');
  const models = raw.models;
  if (!Array.isArray(models) || models.length === 0 || !models.every((m) => typeof m === 'string' && m.length > 0)) {
    throw new ConfigError(`${path}.models`, 'must be a non-empty list of model ids');
  }
  // A model outside the id grammar could never be requested (requests are checked by it).
  models.forEach((m: string, i) => {
    try {
      parseModelId(m);
    } catch (err) {
      throw new ConfigError(`${path}.models[${i}]`, (err as Error).message);
    }
  });
  const maxModelsPerReplica = int(raw, 'max_models_per_replica', path, 2, 1, 64);
  const preload = raw.preload_models ?? [models[0]];
  if (!Array.isArray(preload)) throw new ConfigError(`${path}.preload_models`, 'must be a list of model ids (empty: load on first use)');
  preload.forEach((m: unknown, i) => {
    if (typeof m !== 'string' || !models.includes(m)) throw new ConfigError(`${path}.preload_models[${i}]`, `must be one of the deployment's models (${models.join(', ')}), got ${JSON.stringify(m)}`);
  });
  const preloadModels = [...new Set(preload as string[])];
  if (preloadModels.length > maxModelsPerReplica) throw new ConfigError(`${path}.preload_models`, `lists ${preloadModels.length} models but max_models_per_replica is ${maxModelsPerReplica}`);
  const autoscaling = raw.autoscaling === undefined ? undefined : compileAutoscaling(name, raw.autoscaling);
  // An autoscaled deployment starts with initial_replicas; a second count would contradict it.
  if (autoscaling && raw.replicas !== undefined) throw new ConfigError(`${path}.replicas`, 'conflicts with autoscaling: set autoscaling.initial_replicas instead');
  const batching = str(raw, 'batching', path, 'request');
  if (batching !== 'request' && batching !== 'continuous') throw new ConfigError(`${path}.batching`, `must be request or continuous, got ${JSON.stringify(batching)}`);
  if (batching === 'continuous' && !STEPPING_STAGES.includes(stage)) throw new ConfigError(`${path}.batching`, `continuous needs a stage that steps (${STEPPING_STAGES.join(', ')}); stage ${stage} runs whole batches`);
  return {
    name,
    stage,
    models: [...(models as string[])],
    replicas: autoscaling ? autoscaling.initialReplicas : int(raw, 'replicas', path, 1, 0, 64),
    maxBatchSize: int(raw, 'max_batch_size', path, 4, 1, 1024),
    batchWaitTimeoutMs: num(raw, 'batch_wait_timeout_ms', path, 10, 0),
    maxOngoingBatches: int(raw, 'max_ongoing_batches', path, 2, 1, 64),
    maxQueuedRequests: int(raw, 'max_queued_requests', path, 1000, 1),
    maxModelsPerReplica,
    preloadModels,
    ...(raw.max_model_bytes_per_replica !== undefined ? { maxModelBytesPerReplica: int(raw, 'max_model_bytes_per_replica', path, 0, 1) } : {}),
    affinityWaitMs: num(raw, 'affinity_wait_ms', path, Math.max(1000, 20 * num(raw, 'batch_wait_timeout_ms', path, 10, 0)), 0),
    spillBacklogBatches: int(raw, 'spill_backlog_batches', path, 3, 1, 1000),
    defaultSteps: int(raw, 'default_steps', path, 30, 1, 1000),
    defaultGuidanceScale: num(raw, 'default_guidance_scale', path, 5, 0),
    options: structuredClone(section(raw, 'options', path)),
    ...(autoscaling ? { autoscaling } : {}),
    batching,
    maxWaitingImages: int(raw, 'max_waiting_images', path, 1, 0, 1024),
  };
}

function compilePipeline(name: string, raw: unknown, deployments: Record<string, DeploymentConfig>): PipelineConfig {
  const path = `pipelines.${name}`;
  if (!NAME.test(name)) throw new ConfigError(path, 'pipeline names are lower-case letters, digits and dashes');
  if (!isObj(raw)) throw new ConfigError(path, 'must be a mapping');
  checkKeys(raw, ['stages', 'default_size', 'qc'], path);
  const stages = raw.stages;
  if (!Array.isArray(stages) || stages.length === 0) throw new ConfigError(`${path}.stages`, 'must be a non-empty list');
  let defaultSize: PipelineConfig['defaultSize'];
  if (raw.default_size !== undefined) {
    const m = typeof raw.default_size === 'string' ? /^(\d{2,5})x(\d{2,5})$/.exec(raw.default_size) : null;
    if (!m || Number(m[1]) % 8 || Number(m[2]) % 8) throw new ConfigError(`${path}.default_size`, `must be WIDTHxHEIGHT in multiples of 8, e.g. 2520x1080, got ${JSON.stringify(raw.default_size)}`);
    defaultSize = { width: Number(m[1]), height: Number(m[2]) };
  }
  const qc = raw.qc === undefined ? undefined : compileQc(raw.qc, `${path}.qc`, stages, deployments);
  return {
    name,
    ...(defaultSize ? { defaultSize } : {}),
    ...(qc ? { qc } : {}),
    stages: stages.map((s, i) => {
      const sp = `${path}.stages[${i}]`;
      if (!isObj(s)) throw new ConfigError(sp, 'must be a mapping');
      checkKeys(s, ['deployment', 'model', 'params', 'size'], sp);
      const deployment = str(s, 'deployment', sp, '');
      if (!deployments[deployment]) {
        throw new ConfigError(`${sp}.deployment`, `unknown deployment "${deployment}" (known: ${Object.keys(deployments).join(', ')})`);
      }
      const size = str(s, 'size', sp, i === 0 ? 'target' : 'scaled');
      if (size !== 'target' && size !== 'bucket' && size !== 'scaled') throw new ConfigError(`${sp}.size`, `must be target, bucket or scaled, got "${size}"`);
      return { deployment, size, model: str(s, 'model', sp, ''), params: structuredClone(section(s, 'params', sp)) };
    }),
  };
}

/**
 * A pipeline's quality gate: compileQcOptions, and `after_stage` must name one of the pipeline's
 * stages whose output is an image (not the `synthetic` cost model's payload).
 */
function compileQc(raw: unknown, path: string, stages: unknown[], deployments: Record<string, DeploymentConfig>): QcOptions {
  const qc = compileQcOptions(raw, path);
  if (qc.afterStage >= stages.length) throw new ConfigError(`${path}.after_stage`, `must name one of the pipeline's ${stages.length} stages (0-${stages.length - 1}), got ${qc.afterStage}`);
  const checked = stages[qc.afterStage];
  const deployment = isObj(checked) && typeof checked.deployment === 'string' ? deployments[checked.deployment] : undefined;
  if (deployment?.stage === 'synthetic') throw new ConfigError(`${path}.after_stage`, `stage ${qc.afterStage} runs on ${deployment.name}, a synthetic deployment whose outputs are not images`);
  return qc;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** Validates a parsed config object, fills defaults and freezes it. Throws ConfigError naming the key. */
export function compileConfig(raw: unknown): ClusterConfig {
  if (!isObj(raw)) throw new ConfigError('(root)', 'must be a mapping');
  checkKeys(raw, ['nats', 'router', 'autoscaler', 'worker', 'jobs', 'max_inline_payload_bytes', 'model_repository', 'deployments', 'pipelines', 'default_pipeline'], '');
  const nats = section(raw, 'nats', '');
  checkKeys(nats, ['url', 'prefix', 'auth', 'tls'], 'nats');
  const prefix = str(nats, 'prefix', 'nats', 'orrery');
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) throw new ConfigError('nats.prefix', 'must be NATS subject tokens (letters, digits, _ and -) joined by dots');
  const router = section(raw, 'router', '');
  checkKeys(router, ['grpc_port', 'metrics_port', 'replica_timeout_intervals', 'max_request_bytes_in_flight', ...GRPC_SECURITY_KEYS], 'router');
  const autoscaler = section(raw, 'autoscaler', '');
  checkKeys(autoscaler, ['scale_target', 'interval_ms', 'kubernetes_namespace', 'leader_lease_ms', 'leader_lease_name'], 'autoscaler');
  const scaleTarget = str(autoscaler, 'scale_target', 'autoscaler', 'none') as ScaleTargetKind;
  if (!SCALE_TARGETS.includes(scaleTarget)) throw new ConfigError('autoscaler.scale_target', `must be one of ${SCALE_TARGETS.join(', ')}, got "${scaleTarget}"`);
  const worker = section(raw, 'worker', '');
  checkKeys(worker, ['heartbeat_interval_ms', 'metrics_port', 'drain_timeout_ms'], 'worker');

  const rawDeps = section(raw, 'deployments', '');
  if (Object.keys(rawDeps).length === 0) throw new ConfigError('deployments', 'at least one deployment is required');
  const deployments: Record<string, DeploymentConfig> = {};
  for (const [name, d] of Object.entries(rawDeps)) deployments[name] = compileDeployment(name, d);

  const rawPipes = section(raw, 'pipelines', '');
  const pipelines: Record<string, PipelineConfig> = {};
  for (const [name, p] of Object.entries(rawPipes)) pipelines[name] = compilePipeline(name, p, deployments);
  // Every deployment is also reachable as a one-stage pipeline of the same name.
  for (const name of Object.keys(deployments)) {
    if (!pipelines[name]) pipelines[name] = { name, stages: [{ deployment: name, size: 'target', model: '', params: {} }] };
  }
  const defaultPipeline = str(raw, 'default_pipeline', '', Object.keys(rawPipes)[0] ?? Object.keys(deployments)[0]!);
  if (!pipelines[defaultPipeline]) throw new ConfigError('default_pipeline', `unknown pipeline "${defaultPipeline}"`);

  return deepFreeze({
    nats: { url: str(nats, 'url', 'nats', 'nats://127.0.0.1:4222'), prefix, ...compileNatsSecurity(nats.auth, nats.tls) },
    router: {
      grpcPort: int(router, 'grpc_port', 'router', 50051, 0, 65535),
      metricsPort: int(router, 'metrics_port', 'router', 9464, 0, 65535),
      replicaTimeoutIntervals: int(router, 'replica_timeout_intervals', 'router', 3, 2, 100),
      // At least 1 MiB: below that even small img2img requests would queue behind each other.
      maxRequestBytesInFlight: int(router, 'max_request_bytes_in_flight', 'router', 512 * 1024 * 1024, 1024 * 1024),
      ...compileGrpcSecurity(router),
    },
    autoscaler: {
      scaleTarget,
      intervalMs: int(autoscaler, 'interval_ms', 'autoscaler', 1000, 10, 600_000),
      kubernetesNamespace: str(autoscaler, 'kubernetes_namespace', 'autoscaler', 'default'),
      leaderLeaseMs: int(autoscaler, 'leader_lease_ms', 'autoscaler', 15_000, 1000, 600_000),
      leaderLeaseName: str(autoscaler, 'leader_lease_name', 'autoscaler', 'orrery-autoscaler'),
    },
    worker: {
      heartbeatIntervalMs: int(worker, 'heartbeat_interval_ms', 'worker', 1000, 20, 60_000),
      metricsPort: int(worker, 'metrics_port', 'worker', 0, 0, 65535),
      drainTimeoutMs: int(worker, 'drain_timeout_ms', 'worker', 60_000, 0),
    },
    maxInlinePayloadBytes: int(raw, 'max_inline_payload_bytes', '', 512 * 1024, 1024, 64 * 1024 * 1024),
    modelRepository: str(raw, 'model_repository', '', './models'),
    deployments,
    pipelines,
    defaultPipeline,
    jobs: compileJobs(section(raw, 'jobs', '')),
  });
}

/** Upper bound of the hour-valued job keys (keeps their times far from Date's range). */
const MAX_JOB_HOURS = 87_600;

const JOBS_KEYS = ['enabled', 'max_job_items', 'max_attempts', 'default_output_uri', 'ack_wait_s', 'min_ack_wait_s', 'max_ack_wait_s', 'retry_backoff_ms', 'max_in_flight', 'queued_window', 'sink_check_interval_s', 'default_completion_window_h', 'retention_h'] as const;

function compileJobs(raw: Obj): JobsConfig {
  checkKeys(raw, JOBS_KEYS, 'jobs');
  const enabled = raw.enabled ?? true;
  if (typeof enabled !== 'boolean') throw new ConfigError('jobs.enabled', `must be true or false, got ${JSON.stringify(enabled)}`);
  const seconds = (key: string, def: number) => Math.round(num(raw, key, 'jobs', def, 0.1) * 1000);
  // Hours may be fractions (a test's 2-second retention is 0.00056 h); 0 turns the feature off.
  const hours = (key: string, def: number) => {
    const ms = Math.round(num(raw, key, 'jobs', def, 0) * 3_600_000);
    if (ms > MAX_JOB_HOURS * 3_600_000) throw new ConfigError(`jobs.${key}`, `must be at most ${MAX_JOB_HOURS} (10 years)`);
    return ms;
  };
  const minAckWaitMs = seconds('min_ack_wait_s', 30);
  const maxAckWaitMs = seconds('max_ack_wait_s', 600);
  if (maxAckWaitMs < minAckWaitMs) throw new ConfigError('jobs.max_ack_wait_s', `must be ≥ min_ack_wait_s (${minAckWaitMs / 1000})`);
  const defaultOutputUri = str(raw, 'default_output_uri', 'jobs', 'file://./out/jobs');
  if (!/^(file|nats-object|s3):\/\//.test(defaultOutputUri)) throw new ConfigError('jobs.default_output_uri', `must be a file://, nats-object:// or s3:// URI, got ${JSON.stringify(defaultOutputUri)}`);
  return {
    enabled,
    maxJobItems: int(raw, 'max_job_items', 'jobs', 50_000_000, 1),
    maxAttempts: int(raw, 'max_attempts', 'jobs', 3, 1, 100),
    defaultOutputUri,
    ackWaitMs: Math.min(maxAckWaitMs, Math.max(minAckWaitMs, seconds('ack_wait_s', 60))),
    minAckWaitMs,
    maxAckWaitMs,
    retryBackoffMs: int(raw, 'retry_backoff_ms', 'jobs', 1000, 0, 600_000),
    maxInFlight: int(raw, 'max_in_flight', 'jobs', 0, 0, 100_000),
    queuedWindow: int(raw, 'queued_window', 'jobs', 1000, 1, 10_000_000),
    sinkCheckIntervalMs: seconds('sink_check_interval_s', 5),
    defaultCompletionWindowMs: hours('default_completion_window_h', 24),
    retentionMs: hours('retention_h', 168),
  };
}

/** Parses YAML text and compiles it; YAML syntax errors become ConfigError with the line. */
export function parseConfig(text: string, source = 'config'): ClusterConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(source, `is not valid YAML: ${(err as Error).message}`);
  }
  return compileConfig(raw ?? {});
}
