/**
 * Dispatch by room for deployments with `batching: continuous` (issue 12): a replica keeps a
 * running set of images that join and leave at every denoising step, so the router forms no
 * batches and waits for no company — whenever a replica has room it sends it queued images.
 *
 * Pure policy (CONVENTIONS §2): the queue, the replicas' room, options, `nowMs` and an injected
 * `rng` come in; a tagged {@link RoomDecision} comes out. The scheduler applies it (removes the
 * items, sends them as one BatchRequest, counts them against the replica) and calls again until
 * it gets `wait` or `idle`.
 */
import { groupByKey, type QueuedItem } from './batch-policy.js';

/** What the router knows of one replica's running set when it places images. */
export interface RoomView {
  readonly id: string;
  /** Models loaded (or being loaded) on the replica, including those of images in flight there. */
  readonly loadedModels: readonly string[];
  /** Images the replica can take now ({@link replicaRoom}). */
  readonly room: number;
  /**
   * Images the replica can take now if they are online ({@link replicaRoom}): the replica lets an
   * online image overtake bulk images at the next step, so bulk images in its set leave it room.
   */
  readonly onlineRoom: number;
}

/** The inputs of {@link replicaRoom}: the replica's last heartbeat and this router's batches on it. */
export interface RoomInputs {
  /** `running_set_capacity` of the last heartbeat; 0 when the replica does not report a running set. */
  readonly capacity: number;
  /** `running_set_occupied` + `running_set_waiting` of the last heartbeat. */
  readonly heldItems: number;
  /**
   * `in_flight_items` of the last heartbeat: images of every batch the replica holds (all
   * routers'), including images it has received but not yet counted in its running set (on their
   * way to the executor thread) and finished images of batches not answered yet.
   */
  readonly inFlightItems: number;
  /** `in_flight_online_items` of the last heartbeat: the online images among `inFlightItems`. */
  readonly inFlightOnlineItems: number;
  /** Images of batches that heartbeat listed whose replies have arrived since (they left the replica), and the online ones among them. */
  readonly releasedItems: number;
  readonly releasedOnlineItems: number;
  /** Images of this router's batches in flight that the heartbeat did not list (sent after it, or not yet sent), and the online ones among them. */
  readonly unreportedItems: number;
  readonly unreportedOnlineItems: number;
  /** Images of this router's batches in flight on the replica, and the online ones among them. */
  readonly outstandingItems: number;
  readonly outstandingOnlineItems: number;
  /** `max_batch_size` of the deployment: the capacity of a replica that does not report one. */
  readonly defaultCapacity: number;
  /**
   * `max_waiting_images` of the deployment: images a replica takes beyond its running set's
   * capacity, to join as rows free (0: only into free rows).
   */
  readonly waitingImages: number;
}

/**
 * Room of one replica (the contract of issue 12): capacity + `waitingImages` − occupied − waiting
 * − images sent that no heartbeat has reported yet, where occupied + waiting is never taken below the images of
 * the batches the heartbeat lists (`inFlightItems`): a replica lists a batch as soon as it
 * receives it, before its images reach the running set's counts, and a router that trusted the
 * counts alone would send a second set's worth meanwhile (seen with real replicas). Two more
 * corrections keep it current between heartbeats:
 * images of listed batches that have been answered since no longer count (else a replica would
 * look full for up to a heartbeat interval after every finished batch), and a replica reporting
 * no running set (capacity 0: an older replica, or one still starting) gets `defaultCapacity`
 * less this router's own images in flight there.
 *
 * `onlineRoom` counts only online images against the capacity: the replica puts an online image
 * into its set at the next step in the place of a bulk image, so online work must reach it even
 * when bulk work fills it. The online images are counted as the images are (every router's, from
 * `in_flight_online_items`, corrected the same way), and never below this router's own.
 *
 * Why room reaches past the capacity by `waitingImages`: a row frees when an image's last step
 * ends, and the replica starts its next step at once. An image the router sends only then (on the
 * reply) arrives during that step and joins at the one after: the row stays empty for a step at
 * every leave (1.85 % of a saturated replica's throughput in bench/continuous-batching's step
 * model). An image already waiting at the replica joins at the very boundary the row frees.
 */
export function replicaRoom(r: RoomInputs): { room: number; onlineRoom: number } {
  const capacity = r.capacity > 0 ? r.capacity : r.defaultCapacity;
  const load = r.capacity > 0
    ? Math.max(0, Math.max(r.heldItems, r.inFlightItems) - r.releasedItems) + r.unreportedItems
    : r.outstandingItems;
  const onlineLoad = r.capacity > 0
    ? Math.max(Math.max(0, r.inFlightOnlineItems - r.releasedOnlineItems) + r.unreportedOnlineItems, r.outstandingOnlineItems)
    : r.outstandingOnlineItems;
  const limit = capacity + r.waitingImages;
  const room = Math.max(0, limit - load);
  return { room, onlineRoom: Math.max(room, limit - onlineLoad) };
}

