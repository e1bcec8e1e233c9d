/**
 * Validation at the edge: a decoded GenerateRequest becomes a NormalizedRequest or an
 * InvalidArgumentError naming the field. Pure (randomness for unset seeds is injected), so
 * every rule is unit-tested without a server. Model and pipeline existence are checked by the
 * planner, which knows the cluster config.
 */
import { InvalidArgumentError } from '../common/errors.js';
import { ModelIdError, parseModelId } from '../common/model-id.js';
import { nearestBucket, parseAspect, type Size } from './geometry.js';
import { buildPlanetPrompt, type PlanetPrompt } from './planet-prompt.js';

/** The request as proto-loader decodes it (longs as strings, enums as strings, defaults filled). */
export interface GenerateRequestWire {
  model_id?: string;
  prompt?: string;
  planet?: PlanetPrompt | null;
  prompt_source?: string;
  negative_prompt?: string;
  seed?: string | number | null;
  num_images?: number;
  steps?: number;
  guidance_scale?: number | null;
  width?: number;
  height?: number;
  aspect?: string;
  pipeline?: string;
  strength?: number | null;
  init_image?: Uint8Array | Buffer;
  output_format?: string;
  timeout_ms?: number;
  request_id?: string;
}

export type OutputFormat = 'png' | 'webp' | 'jpeg';

export interface NormalizedRequest {
  readonly requestId: string;
  /** '' means: the pipeline's default. */
  readonly modelId: string;
  readonly prompt: string;
  readonly negativePrompt: string;
  /** Seed of image 0; image i uses seed + i (mod 2^64). */
  readonly seed: bigint;
  readonly numImages: number;
  /** 0 means: the deployment's default. */
  readonly steps: number;
  /** undefined means: the deployment's default. */
  readonly guidanceScale: number | undefined;
  /** The size asked for: explicit width/height, the SDXL bucket of `aspect`, or the default. */
  readonly size: Size;
  /** How `size` was chosen; a pipeline with its own default size reads this (pipeline-runner.ts). */
  readonly sizeFrom: 'explicit' | 'aspect' | 'default';
  /** W/H of `aspect`, when given. */
  readonly aspectRatio?: number;
  /** '' means: the cluster's default pipeline. */
  readonly pipeline: string;
  readonly strength: number;
  readonly initImage?: Uint8Array;
  readonly outputFormat: OutputFormat;
  /** 0 means: none. */
  readonly timeoutMs: number;
}

export const LIMITS = Object.freeze({
  maxPromptChars: 2000,
  maxPlanetSlotChars: 200,
  maxPlanetExtras: 16,
  maxNumImages: 16,
  maxSteps: 200,
  maxGuidanceScale: 50,
  minSide: 64,
  maxSide: 8192,
  maxInitImageBytes: 64 * 1024 * 1024,
  maxTimeoutMs: 24 * 3600 * 1000,
});

/** Default size when a request names neither width/height nor aspect: SDXL's square bucket. */
export const DEFAULT_SIZE: Size = Object.freeze({ width: 1024, height: 1024 });

/** img2img strength when a request leaves it unset (diffusers' SDXL img2img default). */
export const DEFAULT_STRENGTH = 0.3;

/** The model id grammar is shared with the replicas (services/common/model-id.ts). */
export { MODEL_ID } from '../common/model-id.js';
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const PIPELINE = /^[a-z][a-z0-9-]{0,62}$/;
const U64_MAX = (1n << 64n) - 1n;
/** The longest id the grammar admits: base (64) + `+` lora (64) + `@` variant (32). */
const MAX_MODEL_ID_CHARS = 64 + 1 + 64 + 1 + 32;

function imageKind(bytes: Uint8Array): string | undefined {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && String.fromCharCode(...b.subarray(0, 4)) === 'RIFF' && String.fromCharCode(...b.subarray(8, 12)) === 'WEBP') return 'webp';
  return undefined;
}

/**
 * A client's value quoted for an error message: at most 80 characters, control characters
 * escaped. An echoed value must stay small: a status message of ~100 KB does not fit gRPC's
 * trailers, and the caller would wait for its deadline instead of getting the answer.
 */
