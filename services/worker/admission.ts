/**
 * Admission at the replica: the one place that decides whether a replica takes another batch.
 * Several routers place batches on the same replicas, each from heartbeats that are a little
 * old, so two may fill the same free slot at once; the replica is the only party that knows its
 * slots exactly, and refuses a batch past them with ORRERY_ERR_REPLICA_FULL (retryable: the
 * router puts it back at the head of its queue without using up an attempt). Pure.
 */
import type { DeploymentConfig } from '../common/config.js';

/**
 * True when a replica of `dep` that is working on `inFlightBatches` batches may take one more:
 * fewer than its `max_ongoing_batches`. A `batching: continuous` deployment takes every batch: its
 * images join the model's running set, or wait in its join queue (online first) until they fit.
 */
export function admitsBatch(dep: Pick<DeploymentConfig, 'maxOngoingBatches' | 'batching'>, inFlightBatches: number): boolean {
  return dep.batching === 'continuous' || inFlightBatches < dep.maxOngoingBatches;
}
