/**
 * Models the local default can make for itself, so `make demo` and the tests need no download:
 * the demo `texture` network, the tiny SDXL-shaped bundle (model id `tiny-sdxl`, its images are
 * noise by design) with tiny LoRAs for `tiny-sdxl+<name>` ids, and ESRGAN upscalers converted from the UpscalerJS npm packages (model ids
 * `esrgan-{slim,medium,thick}-x{2,3,4}`). Anything else must already be in the repository.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ClusterConfig } from '../common/config.js';
import { writeDemoModels } from './demo-models.js';
import { loraFileOf, parseModelId, type ParsedModelId } from '../common/model-id.js';
import { writeTinySdxlBundle } from './tiny-sdxl.js';
import { writeTinyLora } from './tiny-sdxl/tiny-lora.js';
import { convertUpscaler } from './upscaler/convert-upscaler.js';

export const TINY_SDXL_MODEL_ID = 'tiny-sdxl';
const ESRGAN = /^esrgan-(slim|medium|thick)-x([234])$/;

/** What was made, as `<model id>: <path>` lines (empty when everything was there). */
export async function prepareLocalModels(config: ClusterConfig): Promise<string[]> {
  const repo = config.modelRepository;
  const made: string[] = [];
  for (const dep of Object.values(config.deployments)) {
    if (dep.stage === 'texture') made.push(...writeDemoModels(repo).map((f) => `texture: ${f}`));
    for (const id of dep.models) {
      const dir = path.join(repo, id);
      if (dep.stage === 'sdxl') made.push(...await prepareTinySdxl(repo, id));
      const m = ESRGAN.exec(id);
      if (dep.stage === 'upscaler' && m && !fs.existsSync(path.join(dir, 'model.onnx'))) {
        const pkg = packageDir(`@upscalerjs/esrgan-${m[1]}`);
        fs.mkdirSync(dir, { recursive: true });
        await convertUpscaler({ from: pkg, scale: Number(m[2]), out: path.join(dir, 'model.onnx') });
        made.push(`${id}: ${dir} (converted from @upscalerjs/esrgan-${m[1]})`);
      }
    }
  }
  return made;
}

/**
 * For `tiny-sdxl` and `tiny-sdxl+<lora>` ids: the tiny bundle, and a tiny kohya LoRA seeded by
 * its name (so `+a`, `+b` are different adapters) when `loras/<lora>.safetensors` is missing.
 */
async function prepareTinySdxl(repo: string, modelId: string): Promise<string[]> {
  let id: ParsedModelId;
  try {
    id = parseModelId(modelId);
  } catch {
    return [];
  }
  if (id.base !== TINY_SDXL_MODEL_ID || id.variant) return [];
  const made: string[] = [];
  const dir = path.join(repo, id.base);
  if (!fs.existsSync(path.join(dir, 'model_index.json'))) {
    await writeTinySdxlBundle(dir, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    made.push(`${id.base}: ${dir} (tiny SDXL-shaped bundle; its images are noise)`);
  }
  const loraFile = loraFileOf(repo, id);
  if (loraFile && !fs.existsSync(loraFile)) {
    writeTinyLora(loraFile, { format: 'kohya', seed: nameSeed(id.lora!) });
    made.push(`${modelId}: ${loraFile} (tiny kohya LoRA seeded by its name)`);
  }
  return made;
}

/** FNV-1a of a name: a stable seed per LoRA name. */
export function nameSeed(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The installed folder of an npm package (its package.json is not exported, so walk up from its entry). */
function packageDir(name: string): string {
  for (let dir = path.dirname(require.resolve(name)); path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && (JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === name) return dir;
  }
  throw new Error(`cannot find the folder of ${name} (is it installed? npm ci installs it)`);
}
