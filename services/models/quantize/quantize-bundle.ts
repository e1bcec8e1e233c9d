/**
 * `orrery models quantize`: writes `<repo>/<base>@<variant>/`, a copy of the base bundle whose
 * MatMul-heavy models (unet, text_encoder, text_encoder_2) are quantized, after checking its
 * output against the base: both render a fixed prompt and seed, and a variant whose final image
 * has a PSNR below the bound (i.e. an error above it) is refused with the measured figure.
 *
 * Implemented variants: `int8` (weight-only, per-channel QDQ; quantize-int8.ts). `fp16` and `q4`
 * (MatMulNBits) are refused as not implemented yet.
 */
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { OrreryError } from '../../common/errors.js';
import type { StageItem, StageOutput } from '../../stages/stage.js';
import { moveInitializersToExternalData } from '../onnx/external-data.js';
import { decodeModel, encodeModel } from '../onnx/onnx-model.js';
import { parseModelId, type ModelVariant } from '../model-id.js';
import { quantizeMatMulWeightsInt8 } from './quantize-int8.js';

export interface QuantizeOptions {
  readonly repository: string;
  readonly base: string;
  readonly variant: ModelVariant;
  /** Refuse the variant when PSNR(variant, base) is below this (dB). */
  readonly minPsnrDb: number;
  /** The fixed render the check compares (defaults: a planet prompt, seed 42, 8 steps, 128×64). */
  readonly check?: Partial<Pick<StageItem, 'prompt' | 'seed' | 'steps' | 'width' | 'height'>>;
}

export interface QuantizeReport {
  readonly dir: string;
  readonly psnrDb: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  readonly matmulsQuantized: number;
}

export class QuantizeRefusedError extends OrreryError {
  constructor(message: string, readonly psnrDb?: number) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', message);
  }
}

const COMPONENTS = ['text_encoder', 'text_encoder_2', 'unet'] as const;

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  return n;
}

/** Writes the variant (atomically: a staging folder renamed into place) or throws QuantizeRefusedError. */
export async function quantizeBundle(o: QuantizeOptions): Promise<QuantizeReport> {
  const id = parseModelId(`${o.base}@${o.variant}`);
  if (id.variant !== 'int8') throw new QuantizeRefusedError(`variant ${o.variant}: not implemented yet (int8 is)`);
  const src = path.join(o.repository, id.base);
  if (!fs.existsSync(path.join(src, 'model_index.json'))) throw new QuantizeRefusedError(`no bundle ${src}`);
  const stagingRepo = fs.mkdtempSync(path.join(o.repository, '.quantize-'));
  try {
    const staged = path.join(stagingRepo, `${id.base}@${id.variant}`);
    fs.cpSync(src, staged, { recursive: true });
    let count = 0;
    for (const c of COMPONENTS) {
      const dir = path.join(staged, c);
      const model = decodeModel(fs.readFileSync(path.join(dir, 'model.onnx')));
      const hadExternal = fs.existsSync(path.join(dir, 'model.onnx_data'));
      count += quantizeMatMulWeightsInt8(model, dir).quantized;
      if (hadExternal) {
        const moved = moveInitializersToExternalData(model, { location: 'model.onnx_data' });
        fs.writeFileSync(path.join(dir, 'model.onnx'), encodeModel(moved.model));
        fs.writeFileSync(path.join(dir, 'model.onnx_data'), moved.data);
      } else {
        fs.writeFileSync(path.join(dir, 'model.onnx'), encodeModel(model));
      }
    }
    const psnrDb = await comparePsnr(o.repository, id.base, stagingRepo, `${id.base}@${id.variant}`, o.check ?? {});
    if (!(psnrDb >= o.minPsnrDb)) {
      throw new QuantizeRefusedError(`${id.base}@${id.variant} refused: its image differs from ${id.base}'s by PSNR ${psnrDb.toFixed(2)} dB, below the bound of ${o.minPsnrDb} dB (raise the bound with --min-psnr-db to accept it)`, psnrDb);
    }
    const dst = path.join(o.repository, `${id.base}@${id.variant}`);
    fs.rmSync(dst, { recursive: true, force: true });
    fs.renameSync(staged, dst);
    return { dir: dst, psnrDb, bytesBefore: dirBytes(src), bytesAfter: dirBytes(dst), matmulsQuantized: count };
  } finally {
    fs.rmSync(stagingRepo, { recursive: true, force: true });
  }
}

/** PSNR (dB, 8-bit RGB) between two models' images of the same request. */
async function comparePsnr(repoA: string, idA: string, repoB: string, idB: string, check: QuantizeOptions['check']): Promise<number> {
  // Loaded lazily: the stage pulls in onnxruntime-node and sharp.
  const { loadStage } = await import('../../stages/registry.js');
  const stage = loadStage('sdxl');
  const item: StageItem = {
    requestId: 'quantize-check', imageIndex: 0, seed: check?.seed ?? 42n, prompt: check?.prompt ?? 'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky',
    negativePrompt: '', steps: check?.steps ?? 8, guidanceScale: 5, width: check?.width ?? 128, height: check?.height ?? 64, strength: 1, outputFormat: 'png', params: {},
  };
  const ctx = { signal: new AbortController().signal, itemSignal: () => new AbortController().signal, progress: () => undefined };
  const pixels = async (repo: string, modelId: string) => {
    const m = await stage.load(modelId, { options: {}, modelRepository: repo });
    try {
      const [out] = await m.run([item], ctx);
      if (out instanceof Error) throw out;
      return (await sharp((out as StageOutput).data).removeAlpha().raw().toBuffer());
    } finally {
      await m.dispose();
    }
  };
  const a = await pixels(repoA, idA);
  const b = await pixels(repoB, idB);
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}
