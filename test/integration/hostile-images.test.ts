/**
 * Hostile and unusual init images through a real cluster: the router admits PNG/JPEG/WebP bytes,
 * the img2img (tiny SDXL) and upscaler (ESRGAN) replicas decode them (input-image.ts). Broken
 * images and decompression bombs come back INVALID_ARGUMENT naming init_image and why; unusual
 * but valid ones (16-bit, CMYK, greyscale, alpha, animated, EXIF-rotated) are served; the
 * replicas stay up and SERVING throughout.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import sharp from 'sharp';
import { checkHealth, generate, healthClient } from '../../services/cli/client.js';
import { animatedWebp, exifRotatedJpeg, hugeDeclaredJpeg, hugeDeclaredPng, solid, truncated, unusualImages, zlibBombPng } from '../support/hostile-images.js';
import { ESCAPED_ERROR } from '../support/fuzz-runner.js';
import { grpcError, startCluster, testConfig, type TestCluster } from './harness.js';

const PIPELINES = {
  'sdxl-img2img': { width: 64, height: 64, steps: 2, strength: 0.5 },
  upscaler: {},
} as const;

describe('hostile init images through the cluster', () => {
  let c: TestCluster;
  let broken: Record<string, Buffer>;
  let unusual: Record<string, Buffer>;
  before(async () => {
    const whole = (f: 'png' | 'jpeg' | 'webp') => solid(96, 64, '#ff8000')[f]().toBuffer();
    broken = {
      'truncated png': truncated(await whole('png'), 0.6),
      'truncated jpeg': truncated(await whole('jpeg'), 0.6),
      'truncated webp': truncated(await whole('webp'), 0.6),
      'png declaring 100000x100000': hugeDeclaredPng(),
      'jpeg declaring 60000x60000': await hugeDeclaredJpeg(),
    };
    unusual = { ...(await unusualImages()), 'animated webp': await animatedWebp(), 'exif-rotated jpeg': await exifRotatedJpeg(), 'png with a 64 MB zlib stream': await zlibBombPng(64 * 1024 * 1024) };
    c = await startCluster(testConfig({
      'sdxl-img2img': { stage: 'sdxl', models: ['tiny-sdxl'], default_steps: 2, options: { mode: 'image-to-image' } },
      upscaler: { stage: 'upscaler', models: ['esrgan-slim-x2'], options: { tile_size: 64 } },
    }));
  });
  after(() => c?.stop());

  for (const [pipeline, extra] of Object.entries(PIPELINES)) {
    test(`${pipeline}: refuses truncated images and decompression bombs with INVALID_ARGUMENT naming init_image and why`, async () => {
      for (const [kind, bytes] of Object.entries(broken)) {
        const err = await grpcError(generate(c.client, { prompt: 'a planet', pipeline, init_image: bytes, ...extra }, 60_000));
        assert.equal(err.code, status.INVALID_ARGUMENT, `${kind}: ${err.details}`);
        assert.match(err.details, /^init_image: (truncated or corrupt|too large: (png|jpeg) declares)/, kind);
      }
    });

    test(`${pipeline}: serves 16-bit, CMYK, greyscale, alpha, animated, EXIF-rotated and zlib-bomb PNG inputs`, async () => {
      for (const [kind, bytes] of Object.entries(unusual)) {
        const res = await generate(c.client, { prompt: 'a planet', pipeline, init_image: bytes, seed: '1', ...extra }, 120_000).catch((err: { details?: string }) => assert.fail(`${kind}: ${err.details}`));
        assert.equal(res.images.length, 1, kind);
        const meta = await sharp(res.images[0]!.data).metadata();
        assert.equal(meta.format, 'png', kind);
      }
    });
  }

  test('the upscaler serves an EXIF-rotated input oriented: the stored left (red) half on top', async () => {
    // Stored 32x16 with orientation 6: oriented 16x32, upscaled 2x to 32x64, resized to the 64x128 asked for.
    const res = await generate(c.client, { prompt: 'a planet', pipeline: 'upscaler', init_image: await exifRotatedJpeg(), width: 64, height: 128 }, 120_000);
    const { data, info } = await sharp(res.images[0]!.data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [64, 128]);
    const at = (x: number, y: number) => Array.from(data.subarray(3 * (y * info.width + x), 3 * (y * info.width + x) + 3));
    const [tr, bl] = [at(60, 8), at(4, 120)];
    assert.ok(tr[0]! > 180 && tr[2]! < 80, `top right ${tr.join(',')} is red`);
    assert.ok(bl[2]! > 180 && bl[0]! < 80, `bottom left ${bl.join(',')} is blue`);
  });

  test('the replicas stayed up and every deployment is SERVING; no process logged an escaped error', async () => {
    const health = healthClient(c.cluster.grpcAddress);
    try {
      for (const service of ['', 'sdxl-img2img', 'upscaler']) assert.equal(await checkHealth(health, service), 'SERVING', service || '(server)');
    } finally {
      health.close();
    }
    for (const r of c.cluster.replicas) assert.equal(r.child.exitCode, null, `replica ${r.id} is running`);
    assert.deepEqual(fs.readFileSync(c.logFile, 'utf8').split('\n').filter((l) => ESCAPED_ERROR.test(l)).slice(0, 5), []);
  });
});
