/**
 * An image's generation parameters as the text image tools read (AUTOMATIC1111's "infotext", also
 * parsed by ComfyUI readers, Civitai and exiftool users):
 *
 *   <prompt>
 *   Negative prompt: <negative>
 *   Steps: 30, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 2520x1080, Model: tiny-sdxl, …
 *
 * A pipeline's stages each add their own fields to the text of their input image, so the final
 * image carries the whole history: the generation, then `Upscaler`/`Upscale by` per upscale,
 * `Denoising strength` per img2img pass, then `QC` (when a quality gate has judged the image) and
 * `Pipeline` last. `Size` is always the image's own size; the size the first stage generated at
 * is kept as `First pass size` when a later stage changes it. Pure: no I/O.
 */

/** One `Key: value` field of the last line. Values are raw; quoting is done when formatting. */
export type ParameterField = readonly [key: string, value: string];

/** Parsed parameters text. */
export interface GenerationParameters {
  readonly prompt: string;
  readonly negativePrompt: string;
  readonly fields: readonly ParameterField[];
}

/** A stage's field: plain, or recorded again for every stage that writes it (`perStage`). */
export type StageField = ParameterField | { readonly field: ParameterField; readonly perStage: true };

/** What one stage adds to its image's history. */
export interface StageParameters {
  /** The request's prompt and negative prompt: used when the input has no history to continue. */
  readonly prompt: string;
  readonly negativePrompt: string;
  /**
   * The stage's fields, in order. A field whose key the history already has with the same value
   * is not repeated (the img2img pass of planet-ultrawide has the base pass's steps, sampler,
   * seed and model) unless it is `perStage`; otherwise it is added as `Key 2`, `Key 3`, ….
   */
  readonly fields: readonly StageField[];
  /**
   * The image's size after this stage: the value of `Size`, which sits where the stage's fields
   * put it (an entry `['Size', '']` places it) or else where the history had it, or last.
   */
  readonly width: number;
  readonly height: number;
  /** The request's pipeline name (`Pipeline:`, always last); empty: not written. */
  readonly pipeline: string;
}

/**
 * When a stage continues its input's history: `always` (an upscaler, which does not use the prompt:
 * like AUTOMATIC1111's "Extras", the input's parameters stay and the upscale is added), or
 * `same-generation` (img2img: only when the input was made from the same prompt, negative prompt
 * and seed — an earlier stage of the same request — else the stage starts a new history, as
 * AUTOMATIC1111's img2img does).
 */
export type HistoryPolicy = 'always' | 'same-generation';

/** The `QC` field: the quality gate's verdict (issue 13), e.g. `passed (attempt 2)`. */
export const QC_FIELD = 'QC';
const PIPELINE_FIELD = 'Pipeline';
const SIZE_FIELD = 'Size';
const FIRST_PASS_SIZE_FIELD = 'First pass size';
const NEGATIVE_PREFIX = 'Negative prompt:';

/** AUTOMATIC1111's `quote`: a value with `,`, `:` or a newline is written as a JSON string. */
function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

/** AUTOMATIC1111's field pattern (`re_param_code`): `Key: value` or `Key: "quoted, value"`. */
const FIELD_RE = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

/** The text: prompt, `Negative prompt:` line when there is a negative prompt, then the fields. */
export function formatParameters(p: GenerationParameters): string {
  const last = p.fields.map(([k, v]) => `${k}: ${quote(v)}`).join(', ');
  return [p.prompt, ...(p.negativePrompt ? [`${NEGATIVE_PREFIX} ${p.negativePrompt}`] : []), ...(last ? [last] : [])].join('\n');
}

/**
 * Parses parameters text as AUTOMATIC1111's `parse_generation_parameters` does: the last line is
 * the fields when it holds at least three `Key: value` pairs (else it belongs to the prompt); a
 * line starting `Negative prompt:` starts the negative prompt. Quoted values are unquoted.
 */
export function parseParameters(text: string): GenerationParameters {
  const lines = text.trim().split('\n');
  let fields: ParameterField[] = [];
  const last = lines.at(-1) ?? '';
  const matches = [...last.matchAll(FIELD_RE)].filter((m) => m[0].trim() !== '');
  if (lines.length > 0 && matches.length >= 3) {
    lines.pop();
    fields = matches.map((m): ParameterField => {
      const raw = m[2]!.trim();
      let value = raw;
      if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) {
        try {
          value = JSON.parse(raw) as string;
        } catch {
          value = raw;
        }
      }
      return [m[1]!.trim(), value];
    });
  }
  const prompt: string[] = [];
  const negative: string[] = [];
  let inNegative = false;
  for (const line of lines) {
    if (line.startsWith(NEGATIVE_PREFIX)) {
      inNegative = true;
      negative.push(line.slice(NEGATIVE_PREFIX.length).trim());
    } else {
      (inNegative ? negative : prompt).push(line);
    }
  }
  return { prompt: prompt.join('\n').trim(), negativePrompt: negative.join('\n'), fields };
}

