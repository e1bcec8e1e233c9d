import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { compileConfig, type AutoscalingConfig } from '../../services/common/config.js';
import { ConfigError } from '../../services/common/errors.js';
import {
  decideScale, desiredReplicas, initialAutoscaleState, type AutoscaleDecision, type AutoscaleResult, type AutoscaleState,
} from '../../services/router/autoscale-policy.js';

function cfg(over: Partial<AutoscalingConfig> = {}): AutoscalingConfig {
  return {
    minReplicas: 1, maxReplicas: 10, initialReplicas: 1, targetOngoingRequests: 2,
    upscaleDelayMs: 1000, downscaleDelayMs: 5000, downscaleToZeroDelayMs: 5000,
    upscalingFactor: 1, downscalingFactor: 1, maxHoldMs: 60_000, kubernetesDeployment: 'x', ...over,
  };
}

function scaled(d: AutoscaleDecision): number {
  assert.equal(d.kind, 'scale', `expected scale, got ${JSON.stringify(d)}`);
  return d.desired;
}

/** Runs the policy once per tick over `loads` (one observation per tick), applying every decision. */
function simulate(c: AutoscalingConfig, start: number, loads: Array<{ running?: number; ongoing: number }>, tickMs: number): { targets: number[]; scales: number } {
  let state: AutoscaleState = initialAutoscaleState(start, 0);
  const targets: number[] = [];
  let scales = 0;
  loads.forEach((l, i) => {
    const r: AutoscaleResult = decideScale(c, state, { runningReplicas: l.running ?? state.targetReplicas, totalOngoing: l.ongoing }, (i + 1) * tickMs);
    if (r.decision.kind === 'scale') scales++;
    state = r.state;
    targets.push(state.targetReplicas);
  });
  return { targets, scales };
}

describe('desiredReplicas (Ray Serve formula)', () => {
  test('asks for enough replicas to bring ongoing requests per replica to the target', () => {
    assert.equal(desiredReplicas(cfg(), 2, 12), 6); // 12 ongoing / 2 per replica
    assert.equal(desiredReplicas(cfg(), 2, 4), 2); // on target
    assert.equal(desiredReplicas(cfg(), 4, 3), 2); // ceil(3 / 2)
  });

  test('is ceil(current + factor·(ongoing/target − current)) with the factor of the direction', () => {
    // up: 2 + 0.5·(6 − 2) = 4
    assert.equal(desiredReplicas(cfg({ upscalingFactor: 0.5 }), 2, 12), 4);
    // down: 8 + 0.5·(1 − 8) = 4.5 → 5
    assert.equal(desiredReplicas(cfg({ downscalingFactor: 0.5 }), 8, 2), 5);
    // an upscaling factor above 1 overshoots: 2 + 2·(3 − 2) = 4
    assert.equal(desiredReplicas(cfg({ upscalingFactor: 2 }), 2, 6), 4);
  });

  test('steps down by one when a small downscaling factor would leave it stuck', () => {
    // 2 + 0.1·(0.5 − 2) = 1.85 → ceil 2 = current, although the load alone says 1.
    assert.equal(desiredReplicas(cfg({ downscalingFactor: 0.1 }), 2, 1), 1);
  });

  test('is clamped to [min_replicas, max_replicas]', () => {
    assert.equal(desiredReplicas(cfg({ maxReplicas: 3 }), 1, 100), 3);
    assert.equal(desiredReplicas(cfg({ minReplicas: 2 }), 4, 0), 2);
    assert.equal(desiredReplicas(cfg({ minReplicas: 0 }), 1, 0), 0);
  });

  test('from zero running replicas asks for ceil(upscaling_factor), at least one, when anything is ongoing', () => {
    assert.equal(desiredReplicas(cfg({ minReplicas: 0 }), 0, 1), 1);
    assert.equal(desiredReplicas(cfg({ minReplicas: 0, upscalingFactor: 2.5 }), 0, 50), 3);
    assert.equal(desiredReplicas(cfg({ minReplicas: 0 }), 0, 0), 0);
  });

  test('an exact ratio does not round up on float noise', () => {
    assert.equal(desiredReplicas(cfg({ targetOngoingRequests: 0.1 }), 1, 0.3), 3);
  });
});

