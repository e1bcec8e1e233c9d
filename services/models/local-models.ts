/**
 * Models the local default can make for itself, so `make demo` and the tests need no download:
 * the demo `texture` network, the tiny SDXL-shaped bundle (model id `tiny-sdxl`, its images are
 * noise by design), and ESRGAN upscalers converted from the UpscalerJS npm packages (model ids
 * `esrgan-{slim,medium,thick}-x{2,3,4}`). Anything else must already be in the repository.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ClusterConfig } from '../common/config.js';
import { writeDemoModels } from './demo-models.js';
import { writeTinySdxlBundle } from './tiny-sdxl.js';
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
      if (dep.stage === 'sdxl' && id === TINY_SDXL_MODEL_ID && !fs.existsSync(path.join(dir, 'model_index.json'))) {
        await writeTinySdxlBundle(dir, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
        made.push(`${id}: ${dir} (tiny SDXL-shaped bundle; its images are noise)`);
      }
      const m = ESRGAN.exec(id);
      if (dep.stage === 'upscaler' && m && !fs.existsSync(path.join(dir, 'model.onnx'))) {
        const pkg = packageDir(`@upscalerjs/esrgan-${m[1]}`);
        fs.mkdirSync(dir, { recursive: true });
        await convertUpscaler({ from: pkg, scale: Number(m[2]) as 2 | 3 | 4, out: path.join(dir, 'model.onnx') });
        made.push(`${id}: ${dir} (converted from @upscalerjs/esrgan-${m[1]})`);
      }
    }
  }
  return made;
}

/** The installed folder of an npm package (its package.json is not exported, so walk up from its entry). */
function packageDir(name: string): string {
  for (let dir = path.dirname(require.resolve(name)); path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && (JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === name) return dir;
  }
  throw new Error(`cannot find the folder of ${name} (is it installed? npm ci installs it)`);
}
