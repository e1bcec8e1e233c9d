/**
 * The cluster configuration: one YAML file with deployments and pipelines. `compileConfig`
 * validates it (errors name the key, e.g. `deployments.sdxl-base.max_batch_size`), fills the
 * documented defaults and freezes the result. Files are read by the caller (main.ts), not here.
 */
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';

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
  /** Defaults applied to requests that leave these unset. */
  readonly defaultSteps: number;
  readonly defaultGuidanceScale: number;
  /** Stage-specific options (cost model, model repository paths, ...), passed to the stage as is. */
  readonly options: Readonly<Record<string, unknown>>;
}

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
}

export interface ClusterConfig {
  readonly nats: { readonly url: string; readonly prefix: string };
  readonly router: {
    readonly grpcPort: number;
    readonly metricsPort: number;
    /** Heartbeats older than this many intervals drop the replica. */
    readonly replicaTimeoutIntervals: number;
  };
  readonly worker: { readonly heartbeatIntervalMs: number; readonly metricsPort: number; readonly drainTimeoutMs: number };
  /** Payloads above this many bytes go through the NATS object store. */
  readonly maxInlinePayloadBytes: number;
  readonly modelRepository: string;
  readonly deployments: Readonly<Record<string, DeploymentConfig>>;
  readonly pipelines: Readonly<Record<string, PipelineConfig>>;
  readonly defaultPipeline: string;
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
  'max_queued_requests', 'max_models_per_replica', 'default_steps', 'default_guidance_scale', 'options',
] as const;

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
  return {
    name,
    stage,
    models: [...models] as string[],
    replicas: int(raw, 'replicas', path, 1, 0, 64),
    maxBatchSize: int(raw, 'max_batch_size', path, 4, 1, 1024),
    batchWaitTimeoutMs: num(raw, 'batch_wait_timeout_ms', path, 10, 0),
    maxOngoingBatches: int(raw, 'max_ongoing_batches', path, 1, 1, 64),
    maxQueuedRequests: int(raw, 'max_queued_requests', path, 1000, 1),
    maxModelsPerReplica: int(raw, 'max_models_per_replica', path, 2, 1, 64),
    defaultSteps: int(raw, 'default_steps', path, 30, 1, 1000),
    defaultGuidanceScale: num(raw, 'default_guidance_scale', path, 5, 0),
    options: structuredClone(section(raw, 'options', path)),
  };
}

function compilePipeline(name: string, raw: unknown, deployments: Record<string, DeploymentConfig>): PipelineConfig {
  const path = `pipelines.${name}`;
  if (!NAME.test(name)) throw new ConfigError(path, 'pipeline names are lower-case letters, digits and dashes');
  if (!isObj(raw)) throw new ConfigError(path, 'must be a mapping');
  checkKeys(raw, ['stages', 'default_size'], path);
  const stages = raw.stages;
  if (!Array.isArray(stages) || stages.length === 0) throw new ConfigError(`${path}.stages`, 'must be a non-empty list');
  let defaultSize: PipelineConfig['defaultSize'];
  if (raw.default_size !== undefined) {
    const m = /^(\d{2,5})x(\d{2,5})$/.exec(String(raw.default_size));
    if (!m || Number(m[1]) % 8 || Number(m[2]) % 8) throw new ConfigError(`${path}.default_size`, `must be WIDTHxHEIGHT in multiples of 8, e.g. 2520x1080, got ${JSON.stringify(raw.default_size)}`);
    defaultSize = { width: Number(m[1]), height: Number(m[2]) };
  }
  return {
    name,
    ...(defaultSize ? { defaultSize } : {}),
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
  checkKeys(raw, ['nats', 'router', 'worker', 'max_inline_payload_bytes', 'model_repository', 'deployments', 'pipelines', 'default_pipeline'], '');
  const nats = section(raw, 'nats', '');
  checkKeys(nats, ['url', 'prefix'], 'nats');
  const prefix = str(nats, 'prefix', 'nats', 'orrery');
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) throw new ConfigError('nats.prefix', 'must be NATS subject tokens (letters, digits, _ and -) joined by dots');
  const router = section(raw, 'router', '');
  checkKeys(router, ['grpc_port', 'metrics_port', 'replica_timeout_intervals'], 'router');
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
    nats: { url: str(nats, 'url', 'nats', 'nats://127.0.0.1:4222'), prefix },
    router: {
      grpcPort: int(router, 'grpc_port', 'router', 50051, 0, 65535),
      metricsPort: int(router, 'metrics_port', 'router', 9464, 0, 65535),
      replicaTimeoutIntervals: int(router, 'replica_timeout_intervals', 'router', 3, 2, 100),
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
  });
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
