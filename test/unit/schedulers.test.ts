import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ConfigError, InvalidArgumentError } from '../../services/common/errors.js';
import type { GaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import { gaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import {
  createScheduler, defaultKind, img2imgStartIndex, parseSchedulerConfig, type DiffusionScheduler,
} from '../../services/stages/sdxl/schedulers/index.js';

/** stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json. */
const SDXL_JSON = {
  _class_name: 'EulerDiscreteScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000, prediction_type: 'epsilon', timestep_spacing: 'leading', steps_offset: 1,
  interpolation_type: 'linear', use_karras_sigmas: false, clip_sample: false, sample_max_value: 1.0,
  set_alpha_to_one: false, skip_prk_steps: true, trained_betas: null,
};
const SDXL = parseSchedulerConfig(SDXL_JSON);
const sdxlWith = (over: Record<string, unknown>) => parseSchedulerConfig({ ...SDXL_JSON, ...over });

/** Independent float64 closed form: ᾱ_t of scaled_linear betas and σ_t = sqrt((1 − ᾱ)/ᾱ). */
const ALPHAS = (() => {
  const a = Math.sqrt(0.00085), b = Math.sqrt(0.012);
  let p = 1;
  return Float64Array.from({ length: 1000 }, (_, i) => (p *= 1 - (a + ((b - a) * i) / 999) ** 2));
})();
const sigmaAt = (t: number) => Math.sqrt((1 - ALPHAS[t]!) / ALPHAS[t]!);

const close = (actual: number, expected: number, rel: number, what = '') =>
  assert.ok(Math.abs(actual - expected) <= rel * Math.max(Math.abs(expected), 1e-12), `${what} ${actual} vs ${expected}`);
const filled = (n: number, f: (j: number) => number) => Float32Array.from({ length: n }, (_, j) => f(j));
const constantNoise = (v: number): GaussianSource => ({ fill: (out) => void out.fill(v) });
const noNoise: GaussianSource = { fill: () => assert.fail('a deterministic step drew noise') };
const stepped = (s: DiffusionScheduler, i: number, x: Float32Array, eps: Float32Array, noise = noNoise) => {
  const y = x.slice();
  s.step(eps, i, y, noise);
  return y;
};

describe('parseSchedulerConfig', () => {
  test('reads the SDXL config into camelCase fields and freezes it', () => {
    assert.equal(SDXL.className, 'EulerDiscreteScheduler');
    assert.equal(SDXL.betaSchedule, 'scaled_linear');
    assert.equal(SDXL.timestepSpacing, 'leading');
    assert.equal(SDXL.stepsOffset, 1);
    assert.equal(SDXL.setAlphaToOne, false);
    assert.equal(SDXL.clipSample, false);
    assert.ok(Object.isFrozen(SDXL));
  });
  test('fills diffusers defaults for omitted keys and leaves the spacing to the scheduler kind', () => {
    const c = parseSchedulerConfig({});
    assert.deepEqual([c.numTrainTimesteps, c.betaStart, c.betaEnd, c.betaSchedule, c.predictionType], [1000, 0.0001, 0.02, 'linear', 'epsilon']);
    assert.equal(c.timestepSpacing, undefined);
    assert.equal(c.clipSample, true);
    assert.equal(createScheduler(c, { steps: 10, kind: 'euler' }).plan.timesteps[0], 999);
    assert.equal(createScheduler(c, { steps: 10, kind: 'ddim' }).plan.timesteps[0], 900);
  });
  test('rejects a bad value with a ConfigError naming the key', () => {
    for (const [key, value] of [['beta_end', 2], ['prediction_type', 'x0'], ['steps_offset', -1], ['use_karras_sigmas', 'yes']] as const) {
      assert.throws(() => sdxlWith({ [key]: value }), (e: unknown) => e instanceof ConfigError && e.key === `scheduler_config.${key}` && e.code === 'ORRERY_ERR_CONFIG');
    }
    assert.throws(() => parseSchedulerConfig([1]), ConfigError);
    assert.throws(() => sdxlWith({ trained_betas: [0.1, 0.2] }), /trained_betas.*2 entries/);
  });
  test('refuses settings diffusers has but Orrery does not implement instead of ignoring them', () => {
    assert.throws(() => sdxlWith({ use_exponential_sigmas: true }), /use_exponential_sigmas/);
    assert.throws(() => sdxlWith({ interpolation_type: 'log_linear' }), /interpolation_type/);
    assert.throws(() => sdxlWith({ thresholding: true }), /thresholding/);
  });
  test('maps _class_name to a kind, falling back to euler', () => {
    assert.equal(defaultKind(SDXL), 'euler');
    assert.equal(defaultKind(sdxlWith({ _class_name: 'EulerAncestralDiscreteScheduler' })), 'euler_ancestral');
    assert.equal(defaultKind(sdxlWith({ _class_name: 'DDIMScheduler' })), 'ddim');
    assert.equal(defaultKind(sdxlWith({ _class_name: 'PNDMScheduler' })), 'euler');
  });
});

describe('Euler on the SDXL config, 30 steps', () => {
  const s = createScheduler(SDXL, { steps: 30 });
  const { timesteps, sigmas } = s.plan;
  test('uses leading timesteps 958, 925, …, 34, 1', () => {
    assert.equal(timesteps.length, 30);
    timesteps.forEach((t, i) => assert.equal(t, (29 - i) * 33 + 1, `step ${i}`));
    assert.equal(timesteps[0], 958);
    assert.equal(timesteps[29], 1);
  });
  test('starts at σ ≈ 11.4769 and takes σ(t) of the training schedule at every timestep', () => {
    close(sigmas![0]!, 11.47685, 1e-6, 'σ0');
    timesteps.forEach((t, i) => close(sigmas![i]!, sigmaAt(t), 5e-5, `σ at ${t}`));
  });
  test('appends σ = 0 after the last step and decreases strictly', () => {
    assert.equal(sigmas!.length, 31);
    assert.equal(sigmas![30], 0);
    for (let i = 1; i < 31; i++) assert.ok(sigmas![i]! < sigmas![i - 1]!);
  });
  test('has init_noise_sigma sqrt(σmax² + 1) ≈ 11.520 for leading spacing', () => {
    assert.equal(s.plan.initNoiseSigma.toFixed(3), '11.520');
    close(s.plan.initNoiseSigma, Math.sqrt(sigmas![0]! ** 2 + 1), 1e-6);
  });
  test('scales the model input by 1/sqrt(σ²+1) into a new array', () => {
    const x = filled(8, (j) => j - 3.5);
    const y = s.scaleModelInput(x, 3);
    assert.notEqual(y, x);
    assert.equal(x[0], -3.5);
    y.forEach((v, j) => close(v, x[j]! / Math.sqrt(sigmas![3]! ** 2 + 1), 1e-6));
  });
  test('takes one epsilon step x + ε(σ_next − σ), in place', () => {
    const x = filled(16, (j) => Math.sin(j) * 10);
    const eps = filled(16, (j) => Math.cos(j));
    const y = stepped(s, 4, x, eps);
    y.forEach((v, j) => close(v, x[j]! + eps[j]! * (sigmas![5]! - sigmas![4]!), 1e-6));
  });
  test('steps v_prediction and sample outputs through x0 as diffusers does', () => {
    const x = filled(4, (j) => j + 1), out = filled(4, (j) => 0.5 - j);
    for (const predictionType of ['v_prediction', 'sample'] as const) {
      const v = createScheduler(sdxlWith({ prediction_type: predictionType }), { steps: 30 });
      const [sg, nx] = [v.plan.sigmas![2]!, v.plan.sigmas![3]!];
      stepped(v, 2, x, out).forEach((got, j) => {
        const x0 = predictionType === 'sample' ? out[j]! : out[j]! * (-sg / Math.sqrt(sg * sg + 1)) + x[j]! / (sg * sg + 1);
        close(got, x[j]! + ((x[j]! - x0) / sg) * (nx - sg), 1e-5, predictionType);
      });
    }
  });
  test('recovers x0 exactly over every step when the model predicts the true noise (n = 1, 30, 50)', () => {
    for (const steps of [1, 30, 50]) {
      const e = createScheduler(SDXL, { steps });
      const x0 = filled(32, (j) => Math.cos(j * 0.7)), n = filled(32, (j) => Math.sin(j * 1.3) * 2);
      const x = x0.map((v, j) => v + n[j]! * e.plan.sigmas![0]!);
      for (let i = 0; i < steps; i++) e.step(n, i, x, noNoise);
      x.forEach((v, j) => close(v, x0[j]!, 1e-4, `n=${steps}`));
    }
  });
  test('has the diffusers grids for n = 1 and n = 50', () => {
    const one = createScheduler(SDXL, { steps: 1 }).plan;
    assert.deepEqual([...one.timesteps], [1]);
    close(one.sigmas![0]!, sigmaAt(1), 5e-5);
    const fifty = createScheduler(SDXL, { steps: 50 }).plan.timesteps;
    assert.deepEqual([fifty.length, fifty[0], fifty[1], fifty[49]], [50, 981, 961, 1]);
  });
});

describe('timestep spacing', () => {
  test('trailing ends each interval at N − 1 and rounds halves to even like numpy', () => {
    const p = createScheduler(sdxlWith({ timestep_spacing: 'trailing' }), { steps: 30 }).plan;
    assert.deepEqual([p.timesteps[0], p.timesteps[1], p.timesteps[2], p.timesteps[29]], [999, 966, 932, 32]);
    close(p.initNoiseSigma, sigmaAt(999), 5e-5, 'trailing init sigma is σmax itself');
    const sixteen = createScheduler(sdxlWith({ timestep_spacing: 'trailing' }), { steps: 16 }).plan.timesteps;
    assert.deepEqual([...sixteen], [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]);
  });
  test('linspace spreads 0…999 evenly and interpolates σ linearly between training steps', () => {
    const p = createScheduler(sdxlWith({ timestep_spacing: 'linspace' }), { steps: 30 }).plan;
    assert.equal(p.timesteps[0], 999);
    assert.equal(p.timesteps[29], 0);
    const t = p.timesteps[1]!;
    close(t, 999 - 999 / 29, 1e-6);
    close(p.sigmas![1]!, sigmaAt(964) + (t - 964) * (sigmaAt(965) - sigmaAt(964)), 5e-5);
  });
  test('DDIM rounds linspace timesteps to integers', () => {
    const p = createScheduler(sdxlWith({ timestep_spacing: 'linspace' }), { steps: 30, kind: 'ddim' }).plan;
    assert.deepEqual([p.timesteps[0], p.timesteps[1], p.timesteps[2], p.timesteps[3]], [999, 965, 930, 896]);
  });
});

describe('Karras sigmas', () => {
  const p = createScheduler(SDXL, { steps: 30, karras: true }).plan;
  const sg = p.sigmas!;
  const [max, min] = [sigmaAt(958), sigmaAt(1)];
  const closedForm = (i: number) => (max ** (1 / 7) + (i / 29) * (min ** (1 / 7) - max ** (1 / 7))) ** 7;
  test('fall monotonically from σ(958) to σ(1) along the ρ = 7 curve', () => {
    close(sg[0]!, max, 5e-5);
    close(sg[29]!, min, 5e-5);
    for (let i = 1; i < 30; i++) assert.ok(sg[i]! < sg[i - 1]!);
    for (const i of [1, 10, 20]) close(sg[i]!, closedForm(i), 5e-5, `σ${i}`);
  });
  test('map back to fractional timesteps whose log-σ interpolation gives the sigma', () => {
    assert.equal(p.timesteps[0], 958);
    for (const i of [1, 15, 28]) {
      const t = p.timesteps[i]!, lo = Math.floor(t);
      assert.ok(t !== lo, `timestep ${t} should be fractional`);
      close(Math.exp(Math.log(sigmaAt(lo)) + (t - lo) * (Math.log(sigmaAt(lo + 1)) - Math.log(sigmaAt(lo)))), sg[i]!, 1e-4, `t=${t}`);
    }
  });
  test('follow use_karras_sigmas for euler unless the option says otherwise', () => {
    const cfg = sdxlWith({ use_karras_sigmas: true });
    close(createScheduler(cfg, { steps: 30 }).plan.sigmas![1]!, closedForm(1), 5e-5);
    assert.equal(createScheduler(cfg, { steps: 30, karras: false }).plan.timesteps[1], 925);
    assert.equal(createScheduler(cfg, { steps: 30, kind: 'euler_ancestral' }).plan.timesteps[1], 925);
  });
  test('honour sigma_min / sigma_max from the config', () => {
    const q = createScheduler(sdxlWith({ sigma_min: 0.1, sigma_max: 10 }), { steps: 30, karras: true }).plan.sigmas!;
    close(q[0]!, 10, 1e-6);
    close(q[29]!, 0.1, 1e-6);
  });
  test('are refused for DDIM', () => {
    assert.throws(() => createScheduler(SDXL, { steps: 30, kind: 'ddim', karras: true }), (e: unknown) => e instanceof ConfigError && e.key === 'options.karras_sigmas');
  });
});

describe('Euler ancestral', () => {
  const a = createScheduler(SDXL, { steps: 30, kind: 'euler_ancestral' });
  const sg = a.plan.sigmas!;
  const one = filled(1, () => 1), zero = filled(1, () => 0);
  test('splits every step so that σ_down² + σ_up² = σ_next² with σ_down = σ_next²/σ', () => {
    for (let i = 0; i < 30; i++) {
      const up = stepped(a, i, zero, zero, constantNoise(1))[0]!; // x = 0, ε = 0 → noise · σ_up
      const down = stepped(a, i, zero, one, constantNoise(0))[0]! + sg[i]!; // ε = 1 → σ_down − σ
      close(down * down + up * up, sg[i + 1]! ** 2, 1e-5, `step ${i}`);
      close(down, sg[i + 1]! ** 2 / sg[i]!, 1e-5, `σ_down ${i}`);
    }
    assert.equal(stepped(a, 29, zero, zero, constantNoise(5))[0], 0, 'the last step adds no noise');
  });
  const run = (seed: bigint) => {
    const x = filled(64, (j) => Math.sin(j));
    const src = gaussianSource(seed);
    for (let i = 0; i < 30; i++) a.step(filled(64, (j) => Math.cos(i + j) * 0.1), i, x, src);
    return x;
  };
  test('is deterministic for a seed and differs between seeds', () => {
    assert.deepEqual(run(42n), run(42n));
    assert.notDeepEqual(run(42n), run(43n));
  });
  test('gives an item the same result alone as interleaved with another item of the batch', () => {
    const x = filled(64, (j) => Math.sin(j)), other = filled(64, () => 3);
    const [src, otherSrc] = [gaussianSource(42n), gaussianSource(7n)];
    for (let i = 0; i < 30; i++) {
      a.step(filled(64, () => 0.2), i, other, otherSrc);
      a.step(filled(64, (j) => Math.cos(i + j) * 0.1), i, x, src);
    }
    assert.deepEqual(x, run(42n));
  });
});

describe('DDIM', () => {
  const d = createScheduler(SDXL, { steps: 30, kind: 'ddim' });
  test('shares the leading timesteps, starts from unit noise and does not scale the input', () => {
    assert.deepEqual([...d.plan.timesteps], [...createScheduler(SDXL, { steps: 30 }).plan.timesteps]);
    assert.equal(d.plan.initNoiseSigma, 1);
    const x = filled(4, (j) => j);
    assert.deepEqual(d.scaleModelInput(x, 0), x);
    assert.notEqual(d.scaleModelInput(x, 0), x);
  });
  const ddimStep = (t: number, prev: number, x: number, eps: number) => {
    const [at, ap] = [ALPHAS[t]!, prev >= 0 ? ALPHAS[prev]! : ALPHAS[0]!];
    const x0 = (x - Math.sqrt(1 - at) * eps) / Math.sqrt(at);
    return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps;
  };
  test('takes one η = 0 step with ᾱ_t and ᾱ_{t−33} per the closed form', () => {
    const x = filled(8, (j) => j - 4), eps = filled(8, (j) => Math.cos(j));
    stepped(d, 0, x, eps).forEach((v, j) => close(v, ddimStep(958, 925, x[j]!, eps[j]!), 1e-4));
  });
  test('ends on ᾱ[0] with set_alpha_to_one false and on 1 with it true', () => {
    const x = filled(2, () => 0.5), eps = filled(2, () => 0.25);
    close(stepped(d, 29, x, eps)[0]!, ddimStep(1, -32, 0.5, 0.25), 1e-5);
    const toOne = createScheduler(sdxlWith({ set_alpha_to_one: true }), { steps: 30, kind: 'ddim' });
    close(stepped(toOne, 29, x, eps)[0]!, (0.5 - Math.sqrt(1 - ALPHAS[1]!) * 0.25) / Math.sqrt(ALPHAS[1]!), 1e-5);
  });
  test('clips x0 when clip_sample is set and adds η-scaled noise when η > 0', () => {
    const clip = createScheduler(sdxlWith({ clip_sample: true }), { steps: 30, kind: 'ddim' });
    const x = filled(1, () => 20), eps = filled(1, () => 0);
    close(stepped(clip, 0, x, eps)[0]!, Math.sqrt(ALPHAS[925]!) * 1, 1e-5);
    const eta = createScheduler(SDXL, { steps: 30, kind: 'ddim', eta: 1 });
    assert.notEqual(stepped(eta, 0, x, eps, constantNoise(1))[0], stepped(eta, 0, x, eps, constantNoise(0))[0]);
  });
});

describe('img2img', () => {
  test('starts at min(int(n·strength), n) steps from the end', () => {
    assert.equal(img2imgStartIndex(30, 0.3), 21);
    assert.equal(img2imgStartIndex(50, 0.75), 13);
    assert.equal(img2imgStartIndex(10, 0.29), 8);
  });
  test('runs the last 9 of 30 timesteps at strength 0.3', () => {
    const full = createScheduler(SDXL, { steps: 30 }).plan;
    const p = createScheduler(SDXL, { steps: 30, strength: 0.3 }).plan;
    assert.equal(p.startIndex, 21);
    assert.deepEqual([...p.timesteps], [...full.timesteps.slice(21)]);
    assert.deepEqual([...p.sigmas!], [...full.sigmas!.slice(21)]);
    assert.equal(p.initNoiseSigma, full.initNoiseSigma);
  });
  test('runs no step at strength 0 and every step at strength 1', () => {
    const none = createScheduler(SDXL, { steps: 30, strength: 0 });
    assert.equal(none.plan.timesteps.length, 0);
    const x = filled(4, () => 1);
    none.addNoise(x, filled(4, () => 9));
    assert.deepEqual([...x], [1, 1, 1, 1]);
    const all = createScheduler(SDXL, { steps: 30, strength: 1 }).plan;
    assert.deepEqual([all.startIndex, all.timesteps.length], [0, 30]);
  });
  test('noises latents to σ of the first step for Euler and to ᾱ of its timestep for DDIM', () => {
    const x = filled(4, (j) => j), n = filled(4, (j) => 1 - j);
    const e = createScheduler(SDXL, { steps: 30, strength: 0.3 });
    const ex = x.slice(); e.addNoise(ex, n);
    ex.forEach((v, j) => close(v, x[j]! + n[j]! * sigmaAt(265), 5e-5));
    const d = createScheduler(SDXL, { steps: 30, strength: 0.3, kind: 'ddim' });
    const dx = x.slice(); d.addNoise(dx, n);
    dx.forEach((v, j) => close(v, Math.sqrt(ALPHAS[265]!) * x[j]! + Math.sqrt(1 - ALPHAS[265]!) * n[j]!, 1e-5));
    const pure = createScheduler(SDXL, { steps: 30, strength: 1 });
    const px = x.slice(); pure.addNoise(px, n);
    close(px[0]!, 0 + 1 * sigmaAt(958), 5e-5);
  });
  test('indexes steps from the start of the slice', () => {
    const e = createScheduler(SDXL, { steps: 30, strength: 0.3 });
    const y = stepped(e, 0, filled(1, () => 0), filled(1, () => 1));
    close(y[0]!, sigmaAt(232) - sigmaAt(265), 5e-5);
  });
});

describe('createScheduler validation', () => {
  test('rejects step counts and strengths out of range with InvalidArgumentError naming the field', () => {
    for (const steps of [0, 1.5, 1001]) {
      assert.throws(() => createScheduler(SDXL, { steps }), (e: unknown) => e instanceof InvalidArgumentError && e.field === 'steps');
    }
    for (const strength of [-0.1, 1.2, Number.NaN]) {
      assert.throws(() => createScheduler(SDXL, { steps: 30, strength }), (e: unknown) => e instanceof InvalidArgumentError && e.field === 'strength');
    }
  });
  test('rejects a step index outside the plan and mismatched lengths with RangeError', () => {
    const s = createScheduler(SDXL, { steps: 30 });
    assert.throws(() => s.step(new Float32Array(2), 30, new Float32Array(2), noNoise), RangeError);
    assert.throws(() => s.step(new Float32Array(2), 0, new Float32Array(3), noNoise), RangeError);
  });
});
