/**
 * DDIM (diffusers DDIMScheduler; Song et al. 2020, eqs. 12 and 16). Works in ᾱ, not σ: the
 * model input is unscaled and txt2img starts from unit-variance noise. As in diffusers, the
 * previous timestep is always t − N_train // n, whatever the spacing.
 */
import { InvalidArgumentError } from '../../../common/errors.js';
import type { GaussianSource } from '../gaussian-noise.js';
import type { SchedulerConfig } from './config.js';
import { NoiseChunks } from './noise-chunks.js';
import { alphasCumprod, spacedTimesteps } from './noise-schedule.js';
import { checkStep, type DiffusionScheduler, type SchedulePlan } from './scheduler.js';

export class DdimScheduler implements DiffusionScheduler {
  readonly plan: SchedulePlan;
  /** ᾱ_t of the training schedule (float32 values). */
  readonly alphasCumprod: Float64Array;
  /** ᾱ used after the final step: 1 with set_alpha_to_one, else ᾱ[0]. */
  readonly finalAlphaCumprod: number;
  private readonly stepRatio: number;
  private readonly chunks = new NoiseChunks();

  /** `eta` = η of eq. 16: 0 is deterministic DDIM (the SDXL pipeline's default), 1 is DDPM-like. */
  constructor(private readonly config: SchedulerConfig, steps: number, startIndex: number, private readonly eta: number) {
    this.alphasCumprod = alphasCumprod(config);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
    this.stepRatio = Math.floor(config.numTrainTimesteps / steps);
    const all = spacedTimesteps(config.numTrainTimesteps, steps, config.timestepSpacing ?? 'leading', config.stepsOffset, true);
    // diffusers would index past ᾱ here (e.g. leading, n = N_train, steps_offset 1); refuse instead.
    if (all.some((t) => t < 0 || t >= config.numTrainTimesteps)) {
      throw new InvalidArgumentError('steps', `${steps} DDIM steps with steps_offset ${config.stepsOffset} reach past the ${config.numTrainTimesteps} training timesteps`);
    }
    this.plan = Object.freeze({ timesteps: all.slice(startIndex), initNoiseSigma: 1, startIndex });
  }

  /** DDIM does not scale the model input; this is a copy so the caller's contract holds. */
  scaleModelInput(x: Float32Array, i: number, out?: Float32Array): Float32Array {
    if (!out) {
      checkStep(this.plan, i, x, x);
      return x.slice();
    }
    checkStep(this.plan, i, x, out);
    out.set(x);
    return out;
  }

  step(eps: Float32Array, i: number, x: Float32Array, noise: GaussianSource): void {
    checkStep(this.plan, i, eps, x);
    const t = this.plan.timesteps[i]!;
    const prev = t - this.stepRatio;
    const alpha = this.alphasCumprod[t]!;
    const alphaPrev = prev >= 0 ? this.alphasCumprod[prev]! : this.finalAlphaCumprod;
    const beta = 1 - alpha;
    const sa = Math.sqrt(alpha);
    const sb = Math.sqrt(beta);
    const variance = ((1 - alphaPrev) / beta) * (1 - alpha / alphaPrev);
    const std = this.eta * Math.sqrt(variance);
    const dir = Math.sqrt(Math.max(1 - alphaPrev - std * std, 0));
    const sap = Math.sqrt(alphaPrev);
    const { predictionType, clipSample, clipSampleRange: r } = this.config;
    for (let j = 0; j < x.length; j++) {
      const xj = x[j]!;
      const out = eps[j]!;
      let x0: number;
      let e: number;
      if (predictionType === 'epsilon') {
        x0 = (xj - sb * out) / sa; e = out;
      } else if (predictionType === 'sample') {
        x0 = out; e = (xj - sa * x0) / sb;
      } else {
        x0 = sa * xj - sb * out; e = sa * out + sb * xj;
      }
      // Clipping x0 leaves the predicted noise as it was (use_clipped_model_output = false).
      if (clipSample) x0 = Math.min(Math.max(x0, -r), r);
      x[j] = sap * x0 + dir * e;
    }
    if (this.eta > 0) {
      this.chunks.forEach(noise, x.length, (off, z) => {
        for (let m = 0; m < z.length; m++) x[off + m] = x[off + m]! + std * z[m]!;
      });
    }
  }

  addNoise(latents: Float32Array, noise: Float32Array): void {
    if (this.plan.timesteps.length === 0) return;
    checkStep(this.plan, 0, latents, noise);
    const alpha = this.alphasCumprod[this.plan.timesteps[0]!]!;
    const sa = Math.fround(Math.sqrt(alpha));
    const sb = Math.fround(Math.sqrt(Math.fround(1 - alpha)));
    for (let j = 0; j < latents.length; j++) latents[j] = sa * latents[j]! + sb * noise[j]!;
  }
}
