/**
 * A model id's files in the model repository: the grammar first (no file-system access for an id
 * that fails it), then existence. See model-id.ts for the layout.
 *
 * Which folder serves an id:
 * - `base`, `base@variant`: `<repo>/<base>`, `<repo>/<base>@<variant>`.
 * - `base+lora`: `<repo>/<base>`, with `<repo>/loras/<lora>.safetensors` fused in at load.
 * - `base+lora@variant`: `<repo>/<base>+<lora>@<variant>` when it exists (written by
 *   `orrery models quantize --model base+lora`: the LoRA is already in its weights, so nothing is
 *   fused at load). Without it, `fp16` fuses the LoRA into `<repo>/<base>@fp16` at load (float16
 *   weights take a LoRA); `int8` and `q4` keep no float MatMul weights to fuse into, so they are
 *   NOT_FOUND with the command that builds the fused folder.
 * - `@fp32` is never written (the fp32 model is the base itself): NOT_FOUND naming the id to use,
 *   unless a folder of that name was put in the repository by hand.
 */
import fs from 'node:fs';
import { InvalidArgumentError, ModelNotFoundError } from '../common/errors.js';
import { bundleDirOf, loraFileOf, ModelIdError, parseModelId, withoutLora, type ParsedModelId } from '../common/model-id.js';

export interface ModelFiles {
  readonly id: ParsedModelId;
  /** The bundle folder to open (see the module comment). */
  readonly bundleDir: string;
  /** `<repo>/loras/<lora>.safetensors` when the LoRA is to be fused at load; absent when `bundleDir` has it fused in already. */
  readonly loraFile?: string;
}

const isDir = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;

/** The command that writes the folder of a `base@variant` or `base+lora@variant` id. */
export function quantizeCommandFor(id: ParsedModelId): string {
  return `orrery models quantize --model ${id.lora === undefined ? id.base : `${id.base}+${id.lora}`} --variant ${id.variant}`;
}

/**
 * Resolves `modelId` under `repoDir`. Throws InvalidArgumentError (field model_id) for an id
 * outside the grammar, ModelNotFoundError when the bundle folder or the LoRA file is missing; its
 * message names the missing path and, for a variant, how to write it (or, for fp32, the id to use).
 */
export function resolveModelFiles(repoDir: string, modelId: string): ModelFiles {
  let id: ParsedModelId;
  try {
    id = parseModelId(modelId);
  } catch (err) {
    if (err instanceof ModelIdError) throw new InvalidArgumentError('model_id', err.message);
    throw err;
  }
  const own = bundleDirOf(repoDir, id);
  if (id.lora !== undefined && id.variant !== undefined && isDir(own)) return { id, bundleDir: own };
  const fuseAtLoad = id.lora !== undefined && (id.variant === undefined || id.variant === 'fp16');
  const bundleDir = fuseAtLoad ? bundleDirOf(repoDir, withoutLora(id)) : own;
  if (!isDir(bundleDir)) throw new ModelNotFoundError(modelId, missingBundle(id, own, bundleDir));
  if (!fuseAtLoad) return { id, bundleDir };
  const loraFile = loraFileOf(repoDir, id)!;
  if (!(fs.statSync(loraFile, { throwIfNoEntry: false })?.isFile() ?? false)) {
    throw new ModelNotFoundError(modelId, `no LoRA file ${loraFile} in the model repository`);
  }
  return { id, bundleDir, loraFile };
}

/** The NOT_FOUND detail: the folder(s) looked for, and what to do about it. */
function missingBundle(id: ParsedModelId, own: string, tried: string): string {
  const folders = own === tried ? `no bundle folder ${own}` : `no bundle folder ${own} nor ${tried}`;
  if (id.variant === undefined) return `${folders} in the model repository`;
  if (id.variant === 'fp32') {
    const plain = id.lora === undefined ? id.base : `${id.base}+${id.lora}`;
    return `${folders} in the model repository; fp32 is not a written variant: the fp32 model is the base bundle itself, served as model id ${plain}`;
  }
  const write = `write it with: ${quantizeCommandFor(id)}`;
  if (id.lora !== undefined && id.variant !== 'fp16') {
    return `${folders} in the model repository: ${id.variant} weights cannot take a LoRA at load, so it is fused into the float weights before quantizing; ${write}`;
  }
  return `${folders} in the model repository (${write})`;
}
