/**
 * Who steps next in a running set (running-set.ts): the pure policy applied at every step
 * boundary of step-level continuous batching. Images rank online before bulk, then by arrival;
 * the first `capacity` of them step. So a waiting online image joins before any waiting bulk one,
 * and when the set is full it takes the place of the bulk image that arrived last, which pauses
 * with its state (it is not stepped, and resumes when it ranks within the capacity again).
 * Ranking by arrival within a priority keeps the set stable: an image that is stepping is never
 * displaced by one of its own priority that arrived after it.
 */
import type { Priority } from '../common/work-item.js';

export interface AdmissionCandidate {
  /** The candidate's arrival number in its set (unique, increasing). */
  readonly seq: number;
  readonly priority: Priority;
  /** It stepped at the previous boundary. */
  readonly stepping: boolean;
  /** It has stepped before (a paused image when not `stepping`). */
  readonly started: boolean;
}

export interface Admission {
  /** Arrival numbers of the images that step now, in rank order. */
  readonly step: readonly number[];
  /** Images that start now (never stepped before). */
  readonly joins: readonly number[];
  /** Images that stepped at the previous boundary and pause now. */
  readonly preempted: readonly number[];
  /** Paused images that step again now. */
  readonly resumed: readonly number[];
  /** Images that neither step nor pause now: they wait (to join, or to resume). */
  readonly waiting: number;
}

const rank = (p: Priority): number => (p === 'online' ? 0 : 1);

/** The images that step at this boundary, out of `candidates` (every image of the set not yet finished). */
export function admit(candidates: readonly AdmissionCandidate[], capacity: number): Admission {
  const ordered = [...candidates].sort((a, b) => rank(a.priority) - rank(b.priority) || a.seq - b.seq);
  const chosen = ordered.slice(0, Math.max(0, capacity));
  const rest = ordered.slice(chosen.length);
  return {
    step: chosen.map((c) => c.seq),
    joins: chosen.filter((c) => !c.started).map((c) => c.seq),
    preempted: rest.filter((c) => c.stepping).map((c) => c.seq),
    resumed: chosen.filter((c) => c.started && !c.stepping).map((c) => c.seq),
    waiting: rest.length,
  };
}
