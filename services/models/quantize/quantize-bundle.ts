/**
 * `orrery models quantize`: writes `<repo>/<base>@<variant>/`, a copy of the base bundle with its
 * models rewritten for the variant (variant-models.ts: `int8` and `q4` weight-only MatMul weights in
 * unet and the text encoders, `fp16` a float16 export of all five models), after checking its
 * output against the base: both render a fixed prompt and seed, and a variant whose final image
 * has a PSNR below the bound (i.e. an error above it) is refused with the measured figure.
 *
 * With a LoRA (`--model base+lora`) it writes `<repo>/<base>+<lora>@<variant>/`: the LoRA is fused
 * into the copy's float weights first (lora/fused-bundle.ts), then the variant rewrite runs, and the
 * check compares against `base+lora` in fp32 (the LoRA fused at load, as the SDXL stage serves it).
 * Fuse first, then quantize: int8 and q4 weights keep no float MatMul weights to fuse into later.
 */
import fs from 'node:fs';
import path from 'node:path';
import { OrreryError } from '../../common/errors.js';
import type { WorkItemData } from '../../common/work-item.js';
import { fuseLoraIntoBundleFolder } from '../lora/fused-bundle.js';
import { writeFusedLoraRecord } from '../lora/fused-lora-record.js';
import { bundleFolderName, loraFileOf, parseModelId, type ModelVariant } from '../../common/model-id.js';
import { rewriteBundleModels, type VariantRewrite, type WrittenVariant } from './variant-models.js';

export interface QuantizeOptions {
  readonly repository: string;
  readonly base: string;
  /** A LoRA (`<repository>/loras/<lora>.safetensors`) to fuse in before the rewrite: writes `<base>+<lora>@<variant>`. */
  readonly lora?: string;
  /** The strength the LoRA is fused at (as the deployment option `lora_scale`; default 1). */
  readonly loraScale?: number;
  readonly variant: ModelVariant;
  /** Refuse the variant when PSNR(variant, base) is below this (dB); with a LoRA, against `base+lora` in fp32. */
  readonly minPsnrDb: number;
  /** q4 only: quantization block size along K, a power of two ≥ 16 (default 32). */
  readonly blockSize?: number;
  /** The fixed render the check compares (defaults: a planet prompt, seed 42, 8 steps, 128×64). */
  readonly check?: QuantizeCheck;
}

/** What the fixed render of the image check may override. */
export type QuantizeCheck = Partial<Pick<WorkItemData, 'prompt' | 'seed' | 'steps' | 'width' | 'height'>>;

/**
 * PSNR (dB; Infinity when identical) between the images model `idA` of repository `repoA` and `idB`
 * of `repoB` render for the fixed request `check`, both loaded with the deployment options `options`.
 * Rendering needs the SDXL stage, a layer above this one, so the caller passes it in:
 * services/stages/sdxl/image-psnr.ts `imagePsnr`.
 */
export type ImagePsnr = (repoA: string, idA: string, repoB: string, idB: string, check?: QuantizeCheck, options?: Readonly<Record<string, unknown>>) => Promise<number>;

export interface QuantizeReport {
  readonly dir: string;
  readonly variant: WrittenVariant;
  readonly psnrDb: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  /** int8, q4: MatMul weights quantized; fp16: FLOAT initializers stored as FLOAT16. */
  readonly tensorsRewritten: number;
  /** The models rewritten (bundle folder names). */
  readonly models: readonly string[];
  /** LoRA modules fused in before the rewrite (0 without a LoRA). */
  readonly loraModulesFused: number;
}

/** The variant was not written: its image error exceeds the bound (`psnrDb` is the measured figure) or the bundle cannot take it. */
export class QuantizeRefusedError extends OrreryError {
  constructor(message: string, readonly psnrDb?: number, options?: { cause?: unknown }) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', message, options);
  }
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  return n;
}

/**
 * Writes the variant (atomically: a staging folder renamed into place) or throws QuantizeRefusedError;
 * `imagePsnr` renders and compares the check images (stages/sdxl/image-psnr.ts).
 */
export async function quantizeBundle(o: QuantizeOptions, imagePsnr: ImagePsnr): Promise<QuantizeReport> {
  const id = parseModelId(`${o.base}${o.lora === undefined ? '' : `+${o.lora}`}@${o.variant}`);
  const variant = id.variant;
  // What the variant is checked against, and what "fp32" of it means: base, or base+lora fused at load.
  const reference = id.lora === undefined ? id.base : `${id.base}+${id.lora}`;
  if (variant === undefined || variant === 'fp32') {
    const what = id.lora === undefined ? `the base bundle ${reference}` : `${reference} (the LoRA fused into the base bundle at load)`;
    throw new QuantizeRefusedError(`variant ${o.variant}: the fp32 model is ${what} itself (variants: fp16, int8, q4)`);
  }
  const name = bundleFolderName(id);
  const src = path.join(o.repository, id.base);
  if (!fs.existsSync(path.join(src, 'model_index.json'))) throw new QuantizeRefusedError(`no bundle ${src}`);
  const loraFile = loraFileOf(o.repository, id);
  if (loraFile && !fs.existsSync(loraFile)) throw new QuantizeRefusedError(`${name} refused: no LoRA file ${loraFile}`);
  const loraScale = o.loraScale ?? 1;
  const stagingRepo = fs.mkdtempSync(path.join(o.repository, '.quantize-'));
  try {
    const staged = path.join(stagingRepo, name);
    fs.cpSync(src, staged, { recursive: true });
    let rewrite: VariantRewrite;
    let loraModulesFused = 0;
    try {
      if (loraFile) {
        loraModulesFused = fuseLoraIntoBundleFolder(staged, loraFile, loraScale).matched;
        writeFusedLoraRecord(staged, { lora: id.lora!, loraScale, loraModulesFused });
      }
      rewrite = rewriteBundleModels(staged, variant, { blockSize: o.blockSize });
    } catch (err) {
      throw new QuantizeRefusedError(`${name} refused: ${(err as Error).message}`, undefined, { cause: err });
    }
    const psnrDb = await imagePsnr(o.repository, reference, stagingRepo, id.id, o.check ?? {}, loraFile ? { lora_scale: loraScale } : {});
    if (!(psnrDb >= o.minPsnrDb)) {
      throw new QuantizeRefusedError(`${name} refused: its image differs from ${reference}'s by PSNR ${psnrDb.toFixed(2)} dB, below the bound of ${o.minPsnrDb} dB (raise the bound with --min-psnr-db to accept it)`, psnrDb);
    }
    const dst = path.join(o.repository, name);
    // Replace an existing variant by two renames, never a half-deleted folder for replicas sharing
    // the repository: move it aside (into the staging folder, removed below), then move ours in.
    if (fs.existsSync(dst)) fs.renameSync(dst, path.join(stagingRepo, 'replaced'));
    fs.renameSync(staged, dst);
    return { dir: dst, variant, psnrDb, bytesBefore: dirBytes(src), bytesAfter: dirBytes(dst), tensorsRewritten: rewrite.tensors, models: rewrite.models, loraModulesFused };
  } finally {
    fs.rmSync(stagingRepo, { recursive: true, force: true });
  }
}