describe('decideScale: delays', () => {
  test('scales up only after the load has asked for more for upscale_delay_s', () => {
    const c = cfg({ upscaleDelayMs: 1000 });
    let r = decideScale(c, initialAutoscaleState(1, 0), { runningReplicas: 1, totalOngoing: 8 }, 0);
    assert.deepEqual({ kind: r.decision.kind, pending: (r.decision as { pending?: number }).pending }, { kind: 'hold', pending: 4 });
    assert.equal((r.decision as { untilMs?: number }).untilMs, 1000);
    r = decideScale(c, r.state, { runningReplicas: 1, totalOngoing: 8 }, 999);
    assert.equal(r.decision.kind, 'hold');
    r = decideScale(c, r.state, { runningReplicas: 1, totalOngoing: 8 }, 1000);
    assert.equal(scaled(r.decision), 4);
    assert.equal(r.state.targetReplicas, 4);
    assert.match((r.decision as { reason: string }).reason, /8 ongoing on 1 running/);
  });

  test('scales down only after downscale_delay_s, and a burst in between restarts the clock', () => {
    const c = cfg({ downscaleDelayMs: 5000 });
    let s = initialAutoscaleState(4, 0);
    let r = decideScale(c, s, { runningReplicas: 4, totalOngoing: 2 }, 0);
    assert.equal(r.decision.kind, 'hold');
    s = decideScale(c, r.state, { runningReplicas: 4, totalOngoing: 2 }, 3000).state;
    // A burst asks for more (up): the down clock restarts.
    s = decideScale(c, s, { runningReplicas: 4, totalOngoing: 20 }, 3500).state;
    r = decideScale(c, s, { runningReplicas: 4, totalOngoing: 2 }, 5000);
    assert.equal(r.decision.kind, 'hold', 'five seconds since the first low sample, but not of low load');
    r = decideScale(c, r.state, { runningReplicas: 4, totalOngoing: 2 }, 9999);
    assert.equal(r.decision.kind, 'hold');
    r = decideScale(c, r.state, { runningReplicas: 4, totalOngoing: 2 }, 10_000);
    assert.equal(scaled(r.decision), 1);
  });

  test('a load on target resets a pending decision', () => {
    const c = cfg({ upscaleDelayMs: 1000 });
    let s = decideScale(c, initialAutoscaleState(2, 0), { runningReplicas: 2, totalOngoing: 10 }, 0).state;
    s = decideScale(c, s, { runningReplicas: 2, totalOngoing: 4 }, 600).state;
    assert.equal(s.trend, 'none');
    const r = decideScale(c, s, { runningReplicas: 2, totalOngoing: 10 }, 1100);
    assert.equal(r.decision.kind, 'hold', 'the clock started again at 1100');
  });

  test('with zero delays it acts on the first sample', () => {
    const c = cfg({ upscaleDelayMs: 0, downscaleDelayMs: 0 });
    assert.equal(scaled(decideScale(c, initialAutoscaleState(1, 0), { runningReplicas: 1, totalOngoing: 6 }, 0).decision), 3);
    assert.equal(scaled(decideScale(c, initialAutoscaleState(3, 0), { runningReplicas: 3, totalOngoing: 1 }, 0).decision), 1);
  });

  test('the last step 1 → 0 waits downscale_to_zero_delay_s instead of downscale_delay_s', () => {
    const c = cfg({ minReplicas: 0, downscaleDelayMs: 1000, downscaleToZeroDelayMs: 30_000 });
    let r = decideScale(c, initialAutoscaleState(1, 0), { runningReplicas: 1, totalOngoing: 0 }, 0);
    r = decideScale(c, r.state, { runningReplicas: 1, totalOngoing: 0 }, 1000);
    assert.equal(r.decision.kind, 'hold');
    assert.equal((r.decision as { untilMs?: number }).untilMs, 30_000);
    r = decideScale(c, r.state, { runningReplicas: 1, totalOngoing: 0 }, 30_000);
    assert.equal(scaled(r.decision), 0);
  });

  test('a downscale from several replicas stops at one: only 1 → 0 reaches zero', () => {
    const c = cfg({ minReplicas: 0, downscaleDelayMs: 0, downscaleToZeroDelayMs: 60_000 });
    const r = decideScale(c, initialAutoscaleState(3, 0), { runningReplicas: 3, totalOngoing: 0 }, 0);
    assert.equal(scaled(r.decision), 1);
  });
});

