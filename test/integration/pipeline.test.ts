/**
 * The team's workflow end to end: planet-ultrawide over three deployments running as separate
 * processes — tiny SDXL text-to-image at the 21:9 bucket → real ESRGAN 2x → resize → img2img →
 * ESRGAN 2x → final resize — through gRPC, with intermediate images in the NATS object store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import sharp from 'sharp';
import { generate, type GenerateEvent } from '../../services/cli/client.js';
import { readTextChunk } from '../../services/stages/png-parameters.js';
import { grpcError, metricSum, startCluster, testConfig, type TestCluster } from './harness.js';

const PLANET = { color: 'deep blue', atmosphere: 'frosted cloudy zones', moons: 'no moons', sky: 'distant stars dark sky', extras: [] };

describe('planet-ultrawide pipeline', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      'sdxl-base': { stage: 'sdxl', models: ['tiny-sdxl'], default_steps: 4, max_batch_size: 4 },
      'sdxl-img2img': { stage: 'sdxl', models: ['tiny-sdxl'], default_steps: 4, options: { mode: 'image-to-image' } },
      upscaler: { stage: 'upscaler', models: ['esrgan-slim-x2'], max_batch_size: 4, options: { tile_size: 192 } },
      ghost: { stage: 'synthetic', models: ['g'], replicas: 0 },
    }, {
      pipelines: {
        'planet-ultrawide': {
          default_size: '2520x1080',
          stages: [
            { deployment: 'sdxl-base', size: 'bucket' },
            { deployment: 'upscaler', model: 'esrgan-slim-x2', params: { scale: 2 }, size: 'target' },
            { deployment: 'sdxl-img2img', params: { strength: 0.3 } },
            { deployment: 'upscaler', model: 'esrgan-slim-x2', params: { scale: 2 }, size: 'target' },
          ],
        },
        'needs-ghost': { stages: [{ deployment: 'ghost' }] },
      },
      default_pipeline: 'planet-ultrawide',
    }));
  });
  after(() => c?.stop());

  test('runs every stage on its own deployment and lands exactly on the requested 21:9 size', async () => {
    const events: GenerateEvent[] = await new Promise((resolve, reject) => {
      const out: GenerateEvent[] = [];
      const call = c.client.GenerateStream({ planet: PLANET, width: 840, height: 360, seed: '11' }, undefined, { deadline: Date.now() + 240_000 });
      call.on('data', (e: GenerateEvent) => out.push(e));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });
    const started = events.filter((e) => e.stage_started).map((e) => e.stage_started!.deployment);
    assert.deepEqual(started, ['sdxl-base', 'upscaler', 'sdxl-img2img', 'upscaler']);
    const progressStages = new Set(events.filter((e) => e.progress).map((e) => e.progress!.stage));
    assert.deepEqual([...progressStages].sort(), ['0:sdxl-base', '1:upscaler', '2:sdxl-img2img', '3:upscaler'], 'denoising steps and upscaler tiles report progress');
    const chunks = events.filter((e) => e.image_chunk).map((e) => e.image_chunk!);
    const png = Buffer.concat(chunks.map((ch) => ch.data));
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 840, 360]);
    assert.equal(chunks[0]!.meta!.width, 840);
    const done = events.at(-1)!.done!;
    assert.deepEqual(done.timings.map((t) => t.deployment), ['sdxl-base', 'upscaler', 'sdxl-img2img', 'upscaler']);
    assert.ok(done.timings.every((t) => t.run_seconds > 0), JSON.stringify(done.timings));
    const stageSeconds = await metricSum(c.cluster.metricsUrl, 'orrery_stage_duration_seconds_count', { pipeline: 'planet-ultrawide' });
    assert.equal(stageSeconds, 4, 'one stage timing per stage in the metrics');
  });

  test('a 21:9 aspect without a size gives the default 2520x1080, generated at the 1536x640 bucket', { timeout: 280_000 }, async () => {
    const res = await generate(c.client, { planet: PLANET, aspect: '21:9', seed: '12' }, 270_000);
    const img = res.images[0]!;
    assert.deepEqual([img.width, img.height], [2520, 1080]);
    const meta = await sharp(img.data).metadata();
    assert.deepEqual([meta.width, meta.height], [2520, 1080]);
    assert.equal(res.timings.length, 4);
  });

  test('img2img alone through gRPC returns an image of the requested size with its parameters', async () => {
    const init = await sharp({ create: { width: 256, height: 128, channels: 3, background: { r: 40, g: 80, b: 200 } } }).png().toBuffer();
    const res = await generate(c.client, { pipeline: 'sdxl-img2img', prompt: 'a blue planet', init_image: init, width: 128, height: 64, seed: '5', strength: 0.5 });
    const img = res.images[0]!;
    assert.deepEqual([img.width, img.height, img.mime_type], [128, 64, 'image/png']);
    assert.match(readTextChunk(img.data, 'parameters')!, /^a blue planet\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 5, Size: 128x64, Model: tiny-sdxl, Denoising strength: 0\.5, Pipeline: sdxl-img2img$/);
  });

  test('bad images are INVALID_ARGUMENT naming init_image, without exhausting memory', async () => {
    const good = await sharp({ create: { width: 32, height: 16, channels: 3, background: '#345' } }).png().toBuffer();
    const truncated = good.subarray(0, good.length - 20);
    const huge = Buffer.from(good);
    huge.writeUInt32BE(50000, 16); // IHDR width
    huge.writeUInt32BE(50000, 20); // IHDR height (the CRC is now wrong too)
    for (const [what, bytes] of [['not an image', Buffer.from('hello, not a png')], ['truncated', truncated], ['50000x50000', huge]] as const) {
      const err = await grpcError(generate(c.client, { pipeline: 'upscaler', prompt: 'x', init_image: bytes, width: 128, height: 64 }));
      assert.equal(err.code, status.INVALID_ARGUMENT, `${what}: ${err.details}`);
      assert.match(err.details, /^init_image: /, what);
    }
    const ok = await generate(c.client, { pipeline: 'upscaler', prompt: 'x', init_image: good, width: 128, height: 64 });
    assert.deepEqual([ok.images[0]!.width, ok.images[0]!.height], [128, 64], 'the upscaler keeps serving');
  });

  test('a pipeline naming a deployment with no replicas gives UNAVAILABLE naming it', async () => {
    const err = await grpcError(generate(c.client, { pipeline: 'needs-ghost', prompt: 'x' }));
    assert.equal(err.code, status.UNAVAILABLE);
    assert.match(err.details, /deployment ghost has no ready replica/);
  });
});
