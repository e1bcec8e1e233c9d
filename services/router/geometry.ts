/**
 * Image geometry (DESIGN.md §3 "21:9 geometry"). SDXL was trained on fixed buckets; an aspect
 * ratio maps to the nearest bucket by ratio (21:9 → 1536x640). Explicit sizes must sit on the
 * latent grid (multiples of 8).
 */
export interface Size {
  readonly width: number;
  readonly height: number;
}

const LANDSCAPE: readonly Size[] = [
  { width: 1024, height: 1024 },
  { width: 1152, height: 896 },
  { width: 1216, height: 832 },
  { width: 1344, height: 768 },
  { width: 1536, height: 640 },
];

/** SDXL's buckets: the landscape ones and their transposes. */
export const SDXL_BUCKETS: readonly Size[] = [
  ...LANDSCAPE,
  ...LANDSCAPE.filter((s) => s.width !== s.height).map((s) => ({ width: s.height, height: s.width })),
];

/** Parses "W:H" (positive integers). Returns undefined when malformed. */
export function parseAspect(aspect: string): number | undefined {
  const m = /^\s*(\d{1,5})\s*:\s*(\d{1,5})\s*$/.exec(aspect);
  if (!m) return undefined;
  const w = Number(m[1]);
  const h = Number(m[2]);
  if (w <= 0 || h <= 0) return undefined;
  return w / h;
}

/** The bucket whose ratio is nearest to `ratio` (compared in log space, so 2:1 and 1:2 are symmetric). */
export function nearestBucket(ratio: number): Size {
  let best = SDXL_BUCKETS[0]!;
  let bestDist = Infinity;
  for (const b of SDXL_BUCKETS) {
    const d = Math.abs(Math.log(b.width / b.height) - Math.log(ratio));
    if (d < bestDist) {
      best = b;
      bestDist = d;
    }
  }
  return best;
}
