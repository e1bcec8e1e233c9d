/**
 * The quality gate end to end (issue 13) on a real local cluster: nats-server, the router's gRPC
 * server, and replicas running the real texture stage (ONNX Runtime; its demo model's images are
 * noise: "no planet found" every time) and the real ESRGAN upscaler (fed a rendered planet scene,
 * which passes). The check runs in the replicas; the router re-rolls, flags or fails.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { status as GrpcStatus } from '@grpc/grpc-js';
import sharp from 'sharp';
import { generate, type GenerateEvent } from '../../services/cli/client.js';
import { generateToFolder } from '../../services/cli/command-generate.js';
import { DEFAULT_QC_OPTIONS } from '../../services/common/qc-config.js';
import { attemptSeed } from '../../services/router/qc-rerolls.js';
import { parseParameters } from '../../services/stages/generation-parameters.js';
import { readParameters } from '../../services/stages/output-encoder.js';
import { checkPlanet } from '../../services/stages/qc/qc-check.js';
import { iou, makeCase, renderCase } from '../support/planet-scenes.js';
import { grpcError, metricSum, startCluster, testConfig, type TestCluster } from './harness.js';
import { FAST_JOBS, rpc, sinkContents, waitJob, type JobMsg } from './jobs-harness.js';

const fields = (text: string | undefined) => Object.fromEntries(parseParameters(text ?? '').fields);

/** A 384x160 disc scene the check passes, and its labelled box. */
async function planetPng() {
  for (let seed = 1; ; seed++) {
    const c = makeCase('disc', 384, 160, seed);
    const pixels = renderCase(c);
    if (!c.expected.passed || !checkPlanet(pixels, DEFAULT_QC_OPTIONS).passed) continue;
    return { png: await sharp(pixels.data, { raw: { width: 384, height: 160, channels: 3 } }).png().toBuffer(), box: c.box! };
  }
}

