/**
 * The autoscaling decision for one deployment, with Ray Serve's semantics (its
 * `replica_queue_length_autoscaling_policy`): pure, state and `nowMs` in, a tagged decision and
 * the next state out. The loop that feeds it and applies its decisions is autoscaler.ts.
 *
 *   desired = ceil(running + factor · (totalOngoing / target − running)), clamped to [min, max]
 *
 * where `factor` is upscaling_factor when the load asks for more replicas and downscaling_factor
 * when it asks for fewer. A decision takes effect only after the load has asked for the same
 * direction continuously for upscale_delay_s (or downscale_delay_s; downscale_to_zero_delay_s
 * for the last step 1 → 0); a change of direction restarts the clock, so a flapping load never
 * scales. With no running replica and any ongoing request it scales to ≥ 1 at once.
 */
import type { AutoscalingConfig } from '../common/config.js';

/** What the loop observed this tick. */
export interface AutoscaleObservation {
  /** Replicas that serve (running, not draining). */
  readonly runningReplicas: number;
  /** Queued + in-flight images of the deployment. */
  readonly totalOngoing: number;
}

/** Memory between ticks: the current target and how long the load has asked to move from it. */
export interface AutoscaleState {
  /** The replica count last applied (the target the scale target was told). */
  readonly targetReplicas: number;
  /** The direction the load has asked for since `sinceMs` ('none': it is content). */
  readonly trend: 'up' | 'down' | 'none';
  readonly sinceMs: number;
}

export type AutoscaleDecision =
  /** Apply `desired` now. */
  | { readonly kind: 'scale'; readonly desired: number; readonly reason: string }
  /**
   * Keep `targetReplicas`. When the load asks for a change that waits for its delay, `pending`
   * is the count it asks for and `untilMs` when it would apply if the load keeps asking.
   */
  | { readonly kind: 'hold'; readonly desired: number; readonly reason: string; readonly pending?: number; readonly untilMs?: number };

export interface AutoscaleResult {
  readonly decision: AutoscaleDecision;
  readonly state: AutoscaleState;
}

/** The state of a deployment the autoscaler starts managing at `targetReplicas`. */
export function initialAutoscaleState(targetReplicas: number, nowMs: number): AutoscaleState {
  return { targetReplicas, trend: 'none', sinceMs: nowMs };
}

const clamp = (n: number, c: AutoscalingConfig): number => Math.max(c.minReplicas, Math.min(c.maxReplicas, n));

/**
 * Ray Serve's `_calculate_desired_num_replicas`: the replica count that brings the ongoing load
 * per running replica to the target, smoothed by the factor of the direction, clamped. When the
 * downscaling factor is so small that the smoothed count is stuck at the current one although
 * the load alone would go lower, it steps down by one (as Ray does), so it can still reach min.
 */
export function desiredReplicas(c: AutoscalingConfig, runningReplicas: number, totalOngoing: number): number {
  if (runningReplicas === 0) return clamp(totalOngoing > 0 ? Math.max(1, Math.ceil(c.upscalingFactor)) : 0, c);
  const errorRatio = totalOngoing / (c.targetOngoingRequests * runningReplicas);
  const factor = errorRatio >= 1 ? c.upscalingFactor : c.downscalingFactor;
  // Float noise must not turn an exact 3 into ceil(3.0000000001) = 4.
  const smoothed = runningReplicas * (1 + (errorRatio - 1) * factor);
  let desired = Math.ceil(smoothed - 1e-9);
  if (Math.ceil(runningReplicas * errorRatio - 1e-9) < runningReplicas && desired === runningReplicas) desired--;
  return clamp(desired, c);
}

/** One tick of the policy. */
export function decideScale(c: AutoscalingConfig, state: AutoscaleState, obs: AutoscaleObservation, nowMs: number): AutoscaleResult {
  const current = state.targetReplicas;
  const hold = (reason: string, next: AutoscaleState, extra: { pending?: number; untilMs?: number } = {}): AutoscaleResult => ({
    decision: { kind: 'hold', desired: current, reason, ...extra }, state: next,
  });
  const scale = (desired: number, reason: string): AutoscaleResult => ({
    decision: { kind: 'scale', desired, reason }, state: { targetReplicas: desired, trend: 'none', sinceMs: nowMs },
  });

  // Outside [min, max] (config changed, or someone scaled the Deployment by hand): back inside at once.
  if (current < c.minReplicas || current > c.maxReplicas) return scale(clamp(current, c), `target ${current} outside [${c.minReplicas}, ${c.maxReplicas}]`);

  // From zero: a queued request must not wait for a delay (Ray does the same).
  if (obs.runningReplicas === 0 && obs.totalOngoing > 0) {
    const desired = Math.max(current, desiredReplicas(c, 0, obs.totalOngoing));
    if (desired > current) return scale(desired, `${obs.totalOngoing} ongoing with no running replica`);
    return hold('waiting for replicas to start', { targetReplicas: current, trend: 'none', sinceMs: nowMs });
  }
  // Nothing runs and nothing waits: nothing to measure, keep the target (a start in progress).
  if (obs.runningReplicas === 0) return hold('no running replica and no load', { targetReplicas: current, trend: 'none', sinceMs: nowMs });

  let desired = desiredReplicas(c, obs.runningReplicas, obs.totalOngoing);
  const trend = desired > current ? 'up' : desired < current ? 'down' : 'none';
  if (trend === 'none') return hold('load on target', { targetReplicas: current, trend, sinceMs: nowMs });
  // Only the last step may reach zero; other downscales stop at one.
  if (trend === 'down' && current > 1) desired = Math.max(1, desired);
  const delayMs = trend === 'up' ? c.upscaleDelayMs : current === 1 ? c.downscaleToZeroDelayMs : c.downscaleDelayMs;
  const sinceMs = state.trend === trend ? state.sinceMs : nowMs;
  const load = `${obs.totalOngoing} ongoing on ${obs.runningReplicas} running (target ${c.targetOngoingRequests} each)`;
  if (nowMs - sinceMs >= delayMs) return scale(desired, `${load} for ${((nowMs - sinceMs) / 1000).toFixed(1)} s`);
  return hold(`${load}: scale ${trend} to ${desired} after the delay`, { targetReplicas: current, trend, sinceMs }, { pending: desired, untilMs: sinceMs + delayMs });
}
