import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileConfig } from '../../services/common/config.js';
import { ModelNotFoundError, PipelineNotFoundError } from '../../services/common/errors.js';
import type { DeploymentScheduler } from '../../services/router/deployment-scheduler.js';
import { PipelineRunner, planPipeline, stageSize, targetSize } from '../../services/router/pipeline-runner.js';
import { normalizeRequest, type GenerateRequestWire } from '../../services/router/request-validation.js';
import type { WorkUnit } from '../../services/router/work-unit.js';

const config = compileConfig({
  deployments: {
    'sdxl-base': { stage: 'sdxl', models: ['base', 'base+moons'] },
    upscaler: { stage: 'upscaler', models: ['x2', 'x4'] },
    'sdxl-img2img': { stage: 'sdxl', models: ['base'], options: { mode: 'image-to-image' } },
  },
  pipelines: {
    'planet-ultrawide': {
      default_size: '2520x1080',
      stages: [
        { deployment: 'sdxl-base', size: 'bucket' },
        { deployment: 'upscaler', model: 'x2', params: { scale: 2 }, size: 'target' },
        { deployment: 'sdxl-img2img', model: 'base', params: { strength: 0.3 } },
        { deployment: 'upscaler', model: 'x2', params: { scale: 2 }, size: 'target' },
      ],
    },
  },
});
const req = (r: GenerateRequestWire) => normalizeRequest({ prompt: 'p', ...r }, () => 'id', () => 1n);
const pipeline = config.pipelines['planet-ultrawide']!;

describe('pipeline planning', () => {
  test('an aspect of 21:9 in a pipeline with a default size keeps its width: 2520x1080', () => {
    assert.deepEqual(targetSize(pipeline, req({ aspect: '21:9' })), { width: 2520, height: 1080 });
  });
  test('no size at all gives the pipeline default; explicit width/height win', () => {
    assert.deepEqual(targetSize(pipeline, req({})), { width: 2520, height: 1080 });
    assert.deepEqual(targetSize(pipeline, req({ width: 3360, height: 1440 })), { width: 3360, height: 1440 });
  });
  test('a pipeline without a default size uses the request size (the aspect bucket)', () => {
    assert.deepEqual(targetSize(config.pipelines['sdxl-base']!, req({ aspect: '21:9' })), { width: 1536, height: 640 });
  });
  test('stage sizes of planet-ultrawide: bucket 1536x640, then the target, the target again (img2img keeps its input), then the target', () => {
    const { stages } = planPipeline(config, req({ aspect: '21:9' }));
    const target = { width: 2520, height: 1080 };
    let input = target;
    const sizes = stages.map((s) => (input = stageSize(s, target, input)));
    assert.deepEqual(sizes, [{ width: 1536, height: 640 }, target, target, target]);
    assert.equal(stages[2]!.strength, 0.3);
    assert.deepEqual(stages.map((s) => s.modelId), ['base', 'x2', 'base', 'x2']);
  });
  test('a scaled stage multiplies its input by params.scale', () => {
    assert.deepEqual(stageSize({ size: 'scaled', scale: 2 }, { width: 1, height: 1 }, { width: 1536, height: 640 }), { width: 3072, height: 1280 });
  });
  test('the request model applies to stages without a fixed model; an unknown one is NOT_FOUND naming the deployment', () => {
    assert.equal(planPipeline(config, req({ model_id: 'base+moons', pipeline: 'sdxl-base' })).stages[0]!.modelId, 'base+moons');
    assert.throws(() => planPipeline(config, req({ model_id: 'other', pipeline: 'planet-ultrawide' })), (e: unknown) => e instanceof ModelNotFoundError && /sdxl-base serves base, base\+moons/.test(e.message));
  });
  test('an unknown pipeline is NOT_FOUND listing the known ones', () => {
    assert.throws(() => planPipeline(config, req({ pipeline: 'nope' })), (e: unknown) => e instanceof PipelineNotFoundError && /known: planet-ultrawide, sdxl-base/.test(e.message));
  });
});

describe('pipeline runner', () => {
  /** Stands in for each deployment's scheduler: records the units and answers them at once. */
  function recordingSchedulers() {
    const seen: Array<{ deployment: string; outputFormat: string; intermediate: boolean }> = [];
    const schedulers = new Map(Object.values(config.deployments).map((dep) => [dep.name, {
      config: dep,
      queueDepth: 0,
      submit(units: readonly WorkUnit[]) {
        for (const u of units) {
          seen.push({ deployment: u.deployment, outputFormat: u.input.outputFormat, intermediate: u.input.intermediate ?? false });
          u.succeed({ data: new Uint8Array(1), width: u.input.width, height: u.input.height, mimeType: 'image/png', replicaId: 'r', queueSeconds: 0, runSeconds: 0 });
        }
      },
    }]));
    return { seen, schedulers: schedulers as unknown as ReadonlyMap<string, DeploymentScheduler> };
  }

  test('every stage but the last gets a lossless intermediate PNG; the last the client\'s format', async () => {
    const { seen, schedulers } = recordingSchedulers();
    await new PipelineRunner(config, schedulers, Date.now).run(req({ pipeline: 'planet-ultrawide', output_format: 'JPEG' }), new AbortController().signal, 0);
    assert.deepEqual(seen, [
      { deployment: 'sdxl-base', outputFormat: 'png', intermediate: true },
      { deployment: 'upscaler', outputFormat: 'png', intermediate: true },
      { deployment: 'sdxl-img2img', outputFormat: 'png', intermediate: true },
      { deployment: 'upscaler', outputFormat: 'jpeg', intermediate: false },
    ]);
  });

  test('a one-stage pipeline\'s only stage is the last: the client\'s format, not intermediate', async () => {
    const { seen, schedulers } = recordingSchedulers();
    await new PipelineRunner(config, schedulers, Date.now).run(req({ pipeline: 'sdxl-base', output_format: 'WEBP' }), new AbortController().signal, 0);
    assert.deepEqual(seen, [{ deployment: 'sdxl-base', outputFormat: 'webp', intermediate: false }]);
  });
});
