/**
 * YAML job files (`orrery jobs submit FILE.yaml`) → SubmitJob requests. Pure: text in, request out.
 *
 *   name: planets-21x9
 *   template: { pipeline: planet-ultrawide, aspect: "21:9", steps: 30, seed: 1000 }
 *   grid: { colors: [deep blue, violet], atmospheres: [swirling auroras], seeds_per_prompt: 2 }
 *   # or: items: [{ custom_id: a, prompt: "a red planet", seed: 7 }, ...]
 *
 * Keys are the proto's field names (snake_case). Every mistake is a JobFileError naming the key.
 */
import { YAMLParseError, parse as parseYaml } from 'yaml';
import { JobFileError } from './job-file-error.js';
import { at, customId, finiteNumber, mapping, oneOf, str, strList, uint32, uint64, type Where } from './job-spec-check.js';
import type { JobGridWire } from '../router/jobs/job-spec.js';

/** The fields of GenerateRequest a job template may set (SubmitJobRequest.template). */
export interface JobTemplate {
  pipeline?: string;
  model_id?: string;
  aspect?: string;
  width?: number;
  height?: number;
  steps?: number;
  guidance_scale?: number;
  strength?: number;
  negative_prompt?: string;
  /** A prompt every item shares unless it gives its own (then items may vary only the seed). */
  prompt?: string;
  planet?: PlanetSpec;
  output_format?: 'PNG' | 'WEBP' | 'JPEG';
  /** The job's base seed (uint64 as a decimal string). */
  seed?: string;
}

export interface PlanetSpec {
  color?: string;
  atmosphere?: string;
  moons?: string;
  sky?: string;
  extras?: string[];
}

/** One explicit item (JobItem). */
export interface JobItemSpec {
  custom_id: string;
  prompt?: string;
  planet?: PlanetSpec;
  seed?: string;
  negative_prompt?: string;
}

/** JobGrid, in the wire shape the router reads (services/router/jobs/job-spec.ts). */
export type JobGridSpec = JobGridWire;

/** Everything of a SubmitJobRequest that is not the items. */
export interface JobHeader {
  template: JobTemplate;
  output_uri?: string;
  name?: string;
  max_attempts?: number;
  job_key?: string;
  /** Seconds the job has to finish (0 / absent: the cluster's default window). */
  completion_window_s?: number;
  /** No completion window at all. */
  no_completion_window?: boolean;
}

/** A job file: the header, and a grid or explicit items (or neither, for a `--template` file). */
export interface JobFileSpec extends JobHeader {
  grid?: JobGridSpec;
  items?: JobItemSpec[];
}

const TOP_KEYS = ['name', 'template', 'grid', 'items', 'output_uri', 'max_attempts', 'job_key', 'completion_window_s', 'no_completion_window'] as const;
const TEMPLATE_KEYS = ['pipeline', 'model_id', 'aspect', 'width', 'height', 'steps', 'guidance_scale', 'strength', 'negative_prompt', 'prompt', 'planet', 'output_format', 'seed'] as const;
const GRID_KEYS = ['colors', 'atmospheres', 'moons', 'skies', 'extras', 'fixed_extras', 'seeds_per_prompt', 'sample', 'sample_seed'] as const;
const ITEM_KEYS = ['custom_id', 'prompt', 'planet', 'seed', 'negative_prompt'] as const;
const PLANET_KEYS = ['color', 'atmosphere', 'moons', 'sky', 'extras'] as const;
const FORMATS = ['PNG', 'WEBP', 'JPEG'] as const;

/** Parses YAML text; a syntax error becomes a JobFileError with the line. */
export function parseYamlText(text: string, file: string): unknown {
  try {
    return parseYaml(text);
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const line = err.linePos?.[0].line;
      throw new JobFileError(file, line ? `line ${line}` : '', `not valid YAML: ${err.message.split('\n')[0]}`, { cause: err });
    }
    throw err;
  }
}

/**
 * A YAML job file's text → its spec. With `itemsAllowed: false` (a `--template` file for a JSONL
 * submit) a grid or items in it is an error: the items come from the JSONL file.
 */
