/**
 * Provenance end to end (issue 13): every final image, whatever its pipeline's last stage, carries
 * the parameters of the whole pipeline — in PNG's `parameters` chunk, in JPEG/WebP's EXIF
 * UserComment and XMP — through a real local cluster running the built-in pipelines and
 * deployments of deploy/config/local.yaml (fewer steps, for time), plus a texture deployment.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { parse as parseYaml } from 'yaml';
import { generate, type GenerateResponse } from '../../services/cli/client.js';
import { packageRoot } from '../../services/common/package-root.js';
import { parseParameters } from '../../services/stages/generation-parameters.js';
import { readExifUserComment } from '../../services/stages/metadata-text.js';
import { readParameters } from '../../services/stages/output-encoder.js';
import { readTextChunk } from '../../services/stages/png-parameters.js';
import { startCluster, testConfig, type TestCluster } from './harness.js';

interface LocalConfig {
  deployments: Record<string, Record<string, unknown>>;
  pipelines: Record<string, unknown>;
  default_pipeline: string;
}

const LOCAL = parseYaml(fs.readFileSync(path.join(packageRoot(), 'deploy/config/local.yaml'), 'utf8')) as LocalConfig;
const STEPS = 4;
const PROMPT = 'a ringed planet';
const NEGATIVE = 'blurry';

/** local.yaml's deployments with 4 denoising steps, and a texture deployment. */
function deployments(): Record<string, object> {
  const out: Record<string, object> = {};
  for (const [name, d] of Object.entries(LOCAL.deployments)) out[name] = d['stage'] === 'sdxl' ? { ...d, default_steps: STEPS } : d;
  out['texture'] = { stage: 'texture', models: ['texture'] };
  return out;
}

const image = (res: GenerateResponse) => {
  assert.equal(res.images.length, 1);
  return res.images[0]!;
};

