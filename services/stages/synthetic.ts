/**
 * Stage `synthetic`: a configurable cost model standing in for GPU work, for tests and benchmarks
 * of the scheduling machinery. A batch of n items takes `fixed_ms + per_item_ms × n` of timer
 * time (it stands for time on a GPU, so it does not burn this CPU), and yields, per item, an
 * `application/octet-stream` payload that is cheap to make and checkable end to end.
 *
 * Deployment options read (all optional):
 * - `fixed_ms` (0), `per_item_ms` (0): batch cost;
 * - `load_ms` (0): model load time;
 * - `encode_ms` (0): time after the batch's model work (RunContext.computeDone), standing for
 *   encoding its images on the CPU while the device may run the next batch;
 * - `image_bytes` (0): payload size; the payload is never shorter than its header line;
 * - `progress` (false): report `steps` progress events per item, spread over the batch time;
 * - `step_cost_ms` ([[rows, ms], …]) and `step_time_scale` (1): a per-step cost model (see
 *   synthetic-steps.ts). Set, a batch of n items takes `steps × step_cost_ms(rows) × scale`
 *   instead of `fixed_ms + per_item_ms × n`; with `batching: continuous` it is the cost of every
 *   step of the model's running set (default: the calibrated table of synthetic-steps.ts);
 * - `call_log` (unset): with `batching: continuous`, a file to which every step call of the
 *   running sets appends one JSON line (`{modelId, startMs, endMs, rows, images, online}`,
 *   synthetic-steps.ts SyntheticCall), so tests and benchmarks can see how the models' calls
 *   shared the device;
 * - `fail_models` ([]): model ids whose load fails with ORRERY_ERR_MODEL_LOAD_FAILED;
 * - `crash_models` ([]): model ids whose load throws an uncaught exception, killing the executor
 *   thread (fault injection for crash-handling tests; never set it in production).
 * Any other model id loads.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, ConfigError, OrreryError } from '../common/errors.js';
import { publishRunningSet, RunningSet } from './running-set.js';
import type { LoadedModel, RunContext, Stage, StageContext, StageItem, StageOutput } from './stage.js';
import { compileStepCost, DEFAULT_STEP_COST_MS, stepRows, SyntheticImage, SyntheticStepModel, type StepCost, type SyntheticCall } from './synthetic-steps.js';

/** What a synthetic payload's header line says. */
export interface SyntheticHeader {
  modelId: string;
  /** The item's 64-bit seed, in decimal. */
  seed: string;
  requestId: string;
  imageIndex: number;
  prompt: string;
}

export const SYNTHETIC_MIME_TYPE = 'application/octet-stream';
/** Largest `image_bytes` accepted (256 MiB). */
const MAX_IMAGE_BYTES = 256 * 1024 * 1024;

interface SyntheticOptions {
  readonly fixedMs: number;
  readonly perItemMs: number;
  readonly loadMs: number;
  readonly encodeMs: number;
  readonly imageBytes: number;
  readonly progress: boolean;
  readonly failModels: readonly string[];
  readonly crashModels: readonly string[];
  readonly stepCost?: StepCost;
  readonly callLog?: string;
}

