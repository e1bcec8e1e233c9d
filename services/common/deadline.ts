/** Absolute deadlines and abort signals (CONVENTIONS §3). */

/** setTimeout rejects delays past 2^31−1 ms by firing at once; clamp to that. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function clampTimerMs(ms: number): number {
  return Math.max(0, Math.min(MAX_TIMER_MS, ms));
}

/** Earliest of several absolute deadlines (ms since epoch); 0 or undefined means none. */
export function earliestDeadline(...deadlines: Array<number | undefined>): number {
  const set = deadlines.filter((d): d is number => typeof d === 'number' && d > 0 && Number.isFinite(d));
  return set.length ? Math.min(...set) : 0;
}
