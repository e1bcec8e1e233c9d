/**
 * What the planet check says about images that are not from the evaluation set: the photographs
 * in test/fixtures/photos (128x128 crops; no planets) and the tiny SDXL model's outputs rendered
 * with the real sdxl stage at the 21:9 bucket (random weights: noise, which must be rejected as
 * "no planet found").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';
import { checkPlanet } from '../../services/stages/qc/qc-check.js';
import { DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';
import { detectPlanetDetailed } from '../../services/stages/qc/planet-detect.js';
import { loadStage } from '../../services/stages/registry.js';
import type { RunContext, StageItem } from '../../services/stages/stage.js';
import { repoPath } from '../../test/support/repo-root.js';

export interface RealImageResult {
  readonly source: string;
  readonly name: string;
  readonly size: string;
  readonly passed: boolean;
  readonly reasons: readonly string[];
  readonly box?: unknown;
  readonly confidence: number;
}

async function judge(source: string, name: string, png: Uint8Array | string): Promise<RealImageResult> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const img = { data, width: info.width, height: info.height, channels: info.channels };
  const verdict = checkPlanet(img, DEFAULT_QC_OPTIONS);
  const detail = detectPlanetDetailed(img);
  return { source, name, size: `${info.width}x${info.height}`, passed: verdict.passed, reasons: verdict.reasons, ...(verdict.box ? { box: verdict.box } : {}), confidence: Number(detail.confidence.toFixed(2)) };
}

/** The fixture photographs. */
export async function photoResults(): Promise<RealImageResult[]> {
  const dir = repoPath('test', 'fixtures', 'photos');
  const out: RealImageResult[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.png')).sort()) out.push(await judge('fixture photo', f, path.join(dir, f)));
  return out;
}

const PROMPTS = [
  'a deep blue gas giant with frosted cloudy zones, no moons, distant stars, dark sky',
  'a ringed ochre planet with two small moons, nebula haze',
  'a red desert planet, thin crescent, dense starfield',
  'a pale green ice world with storms, dark sky',
];

/** `count` images from the tiny SDXL bundle at 1536x640 through the real sdxl stage (ONNX Runtime). */
export async function tinyModelResults(count = 4, steps = 4): Promise<RealImageResult[]> {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-qc-'));
  try {
    await writeTinySdxlBundle(path.join(repo, 'tiny-sdxl'), { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    const model = await loadStage('sdxl').load('tiny-sdxl', { options: {}, modelRepository: repo });
    try {
      const ctx: RunContext = { signal: new AbortController().signal, itemSignal: () => new AbortController().signal, progress: () => undefined };
      const out: RealImageResult[] = [];
      for (let i = 0; i < count; i++) {
        const item: StageItem = {
          requestId: `qc-bench-${i}`, imageIndex: 0, seed: BigInt(1000 + i), prompt: PROMPTS[i % PROMPTS.length]!, negativePrompt: '',
          steps, guidanceScale: 5, width: 1536, height: 640, strength: 1, outputFormat: 'png', params: {},
        };
        const [res] = await model.run([item], ctx);
        if (!res || res instanceof Error) throw res ?? new Error('no output');
        out.push(await judge('tiny-sdxl (sdxl stage)', `seed ${1000 + i}`, res.data));
      }
      return out;
    } finally {
      await model.dispose();
    }
  } finally {
    fs.rmSync(repo, { recursive: true, force: true });
  }
}
