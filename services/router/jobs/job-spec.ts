/**
 * SubmitJobRequest → JobSpec (pure). Validates the template with the same rules as Generate
 * (messages prefixed `template.`), each explicit item (`items[3].prompt: …`), the grid's size
 * against jobs.max_job_items, and plans the pipeline (NOT_FOUND for unknown pipelines or models).
 * The spec is what a job record stores: JSON, bigints as decimal strings, so any router can
 * rebuild every item's request from it.
 */
import type { ClusterConfig } from '../../common/config.js';
import { InvalidArgumentError, type OrreryError } from '../../common/errors.js';
import { planPipeline, targetSize } from '../pipeline-runner.js';
import type { PlanetPrompt } from '../planet-prompt.js';
import { LIMITS, normalizeRequest, type GenerateRequestWire, type NormalizedRequest } from '../request-validation.js';
import { deriveSeed, describeGridSize, gridSize, LazyGrid, type GridSpec } from './grid.js';

/** A JobItem as proto-loader decodes it. */
export interface JobItemWire {
  custom_id?: string;
  prompt?: string;
  planet?: PlanetPrompt | null;
  prompt_source?: string;
  seed?: string | number | null;
  negative_prompt?: string | null;
}

export interface JobGridWire {
  colors?: string[];
  atmospheres?: string[];
  moons?: string[];
  skies?: string[];
  extras?: string[];
  fixed_extras?: string[];
  seeds_per_prompt?: number;
  sample?: string | number;
  sample_seed?: string | number;
}

export interface SubmitJobWire {
  requests?: unknown[];
  output_uri?: string;
  template?: GenerateRequestWire | null;
  grid?: JobGridWire | null;
  items?: { items?: JobItemWire[] } | null;
  items_source?: string;
  job_key?: string;
  name?: string;
  max_attempts?: number;
  items_follow?: boolean;
  completion_window_s?: string | number;
  no_completion_window?: boolean;
}

/** An explicit item as stored (definition key in the items bucket). */
export interface ItemDef {
  readonly customId: string;
  readonly prompt?: string;
  readonly planet?: PlanetPrompt;
  /** Decimal u64; absent: derived from the job seed and the position. */
  readonly seed?: string;
  readonly negativePrompt?: string;
}

export interface JobSpec {
  /** The template as sent (seed filled in with the job's base seed), re-normalized per item. */
  readonly template: GenerateRequestWire;
  readonly pipeline: string;
  readonly modelId: string;
  /** Decimal u64: the job's base seed (recorded so items' seeds are reproducible). */
  readonly seed: string;
  readonly ext: string;
  readonly width: number;
  readonly height: number;
  readonly grid?: GridSpec;
  readonly maxAttempts: number;
  /** How long the job (and each RetryJob run of it) has to finish before it expires; 0 or absent (older specs): no window. */
  readonly completionWindowMs?: number;
}

/** One item's request inputs, from the grid or an explicit definition. */
export interface ItemSource {
  readonly customId: string;
  readonly prompt?: string;
  readonly planet?: PlanetPrompt;
  readonly seed: bigint;
  readonly negativePrompt?: string;
}

/** Longest completion window a job may ask for: 366 days, in seconds. */
export const MAX_COMPLETION_WINDOW_S = 366 * 86_400;

const CUSTOM_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** Names the job itself writes beside the items' outputs. */
const RESERVED_IDS = new Set(['manifest', 'job', 'contact-sheet']);
const EXT: Record<string, string> = { png: 'png', webp: 'webp', jpeg: 'jpg' };