describe('decideScale: flapping load', () => {
  test('a load alternating between high and idle every tick never scales', () => {
    const c = cfg({ upscaleDelayMs: 2000, downscaleDelayMs: 2000 });
    const loads = Array.from({ length: 200 }, (_, i) => ({ ongoing: i % 2 === 0 ? 12 : 0 }));
    const { targets, scales } = simulate(c, 2, loads, 250);
    assert.equal(scales, 0);
    assert.ok(targets.every((t) => t === 2));
  });

  test('a load flapping slower than the delay scales with it, but once per swing, not every tick', () => {
    const c = cfg({ upscaleDelayMs: 1000, downscaleDelayMs: 1000 });
    // 4 s high, 4 s low, 3 times, 250 ms ticks.
    const loads = Array.from({ length: 96 }, (_, i) => ({ ongoing: Math.floor(i / 16) % 2 === 0 ? 12 : 2 }));
    const { targets, scales } = simulate(c, 1, loads, 250);
    assert.equal(scales, 6, 'one up and one down per cycle');
    assert.ok(targets.every((t) => t === 1 || t === 6), `targets ${[...new Set(targets)].join(',')}`);
  });

  test('noise around the target (±1 request) does not move a deployment that is sized right', () => {
    const c = cfg({ upscaleDelayMs: 3000, downscaleDelayMs: 10_000 });
    const loads = Array.from({ length: 400 }, (_, i) => ({ ongoing: 8 + ((i * 7) % 3) - 1 })); // 7, 8, 9 on 4 replicas
    const { scales } = simulate(c, 4, loads, 100);
    assert.equal(scales, 0);
  });
});

describe('decideScale: clamps and scale from zero', () => {
  test('never goes past max_replicas nor below min_replicas', () => {
    const c = cfg({ minReplicas: 2, maxReplicas: 5, upscaleDelayMs: 0, downscaleDelayMs: 0 });
    assert.equal(scaled(decideScale(c, initialAutoscaleState(2, 0), { runningReplicas: 2, totalOngoing: 1000 }, 0).decision), 5);
    assert.equal(scaled(decideScale(c, initialAutoscaleState(5, 0), { runningReplicas: 5, totalOngoing: 0 }, 0).decision), 2);
    assert.equal(decideScale(c, initialAutoscaleState(5, 0), { runningReplicas: 5, totalOngoing: 1000 }, 0).decision.kind, 'hold');
  });

  test('brings a target outside [min, max] back inside at once (e.g. scaled by hand)', () => {
    const c = cfg({ minReplicas: 1, maxReplicas: 3 });
    assert.equal(scaled(decideScale(c, initialAutoscaleState(7, 0), { runningReplicas: 7, totalOngoing: 50 }, 0).decision), 3);
    assert.equal(scaled(decideScale(c, initialAutoscaleState(0, 0), { runningReplicas: 0, totalOngoing: 0 }, 0).decision), 1);
  });

  test('from zero replicas, any queued request scales to one at once, whatever the upscale delay', () => {
    const c = cfg({ minReplicas: 0, upscaleDelayMs: 60_000 });
    const r = decideScale(c, initialAutoscaleState(0, 0), { runningReplicas: 0, totalOngoing: 1 }, 0);
    assert.equal(scaled(r.decision), 1);
    assert.match((r.decision as { reason: string }).reason, /no running replica/);
  });

  test('from zero with an upscaling factor of 3 it starts three', () => {
    const c = cfg({ minReplicas: 0, upscalingFactor: 3 });
    assert.equal(scaled(decideScale(c, initialAutoscaleState(0, 0), { runningReplicas: 0, totalOngoing: 1 }, 0).decision), 3);
  });

  test('while replicas it asked for are starting (none running yet) it holds instead of asking again', () => {
    const c = cfg({ minReplicas: 0 });
    const r = decideScale(c, initialAutoscaleState(1, 0), { runningReplicas: 0, totalOngoing: 5 }, 0);
    assert.equal(r.decision.kind, 'hold');
    assert.equal(r.decision.desired, 1);
  });

  test('at zero with nothing queued it stays at zero', () => {
    const c = cfg({ minReplicas: 0 });
    assert.equal(decideScale(c, initialAutoscaleState(0, 0), { runningReplicas: 0, totalOngoing: 0 }, 0).decision.kind, 'hold');
  });

  test('a full cycle: 0 → 1 on the first request, up under load, back to 0 after the delays', () => {
    const c = cfg({ minReplicas: 0, maxReplicas: 4, upscaleDelayMs: 500, downscaleDelayMs: 1000, downscaleToZeroDelayMs: 2000 });
    const loads = [
      { running: 0, ongoing: 1 }, // request arrives: 0 → 1 at once
      ...Array.from({ length: 8 }, () => ({ running: 1, ongoing: 8 })), // load: → 4 after 500 ms
      ...Array.from({ length: 8 }, () => ({ running: 4, ongoing: 0 })), // idle: → 1 after 1 s
      ...Array.from({ length: 12 }, () => ({ running: 1, ongoing: 0 })), // idle: → 0 after 2 s more
    ];
    const { targets } = simulate(c, 0, loads, 250);
    const steps = targets.filter((t, i) => i === 0 || t !== targets[i - 1]);
    assert.deepEqual(steps, [1, 4, 1, 0]);
    assert.equal(targets.indexOf(4), 3, '4 after 500 ms of load (ticks 2, 3, 4)');
  });
});