describe('provenance in every final image', () => {
  let c: TestCluster;
  /** A client-made input image without parameters. */
  let plainPng: Buffer;
  before(async () => {
    c = await startCluster(testConfig(deployments(), {
      pipelines: LOCAL.pipelines, default_pipeline: LOCAL.default_pipeline,
      // 5 s without a heartbeat drops a replica: seven processes share this machine's cores with
      // ONNX Runtime, and a replica lost for a late heartbeat is not what this test is about.
      router: { replica_timeout_intervals: 50 },
    }));
    plainPng = await sharp({ create: { width: 128, height: 64, channels: 3, background: { r: 30, g: 60, b: 160 } } }).png().toBuffer();
  });
  after(() => c?.stop());

  const planet = (outputFormat: string) => generate(c.client, {
    pipeline: 'planet-ultrawide', prompt: PROMPT, negative_prompt: NEGATIVE, width: 840, height: 360, seed: '11', output_format: outputFormat,
  }, 280_000);

  const PLANET_TEXT = `${PROMPT}\nNegative prompt: ${NEGATIVE}\n`
    + `Steps: ${STEPS}, Sampler: Euler, CFG scale: 5, Seed: 11, Size: 840x360, First pass size: 1536x640, Model: tiny-sdxl, `
    + 'Upscaler: esrgan-slim-x2, Upscale by: 2, Denoising strength: 0.3, Upscaler 2: esrgan-slim-x2, Upscale by 2: 2, Pipeline: planet-ultrawide';

  test('planet-ultrawide\'s final PNG carries all four stages, the final size and the pipeline', { timeout: 300_000 }, async () => {
    const img = image(await planet('PNG'));
    assert.deepEqual([img.mime_type, img.width, img.height], ['image/png', 840, 360]);
    const text = readTextChunk(img.data, 'parameters');
    assert.equal(text, PLANET_TEXT);
    const fields = Object.fromEntries(parseParameters(text).fields);
    assert.equal(fields['Denoising strength'], '0.3', 'the img2img pass');
    assert.equal(fields['Upscaler 2'], 'esrgan-slim-x2', 'the last upscale');
  });

  for (const [format, mime] of [['JPEG', 'image/jpeg'], ['WEBP', 'image/webp']] as const) {
    test(`planet-ultrawide as ${format} carries the same text in EXIF UserComment and XMP`, { timeout: 300_000 }, async () => {
      const img = image(await planet(format));
      assert.equal(img.mime_type, mime);
      const meta = await sharp(img.data).metadata();
      assert.deepEqual([meta.width, meta.height], [840, 360]);
      assert.equal(readExifUserComment(meta.exif!), PLANET_TEXT);
      assert.equal(await readParameters(img.data), PLANET_TEXT, 'XMP');
    });
  }

  test('sdxl-base and sdxl-img2img name their pipeline; img2img on the base output continues its history', { timeout: 200_000 }, async () => {
    const req = { prompt: PROMPT, negative_prompt: NEGATIVE, width: 128, height: 64, seed: '5' };
    const base = image(await generate(c.client, { ...req, pipeline: 'sdxl-base' }));
    const baseFields = `Steps: ${STEPS}, Sampler: Euler, CFG scale: 5, Seed: 5, Size: 128x64, Model: tiny-sdxl`;
    assert.equal(readTextChunk(base.data, 'parameters'), `${PROMPT}\nNegative prompt: ${NEGATIVE}\n${baseFields}, Pipeline: sdxl-base`);

    const continued = image(await generate(c.client, { ...req, pipeline: 'sdxl-img2img', init_image: base.data, strength: 0.5 }));
    assert.equal(readTextChunk(continued.data, 'parameters'), `${PROMPT}\nNegative prompt: ${NEGATIVE}\n${baseFields}, Denoising strength: 0.5, Pipeline: sdxl-img2img`);

    const fresh = image(await generate(c.client, { ...req, prompt: 'another planet', pipeline: 'sdxl-img2img', init_image: base.data, strength: 0.5 }));
    assert.equal(readTextChunk(fresh.data, 'parameters'), `another planet\nNegative prompt: ${NEGATIVE}\n${baseFields}, Denoising strength: 0.5, Pipeline: sdxl-img2img`,
      'another prompt starts a new history');
  });

  test('the upscaler keeps its input\'s parameters and adds the upscale; a plain input gets the request\'s prompt', { timeout: 200_000 }, async () => {
    const base = image(await generate(c.client, { pipeline: 'sdxl-base', prompt: PROMPT, width: 128, height: 64, seed: '6' }));
    const up = image(await generate(c.client, { pipeline: 'upscaler', prompt: 'ignored', init_image: base.data, width: 256, height: 128 }));
    assert.deepEqual([up.width, up.height], [256, 128]);
    assert.equal(readTextChunk(up.data, 'parameters'),
      `${PROMPT}\nSteps: ${STEPS}, Sampler: Euler, CFG scale: 5, Seed: 6, Size: 256x128, First pass size: 128x64, Model: tiny-sdxl, Upscaler: esrgan-slim-x2, Upscale by: 2, Pipeline: upscaler`);

    const plain = image(await generate(c.client, { pipeline: 'upscaler', prompt: 'a plain input', init_image: plainPng, width: 256, height: 128, output_format: 'JPEG' }));
    assert.equal(await readParameters(plain.data), 'a plain input\nUpscaler: esrgan-slim-x2, Upscale by: 2, Size: 256x128, Pipeline: upscaler');
  });

  test('texture images carry their prompt, seed, size, model and pipeline', async () => {
    const img = image(await generate(c.client, { pipeline: 'texture', prompt: 'deep blue', width: 128, height: 64, seed: '9' }));
    assert.equal(readTextChunk(img.data, 'parameters'), 'deep blue\nSeed: 9, Size: 128x64, Model: texture, Pipeline: texture');
  });

  test('every built-in pipeline that makes images returns one naming its pipeline', { timeout: 300_000 }, async () => {
    const names = [...new Set([...Object.keys(LOCAL.pipelines), ...Object.keys(LOCAL.deployments)])];
    assert.deepEqual(names.sort(), ['planet-ultrawide', 'sdxl-base', 'sdxl-img2img', 'synthetic', 'upscaler'], 'the built-ins this test knows');
    for (const name of names) {
      const res = await generate(c.client, {
        pipeline: name, prompt: PROMPT, width: 256, height: 128, seed: '3', strength: 0.5,
        ...(name === 'sdxl-img2img' || name === 'upscaler' ? { init_image: plainPng } : {}),
      }, 280_000);
      const img = image(res);
      // synthetic is a cost model: its payload is bytes for the scheduler's tests, not an image.
      if (name === 'synthetic') {
        assert.equal(img.mime_type, 'application/octet-stream');
        continue;
      }
      const text = await readParameters(img.data);
      assert.ok(text, `${name}: no parameters`);
      const fields = Object.fromEntries(parseParameters(text).fields);
      assert.equal(fields['Pipeline'], name);
      assert.equal(fields['Size'], `${img.width}x${img.height}`, name);
    }
  });
});
