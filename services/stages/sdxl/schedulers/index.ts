/**
 * Samplers for the SDXL stage, matching diffusers' EulerDiscreteScheduler,
 * EulerAncestralDiscreteScheduler and DDIMScheduler as the SDXL pipelines drive them
 * (txt2img, and img2img via StableDiffusionXLImg2ImgPipeline.get_timesteps with
 * denoising_start = None). Pure math: the caller reads scheduler_config.json.
 */
import { ConfigError, InvalidArgumentError } from '../../../common/errors.js';
import { defaultKind, type SchedulerConfig, type SchedulerKind } from './config.js';
import { DdimScheduler } from './ddim.js';
import { EulerScheduler, sigmaSchedule } from './euler.js';
import type { DiffusionScheduler } from './scheduler.js';

export { defaultKind, parseSchedulerConfig } from './config.js';
export type { BetaSchedule, PredictionType, SchedulerConfig, SchedulerKind, TimestepSpacing } from './config.js';
export type { DiffusionScheduler, SchedulePlan } from './scheduler.js';

export interface SchedulerOptions {
  /** Default: {@link defaultKind} of the config. */
  readonly kind?: SchedulerKind;
  /** Inference steps of the full schedule, 1 … num_train_timesteps. */
  readonly steps: number;
  /** img2img strength in [0, 1]; default 1 = txt2img (every step, from pure noise). */
  readonly strength?: number;
  /**
   * Karras sigmas (ρ = 7), Euler family only. `undefined` defers to the config's
   * use_karras_sigmas for `euler` (diffusers' EulerAncestral ignores that key, so it does here);
   * `false` turns them off; `true` with `ddim` is a ConfigError.
   */
  readonly karras?: boolean;
  /** DDIM η (default 0, as the SDXL pipelines pass). Ignored by the Euler family. */
  readonly eta?: number;
}

/**
 * diffusers' img2img get_timesteps: the index where denoising starts in an n-step schedule.
 * init = min(int(n · strength), n); start = max(n − init, 0). Strength 0 → n (no steps).
 */
export function img2imgStartIndex(steps: number, strength: number): number {
  const init = Math.min(Math.trunc(steps * strength), steps);
  return Math.max(steps - init, 0);
}

/**
 * Builds the scheduler for one batch. Throws InvalidArgumentError (`steps`, `strength`, `eta`)
 * for out-of-range numbers and ConfigError (`options.karras_sigmas`) for Karras with DDIM.
 */
export function createScheduler(config: SchedulerConfig, options: SchedulerOptions): DiffusionScheduler {
  const { steps, strength = 1, eta = 0 } = options;
  const n = config.numTrainTimesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > n) throw new InvalidArgumentError('steps', `must be an integer in [1, ${n}], got ${steps}`);
  if (!(strength >= 0 && strength <= 1)) throw new InvalidArgumentError('strength', `must be in [0, 1], got ${strength}`);
  if (!(eta >= 0 && Number.isFinite(eta))) throw new InvalidArgumentError('eta', `must be a finite number ≥ 0, got ${eta}`);
  const kind = options.kind ?? defaultKind(config);
  const start = img2imgStartIndex(steps, strength);
  if (kind === 'ddim') {
    if (options.karras) throw new ConfigError('options.karras_sigmas', 'Karras sigmas apply to euler and euler_ancestral, not ddim');
    return new DdimScheduler(config, steps, start, eta);
  }
  const karras = options.karras ?? (kind === 'euler' && config.useKarrasSigmas);
  const schedule = sigmaSchedule(config, steps, karras);
  return new EulerScheduler(config.predictionType, schedule, Math.min(start, schedule.timesteps.length), kind === 'euler_ancestral');
}
