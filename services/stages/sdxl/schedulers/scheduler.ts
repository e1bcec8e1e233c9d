/**
 * The contract every sampler implements. A scheduler is built once per batch and is stateless
 * between calls (steps are addressed by index), so every item of a batch — each with its own
 * latents and its own GaussianSource — steps through the same object independently.
 */
import type { GaussianSource } from '../gaussian-noise.js';

export interface SchedulePlan {
  /** The timesteps the UNet sees, in order (after img2img slicing); may be fractional (Karras, linspace). */
  readonly timesteps: Float64Array;
  /** Scale of the txt2img starting noise: latents = N(0, 1) · initNoiseSigma. */
  readonly initNoiseSigma: number;
  /** img2img: index into the full schedule where denoising starts (0 for txt2img). */
  readonly startIndex: number;
  /**
   * Euler family: σ at each step of {@link timesteps} plus the σ after the last step
   * (length timesteps.length + 1). Undefined for DDIM, which steps in ᾱ rather than σ.
   */
  readonly sigmas?: Float64Array;
}

export interface DiffusionScheduler {
  readonly plan: SchedulePlan;
  /**
   * x / sqrt(σ²+1) for the Euler family; a copy for DDIM. Writes into `out` (same length as x)
   * and returns it; without `out`, returns a new array (the caller keeps x).
   */
  scaleModelInput(x: Float32Array, i: number, out?: Float32Array): Float32Array;
  /**
   * One step from x with model output `eps` at step i (0-based within plan.timesteps); writes
   * into x in place. `noise` supplies standard normals for stochastic samplers (Euler ancestral,
   * DDIM with η > 0) and is not touched by deterministic ones.
   */
  step(eps: Float32Array, i: number, x: Float32Array, noise: GaussianSource): void;
  /** img2img: latents noised to the first step of the plan, in place. A no-op when the plan has no steps. */
  addNoise(latents: Float32Array, noise: Float32Array): void;
}

/** Throws unless `i` addresses a step of `plan` and the arrays agree in length. */
export function checkStep(plan: SchedulePlan, i: number, a: Float32Array, b: Float32Array): void {
  if (!Number.isInteger(i) || i < 0 || i >= plan.timesteps.length) throw new RangeError(`step index ${i} is outside [0, ${plan.timesteps.length})`);
  if (a.length !== b.length) throw new RangeError(`array lengths differ: ${a.length} vs ${b.length}`);
}