export function parseJobYaml(text: string, file: string, options: { itemsAllowed?: boolean } = {}): JobFileSpec {
  const doc = parseYamlText(text, file);
  const root: Where = { file, path: '' };
  if (doc === null || doc === undefined) throw new JobFileError(file, '', 'is empty; a job file needs template: and grid: or items:');
  const m = mapping(doc, root, TOP_KEYS);
  const spec: JobFileSpec = { template: m.template === undefined ? {} : checkTemplate(m.template, at(root, 'template')) };
  if (m.name !== undefined) spec.name = str(m.name, at(root, 'name'));
  if (m.output_uri !== undefined) spec.output_uri = str(m.output_uri, at(root, 'output_uri'));
  if (m.job_key !== undefined) spec.job_key = str(m.job_key, at(root, 'job_key'));
  if (m.max_attempts !== undefined) {
    spec.max_attempts = uint32(m.max_attempts, at(root, 'max_attempts'));
    if (spec.max_attempts < 1) throw new JobFileError(file, 'max_attempts', 'must be at least 1');
  }
  if (m.completion_window_s !== undefined) spec.completion_window_s = uint32(m.completion_window_s, at(root, 'completion_window_s'));
  if (m.no_completion_window !== undefined) {
    if (typeof m.no_completion_window !== 'boolean') throw new JobFileError(file, 'no_completion_window', `must be true or false, not ${JSON.stringify(m.no_completion_window)}`);
    spec.no_completion_window = m.no_completion_window;
  }
  const itemsAllowed = options.itemsAllowed ?? true;
  if (!itemsAllowed) {
    for (const key of ['grid', 'items'] as const) if (m[key] !== undefined) throw new JobFileError(file, key, 'not allowed in a --template file: the items come from the JSONL file');
    return spec;
  }
  if (m.grid !== undefined && m.items !== undefined) throw new JobFileError(file, '', 'has both grid: and items:; a job has one or the other');
  if (m.grid !== undefined) spec.grid = checkGrid(m.grid, at(root, 'grid'));
  else if (m.items !== undefined) spec.items = checkItems(m.items, at(root, 'items'), hasPrompt(spec.template));
  else throw new JobFileError(file, '', 'needs grid: (a grid over planet attributes) or items: (a list of explicit items)');
  return spec;
}

export function checkTemplate(v: unknown, w: Where): JobTemplate {
  const m = mapping(v, w, TEMPLATE_KEYS);
  const t: JobTemplate = {};
  for (const key of ['pipeline', 'model_id', 'aspect', 'negative_prompt', 'prompt'] as const) if (m[key] !== undefined) t[key] = str(m[key], at(w, key));
  if (m.planet !== undefined) t.planet = checkPlanet(m.planet, at(w, 'planet'));
  if (t.prompt !== undefined && t.planet !== undefined) throw new JobFileError(w.file, w.path, 'has both prompt and planet; give one');
  for (const key of ['width', 'height', 'steps'] as const) if (m[key] !== undefined) t[key] = uint32(m[key], at(w, key));
  for (const key of ['guidance_scale', 'strength'] as const) if (m[key] !== undefined) t[key] = finiteNumber(m[key], at(w, key));
  if (m.output_format !== undefined) t.output_format = oneOf(m.output_format, at(w, 'output_format'), FORMATS);
  if (m.seed !== undefined) t.seed = uint64(m.seed, at(w, 'seed'));
  if ((t.width === undefined) !== (t.height === undefined)) throw new JobFileError(w.file, at(w, t.width === undefined ? 'width' : 'height').path, 'width and height go together (or use aspect)');
  return t;
}

export function checkGrid(v: unknown, w: Where): JobGridSpec {
  const m = mapping(v, w, GRID_KEYS);
  const g: JobGridSpec = {};
  for (const key of ['colors', 'atmospheres', 'moons', 'skies', 'extras', 'fixed_extras'] as const) if (m[key] !== undefined) g[key] = strList(m[key], at(w, key));
  if (m.seeds_per_prompt !== undefined) g.seeds_per_prompt = uint32(m.seeds_per_prompt, at(w, 'seeds_per_prompt'));
  if (m.sample !== undefined) g.sample = uint64(m.sample, at(w, 'sample'));
  if (m.sample_seed !== undefined) g.sample_seed = uint64(m.sample_seed, at(w, 'sample_seed'));
  if (gridItemCount(g) === 0n) throw new JobFileError(w.file, w.path, 'has no axis values: give at least one of colors, atmospheres, moons, skies, extras');
  return g;
}

/**
 * One explicit item, from a YAML `items:` entry or a JSONL line. It needs its own prompt or planet
 * unless `promptOptional` (the template has one).
 */
export function checkItem(v: unknown, w: Where, promptOptional = false): JobItemSpec {
  const m = mapping(v, w, ITEM_KEYS);
  if (m.custom_id === undefined) throw new JobFileError(w.file, at(w, 'custom_id').path, 'is required (it names the output file)');
  const item: JobItemSpec = { custom_id: customId(m.custom_id, at(w, 'custom_id')) };
  if (m.prompt !== undefined && m.planet !== undefined) throw new JobFileError(w.file, w.path, 'has both prompt and planet; give one');
  if (m.prompt !== undefined) item.prompt = str(m.prompt, at(w, 'prompt'));
  else if (m.planet !== undefined) item.planet = checkPlanet(m.planet, at(w, 'planet'));
  else if (!promptOptional) throw new JobFileError(w.file, w.path, 'needs prompt (text) or planet (color, atmosphere, moons, sky, extras), or the template needs one');
  if (m.seed !== undefined) item.seed = uint64(m.seed, at(w, 'seed'));
  if (m.negative_prompt !== undefined) item.negative_prompt = str(m.negative_prompt, at(w, 'negative_prompt'));
  return item;
}

