/**
 * Model ids and where they live in the model repository. The ONE definition of the id grammar:
 * the router validates requests with it and the replica resolves files with it, so nothing that
 * reaches the file system has not passed it.
 *
 * Grammar: `base`, `base+lora`, `base@variant` or `base+lora@variant`, where `base` and `lora` are
 * 1–64 lower-case letters, digits, `.`, `_`, `-` starting with a letter or digit (so never `.`, `..`,
 * a path separator or an absolute path), and `variant` is one of {@link MODEL_VARIANTS}.
 *
 * Repository layout (`repo` = the deployment's model repository):
 * - base bundle:          `<repo>/<base>/`                   (an Optimum SDXL export)
 * - variant bundle:       `<repo>/<base>@<variant>/`         (`orrery models quantize --model <base>`)
 * - fused variant bundle: `<repo>/<base>+<lora>@<variant>/`  (`orrery models quantize --model <base>+<lora>`:
 *                         the LoRA fused into the float weights, then converted)
 * - LoRA adapter:         `<repo>/loras/<lora>.safetensors`
 * `base+lora` has no folder of its own: its LoRA is fused into `<base>` at load (and so is
 * `base+lora@fp16`'s into `<base>@fp16` when there is no fused fp16 folder; model-files.ts decides).
 * The names in these folders passed the grammar, so `+` and `@` are their only non-name characters:
 * a folder name is one path segment, never `.` or `..`.
 *
 * Pure: no file-system access here (the callers check existence and report NOT_FOUND).
 */
import path from 'node:path';

/** Strict grammar for model ids (see the module comment). No path characters can pass it. */
export const MODEL_ID = /^[a-z0-9][a-z0-9._-]{0,63}(\+[a-z0-9][a-z0-9._-]{0,63})?(@[a-z0-9][a-z0-9_-]{0,31})?$/;

/**
 * Variants in the grammar. `fp16`: float16 weights (half the memory); `int8`: weight-only int8
 * MatMul weights (per-channel DequantizeLinear); `q4`: 4-bit weights (ONNX Runtime's com.microsoft
 * MatMulNBits). `fp32` is accepted by the grammar but never written: the fp32 model is the base
 * bundle itself, served by its id without a variant (model-files.ts says so when asked for one).
 */
export const MODEL_VARIANTS = ['fp32', 'fp16', 'int8', 'q4'] as const;
export type ModelVariant = (typeof MODEL_VARIANTS)[number];

export interface ParsedModelId {
  /** The id as given. */
  readonly id: string;
  readonly base: string;
  readonly lora?: string;
  readonly variant?: ModelVariant;
}

/** Why an id was refused; `reason` is a readable sentence for INVALID_ARGUMENT messages. */
export class ModelIdError extends Error {
  constructor(readonly modelId: string, readonly reason: string) {
    super(`"${modelId.slice(0, 80)}" is not a model id: ${reason}`);
    this.name = 'ModelIdError';
  }
}

const GRAMMAR_HINT = 'base, base+lora, base@variant or base+lora@variant; lower-case letters, digits, . _ -; at most 64 characters per name';

/** Parses `id` by the grammar; throws {@link ModelIdError} (never touches the file system). */
export function parseModelId(id: string): ParsedModelId {
  const m = MODEL_ID.exec(id);
  if (!m) throw new ModelIdError(id, `expected ${GRAMMAR_HINT}`);
  const at = id.indexOf('@');
  const head = at < 0 ? id : id.slice(0, at);
  const variant = at < 0 ? undefined : id.slice(at + 1);
  if (variant !== undefined && !(MODEL_VARIANTS as readonly string[]).includes(variant)) {
    throw new ModelIdError(id, `unknown variant "${variant}" (one of ${MODEL_VARIANTS.join(', ')})`);
  }
  const plus = head.indexOf('+');
  const base = plus < 0 ? head : head.slice(0, plus);
  const lora = plus < 0 ? undefined : head.slice(plus + 1);
  return Object.freeze({
    id, base, ...(lora !== undefined ? { lora } : {}), ...(variant !== undefined ? { variant: variant as ModelVariant } : {}),
  });
}

/**
 * The ONE mapping from an id to its bundle folder name: `<base>` for `base` and `base+lora` (whose
 * LoRA is fused at load), `<base>@<variant>`, and `<base>+<lora>@<variant>` (the LoRA already fused
 * in, written by `orrery models quantize --model <base>+<lora>`). Always one path segment.
 */
export function bundleFolderName(id: ParsedModelId): string {
  if (id.variant === undefined) return id.base;
  return id.lora === undefined ? `${id.base}@${id.variant}` : `${id.base}+${id.lora}@${id.variant}`;
}

/** The same id without its LoRA (`base+lora@fp16` → `base@fp16`): the bundle a LoRA is fused into at load. */
export function withoutLora(id: ParsedModelId): ParsedModelId {
  return id.lora === undefined ? id : parseModelId(id.variant === undefined ? id.base : `${id.base}@${id.variant}`);
}

/** `<repo>/<bundleFolderName(id)>` (not checked for existence). */
export function bundleDirOf(repoDir: string, id: ParsedModelId): string {
  return path.join(repoDir, bundleFolderName(id));
}

/** The folder of LoRA adapters in a repository. */
export const LORA_FOLDER = 'loras';

/** `<repo>/loras/<lora>.safetensors`, or undefined for an id without a LoRA. */
export function loraFileOf(repoDir: string, id: ParsedModelId): string | undefined {
  return id.lora === undefined ? undefined : path.join(repoDir, LORA_FOLDER, `${id.lora}.safetensors`);
}
