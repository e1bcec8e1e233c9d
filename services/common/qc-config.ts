/**
 * The spatial quality gate's options: the `qc:` mapping of a pipeline in the cluster config
 * (issue 13), validated once into frozen compiled options. Pure: no I/O. It sits in common/ because
 * the cluster config (config.ts) compiles it; the router plans re-rolls with it and the replicas
 * check with it (it travels in the work item).
 *
 * ```yaml
 * qc:
 *   after_stage: 0
 *   planet_region: { left: 0.08, right: 0.08, top: 0.06, bottom: 0.06 }   # margins, as fractions
 *   min_area: 0.02
 *   max_area: 0.60
 *   max_attempts: 3
 *   on_fail: return_flagged   # or: error
 * ```
 */
import { ConfigError } from './errors.js';

/** Margins the planet must keep free, each a fraction of the image's width (left, right) or height (top, bottom). */
export interface PlanetRegion {
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
}

/** What happens when the last attempt still fails: return the image flagged, or fail its request. */
export type QcOnFail = 'return_flagged' | 'error';

/** Compiled quality-gate options (frozen). */
export interface QcOptions {
  /** Index of the pipeline stage whose output is checked (0: right after generation). */
  readonly afterStage: number;
  readonly planetRegion: PlanetRegion;
  /** Smallest accepted planet, as a fraction of the image area (the planet's bounding box). */
  readonly minAreaFraction: number;
  /** Largest accepted planet, as a fraction of the image area (the planet's bounding box). */
  readonly maxAreaFraction: number;
  /** Generations per image, the first included (1: no re-roll). */
  readonly maxAttempts: number;
  readonly onFail: QcOnFail;
}

/** The example values, used for keys the config leaves out. */
export const DEFAULT_QC_OPTIONS: QcOptions = Object.freeze({
  afterStage: 0,
  planetRegion: Object.freeze({ left: 0.08, right: 0.08, top: 0.06, bottom: 0.06 }),
  minAreaFraction: 0.02,
  maxAreaFraction: 0.6,
  maxAttempts: 3,
  onFail: 'return_flagged' as const,
});

const QC_KEYS = ['after_stage', 'planet_region', 'min_area', 'max_area', 'max_attempts', 'on_fail'] as const;
const REGION_KEYS = ['left', 'right', 'top', 'bottom'] as const;

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkKeys(obj: Obj, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new ConfigError(`${path}.${k}`, `unknown key (allowed: ${allowed.join(', ')})`);
  }
}

/** A fraction in [0, max) (margins and areas are parts of the image). */
function fraction(obj: Obj, key: string, path: string, def: number, max: number, maxInclusive: boolean): number {
  const v = obj[key];
  if (v === undefined) return def;
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= 0 && (maxInclusive ? v <= max : v < max);
  if (!ok) throw new ConfigError(`${path}.${key}`, `must be a fraction in [0, ${max}${maxInclusive ? ']' : ')'}, got ${JSON.stringify(v)}`);
  return v;
}

function integer(obj: Obj, key: string, path: string, def: number, min: number, max: number): number {
  const v = obj[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${path}.${key}`, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function compileRegion(raw: unknown, path: string): PlanetRegion {
  if (raw === undefined) return DEFAULT_QC_OPTIONS.planetRegion;
  if (!isObj(raw)) throw new ConfigError(path, 'must be a mapping with left, right, top, bottom (fractions)');
  checkKeys(raw, REGION_KEYS, path);
  const d = DEFAULT_QC_OPTIONS.planetRegion;
  const region = {
    left: fraction(raw, 'left', path, d.left, 0.5, false),
    right: fraction(raw, 'right', path, d.right, 0.5, false),
    top: fraction(raw, 'top', path, d.top, 0.5, false),
    bottom: fraction(raw, 'bottom', path, d.bottom, 0.5, false),
  };
  // The margins together must leave some region: otherwise every image would fail.
  if (region.left + region.right >= 1) throw new ConfigError(`${path}.right`, `left + right must be < 1, got ${region.left} + ${region.right}`);
  if (region.top + region.bottom >= 1) throw new ConfigError(`${path}.bottom`, `top + bottom must be < 1, got ${region.top} + ${region.bottom}`);
  return Object.freeze(region);
}

/**
 * Validates a pipeline's raw `qc` mapping (parsed YAML), fills defaults and freezes it.
 * `path` names the mapping in messages, e.g. `pipelines.planet-ultrawide.qc`.
 * Throws ConfigError whose `key` is the offending key's full path.
 */
export function compileQcOptions(raw: unknown, path: string): QcOptions {
  if (raw === undefined || raw === null) return DEFAULT_QC_OPTIONS;
  if (!isObj(raw)) throw new ConfigError(path, 'must be a mapping');
  checkKeys(raw, QC_KEYS, path);
  const d = DEFAULT_QC_OPTIONS;
  const afterStage = integer(raw, 'after_stage', path, d.afterStage, 0, 63);
  const planetRegion = compileRegion(raw.planet_region, `${path}.planet_region`);
  const minAreaFraction = fraction(raw, 'min_area', path, d.minAreaFraction, 1, true);
  const maxAreaFraction = fraction(raw, 'max_area', path, raw.min_area !== undefined && raw.max_area === undefined ? Math.max(d.maxAreaFraction, minAreaFraction) : d.maxAreaFraction, 1, true);
  if (maxAreaFraction <= minAreaFraction) throw new ConfigError(`${path}.max_area`, `must be > min_area (${minAreaFraction}), got ${maxAreaFraction}`);
  const maxAttempts = integer(raw, 'max_attempts', path, d.maxAttempts, 1, 100);
  const onFail = raw.on_fail === undefined ? d.onFail : raw.on_fail;
  if (onFail !== 'return_flagged' && onFail !== 'error') throw new ConfigError(`${path}.on_fail`, `must be return_flagged or error, got ${JSON.stringify(onFail)}`);
  return Object.freeze({ afterStage, planetRegion, minAreaFraction, maxAreaFraction, maxAttempts, onFail });
}