/** Re-throws an InvalidArgumentError with its field prefixed (`template.width`, `items[3].prompt`). */
function prefixed<T>(prefix: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`${prefix}${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
}

function checkSlot(field: string, v: string): void {
  if (v.length > LIMITS.maxPlanetSlotChars) throw new InvalidArgumentError(field, `is ${v.length} characters; at most ${LIMITS.maxPlanetSlotChars}`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(v)) throw new InvalidArgumentError(field, 'contains control characters');
}

function u64(field: string, raw: string | number | undefined | null, def: bigint): bigint {
  if (raw === undefined || raw === null || raw === '') return def;
  try {
    const v = BigInt(raw);
    if (v >= 0n && v < 1n << 64n) return v;
  } catch {
    /* fall through */
  }
  throw new InvalidArgumentError(field, `"${raw}" is not an unsigned 64-bit integer`);
}

function compileGrid(raw: JobGridWire, maxItems: number): GridSpec {
  const list = (name: keyof JobGridWire, field: string): string[] => {
    const v = ((raw[name] as string[] | undefined) ?? []).map((s) => s.trim());
    v.forEach((s, i) => checkSlot(`grid.${field}[${i}]`, s));
    return v;
  };
  const grid: GridSpec = {
    colors: list('colors', 'colors'), atmospheres: list('atmospheres', 'atmospheres'), moons: list('moons', 'moons'), skies: list('skies', 'skies'),
    extras: list('extras', 'extras'), fixedExtras: list('fixed_extras', 'fixed_extras'),
    seedsPerPrompt: raw.seeds_per_prompt || 1,
    sample: Number(u64('grid.sample', raw.sample, 0n)),
    sampleSeed: u64('grid.sample_seed', raw.sample_seed, 0n).toString(),
  };
  if (grid.fixedExtras.length + 1 > LIMITS.maxPlanetExtras) throw new InvalidArgumentError('grid.fixed_extras', `has ${grid.fixedExtras.length} entries; at most ${LIMITS.maxPlanetExtras - 1}`);
  if ([grid.colors, grid.atmospheres, grid.moons, grid.skies, grid.extras].every((a) => a.length === 0)) {
    throw new InvalidArgumentError('grid', 'every axis is empty; give at least colors');
  }
  if (grid.seedsPerPrompt > 1_000_000) throw new InvalidArgumentError('grid.seeds_per_prompt', `${grid.seedsPerPrompt} is more than 1000000`);
  const size = gridSize(grid);
  if (!Number.isSafeInteger(size) || size > maxItems) throw new InvalidArgumentError('grid', `${describeGridSize(grid)}; more than jobs.max_job_items (${maxItems})`);
  return grid;
}

/**
 * Validates one explicit item (`items[i]` in messages) into its stored definition. The item's
 * request is normalized once here so its errors are Generate's, prefixed.
 */
export function compileItem(spec: JobSpec, item: JobItemWire, position: number): ItemDef {
  const field = `items[${position}]`;
  const customId = item.custom_id ?? '';
  if (!CUSTOM_ID.test(customId)) throw new InvalidArgumentError(`${field}.custom_id`, `"${customId.slice(0, 140)}" must be 1-128 letters, digits and ._- (not starting with .)`);
  if (RESERVED_IDS.has(customId)) throw new InvalidArgumentError(`${field}.custom_id`, `"${customId}" is reserved for the job's own files`);
  const usePlanet = !!item.planet && item.prompt_source !== 'prompt';
  const def: ItemDef = {
    customId,
    ...(usePlanet ? { planet: item.planet! } : item.prompt ? { prompt: item.prompt } : {}),
    ...(item.seed !== undefined && item.seed !== null ? { seed: u64(`${field}.seed`, item.seed, 0n).toString() } : {}),
    ...(item.negative_prompt !== undefined && item.negative_prompt !== null ? { negativePrompt: item.negative_prompt } : {}),
  };
  prefixed(`${field}.`, () => itemRequest(spec, 'validate', position, sourceOfDef(spec, def, position)));
  return def;
}

/** Rejects a duplicate custom_id inside one list of definitions, naming both positions. */
export function checkUniqueIds(defs: readonly ItemDef[], firstPosition: number): void {
  const seen = new Map<string, number>();
  defs.forEach((d, i) => {
    const prev = seen.get(d.customId);
    if (prev !== undefined) throw new InvalidArgumentError(`items[${firstPosition + i}].custom_id`, `"${d.customId}" duplicates items[${firstPosition + prev}].custom_id`);
    seen.set(d.customId, i);
  });
}

/** An explicit item's request inputs. */
export function sourceOfDef(spec: JobSpec, def: ItemDef, index: number): ItemSource {
  return {
    customId: def.customId,
    ...(def.planet ? { planet: def.planet } : {}),
    ...(def.prompt ? { prompt: def.prompt } : {}),
    ...(def.negativePrompt !== undefined ? { negativePrompt: def.negativePrompt } : {}),
    seed: def.seed !== undefined ? BigInt(def.seed) : deriveSeed(BigInt(spec.seed), [index]),
  };
}

/** A grid item's request inputs. */
export function sourceOfGrid(grid: LazyGrid, index: number): ItemSource {
  const it = grid.item(index);
  return { customId: it.customId, planet: it.planet, seed: it.seed };
}

/** The normalized request of one item: the template with the item's prompt, seed and negative prompt. */
export function itemRequest(spec: JobSpec, jobId: string, index: number, src: ItemSource): NormalizedRequest {
  const t = spec.template;
  const req: GenerateRequestWire = {
    ...t,
    seed: src.seed.toString(),
    num_images: 1,
    request_id: `${jobId}-${index}`,
    ...(src.negativePrompt !== undefined ? { negative_prompt: src.negativePrompt } : {}),
    ...(src.planet ? { planet: src.planet, prompt_source: 'planet', prompt: '' } : src.prompt ? { prompt: src.prompt, prompt_source: 'prompt', planet: null } : {}),
  };
  return normalizeRequest(req, () => req.request_id!, () => 0n);
}

export interface CompiledSubmit {
  readonly spec: JobSpec;
  /** Items sent with the submit (explicit items only), validated. */
  readonly items: ItemDef[];
  /** Grid size, or the number of items sent so far. */
  readonly total: number;
  readonly itemsFollow: boolean;
}

