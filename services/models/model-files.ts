/**
 * A model id's files in the model repository: the grammar first (no file-system access for an id
 * that fails it), then existence. See model-id.ts for the layout.
 */
import fs from 'node:fs';
import { InvalidArgumentError, ModelNotFoundError } from '../common/errors.js';
import { bundleDirOf, loraFileOf, ModelIdError, parseModelId, type ParsedModelId } from './model-id.js';

export interface ModelFiles {
  readonly id: ParsedModelId;
  /** `<repo>/<base>` or `<repo>/<base>@<variant>`. */
  readonly bundleDir: string;
  /** `<repo>/loras/<lora>.safetensors`, for a `base+lora` id. */
  readonly loraFile?: string;
}

/**
 * Resolves `modelId` under `repoDir`. Throws InvalidArgumentError (field model_id) for an id
 * outside the grammar, ModelNotFoundError when the bundle folder or the LoRA file is missing.
 */
export function resolveModelFiles(repoDir: string, modelId: string): ModelFiles {
  let id: ParsedModelId;
  try {
    id = parseModelId(modelId);
  } catch (err) {
    if (err instanceof ModelIdError) throw new InvalidArgumentError('model_id', err.message);
    throw err;
  }
  const bundleDir = bundleDirOf(repoDir, id);
  if (!(fs.statSync(bundleDir, { throwIfNoEntry: false })?.isDirectory() ?? false)) {
    const hint = id.variant ? ` (write it with: orrery models quantize --model ${id.base} --variant ${id.variant})` : '';
    throw new ModelNotFoundError(modelId, `no bundle folder ${bundleDir} in the model repository${hint}`);
  }
  const loraFile = loraFileOf(repoDir, id);
  if (loraFile && !(fs.statSync(loraFile, { throwIfNoEntry: false })?.isFile() ?? false)) {
    throw new ModelNotFoundError(modelId, `no LoRA file ${loraFile} in the model repository`);
  }
  return { id, bundleDir, ...(loraFile ? { loraFile } : {}) };
}