function shown(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(cut).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function checkText(field: string, value: string | undefined, max: number): string {
  const v = value ?? '';
  if (v.length > max) throw new InvalidArgumentError(field, `is ${v.length} characters; at most ${max}`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(v)) throw new InvalidArgumentError(field, 'contains control characters');
  return v;
}

function resolveSize(req: GenerateRequestWire): Size {
  const w = req.width ?? 0;
  const h = req.height ?? 0;
  const aspect = (req.aspect ?? '').trim();
  if (aspect) {
    if (w || h) throw new InvalidArgumentError(w ? 'width' : 'height', 'give either aspect or width/height, not both');
    const ratio = parseAspect(aspect);
    if (ratio === undefined) throw new InvalidArgumentError('aspect', `${shown(aspect)} is not W:H with positive integers (e.g. "21:9")`);
    if (ratio > 8 || ratio < 1 / 8) throw new InvalidArgumentError('aspect', `ratio ${aspect} is outside 1:8..8:1`);
    return nearestBucket(ratio);
  }
  if (!w && !h) return DEFAULT_SIZE;
  if (!w) throw new InvalidArgumentError('width', 'is required when height is set');
  if (!h) throw new InvalidArgumentError('height', 'is required when width is set');
  for (const [field, v] of [['width', w], ['height', h]] as const) {
    if (v % 8 !== 0) throw new InvalidArgumentError(field, `${v} is not a multiple of 8 (the latent grid)`);
    if (v < LIMITS.minSide || v > LIMITS.maxSide) throw new InvalidArgumentError(field, `${v} is outside [${LIMITS.minSide}, ${LIMITS.maxSide}]`);
  }
  return { width: w, height: h };
}

function resolveSeed(req: GenerateRequestWire, randomSeed: () => bigint): bigint {
  const raw = req.seed;
  if (raw === undefined || raw === null) return randomSeed() & U64_MAX;
  let seed: bigint;
  try {
    seed = BigInt(raw);
  } catch {
    throw new InvalidArgumentError('seed', `"${raw}" is not an unsigned 64-bit integer`);
  }
  if (seed < 0n || seed > U64_MAX) throw new InvalidArgumentError('seed', 'must fit in 64 bits');
  return seed;
}

function resolveModelId(req: GenerateRequestWire): string {
  const modelId = (req.model_id ?? '').trim();
  if (!modelId) return '';
  // Checked before the grammar, whose message quotes the whole id.
  if (modelId.length > MAX_MODEL_ID_CHARS) throw new InvalidArgumentError('model_id', `${shown(modelId)} is ${modelId.length} characters; at most ${MAX_MODEL_ID_CHARS}`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(modelId)) throw new InvalidArgumentError('model_id', `${shown(modelId)} contains control characters`);
  try {
    parseModelId(modelId);
  } catch (err) {
    if (err instanceof ModelIdError) throw new InvalidArgumentError('model_id', err.message);
    throw err;
  }
  return modelId;
}

/** The prompt text: the planet attributes built in their fixed order, or the free-text prompt. */
function resolvePrompt(req: GenerateRequestWire): string {
  if (req.planet && req.prompt_source !== 'prompt') {
    const p = req.planet;
    for (const slot of ['color', 'atmosphere', 'moons', 'sky'] as const) checkText(`planet.${slot}`, p[slot], LIMITS.maxPlanetSlotChars);
    const extras = p.extras ?? [];
    if (extras.length > LIMITS.maxPlanetExtras) throw new InvalidArgumentError('planet.extras', `has ${extras.length} entries; at most ${LIMITS.maxPlanetExtras}`);
    extras.forEach((e, i) => checkText(`planet.extras[${i}]`, e, LIMITS.maxPlanetSlotChars));
    const prompt = buildPlanetPrompt(p);
    if (!prompt) throw new InvalidArgumentError('planet', 'every slot is empty; set at least color');
    return prompt;
  }
  const prompt = checkText('prompt', req.prompt, LIMITS.maxPromptChars).trim();
  if (!prompt) throw new InvalidArgumentError('prompt', 'is required (or give planet attributes)');
  return prompt;
}

/** num_images, steps and guidance_scale: counts within the limits (0 / unset: the defaults). */
function resolveCounts(req: GenerateRequestWire): { numImages: number; steps: number; guidanceScale: number | undefined } {
  const numImages = req.num_images || 1;
  if (numImages > LIMITS.maxNumImages) throw new InvalidArgumentError('num_images', `${numImages} is more than ${LIMITS.maxNumImages}`);
  const steps = req.steps ?? 0;
  if (steps > LIMITS.maxSteps) throw new InvalidArgumentError('steps', `${steps} is more than ${LIMITS.maxSteps}`);
  const guidanceScale = req.guidance_scale ?? undefined;
  if (guidanceScale !== undefined && (!Number.isFinite(guidanceScale) || guidanceScale < 0 || guidanceScale > LIMITS.maxGuidanceScale)) {
    throw new InvalidArgumentError('guidance_scale', `${guidanceScale} is outside [0, ${LIMITS.maxGuidanceScale}]`);
  }
  return { numImages, steps, guidanceScale };
}

/** The img2img input (a view of the request's bytes, not a copy) and its strength. */
function resolveImageInput(req: GenerateRequestWire): { initImage?: Uint8Array; strength: number } {
  const initImage = req.init_image && req.init_image.length > 0 ? new Uint8Array(req.init_image.buffer, req.init_image.byteOffset, req.init_image.byteLength) : undefined;
  if (initImage) {
    if (initImage.byteLength > LIMITS.maxInitImageBytes) throw new InvalidArgumentError('init_image', `is ${initImage.byteLength} bytes; at most ${LIMITS.maxInitImageBytes}`);
    if (!imageKind(initImage)) throw new InvalidArgumentError('init_image', 'is not a PNG, JPEG or WebP image');
  }
  const strength = req.strength ?? DEFAULT_STRENGTH;
  if (!Number.isFinite(strength) || strength < 0 || strength > 1) throw new InvalidArgumentError('strength', `${strength} is outside [0, 1]`);
  return { ...(initImage ? { initImage } : {}), strength };
}

function resolveOutputFormat(req: GenerateRequestWire): OutputFormat {
  const fmt = (req.output_format ?? 'OUTPUT_FORMAT_UNSPECIFIED').toString();
  const outputFormat = ({ OUTPUT_FORMAT_UNSPECIFIED: 'png', PNG: 'png', WEBP: 'webp', JPEG: 'jpeg' } as Record<string, OutputFormat>)[fmt];
  if (!outputFormat) throw new InvalidArgumentError('output_format', `unknown format ${fmt}`);
  return outputFormat;
}

/**
 * Validates and normalizes a request. Throws InvalidArgumentError naming the first bad field.
 * `newRequestId` and `randomSeed` are injected so the function stays pure.
 */
export function normalizeRequest(req: GenerateRequestWire, newRequestId: () => string, randomSeed: () => bigint): NormalizedRequest {
  const requestId = req.request_id ? req.request_id : newRequestId();
  if (!REQUEST_ID.test(requestId)) throw new InvalidArgumentError('request_id', 'must be 1-128 characters of letters, digits and ._:-');
  const modelId = resolveModelId(req);
  const prompt = resolvePrompt(req);
  const negativePrompt = checkText('negative_prompt', req.negative_prompt, LIMITS.maxPromptChars);
  const counts = resolveCounts(req);
  const size = resolveSize(req);
  const aspectRatio = (req.aspect ?? '').trim() ? parseAspect(req.aspect!) : undefined;
  const sizeFrom = aspectRatio !== undefined ? 'aspect' : req.width || req.height ? 'explicit' : 'default';
  const pipeline = (req.pipeline ?? '').trim();
  if (pipeline && !PIPELINE.test(pipeline)) throw new InvalidArgumentError('pipeline', `${shown(pipeline)} is not a pipeline name`);
  const image = resolveImageInput(req);
  const outputFormat = resolveOutputFormat(req);
  const timeoutMs = req.timeout_ms ?? 0;
  if (timeoutMs > LIMITS.maxTimeoutMs) throw new InvalidArgumentError('timeout_ms', `${timeoutMs} is more than 24 hours`);
  return {
    requestId, modelId, prompt, negativePrompt, seed: resolveSeed(req, randomSeed), ...counts, size, sizeFrom,
    ...(aspectRatio !== undefined ? { aspectRatio } : {}),
    pipeline, strength: image.strength, initImage: image.initImage, outputFormat, timeoutMs,
  };
}

/** Seed of image `index` of a request: seed + index, wrapping at 2^64. */
export function imageSeed(seed: bigint, index: number): bigint {
  return (seed + BigInt(index)) & U64_MAX;
}
