/**
 * ONNX Runtime session options as deployments configure them, shared by every stage that opens
 * sessions (texture, sdxl, …): parsed once from a deployment's `options` block, then mapped to
 * onnxruntime-node's SessionOptions.
 *
 * Deployment options read (all optional):
 * - `execution_provider`: `cpu` (default) | `cuda` | `tensorrt` (then cuda, then cpu, for the
 *   operators a provider lacks; a provider whose libraries are missing fails the load rather than
 *   silently running on the CPU);
 * - `device_id`: GPU ordinal for cuda/tensorrt (default 0);
 * - `intra_op_threads`: ONNX Runtime intra-op threads (default 0 = ORT's choice);
 * - `graph_optimization_level`: `disabled` | `basic` | `extended` | `all` (default);
 * - `optimized_model_cache_dir`: a directory where optimized models are kept between loads
 *   (optimized-model-cache.ts); absent or empty (default): every load optimizes anew.
 */
import type { InferenceSession } from 'onnxruntime-node';
import { ConfigError } from '../common/errors.js';

export type ExecutionProvider = 'cpu' | 'cuda' | 'tensorrt';
export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

/** Session options in Orrery's terms (see the module comment for defaults). */
export interface SessionOptions {
  readonly executionProvider: ExecutionProvider;
  readonly deviceId?: number;
  /** 0 or absent: ONNX Runtime chooses. */
  readonly intraOpThreads?: number;
  readonly graphOptimizationLevel?: GraphOptimizationLevel;
  /**
   * Where optimized models are cached (absolute, or relative to the working directory like
   * `model_repository`); absent: no cache. Read by optimized-model-cache.ts, not by ONNX Runtime.
   */
  readonly optimizedModelCacheDir?: string;
}

const PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'tensorrt'];
const LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

/**
 * Reads `execution_provider`, `device_id`, `intra_op_threads`, `graph_optimization_level` and
 * `optimized_model_cache_dir` from a deployment's options (other keys are ignored). Throws
 * ConfigError naming `options.<key>`.
 */
export function parseSessionOptions(options: Readonly<Record<string, unknown>>): SessionOptions {
  const ep = options['execution_provider'] ?? 'cpu';
  if (!PROVIDERS.includes(ep as ExecutionProvider)) {
    throw new ConfigError('options.execution_provider', `must be cpu, cuda or tensorrt, got ${JSON.stringify(ep)}`);
  }
  const int = (key: string, def: number, max: number): number => {
    const v = options[key] ?? def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
      throw new ConfigError(`options.${key}`, `must be an integer in [0, ${max}], got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const level = options['graph_optimization_level'] ?? 'all';
  if (!LEVELS.includes(level as GraphOptimizationLevel)) {
    throw new ConfigError('options.graph_optimization_level', `must be disabled, basic, extended or all, got ${JSON.stringify(level)}`);
  }
  const cacheDir = options['optimized_model_cache_dir'] ?? '';
  if (typeof cacheDir !== 'string' || cacheDir.includes('\0')) {
    throw new ConfigError('options.optimized_model_cache_dir', `must be a directory path (empty: no cache), got ${JSON.stringify(cacheDir)}`);
  }
  return Object.freeze({
    executionProvider: ep as ExecutionProvider,
    deviceId: int('device_id', 0, 64),
    intraOpThreads: int('intra_op_threads', 0, 1024),
    graphOptimizationLevel: level as GraphOptimizationLevel,
    ...(cacheDir ? { optimizedModelCacheDir: cacheDir } : {}),
  });
}

/** The onnxruntime-node SessionOptions for `o`. */
export function toOrtSessionOptions(o: SessionOptions): InferenceSession.SessionOptions {
  const deviceId = o.deviceId ?? 0;
  // onnxruntime-node takes only deviceId for GPU providers; CPU stays last as the fallback.
  const providers: InferenceSession.ExecutionProviderConfig[] =
    o.executionProvider === 'cpu' ? ['cpu']
      : o.executionProvider === 'cuda' ? [{ name: 'cuda', deviceId }, 'cpu']
        : [{ name: 'tensorrt', deviceId }, { name: 'cuda', deviceId }, 'cpu'];
  const threads = o.intraOpThreads ?? 0;
  return {
    executionProviders: providers,
    graphOptimizationLevel: o.graphOptimizationLevel ?? 'all',
    ...(threads > 0 ? { intraOpNumThreads: threads } : {}),
  };
}