/**
 * The job's completion window in ms (0: none): `completion_window_s` when set, none with
 * `no_completion_window`, else the cluster's `jobs.default_completion_window_h`.
 */
export function completionWindowMs(config: ClusterConfig, raw: Pick<SubmitJobWire, 'completion_window_s' | 'no_completion_window'>): number {
  const s = u64('completion_window_s', raw.completion_window_s, 0n);
  if (raw.no_completion_window) {
    if (s > 0n) throw new InvalidArgumentError('completion_window_s', `${s} cannot be set together with no_completion_window`);
    return 0;
  }
  if (s > BigInt(MAX_COMPLETION_WINDOW_S)) throw new InvalidArgumentError('completion_window_s', `${s} is more than ${MAX_COMPLETION_WINDOW_S} (366 days); set no_completion_window for a job without one`);
  return s > 0n ? Number(s) * 1000 : config.jobs.defaultCompletionWindowMs;
}

/**
 * Validates a SubmitJobRequest. `randomSeed` gives the job's base seed when the template has none
 * (recorded in the spec). Throws InvalidArgumentError / NOT_FOUND errors naming the field.
 */
export function compileSubmit(config: ClusterConfig, raw: SubmitJobWire, randomSeed: () => bigint): CompiledSubmit {
  if ((raw.requests ?? []).length > 0) throw new InvalidArgumentError('requests', 'is not supported; give template and grid or items');
  const t: GenerateRequestWire = { ...(raw.template ?? {}) };
  if ((t.num_images ?? 0) > 1) throw new InvalidArgumentError('template.num_images', 'must be 0 or 1: each job item is one image');
  if (t.init_image && t.init_image.length > 0) throw new InvalidArgumentError('template.init_image', 'is not supported in jobs');
  const seed = u64('template.seed', t.seed, randomSeed());
  t.seed = seed.toString();
  delete t.init_image;
  delete t.timeout_ms;
  // The template may leave the prompt to the items; validate it with a stand-in prompt then.
  const hasPrompt = !!(t.prompt || t.planet);
  const normalized = prefixed('template.', () => normalizeRequest(hasPrompt ? t : { ...t, prompt: 'x', prompt_source: 'prompt' }, () => 'validate', () => seed));
  const { pipeline, stages } = planPipeline(config, normalized);
  // What the job's images are: the final stage's size and the model the request names (or the
  // first stage's default), as the manifest and ListJobItems report them.
  const finalSize = targetSize(pipeline, normalized);
  const maxAttempts = raw.max_attempts || config.jobs.maxAttempts;
  if (maxAttempts > 100) throw new InvalidArgumentError('max_attempts', `${maxAttempts} is more than 100`);
  const source = raw.items_source ?? (raw.grid ? 'grid' : raw.items ? 'items' : '');
  const base = {
    template: t, pipeline: pipeline.name, modelId: normalized.modelId || (stages[0]?.modelId ?? ''), seed: seed.toString(), ext: EXT[normalized.outputFormat]!,
    width: finalSize.width, height: finalSize.height, maxAttempts, completionWindowMs: completionWindowMs(config, raw),
  };
  if (source === 'grid') {
    if (raw.items_follow) throw new InvalidArgumentError('items_follow', 'only jobs of explicit items can have items follow');
    const grid = compileGrid(raw.grid ?? {}, config.jobs.maxJobItems);
    const spec: JobSpec = { ...base, grid };
    // Item 0 through the full validation: a template that only fails with a grid prompt fails now.
    prefixed('grid.', () => itemRequest(spec, 'validate', 0, sourceOfGrid(new LazyGrid(grid, seed), 0)));
    return { spec, items: [], total: gridSize(grid), itemsFollow: false };
  }
  const spec: JobSpec = base;
  const wires = raw.items?.items ?? [];
  if (source !== 'items' && !raw.items_follow) throw new InvalidArgumentError('grid', 'give a grid or items (or items_follow with AddJobItems)');
  if (wires.length > config.jobs.maxJobItems) throw new InvalidArgumentError('items', `has ${wires.length} items; more than jobs.max_job_items (${config.jobs.maxJobItems})`);
  const items = wires.map((w, i) => compileItem(spec, w, i));
  checkUniqueIds(items, 0);
  if (items.length === 0 && !raw.items_follow) throw new InvalidArgumentError('items', 'is empty');
  return { spec, items, total: items.length, itemsFollow: !!raw.items_follow };
}

/**
 * True for errors that no retry can fix (the item fails at once). A failed quality gate is one:
 * its re-rolls already ran, and a retry would run the same seeds again.
 */
export function isPermanent(err: OrreryError): boolean {
  return ['ORRERY_ERR_INVALID_ARGUMENT', 'ORRERY_ERR_MODEL_NOT_FOUND', 'ORRERY_ERR_PIPELINE_NOT_FOUND', 'ORRERY_ERR_QC_FAILED'].includes(err.code);
}
