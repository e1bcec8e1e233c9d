/**
 * Admission at the replica: the one place that decides whether a replica takes another batch.
 * Several routers place batches on the same replicas, each from heartbeats that are a little
 * old, so two may fill the same free slot (or the same room in a running set) at once; the
 * replica is the only party that knows what it holds exactly, and refuses a batch past it with
 * ORRERY_ERR_REPLICA_FULL (retryable: the router puts it back at the head of its queue without
 * using up an attempt). Pure.
 */
import type { DeploymentConfig } from '../common/config.js';

/** Images of the batches a replica holds (or of one batch), and the online ones among them. */
export interface ImageCount {
  readonly items: number;
  readonly online: number;
}

/**
 * True when a replica of `dep` may take one more batch.
 * - Request-level batching: fewer than `max_ongoing_batches` batches (`inFlightBatches`) run.
 * - `batching: continuous`: the images held (`held`: stepping, waiting to join, or finishing) and
 *   the batch's stay within `max_batch_size + max_waiting_images`. An online-only batch counts
 *   only the online images held, because its images take bulk images' places at the next step
 *   (the router sends online images into the room bulk images hold, room-policy.ts). An idle
 *   replica takes any batch, so a batch larger than the limit (routers configured otherwise)
 *   cannot be refused forever.
 */
export function admitsBatch(
  dep: Pick<DeploymentConfig, 'maxOngoingBatches' | 'batching' | 'maxBatchSize' | 'maxWaitingImages'>,
  inFlightBatches: number,
  held: ImageCount,
  batch: ImageCount,
): boolean {
  if (dep.batching !== 'continuous') return inFlightBatches < dep.maxOngoingBatches;
  const limit = dep.maxBatchSize + dep.maxWaitingImages;
  if (held.items === 0 || held.items + batch.items <= limit) return true;
  return batch.online === batch.items && held.online + batch.items <= limit;
}