export interface RoomPolicyOptions {
  /** Images a running set holds (`max_batch_size`): the unit of the spill backlog. */
  readonly maxBatchSize: number;
  /** Longest a group waits for a full replica that holds its model before one with room loads it. */
  readonly affinityWaitMs: number;
  /** A group also spills when it holds more than this many running sets' worth of images per holder. */
  readonly spillBacklogBatches: number;
}

export type RoomDecision =
  | { kind: 'dispatch'; replicaId: string; key: string; modelId: string; indexes: number[]; affinity: 'hit' | 'miss' }
  /** Re-run the policy at `untilMs` (or earlier if the queue or replicas change). */
  | { kind: 'wait'; untilMs: number }
  /** Nothing to do until the queue or replicas change. */
  | { kind: 'idle' };

const holdsModel = (r: RoomView, modelId: string): boolean => r.loadedModels.includes(modelId);

/** The room a group's images may use on `r`: online room when it holds an online image. */
const roomFor = (r: RoomView, online: boolean): number => (online ? r.onlineRoom : r.room);

/** The replica with the most room among `rs` (non-empty); ties broken with `rng`. */
function mostRoom(rs: readonly RoomView[], online: boolean, rng: () => number): RoomView {
  let best = 0;
  for (const r of rs) best = Math.max(best, roomFor(r, online));
  const top = rs.filter((r) => roomFor(r, online) === best);
  return top[Math.min(top.length - 1, Math.floor(rng() * top.length))]!;
}

/**
 * The next images to send.
 *
 * - Groups (items sharing a batch key) holding an online item go first, then bulk-only groups;
 *   within each, the group whose oldest item has waited longest first. The queue holds online
 *   items ahead of bulk ones, so a group's online items are its first indexes.
 * - A group goes to the replica holding its model with the most room (an online group counts
 *   online room). If only replicas without room hold it, it waits for them (`wait` until its
 *   oldest item has waited `affinityWaitMs`) unless it **spills**: its oldest item has waited that
 *   long, or it holds more than `maxBatchSize × holders × spillBacklogBatches` items. A spilling
 *   group, or one whose model no replica holds, goes to the replica with room that holds the
 *   fewest models, then the most room (a `miss`: it loads the model).
 * - Its images go at once, however few: the online ones up to the replica's online room, then
 *   bulk ones up to what is left of its room.
 * - No replica with room for any group → `idle` (a heartbeat or a reply brings room).
 */
export function decideByRoom(
  queue: readonly QueuedItem[],
  replicas: readonly RoomView[],
  opts: RoomPolicyOptions,
  nowMs: number,
  rng: () => number,
): RoomDecision {
  const groups = groupByKey(queue).sort((a, b) => (a.online !== b.online ? (a.online ? -1 : 1) : a.headEnqueuedAtMs - b.headEnqueuedAtMs));
  let untilMs = Number.POSITIVE_INFINITY;
  for (const g of groups) {
    const roomy = replicas.filter((r) => roomFor(r, g.online) > 0);
    if (roomy.length === 0) continue;
    const roomyHolders = roomy.filter((r) => holdsModel(r, g.modelId));
    let replica: RoomView;
    let affinity: 'hit' | 'miss';
    if (roomyHolders.length > 0) {
      replica = mostRoom(roomyHolders, g.online, rng);
      affinity = 'hit';
    } else {
      const holders = replicas.filter((r) => holdsModel(r, g.modelId)).length;
      const overdue = nowMs - g.headEnqueuedAtMs >= opts.affinityWaitMs;
      if (holders > 0 && !overdue && g.indexes.length <= opts.maxBatchSize * holders * opts.spillBacklogBatches) {
        untilMs = Math.min(untilMs, g.headEnqueuedAtMs + opts.affinityWaitMs);
        continue;
      }
      let fewest = Number.POSITIVE_INFINITY;
      for (const r of roomy) fewest = Math.min(fewest, r.loadedModels.length);
      replica = mostRoom(roomy.filter((r) => r.loadedModels.length === fewest), g.online, rng);
      affinity = 'miss';
    }
    const indexes: number[] = [];
    let online = 0;
    // An online group's bulk images of the same key (`fill`) go into the room its online ones leave.
    for (const i of [...g.indexes, ...g.fill]) {
      const isOnline = queue[i]!.priority !== 'bulk';
      if (isOnline ? online < replica.onlineRoom : indexes.length < replica.room) {
        indexes.push(i);
        if (isOnline) online++;
      }
    }
    if (indexes.length === 0) continue;
    return { kind: 'dispatch', replicaId: replica.id, key: g.key, modelId: g.modelId, indexes, affinity };
  }
  return Number.isFinite(untilMs) ? { kind: 'wait', untilMs } : { kind: 'idle' };
}