function checkPlanet(v: unknown, w: Where): PlanetSpec {
  const m = mapping(v, w, PLANET_KEYS);
  const p: PlanetSpec = {};
  for (const key of ['color', 'atmosphere', 'moons', 'sky'] as const) if (m[key] !== undefined) p[key] = str(m[key], at(w, key));
  if (m.extras !== undefined) p.extras = strList(m.extras, at(w, 'extras'));
  return p;
}

/** Whether a template gives every item a prompt. */
export const hasPrompt = (t: JobTemplate): boolean => t.prompt !== undefined || t.planet !== undefined;

function checkItems(v: unknown, w: Where, promptOptional: boolean): JobItemSpec[] {
  if (!Array.isArray(v)) throw new JobFileError(w.file, w.path, 'must be a list of items ({custom_id, prompt | planet, seed, negative_prompt})');
  if (v.length === 0) throw new JobFileError(w.file, w.path, 'is empty');
  const items = v.map((x, i) => checkItem(x, at(w, i), promptOptional));
  const seen = new Map<string, number>();
  for (const [i, item] of items.entries()) {
    const first = seen.get(item.custom_id);
    if (first !== undefined) throw new JobFileError(w.file, `${w.path}[${i}].custom_id`, `"${item.custom_id}" is already the id of ${w.path}[${first}]`);
    seen.set(item.custom_id, i);
  }
  return items;
}

/**
 * How many items a grid makes: the product of its non-empty axes (extras counts only when given)
 * times seeds_per_prompt, or sample × seeds_per_prompt when sampling fewer combinations.
 * 0 when every prompt axis is empty.
 */
export function gridItemCount(g: JobGridSpec): bigint {
  const axes = [g.colors, g.atmospheres, g.moons, g.skies, g.extras];
  if (axes.every((a) => !a || a.length === 0)) return 0n;
  let combos = 1n;
  for (const a of axes) if (a && a.length > 0) combos *= BigInt(a.length);
  const sample = BigInt(g.sample ?? '0');
  if (sample > 0n && sample < combos) combos = sample;
  return combos * BigInt(g.seeds_per_prompt || 1);
}

/** The axis sizes of a grid, for people: "6 colors × 5 atmospheres × 4 moons × 4 skies × 2 seeds". */
export function describeGrid(g: JobGridSpec): string {
  const parts: string[] = [];
  for (const [key, label] of [['colors', 'colors'], ['atmospheres', 'atmospheres'], ['moons', 'moons'], ['skies', 'skies'], ['extras', 'extras']] as const) {
    const n = g[key]?.length ?? 0;
    if (n > 0) parts.push(`${n} ${label}`);
  }
  parts.push(`${g.seeds_per_prompt || 1} seed${(g.seeds_per_prompt || 1) === 1 ? '' : 's'}`);
  const sample = BigInt(g.sample ?? '0');
  return `${parts.join(' × ')}${sample > 0n ? ` (a sample of ${sample} combinations)` : ''}`;
}

/** `base` with `over`'s fields laid on top (flags over a file's template). */
export function mergeTemplate(base: JobTemplate, over: JobTemplate): JobTemplate {
  const out: JobTemplate = { ...base };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  // A size given on top replaces the other way of giving one.
  const overSize = over.width !== undefined || over.height !== undefined;
  if (overSize && over.aspect === undefined) delete out.aspect;
  if (over.aspect !== undefined && !overSize) {
    delete out.width;
    delete out.height;
  }
  return out;
}

/** The SubmitJob request (proto-loader field names) for a header and a grid or items. */
export function submitRequest(header: JobHeader, source: { grid?: JobGridSpec; items?: JobItemSpec[]; itemsFollow?: boolean }): Record<string, unknown> {
  const req: Record<string, unknown> = {
    template: { ...header.template },
    output_uri: header.output_uri ?? '',
    name: header.name ?? '',
    max_attempts: header.max_attempts ?? 0,
    job_key: header.job_key ?? '',
    items_follow: source.itemsFollow ?? false,
  };
  if (header.completion_window_s !== undefined) req.completion_window_s = header.completion_window_s;
  if (header.no_completion_window !== undefined) req.no_completion_window = header.no_completion_window;
  if (source.grid) req.grid = source.grid;
  else if (source.items) req.items = { items: source.items };
  return req;
}
