/**
 * Who may hold the autoscaler's Kubernetes Lease, decided from the Lease object as read and when
 * this process saw its current version (pure; `nowMs` comes in). Expiry is measured on this
 * process's own clock from the moment it first saw the holder's latest renewal, not from the
 * renew time written in the Lease (as client-go's leader election does): routers whose clocks
 * disagree still agree that a holder that stopped renewing for a whole lease is gone.
 */

/** The parts of a coordination.k8s.io/v1 Lease the decision reads. */
export interface LeaseRecord {
  /** spec.holderIdentity ('' or absent: nobody holds it). */
  readonly holder: string;
  /** spec.leaseDurationSeconds, in ms. */
  readonly durationMs: number;
  /** metadata.resourceVersion: changes at every write, so at every renewal. */
  readonly version: string;
}

/** The Lease version this process last saw change, and when (its own clock, ms). */
export interface LeaseObservation {
  readonly version: string;
  readonly atMs: number;
}

export type LeaseDecision =
  /** No Lease object: create it, holding it. */
  | { readonly kind: 'create' }
  /** This process holds it: write a new renew time. */
  | { readonly kind: 'renew' }
  /** Nobody holds it, or its holder has not renewed for a whole lease: write this process as holder. */
  | { readonly kind: 'take-over' }
  /** Another holder's lease runs until `untilMs` unless renewed. */
  | { readonly kind: 'wait'; readonly untilMs: number };

/**
 * What to do with the Lease `lease` (undefined: it does not exist), and the observation to keep
 * for next time. Every write is made with the read `version` (optimistic concurrency), so of
 * two routers taking over at once the API server lets one win.
 */
export function decideLease(lease: LeaseRecord | undefined, seen: LeaseObservation | undefined, me: string, nowMs: number): { decision: LeaseDecision; seen: LeaseObservation | undefined } {
  if (!lease) return { decision: { kind: 'create' }, seen: undefined };
  if (lease.holder === me) return { decision: { kind: 'renew' }, seen: { version: lease.version, atMs: nowMs } };
  if (lease.holder === '') return { decision: { kind: 'take-over' }, seen: { version: lease.version, atMs: nowMs } };
  // A version not seen before is a renewal (or a new holder): its lease starts now, for us.
  const observed = seen && seen.version === lease.version ? seen : { version: lease.version, atMs: nowMs };
  const untilMs = observed.atMs + lease.durationMs;
  return { decision: nowMs >= untilMs ? { kind: 'take-over' } : { kind: 'wait', untilMs }, seen: observed };
}
