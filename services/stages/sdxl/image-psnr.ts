/**
 * The image check of `orrery models quantize` (services/models/quantize/quantize-bundle.ts): two
 * models render the same fixed request through the real SDXL stage and the images are compared.
 * It lives here, not beside quantizeBundle, because rendering needs the stage (a layer above
 * models/); the CLI command passes it to quantizeBundle.
 */
import sharp from 'sharp';

import type { ImagePsnr } from '../../models/quantize/quantize-bundle.js';
import type { StageItem } from '../stage.js';
import { sdxlStage } from './sdxl-stage.js';

/**
 * PSNR (dB, 8-bit RGB; Infinity when identical) between the images two models render for the same
 * request through the real SDXL stage: model `idA` of repository `repoA` against `idB` of `repoB`,
 * both loaded with the deployment options `options` (e.g. `lora_scale`). `check` overrides the
 * fixed render (defaults: a planet prompt, seed 42, 8 steps, 128×64).
 */
export const imagePsnr: ImagePsnr = async (repoA, idA, repoB, idB, check = {}, options = {}) => {
  const item: StageItem = {
    requestId: 'quantize-check', imageIndex: 0, seed: check.seed ?? 42n, prompt: check.prompt ?? 'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky',
    negativePrompt: '', steps: check.steps ?? 8, guidanceScale: 5, width: check.width ?? 128, height: check.height ?? 64, strength: 1, outputFormat: 'png', params: {},
  };
  const ctx = { signal: new AbortController().signal, itemSignal: () => new AbortController().signal, progress: () => undefined };
  const pixels = async (repo: string, modelId: string) => {
    const m = await sdxlStage.load(modelId, { options, modelRepository: repo });
    try {
      const [out] = await m.run([item], ctx);
      if (out === undefined) throw new Error(`${modelId}: the stage returned no image`);
      if (out instanceof Error) throw out;
      return await sharp(out.data).removeAlpha().raw().toBuffer();
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
};
