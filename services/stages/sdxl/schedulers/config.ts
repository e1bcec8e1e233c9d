/**
 * A bundle's `scheduler/scheduler_config.json`, validated. The caller reads and JSON-parses the
 * file; this module only checks the object. Keys are diffusers' snake_case names turned camelCase.
 *
 * Defaults follow diffusers' constructors, which fill any key the file omits. The one shared key
 * whose default differs by class is `timestep_spacing` (Euler: `linspace`, DDIM: `leading`), so
 * it stays `undefined` here and the scheduler resolves it for its kind.
 */
import { ConfigError } from '../../../common/errors.js';

export type SchedulerKind = 'euler' | 'euler_ancestral' | 'ddim';
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

export interface SchedulerConfig {
  /** `_class_name`; `''` when absent. Only {@link defaultKind} reads it. */
  readonly className: string;
  readonly numTrainTimesteps: number;
  readonly betaStart: number;
  readonly betaEnd: number;
  readonly betaSchedule: BetaSchedule;
  /** Overrides the beta schedule when set; length = numTrainTimesteps. */
  readonly trainedBetas: readonly number[] | null;
  readonly predictionType: PredictionType;
  /** `undefined` = the kind's diffusers default (Euler family `linspace`, DDIM `leading`). */
  readonly timestepSpacing: TimestepSpacing | undefined;
  readonly stepsOffset: number;
  /** Euler family: take Karras sigmas unless the caller's `karras` option says otherwise. */
  readonly useKarrasSigmas: boolean;
  /** Karras range overrides; `null` = the first/last interpolated sigma of the schedule. */
  readonly sigmaMin: number | null;
  readonly sigmaMax: number | null;
  /** Euler family: the sigma after the last step, 0 or the training schedule's smallest sigma. */
  readonly finalSigmasType: 'zero' | 'sigma_min';
  readonly rescaleBetasZeroSnr: boolean;
  /** DDIM only: clamp predicted x0 to ±clipSampleRange. diffusers' DDIM default is true. */
  readonly clipSample: boolean;
  readonly clipSampleRange: number;
  /** DDIM only: ᾱ before the first training step is 1 (true) or ᾱ[0] (false). */
  readonly setAlphaToOne: boolean;
}

const KINDS_BY_CLASS: Readonly<Record<string, SchedulerKind>> = {
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler_ancestral',
  DDIMScheduler: 'ddim',
};

/** The kind a config's `_class_name` implies; any other class (PNDM, LMS, …) falls back to `euler`. */
export function defaultKind(config: SchedulerConfig): SchedulerKind {
  return KINDS_BY_CLASS[config.className] ?? 'euler';
}

const fail = (key: string, why: string): never => { throw new ConfigError(`scheduler_config.${key}`, why); };

/** Reads one key; `null` counts as absent, as diffusers treats it. */
function read<T>(o: Record<string, unknown>, key: string, dflt: T, check: (v: unknown) => v is T, want: string): T {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (!check(v)) return fail(key, `must be ${want}, got ${JSON.stringify(v)}`);
  return v;
}

const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isUnit = (v: unknown): v is number => typeof v === 'number' && v > 0 && v < 1;
const isPositive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 2 && (v as number) <= 100_000;
const isNatural = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const oneOf = <T extends string>(...values: T[]) => (v: unknown): v is T => values.includes(v as T);
const nullable = <T>(check: (v: unknown) => v is T) => (v: unknown): v is T | null => v === null || check(v);

/** Settings diffusers supports that Orrery does not; a config that turns one on is refused, not ignored. */
function refuseUnsupported(o: Record<string, unknown>): void {
  for (const key of ['use_exponential_sigmas', 'use_beta_sigmas', 'thresholding']) {
    if (o[key] !== undefined && o[key] !== null && o[key] !== false) fail(key, 'is not supported (must be false)');
  }
  const interp = o.interpolation_type;
  if (interp !== undefined && interp !== null && interp !== 'linear') fail('interpolation_type', `only "linear" is supported, got ${JSON.stringify(interp)}`);
  const tt = o.timestep_type;
  if (tt !== undefined && tt !== null && tt !== 'discrete' && tt !== 'continuous') fail('timestep_type', `must be "discrete" or "continuous", got ${JSON.stringify(tt)}`);
  if (tt === 'continuous' && o.prediction_type === 'v_prediction') fail('timestep_type', '"continuous" with v_prediction (EDM timesteps) is not supported');
}

/**
 * Validates a parsed scheduler_config.json and returns a frozen {@link SchedulerConfig}.
 * Unknown keys are ignored (bundles carry keys of several classes). Throws {@link ConfigError}
 * whose `key` is `scheduler_config.<json key>` for a bad value or an unsupported setting.
 */
export function parseSchedulerConfig(json: unknown): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('(root)', 'must be a JSON object');
  const o = json as Record<string, unknown>;
  refuseUnsupported(o);
  const numTrainTimesteps = read(o, 'num_train_timesteps', 1000, isCount, 'an integer in [2, 100000]');
  const trainedBetas = read(o, 'trained_betas', null, nullable((v): v is number[] => Array.isArray(v) && v.every(isUnit)), 'null or an array of numbers in (0, 1)');
  if (trainedBetas && trainedBetas.length !== numTrainTimesteps) fail('trained_betas', `has ${trainedBetas.length} entries, num_train_timesteps is ${numTrainTimesteps}`);
  const config: SchedulerConfig = {
    className: read(o, '_class_name', '', (v): v is string => typeof v === 'string', 'a string'),
    numTrainTimesteps,
    betaStart: read(o, 'beta_start', 0.0001, isUnit, 'a number in (0, 1)'),
    betaEnd: read(o, 'beta_end', 0.02, isUnit, 'a number in (0, 1)'),
    betaSchedule: read(o, 'beta_schedule', 'linear', oneOf<BetaSchedule>('linear', 'scaled_linear', 'squaredcos_cap_v2'), '"linear", "scaled_linear" or "squaredcos_cap_v2"'),
    trainedBetas: trainedBetas ? Object.freeze([...trainedBetas]) : null,
    predictionType: read(o, 'prediction_type', 'epsilon', oneOf<PredictionType>('epsilon', 'v_prediction', 'sample'), '"epsilon", "v_prediction" or "sample"'),
    timestepSpacing: read<TimestepSpacing | undefined>(o, 'timestep_spacing', undefined, oneOf<TimestepSpacing>('leading', 'trailing', 'linspace'), '"leading", "trailing" or "linspace"'),
    stepsOffset: read(o, 'steps_offset', 0, isNatural, 'a non-negative integer'),
    useKarrasSigmas: read(o, 'use_karras_sigmas', false, isBool, 'true or false'),
    sigmaMin: read(o, 'sigma_min', null, nullable(isPositive), 'null or a positive number'),
    sigmaMax: read(o, 'sigma_max', null, nullable(isPositive), 'null or a positive number'),
    finalSigmasType: read(o, 'final_sigmas_type', 'zero', oneOf('zero', 'sigma_min'), '"zero" or "sigma_min"'),
    rescaleBetasZeroSnr: read(o, 'rescale_betas_zero_snr', false, isBool, 'true or false'),
    clipSample: read(o, 'clip_sample', true, isBool, 'true or false'),
    clipSampleRange: read(o, 'clip_sample_range', 1, isPositive, 'a positive number'),
    setAlphaToOne: read(o, 'set_alpha_to_one', true, isBool, 'true or false'),
  };
  if (config.stepsOffset >= numTrainTimesteps) fail('steps_offset', `must be below num_train_timesteps (${numTrainTimesteps})`);
  return Object.freeze(config);
}
