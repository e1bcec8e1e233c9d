/**
 * The router's autoscaling loop: every `autoscaler.interval_ms`, for each deployment with an
 * `autoscaling` config, it measures the load (queued + in-flight images, running replicas), asks
 * the pure policy (autoscale-policy.ts) what to do and applies `scale` decisions through a
 * ScaleTarget (scale-targets/). A request held because its deployment has no replica wakes the
 * loop at once (`wake`), so scaling from zero waits for no tick.
 *
 * It exports `orrery_replicas_desired{deployment}`: the count the policy last applied, beside the
 * router's `orrery_replicas{deployment,state}` (what actually runs).
 */
import { Gauge, type Registry } from 'prom-client';
import type { DeploymentConfig } from '../common/config.js';
import type { Logger } from '../common/logger.js';
import { decideScale, initialAutoscaleState, type AutoscaleObservation, type AutoscaleState } from './autoscale-policy.js';
import type { ScaleTarget } from './scale-targets/scale-target.js';

export interface AutoscalerOptions {
  /** Deployments to manage; each must have `autoscaling`. */
  readonly deployments: readonly DeploymentConfig[];
  /** Where decisions go; undefined: compute and export them only (e.g. KEDA scales). */
  readonly target: ScaleTarget | undefined;
  /** The load of a deployment now. */
  readonly observe: (deployment: string) => AutoscaleObservation;
  /** Registry that gets `orrery_replicas_desired`. */
  readonly registry: Registry;
  readonly log: Logger;
  readonly intervalMs: number;
  readonly now: () => number;
  /** Longest a call to the target may take before it counts as failed (default 10 s). */
  readonly targetTimeoutMs?: number;
}

interface Managed {
  readonly config: DeploymentConfig;
  state: AutoscaleState;
  /** A tick of this deployment is running (ticks of one deployment never overlap). */
  busy: boolean;
  /** Another tick was asked for while busy (a wake): run it right after. */
  again: boolean;
  lastErrorLogMs: number;
}

const ERROR_LOG_INTERVAL_MS = 10_000;

/** `p`, or a rejection after `ms` (an API server that does not answer must not stall the loop). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class Autoscaler {
  private readonly managed = new Map<string, Managed>();
  private readonly desiredGauge: Gauge;
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Set<Promise<void>>();
  private stopped = false;

  private constructor(private readonly options: AutoscalerOptions) {
    const existing = options.registry.getSingleMetric('orrery_replicas_desired');
    this.desiredGauge = (existing as Gauge | undefined) ?? new Gauge({
      name: 'orrery_replicas_desired', help: 'Replicas the autoscaler wants per deployment (what it last applied)', labelNames: ['deployment'], registers: [options.registry],
    });
  }

  /**
   * Starts managing: each deployment continues from the count its target runs now (a restarted
   * router keeps the scale it had), else from `initial_replicas`, then ticks every interval.
   */
  static async start(options: AutoscalerOptions): Promise<Autoscaler> {
    const a = new Autoscaler(options);
    const now = options.now();
    for (const d of options.deployments) {
      const c = d.autoscaling;
      if (!c) throw new Error(`deployment ${d.name} has no autoscaling config`);
      let current: number | undefined;
      try {
        if (options.target) current = await withTimeout(options.target.currentReplicas(d), options.targetTimeoutMs ?? 10_000, `reading ${d.name}'s replica count`);
      } catch (err) {
        options.log.warn({ deployment: d.name, err: (err as Error).message }, 'cannot read the current replica count; starting from initial_replicas');
      }
      const state = initialAutoscaleState(current ?? c.initialReplicas, now);
      a.managed.set(d.name, { config: d, state, busy: false, again: false, lastErrorLogMs: 0 });
      a.desiredGauge.set({ deployment: d.name }, state.targetReplicas);
    }
    // Fire and forget: evaluate() catches and logs a failed scale call (the only I/O in a tick).
    a.timer = setInterval(() => void a.tickAll(), options.intervalMs);
    a.timer.unref();
    options.log.info({ target: options.target?.kind ?? 'none', deployments: [...a.managed.keys()], intervalMs: options.intervalMs }, 'autoscaler running');
    return a;
  }

  /** The replica count the autoscaler wants for `deployment` (undefined: not managed). */
  desired(deployment: string): number | undefined {
    return this.managed.get(deployment)?.state.targetReplicas;
  }

  /** Evaluates `deployment` now instead of at the next tick (a request is waiting for a replica). */
  wake(deployment: string): void {
    const m = this.managed.get(deployment);
    if (m) void this.track(this.tick(m)); // as the interval's ticks: a failed scale call is logged by evaluate()
  }

  /** One evaluation of every deployment; resolves when their decisions are applied (tests call it). */
  async tickAll(): Promise<void> {
    await Promise.all([...this.managed.values()].map((m) => this.track(this.tick(m))));
  }

  private track(p: Promise<void>): Promise<void> {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  private async tick(m: Managed): Promise<void> {
    if (this.stopped) return;
    if (m.busy) {
      m.again = true;
      return;
    }
    m.busy = true;
    try {
      do {
        m.again = false;
        await this.evaluate(m);
      } while (m.again && !this.stopped);
    } finally {
      m.busy = false;
    }
  }

  private async evaluate(m: Managed): Promise<void> {
    const { log, target } = this.options;
    const name = m.config.name;
    const now = this.options.now();
    const obs = this.options.observe(name);
    const { decision, state } = decideScale(m.config.autoscaling!, m.state, obs, now);
    if (decision.kind === 'hold') {
      m.state = state;
      return;
    }
    try {
      if (target) await withTimeout(target.setReplicas(m.config, decision.desired, decision.reason), this.options.targetTimeoutMs ?? 10_000, `scaling ${name}`);
    } catch (err) {
      // Keep the old state: the same decision is retried at the next tick.
      if (now - m.lastErrorLogMs >= ERROR_LOG_INTERVAL_MS) {
        m.lastErrorLogMs = now;
        log.warn({ deployment: name, desired: decision.desired, err: (err as Error).message }, 'could not apply a scale decision; retrying');
      }
      return;
    }
    log.info({ deployment: name, from: m.state.targetReplicas, to: decision.desired, reason: decision.reason, ...obs }, 'scaled');
    m.state = state;
    this.desiredGauge.set({ deployment: name }, decision.desired);
  }

  /** Stops ticking and waits for decisions being applied; closes the target. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await Promise.allSettled([...this.running]);
    await this.options.target?.close();
  }
}
