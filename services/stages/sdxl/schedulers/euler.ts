/**
 * Euler and Euler ancestral (diffusers EulerDiscreteScheduler / EulerAncestralDiscreteScheduler,
 * after k-diffusion). Both walk the same σ schedule; ancestral splits each step into a
 * deterministic move to σ_down and fresh noise of scale σ_up. Euler runs with s_churn = 0.
 */
import type { GaussianSource } from '../gaussian-noise.js';
import type { PredictionType, SchedulerConfig } from './config.js';
import { NoiseChunks } from './noise-chunks.js';
import { alphasCumprod, interpolate, karrasSigmas, sigmaToT, spacedTimesteps, trainingSigmas } from './noise-schedule.js';
import { checkStep, type DiffusionScheduler, type SchedulePlan } from './scheduler.js';

const f32 = Math.fround;

export interface SigmaSchedule {
  /** Every timestep of the full schedule, high to low (float32 values). */
  readonly timesteps: Float64Array;
  /** σ per timestep plus the final σ (float32 values); length timesteps.length + 1. */
  readonly sigmas: Float64Array;
  readonly initNoiseSigma: number;
}

/**
 * diffusers' set_timesteps for the Euler family: σ interpolated at the spaced timesteps, or
 * Karras sigmas (ρ = 7) whose timesteps come back through log-σ interpolation. As in diffusers,
 * the Karras range defaults to the first and last interpolated σ of the spaced schedule (not
 * the training extremes), unless the config sets sigma_min / sigma_max.
 */
export function sigmaSchedule(config: SchedulerConfig, steps: number, karras: boolean): SigmaSchedule {
  const alphas = alphasCumprod(config);
  // diffusers keeps the first σ finite under zero-terminal-SNR with the float16 subnormal.
  if (config.rescaleBetasZeroSnr) alphas[alphas.length - 1] = 2 ** -24;
  const train = trainingSigmas(alphas);
  const spacing = config.timestepSpacing ?? 'linspace';
  let timesteps: Float64Array = spacedTimesteps(config.numTrainTimesteps, steps, spacing, config.stepsOffset, false);
  let sigmas: Float64Array = timesteps.map((t) => interpolate(t, train));
  if (karras) {
    sigmas = karrasSigmas(config.sigmaMin ?? sigmas[sigmas.length - 1]!, config.sigmaMax ?? sigmas[0]!, steps);
    const logSigmas = train.map((s) => f32(Math.log(s)));
    timesteps = sigmas.map((s) => f32(sigmaToT(s, logSigmas)));
  }
  const all = new Float64Array(sigmas.length + 1);
  for (let k = 0; k < sigmas.length; k++) all[k] = f32(sigmas[k]!);
  all[sigmas.length] = config.finalSigmasType === 'sigma_min' ? train[0]! : 0;
  const max = all.reduce((m, s) => Math.max(m, s), 0);
  // diffusers' init_noise_sigma: σmax for linspace/trailing, sqrt(σmax² + 1) for leading.
  const initNoiseSigma = spacing === 'leading' ? f32(Math.sqrt(f32(f32(max * max) + 1))) : max;
  return { timesteps, sigmas: all, initNoiseSigma };
}

/** Coefficients (a, b) with derivative d = (x − x0)/σ = a·x + b·model_output. */
function derivativeCoefficients(prediction: PredictionType, sigma: number): [number, number] {
  switch (prediction) {
    case 'epsilon': return [0, 1];
    // x0 = out·(−σ/√(σ²+1)) + x/(σ²+1)
    case 'v_prediction': return [sigma / (sigma * sigma + 1), 1 / Math.sqrt(sigma * sigma + 1)];
    case 'sample': return [1 / sigma, -1 / sigma];
  }
}

export class EulerScheduler implements DiffusionScheduler {
  readonly plan: SchedulePlan;
  private readonly chunks = new NoiseChunks();

  constructor(
    private readonly prediction: PredictionType,
    private readonly schedule: SigmaSchedule,
    startIndex: number,
    private readonly ancestral: boolean,
  ) {
    this.plan = Object.freeze({
      timesteps: schedule.timesteps.slice(startIndex),
      initNoiseSigma: schedule.initNoiseSigma,
      startIndex,
      sigmas: schedule.sigmas.slice(startIndex),
    });
  }

  scaleModelInput(x: Float32Array, i: number, out: Float32Array = new Float32Array(x.length)): Float32Array {
    checkStep(this.plan, i, x, out);
    const sigma = this.schedule.sigmas[this.plan.startIndex + i]!;
    const denom = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    for (let j = 0; j < x.length; j++) out[j] = x[j]! / denom;
    return out;
  }

  step(eps: Float32Array, i: number, x: Float32Array, noise: GaussianSource): void {
    checkStep(this.plan, i, eps, x);
    const k = this.plan.startIndex + i;
    const sigma = this.schedule.sigmas[k]!;
    const next = this.schedule.sigmas[k + 1]!;
    const [a, b] = derivativeCoefficients(this.prediction, sigma);
    if (!this.ancestral) {
      const dt = next - sigma;
      for (let j = 0; j < x.length; j++) x[j] = x[j]! + (a * x[j]! + b * eps[j]!) * dt;
      return;
    }
    const up = Math.sqrt((next * next * (sigma * sigma - next * next)) / (sigma * sigma));
    const down = Math.sqrt(Math.max(next * next - up * up, 0));
    const dt = down - sigma;
    // diffusers draws the ancestral noise at every step, the last (σ_up = 0) included; so do we,
    // keeping each source's stream aligned with the step count.
    this.chunks.forEach(noise, x.length, (off, z) => {
      for (let m = 0; m < z.length; m++) {
        const j = off + m;
        x[j] = x[j]! + (a * x[j]! + b * eps[j]!) * dt + z[m]! * up;
      }
    });
  }

  addNoise(latents: Float32Array, noise: Float32Array): void {
    if (this.plan.timesteps.length === 0) return;
    checkStep(this.plan, 0, latents, noise);
    const sigma = this.schedule.sigmas[this.plan.startIndex]!;
    for (let j = 0; j < latents.length; j++) latents[j] = latents[j]! + noise[j]! * sigma;
  }
}