describe('autoscaling config', () => {
  const base = (autoscaling: unknown, extra: Record<string, unknown> = {}) =>
    ({ deployments: { d: { stage: 'synthetic', models: ['m'], autoscaling, ...extra } } });

  test('fills Ray Serve\'s defaults and starts the deployment at initial_replicas', () => {
    const d = compileConfig(base({ max_replicas: 4 })).deployments.d!;
    assert.deepEqual(d.autoscaling, {
      minReplicas: 1, maxReplicas: 4, initialReplicas: 1, targetOngoingRequests: 2, upscaleDelayMs: 30_000, downscaleDelayMs: 600_000,
      downscaleToZeroDelayMs: 600_000, upscalingFactor: 1, downscalingFactor: 1, maxHoldMs: 300_000, kubernetesDeployment: 'd',
    });
    assert.equal(compileConfig(base({ min_replicas: 0, max_replicas: 3, initial_replicas: 2 })).deployments.d!.replicas, 2);
  });

  test('takes seconds with fractions and a separate delay for the step to zero', () => {
    const a = compileConfig(base({ min_replicas: 0, upscale_delay_s: 0.25, downscale_delay_s: 2, downscale_to_zero_delay_s: 0 })).deployments.d!.autoscaling!;
    assert.deepEqual([a.upscaleDelayMs, a.downscaleDelayMs, a.downscaleToZeroDelayMs], [250, 2000, 0]);
  });

  test('a deployment without autoscaling has none, and the router scale target defaults to none', () => {
    const c = compileConfig({ deployments: { d: { stage: 'synthetic', models: ['m'] } } });
    assert.equal(c.deployments.d!.autoscaling, undefined);
    assert.deepEqual(c.autoscaler, { scaleTarget: 'none', intervalMs: 1000, kubernetesNamespace: 'default', leaderLeaseMs: 15_000, leaderLeaseName: 'orrery-autoscaler' });
  });

  const rejects = (raw: unknown, key: string, why: RegExp) => {
    assert.throws(() => compileConfig(raw), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.key, key);
      assert.equal(err.code, 'ORRERY_ERR_CONFIG');
      assert.match(err.message, why);
      return true;
    });
  };

  test('rejects invalid values naming the key', () => {
    rejects(base({ min_replicas: 3, max_replicas: 2 }), 'deployments.d.autoscaling.max_replicas', /≥ min_replicas \(3\)/);
    rejects(base({ min_replicas: 1, max_replicas: 2, initial_replicas: 5 }), 'deployments.d.autoscaling.initial_replicas', /\[1, 2\]/);
    rejects(base({ target_ongoing_requests: 0 }), 'deployments.d.autoscaling.target_ongoing_requests', /> 0/);
    rejects(base({ upscaling_factor: -1 }), 'deployments.d.autoscaling.upscaling_factor', /> 0/);
    rejects(base({ downscale_delay_s: -1 }), 'deployments.d.autoscaling.downscale_delay_s', /≥ 0/);
    rejects(base({ min_replica: 1 }), 'deployments.d.autoscaling.min_replica', /unknown key/);
    rejects(base({ kubernetes_deployment: 'Not_A_Name' }), 'deployments.d.autoscaling.kubernetes_deployment', /Kubernetes object name/);
    rejects(base('yes'), 'deployments.d.autoscaling', /mapping/);
    rejects(base({}, { replicas: 2 }), 'deployments.d.replicas', /initial_replicas/);
    rejects({ autoscaler: { scale_target: 'k8s' }, ...base({}) }, 'autoscaler.scale_target', /none, local, kubernetes/);
    rejects({ autoscaler: { interval: 5 }, ...base({}) }, 'autoscaler.interval', /unknown key/);
  });
});
