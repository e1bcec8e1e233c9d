/**
 * The training noise schedule and the inference timestep grids, computed as diffusers computes
 * them. diffusers holds betas, ᾱ and sigmas in float32 torch tensors, so every value that is
 * float32 there is rounded with `Math.fround` here; grids that numpy builds in float64 stay
 * float64. numpy's `round` is round-half-to-even, which matters for `trailing` grids such as
 * n = 16 (812.5 → 812).
 */
import type { SchedulerConfig, TimestepSpacing } from './config.js';

const f32 = Math.fround;

/** numpy.round: half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy.linspace(start, stop, num) in float64 (num = 1 gives [start]). */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (num > 1) out[num - 1] = stop;
  else if (num === 1) out[0] = start;
  return out;
}

/** torch.linspace in float32 on CPU: the first half counts up from start, the rest down from end. */
function torchLinspaceF32(start: number, end: number, steps: number): Float64Array {
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  return out;
}

/** diffusers' betas_for_alpha_bar with the cosine ("squaredcos_cap_v2") transform. */
function cosineBetas(n: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = f32(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
  return out;
}

/** diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1). */
function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtBar = new Float64Array(n);
  let prod = 1;
  for (let i = 0; i < n; i++) sqrtBar[i] = Math.sqrt((prod *= 1 - betas[i]!));
  const first = sqrtBar[0]!;
  const last = sqrtBar[n - 1]!;
  const out = new Float64Array(n);
  let prevBar = 1;
  for (let i = 0; i < n; i++) {
    const bar = ((sqrtBar[i]! - last) * first / (first - last)) ** 2;
    out[i] = f32(1 - bar / prevBar);
    prevBar = bar;
  }
  return out;
}

/** The training betas (float32 values). */
export function trainingBetas(c: SchedulerConfig): Float64Array {
  const n = c.numTrainTimesteps;
  let betas: Float64Array;
  if (c.trainedBetas) betas = Float64Array.from(c.trainedBetas, f32);
  else if (c.betaSchedule === 'linear') betas = torchLinspaceF32(c.betaStart, c.betaEnd, n);
  else if (c.betaSchedule === 'scaled_linear') betas = torchLinspaceF32(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), n).map((b) => f32(b * b));
  else betas = cosineBetas(n);
  return c.rescaleBetasZeroSnr ? rescaleZeroTerminalSnr(betas) : betas;
}

/**
 * ᾱ_t = ∏(1 − β) for t = 0…N−1. torch's CPU cumprod accumulates float32 inputs in double and
 * stores float32, which is what this does.
 */
export function alphasCumprod(c: SchedulerConfig): Float64Array {
  const betas = trainingBetas(c);
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) out[i] = f32((acc *= f32(1 - betas[i]!)));
  return out;
}

/** σ_t = sqrt((1 − ᾱ_t)/ᾱ_t), float32 like diffusers, ascending with t. */
export function trainingSigmas(alphas: Float64Array): Float64Array {
  return alphas.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/**
 * The inference timesteps, high to low, per diffusers' set_timesteps for `spacing`.
 * `integer` is DDIM's variant, where even `linspace` is rounded to whole timesteps.
 */
export function spacedTimesteps(numTrain: number, steps: number, spacing: TimestepSpacing, stepsOffset: number, integer: boolean): Float64Array {
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrain / steps);
    return Float64Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + stepsOffset);
  }
  if (spacing === 'trailing') {
    // np.arange(N, 0, -N/n): its length is ceil(N / (N/n)) and numpy fills it as start + i·Δ
    // with Δ re-derived from the first two entries, so both are reproduced literally.
    const ratio = numTrain / steps;
    const length = Math.ceil((0 - numTrain) / -ratio);
    const delta = (numTrain - ratio) - numTrain;
    return Float64Array.from({ length }, (_, i) => roundHalfEven(numTrain + i * delta) - 1);
  }
  const grid = linspace(0, numTrain - 1, steps).reverse();
  return grid.map(integer ? roundHalfEven : f32);
}

/** numpy.interp over xp = 0, 1, …, fp.length − 1, clamped at both ends. */
export function interpolate(x: number, fp: Float64Array): number {
  if (x <= 0) return fp[0]!;
  const last = fp.length - 1;
  if (x >= last) return fp[last]!;
  const j = Math.floor(x);
  return (fp[j + 1]! - fp[j]!) * (x - j) + fp[j]!;
}

/** Karras et al. (2022) sigmas, ρ = 7, from sigmaMax down to sigmaMin in `steps` values (float64). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): Float64Array {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return linspace(0, 1, steps).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * diffusers' _sigma_to_t: the fractional training timestep whose σ matches `sigma`, interpolating
 * linearly in log σ. `logSigmas` is ln of {@link trainingSigmas}, float32 like numpy's log of it.
 */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // low = the last index whose log σ is ≤ logSigma (0 if none), kept below the final pair.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}