describe('quality gate on a real cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      texture: { stage: 'texture', models: ['texture'], max_batch_size: 4 },
      upscaler: { stage: 'upscaler', models: ['esrgan-slim-x2'], options: { tile_size: 192, tile_padding: 16 } },
    }, {
      pipelines: {
        'noise-flagged': { stages: [{ deployment: 'texture' }], qc: { max_attempts: 3, on_fail: 'return_flagged' } },
        'noise-strict': { stages: [{ deployment: 'texture' }], qc: { max_attempts: 2, on_fail: 'error' } },
        'noise-then-upscale': {
          stages: [{ deployment: 'texture' }, { deployment: 'upscaler', params: { scale: 2 }, size: 'scaled' }],
          qc: { after_stage: 0, max_attempts: 2 },
        },
        'upscale-gated': { stages: [{ deployment: 'upscaler', params: { scale: 2 }, size: 'scaled' }], qc: { after_stage: 0 } },
      },
      router: { replica_timeout_intervals: 50 },
      jobs: FAST_JOBS,
    }));
  });
  after(() => c?.stop());

  test('images failing every attempt come back flagged from their last attempt, with its seed, reasons and parameters', async () => {
    const before = await metricSum(c.cluster.metricsUrl, 'orrery_qc_checks_total', { pipeline: 'noise-flagged', result: 'failed' });
    const res = await generate(c.client, { pipeline: 'noise-flagged', prompt: 'red planet', width: 256, height: 128, seed: '10', num_images: 2 });
    assert.equal(res.images.length, 2);
    for (const [i, img] of res.images.entries()) {
      const seed = attemptSeed(10n + BigInt(i), 3);
      assert.equal(img.seed, seed.toString(), 'the seed of the attempt returned');
      assert.deepEqual(img.qc, {
        passed: false, attempts: 3, seed: seed.toString(), box: null, area_fraction: 0, reasons: ['no planet found'], checked_width: 256, checked_height: 128,
      });
      const f = fields(await readParameters(img.data));
      assert.equal(f['QC'], 'failed (attempt 3): no planet found');
      assert.equal(f['Seed'], seed.toString(), 'the parameters name the seed that made the image');
    }
    const failed = await metricSum(c.cluster.metricsUrl, 'orrery_qc_checks_total', { pipeline: 'noise-flagged', result: 'failed' });
    assert.equal(failed - before, 6, 'three checks per image');
    assert.equal(await metricSum(c.cluster.metricsUrl, 'orrery_qc_rerolls_total', { pipeline: 'noise-flagged' }), 4, 'two re-rolls per image');
  });

  test('GenerateStream reports each rejection as it happens, before the image', async () => {
    const events: GenerateEvent[] = await new Promise((resolve, reject) => {
      const out: GenerateEvent[] = [];
      const call = c.client.GenerateStream({ pipeline: 'noise-flagged', prompt: 'blue planet', width: 256, height: 128, seed: '77' }, undefined, { deadline: Date.now() + 120_000 });
      call.on('data', (e: GenerateEvent) => out.push(e));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });
    const rejected = events.filter((e) => e.qc_rejected).map((e) => e.qc_rejected!);
    assert.deepEqual(rejected.map((r) => [r.image_index, r.attempt, r.seed, r.rerolled, r.next_attempt, r.next_seed, r.reasons]), [
      [0, 1, '77', true, 2, attemptSeed(77n, 2).toString(), ['no planet found']],
      [0, 2, attemptSeed(77n, 2).toString(), true, 3, attemptSeed(77n, 3).toString(), ['no planet found']],
      [0, 3, attemptSeed(77n, 3).toString(), false, 0, '0', ['no planet found']],
    ]);
    const lastRejection = events.findLastIndex((e) => e.qc_rejected);
    assert.ok(lastRejection < events.findIndex((e) => e.image_chunk), 'rejections come before the image');
    assert.equal(events.find((e) => e.image_chunk)!.image_chunk!.meta!.qc!.attempts, 3);
  });

  test('on_fail: error fails the request with FAILED_PRECONDITION naming the reason', async () => {
    const err = await grpcError(generate(c.client, { pipeline: 'noise-strict', prompt: 'a planet', width: 256, height: 128, seed: '5' }));
    assert.equal(err.code, GrpcStatus.FAILED_PRECONDITION);
    assert.match(err.details, /pipeline noise-strict: image 0 failed the quality check on all 2 attempts \(qc\.on_fail: error\): no planet found/);
    assert.deepEqual(err.metadata.get('orrery-error-code'), ['ORRERY_ERR_QC_FAILED']);
  });

  test('a passing image is returned at its first attempt with its box and "QC: passed (attempt 1)"', async () => {
    const scene = await planetPng();
    const res = await generate(c.client, { pipeline: 'upscale-gated', prompt: 'a planet', init_image: scene.png, width: 384, height: 160, seed: '3' });
    const img = res.images[0]!;
    assert.deepEqual([img.width, img.height], [768, 320]);
    const qc = img.qc!;
    assert.deepEqual([qc.passed, qc.attempts, qc.seed, qc.reasons, qc.checked_width, qc.checked_height], [true, 1, '3', [], 768, 320]);
    const label = { left: scene.box.left * 2, top: scene.box.top * 2, right: scene.box.right * 2, bottom: scene.box.bottom * 2 };
    assert.ok(iou(qc.box!, label) > 0.8, `box ${JSON.stringify(qc.box)} vs the scene's ${JSON.stringify(label)}`);
    assert.ok(Math.abs(qc.area_fraction - ((qc.box!.right - qc.box!.left) * (qc.box!.bottom - qc.box!.top)) / (768 * 320)) < 1e-9);
    assert.equal(fields(await readParameters(img.data))['QC'], 'passed (attempt 1)');
  });

  test('a gate on the first stage: the later stage upscales the last attempt, and the final image keeps the verdict before Pipeline', async () => {
    const res = await generate(c.client, { pipeline: 'noise-then-upscale', prompt: 'green planet', width: 128, height: 64, seed: '21' });
    const img = res.images[0]!;
    assert.deepEqual([img.width, img.height], [256, 128]);
    assert.deepEqual([img.qc!.passed, img.qc!.attempts, img.qc!.checked_width], [false, 2, 128]);
    const parsed = parseParameters((await readParameters(img.data))!);
    assert.deepEqual(parsed.fields.map(([k]) => k).slice(-2), ['QC', 'Pipeline']);
    const f = Object.fromEntries(parsed.fields);
    assert.equal(f['QC'], 'failed (attempt 2): no planet found');
    assert.equal(f['Seed'], attemptSeed(21n, 2).toString());
    assert.deepEqual(res.timings.map((t) => t.deployment), ['texture', 'texture', 'upscaler'], 'the texture stage ran twice, the upscaler once');
  });

  test('a bulk job records each item\'s verdict in its manifest line, ListJobItems and the job\'s counts', async () => {
    const dir = path.join(c.dir, 'qc-job');
    const job = await rpc(c.client, 'SubmitJob', {
      template: { pipeline: 'noise-then-upscale', width: 128, height: 64, seed: '500' },
      items: { items: [{ custom_id: 'a', prompt: 'red planet', seed: '1' }, { custom_id: 'b', prompt: 'blue planet', seed: '2' }] },
      output_uri: pathToFileURL(dir).href,
    });
    const done = await waitJob(c.client, job.job_id, (j) => j.state === 'completed', 120_000) as JobMsg & { qc_flagged: string; qc_rerolls: string };
    assert.deepEqual([done.succeeded, done.qc_flagged, done.qc_rerolls], ['2', '2', '2'], 'two items, each flagged after one re-roll');
    const lines = sinkContents(dir).manifest.sort((x, y) => String(x.custom_id).localeCompare(String(y.custom_id)));
    assert.deepEqual(lines.map((l) => [l.custom_id, l.seed, l.qc]), [
      ['a', '1', { passed: false, attempts: 2, seed: attemptSeed(1n, 2).toString(), reasons: ['no planet found'], box: null, area_fraction: 0 }],
      ['b', '2', { passed: false, attempts: 2, seed: attemptSeed(2n, 2).toString(), reasons: ['no planet found'], box: null, area_fraction: 0 }],
    ]);
    const listed = await rpc<{ items: Array<{ custom_id: string; qc: { passed: boolean; attempts: number; seed: string } | null }> }>(c.client, 'ListJobItems', { job_id: job.job_id });
    assert.deepEqual(listed.items.map((i) => [i.custom_id, i.qc?.passed, i.qc?.attempts, i.qc?.seed]), [
      ['a', false, 2, attemptSeed(1n, 2).toString()], ['b', false, 2, attemptSeed(2n, 2).toString()],
    ]);
  });

  test('orrery generate names each file\'s verdict', async () => {
    const out = path.join(c.dir, 'cli-out');
    const res = await generateToFolder({
      addr: c.cluster.grpcAddress, prompt: 'red planet', extra: [], count: 2, requests: 1, seed: '40', width: 128, height: 64, pipeline: 'noise-flagged',
      format: 'png', out, timeoutMs: 120_000, quiet: true,
    });
    assert.equal(res.files.length, 2);
    for (const f of res.files) assert.equal(res.qc[f], 'FLAGGED after 3 attempts: no planet found');
  });

  test('a bulk job item failed by on_fail: error fails at once with ORRERY_ERR_QC_FAILED, not retried with the same seeds', async () => {
    const job = await rpc(c.client, 'SubmitJob', {
      template: { pipeline: 'noise-strict', width: 128, height: 64, seed: '900' },
      items: { items: [{ custom_id: 'only', prompt: 'a planet', seed: '3' }] },
      output_uri: pathToFileURL(path.join(c.dir, 'qc-strict-job')).href, max_attempts: 3,
    });
    const done = await waitJob(c.client, job.job_id, (j) => j.state === 'completed', 120_000);
    assert.deepEqual([done.failed, done.succeeded, done.attempts], ['1', '0', '1']);
    const listed = await rpc<{ items: Array<{ error_code: string; error: string; attempts: number }> }>(c.client, 'ListJobItems', { job_id: job.job_id });
    assert.deepEqual(listed.items.map((i) => [i.error_code, i.attempts]), [['ORRERY_ERR_QC_FAILED', 1]]);
    assert.match(listed.items[0]!.error, /failed the quality check on all 2 attempts .*no planet found/);
  });
});