const fieldValue = (fields: readonly ParameterField[], key: string): string | undefined => fields.find(([k]) => k === key)?.[1];

/** True when `history` was generated from this prompt, negative prompt and seed. */
function sameGeneration(history: GenerationParameters, stage: StageParameters): boolean {
  const seed = stage.fields.map((f) => ('field' in f ? f.field : f)).find(([k]) => k === 'Seed')?.[1];
  return history.prompt === stage.prompt.trim() && history.negativePrompt.trim() === stage.negativePrompt.trim()
    && (seed === undefined || fieldValue(history.fields, 'Seed') === seed);
}

/**
 * The parameters text of a stage's output: the stage's fields added to its input's history
 * (`inputText`, the input image's parameters; undefined when it has none), per `policy`.
 */
export function appendStageParameters(inputText: string | undefined, stage: StageParameters, policy: HistoryPolicy): string {
  const parsed = inputText === undefined ? undefined : parseParameters(inputText);
  const history = parsed && parsed.fields.length > 0 && (policy === 'always' || sameGeneration(parsed, stage)) ? parsed : undefined;
  const fields: ParameterField[] = (history?.fields ?? []).filter(([k]) => k !== PIPELINE_FIELD);
  const size = `${stage.width}x${stage.height}`;
  for (const entry of stage.fields) {
    const [key, value] = 'field' in entry ? entry.field : entry;
    const perStage = 'field' in entry;
    const existing = fieldValue(fields, key);
    if (key === SIZE_FIELD) {
      if (existing === undefined) fields.push([SIZE_FIELD, size]);
    } else if (existing === undefined) {
      fields.push([key, value]);
    } else if (perStage || existing !== value) {
      fields.push([freeKey(fields, key), value]);
    }
  }
  const sizeAt = fields.findIndex(([k]) => k === SIZE_FIELD);
  if (sizeAt < 0) {
    fields.push([SIZE_FIELD, size]);
  } else if (fields[sizeAt]![1] !== size) {
    if (fieldValue(fields, FIRST_PASS_SIZE_FIELD) === undefined) fields.splice(sizeAt + 1, 0, [FIRST_PASS_SIZE_FIELD, fields[sizeAt]![1]]);
    fields[sizeAt] = [SIZE_FIELD, size];
  }
  moveToEnd(fields, QC_FIELD);
  if (stage.pipeline) fields.push([PIPELINE_FIELD, stage.pipeline]);
  return formatParameters({
    prompt: history?.prompt ?? stage.prompt.trim(),
    negativePrompt: history?.negativePrompt ?? stage.negativePrompt,
    fields,
  });
}

/**
 * The hook for the quality gate (issue 13; not built yet): sets the `QC` field of a parameters text
 * (replacing an earlier verdict, e.g. of a failed attempt) just before `Pipeline`. Later stages keep
 * it there.
 */
export function withQcVerdict(text: string, verdict: string): string {
  const p = parseParameters(text);
  const fields = p.fields.filter(([k]) => k !== QC_FIELD);
  const at = fields.findIndex(([k]) => k === PIPELINE_FIELD);
  fields.splice(at < 0 ? fields.length : at, 0, [QC_FIELD, verdict]);
  return formatParameters({ ...p, fields });
}

/**
 * The shortest decimal that reads back as the same float32: the work item carries guidance scale
 * and strength as protobuf `float`, so the stage sees 0.30000001192092896 where the request said 0.3.
 */
export function float32Text(x: number): string {
  const f = Math.fround(x);
  for (let digits = 1; digits < 17; digits++) {
    const text = String(Number(f.toPrecision(digits)));
    if (Math.fround(Number(text)) === f) return text;
  }
  return String(f);
}

/** `key`, or `key 2`, `key 3`, … : the first not used yet. */
function freeKey(fields: readonly ParameterField[], key: string): string {
  for (let n = 2; ; n++) {
    const candidate = `${key} ${n}`;
    if (fieldValue(fields, candidate) === undefined) return candidate;
  }
}

function moveToEnd(fields: ParameterField[], key: string): void {
  const at = fields.findIndex(([k]) => k === key);
  if (at >= 0) fields.push(...fields.splice(at, 1));
}