function compileOptions(options: Readonly<Record<string, unknown>>): SyntheticOptions {
  const num = (key: string, max: number): number => {
    const v = options[key] ?? 0;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
      throw new ConfigError(`options.${key}`, `must be a number in [0, ${max}], got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const progress = options['progress'] ?? false;
  if (typeof progress !== 'boolean') throw new ConfigError('options.progress', `must be true or false, got ${JSON.stringify(progress)}`);
  const ids = (key: string): readonly string[] => {
    const v = options[key] ?? [];
    if (!Array.isArray(v) || !v.every((m) => typeof m === 'string')) throw new ConfigError(`options.${key}`, 'must be a list of model ids');
    return Object.freeze([...v] as string[]);
  };
  const imageBytes = num('image_bytes', MAX_IMAGE_BYTES);
  if (!Number.isInteger(imageBytes)) throw new ConfigError('options.image_bytes', `must be an integer, got ${imageBytes}`);
  const stepCost = compileStepCost(options);
  const callLog = options['call_log'];
  if (callLog !== undefined && (typeof callLog !== 'string' || callLog === '')) throw new ConfigError('options.call_log', `must be a file path, got ${JSON.stringify(callLog)}`);
  return Object.freeze({
    ...(callLog !== undefined ? { callLog } : {}),
    ...(stepCost ? { stepCost } : {}),
    fixedMs: num('fixed_ms', 3_600_000),
    perItemMs: num('per_item_ms', 3_600_000),
    loadMs: num('load_ms', 3_600_000),
    encodeMs: num('encode_ms', 3_600_000),
    imageBytes,
    progress,
    failModels: ids('fail_models'),
    crashModels: ids('crash_models'),
  });
}

/**
 * The payload for one item: a JSON header line ({@link SyntheticHeader}, then `\n`), padded to
 * `imageBytes` with a byte pattern seeded by the header, so the same item always gives the same
 * bytes and a reordered or corrupted chunk of a big payload is detectable by regenerating it.
 */
export function syntheticPayload(header: SyntheticHeader, imageBytes: number): Uint8Array {
  const head = Buffer.from(`${JSON.stringify(header)}\n`);
  const total = Math.max(head.length, imageBytes);
  // A fresh ArrayBuffer exactly this size, so it can be transferred across threads whole.
  const out = new Uint8Array(new ArrayBuffer(total));
  out.set(head);
  if (total > head.length) {
    // xorshift32 over 32-bit words; the seed mixes in the whole header (FNV-1a).
    let x = 0x811c9dc5;
    for (const byte of head) x = Math.imul(x ^ byte, 0x01000193);
    x = x >>> 0 || 1;
    const padStart = head.length;
    const words = new Uint32Array(Math.ceil((total - padStart) / 4));
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      words[i] = x;
    }
    out.set(new Uint8Array(words.buffer, 0, total - padStart), padStart);
  }
  return out;
}

/** Reads the header line back from a synthetic payload. */
export function parseSyntheticPayload(data: Uint8Array): SyntheticHeader {
  const end = data.indexOf(0x0a);
  return JSON.parse(Buffer.from(data.buffer, data.byteOffset, end < 0 ? data.length : end).toString('utf8')) as SyntheticHeader;
}

class SyntheticModel implements LoadedModel {
  readonly sizeBytes = 0;
  constructor(readonly modelId: string, private readonly opts: SyntheticOptions, private readonly runningSet?: RunningSet<SyntheticImage>) {}

  async run(items: readonly StageItem[], ctx: RunContext): Promise<Array<StageOutput | Error>> {
    const cancelled = () => new CancelledError(`synthetic batch of ${this.modelId}`);
    if (ctx.signal.aborted) throw cancelled();
    if (this.runningSet) {
      const left = await this.runningSet.run(items.map((it, i) => new SyntheticImage(it, it.priority ?? 'online', ctx.itemSignal(i), (step, total) => ctx.progress(i, step, total))));
      if (ctx.signal.aborted) throw cancelled();
      return this.finishItems(items, ctx, left.map((m) => (m instanceof Error ? m : undefined)));
    }
    const cost = this.opts.stepCost;
    const totalMs = cost
      ? Math.max(...items.map((it) => it.steps)) * cost.ms(stepRows(items))
      : this.opts.fixedMs + this.opts.perItemMs * items.length;
    const start = performance.now();
    // One timer per progress step for the whole batch (not per item): cheap at any batch size.
    const steps = this.opts.progress ? Math.max(1, ...items.map((it) => it.steps)) : 1;
    for (let k = 1; k <= steps; k++) {
      // Absolute targets, so timer drift does not accumulate over the steps.
      const waitMs = start + (totalMs * k) / steps - performance.now();
      if (waitMs > 0) {
        try {
          await sleep(waitMs, undefined, { signal: ctx.signal });
        } catch {
          throw cancelled();
        }
      }
      if (ctx.signal.aborted) throw cancelled();
      if (this.opts.progress) {
        items.forEach((it, i) => {
          if (k <= it.steps && !ctx.itemSignal(i).aborted) ctx.progress(i, k, it.steps);
        });
      }
    }
    ctx.computeDone?.();
    return this.finishItems(items, ctx, []);
  }

  /** Encoding time (`encode_ms`), then the payloads; `errors[i]`: why item i left a running set early. */
  private async finishItems(items: readonly StageItem[], ctx: RunContext, errors: ReadonlyArray<Error | undefined>): Promise<Array<StageOutput | Error>> {
    if (this.opts.encodeMs > 0) {
      try {
        await sleep(this.opts.encodeMs, undefined, { signal: ctx.signal });
      } catch {
        throw new CancelledError(`synthetic batch of ${this.modelId}`);
      }
    }
    return items.map((it, i): StageOutput | Error => {
      const error = errors[i];
      if (error) return error;
      if (ctx.itemSignal(i).aborted) return new CancelledError(`item ${i} of synthetic batch of ${this.modelId}`);
      const header: SyntheticHeader = {
        modelId: this.modelId, seed: it.seed.toString(), requestId: it.requestId, imageIndex: it.imageIndex, prompt: it.prompt,
      };
      return { data: syntheticPayload(header, this.opts.imageBytes), width: it.width, height: it.height, mimeType: SYNTHETIC_MIME_TYPE };
    });
  }

  async dispose(): Promise<void> {}
}

/** The `synthetic` stage. */
export const syntheticStage: Stage = {
  name: 'synthetic',
  async load(modelId: string, ctx: StageContext): Promise<LoadedModel> {
    const opts = compileOptions(ctx.options);
    if (opts.loadMs > 0) await sleep(opts.loadMs);
    if (opts.crashModels.includes(modelId)) {
      // Thrown from a timer so nothing can catch it: the thread dies as it would on a native fault.
      setImmediate(() => { throw new Error(`synthetic: model ${modelId} crashes the executor (options.crash_models)`); });
      return new Promise<never>(() => {});
    }
    if (opts.failModels.includes(modelId)) {
      throw new OrreryError('ORRERY_ERR_MODEL_LOAD_FAILED', `synthetic: model ${modelId} is configured to fail (options.fail_models)`);
    }
    if (ctx.batching !== 'continuous') return new SyntheticModel(modelId, opts);
    const log = opts.callLog;
    // Appended synchronously: a line is a few dozen bytes per step, and the order of lines is the order of calls.
    const onCall = log ? (call: SyntheticCall) => fs.appendFileSync(log, `${JSON.stringify({ modelId, ...call })}\n`) : undefined;
    const model = new SyntheticStepModel(opts.stepCost ?? compileStepCost({ step_cost_ms: DEFAULT_STEP_COST_MS })!, opts.progress, onCall);
    return new SyntheticModel(modelId, opts, new RunningSet(model, { capacity: ctx.maxBatchSize ?? 1, onReport: publishRunningSet(modelId), ...(ctx.device ? { device: ctx.device } : {}) }));
  },
};
