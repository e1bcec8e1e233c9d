import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileConfig } from '../../services/common/config.js';
import { InvalidArgumentError, OrreryError } from '../../services/common/errors.js';
import { compileSubmit, itemRequest, sourceOfDef, type SubmitJobWire } from '../../services/router/jobs/job-spec.js';

const config = compileConfig({
  deployments: { syn: { stage: 'synthetic', models: ['syn-a'] } },
  jobs: { max_job_items: 1000 },
});
const compile = (raw: SubmitJobWire) => compileSubmit(config, raw, () => 77n);

function throwsField(fn: () => unknown, field: string, re?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    assert.equal(err.field, field);
    if (re) assert.match(err.message, re);
    return true;
  });
}

describe('job completion window', () => {
  const grid = { template: { pipeline: 'syn' }, grid: { colors: ['red'] } };
  test('a job without completion_window_s gets the cluster default (24 h unless configured)', () => {
    assert.equal(compile(grid).spec.completionWindowMs, 24 * 3_600_000);
    const short = compileConfig({ deployments: { syn: { stage: 'synthetic', models: ['syn-a'] } }, jobs: { default_completion_window_h: 0.5 } });
    assert.equal(compileSubmit(short, grid, () => 1n).spec.completionWindowMs, 1_800_000);
  });

  test('completion_window_s sets the window; no_completion_window leaves the job without one', () => {
    assert.equal(compile({ ...grid, completion_window_s: '2' }).spec.completionWindowMs, 2000);
    assert.equal(compile({ ...grid, no_completion_window: true }).spec.completionWindowMs, 0);
  });

  test('a window beyond 366 days, or one given with no_completion_window, is refused naming completion_window_s', () => {
    throwsField(() => compile({ ...grid, completion_window_s: 366 * 86_400 + 1 }), 'completion_window_s', /more than 31622400/);
    throwsField(() => compile({ ...grid, completion_window_s: 60, no_completion_window: true }), 'completion_window_s', /together with no_completion_window/);
    throwsField(() => compile({ ...grid, completion_window_s: '-1' }), 'completion_window_s');
  });
});

describe('job spec', () => {
  test('a grid job records the pipeline, model, size, extension and a random base seed when the template has none', () => {
    const c = compile({ template: { pipeline: 'syn', aspect: '21:9', output_format: 'JPEG' }, grid: { colors: ['red', 'blue'], seeds_per_prompt: 3 } });
    assert.equal(c.total, 6);
    assert.equal(c.spec.pipeline, 'syn');
    assert.equal(c.spec.seed, '77');
    assert.equal(c.spec.ext, 'jpg');
    assert.equal(c.spec.maxAttempts, 3);
    assert.equal(c.itemsFollow, false);
  });

  test('template errors are Generate\'s, prefixed with template.', () => {
    throwsField(() => compile({ template: { width: 100, height: 64 }, grid: { colors: ['red'] } }), 'template.width', /not a multiple of 8/);
    throwsField(() => compile({ template: { num_images: 2 }, grid: { colors: ['red'] } }), 'template.num_images');
    throwsField(() => compile({ template: { seed: 'x' }, grid: { colors: ['red'] } }), 'template.seed');
  });

  test('item errors name the item: items[i].field', () => {
    throwsField(() => compile({ items: { items: [{ custom_id: 'a', prompt: 'ok' }, { custom_id: 'b' }] } }), 'items[1].prompt', /is required/);
    throwsField(() => compile({ items: { items: [{ custom_id: 'a/b', prompt: 'x' }] } }), 'items[0].custom_id');
    throwsField(() => compile({ items: { items: [{ custom_id: 'manifest', prompt: 'x' }] } }), 'items[0].custom_id', /reserved/);
    throwsField(() => compile({ items: { items: [{ custom_id: 'a', prompt: 'x' }, { custom_id: 'b', prompt: 'x' }, { custom_id: 'a', prompt: 'y' }] } }), 'items[2].custom_id', /duplicates items\[0\]/);
  });

  test('a grid over max_job_items is refused with the axis sizes', () => {
    throwsField(() => compile({ grid: { colors: Array(20).fill('c'), atmospheres: Array(10).fill('a'), seeds_per_prompt: 10 } }), 'grid', /20 colors × 10 atmospheres × 0 moons × 0 skies × 10 seeds_per_prompt = 2000 items; more than jobs.max_job_items \(1000\)/);
    throwsField(() => compile({ grid: {} }), 'grid', /every axis is empty/);
    throwsField(() => compile({ grid: { colors: ['c'] }, items_follow: true }), 'items_follow');
  });

  test('unknown pipelines and models are NOT_FOUND errors', () => {
    assert.throws(() => compile({ template: { pipeline: 'nope' }, grid: { colors: ['c'] } }), (e: unknown) => e instanceof OrreryError && e.code === 'ORRERY_ERR_PIPELINE_NOT_FOUND');
    assert.throws(() => compile({ template: { model_id: 'other' }, grid: { colors: ['c'] } }), (e: unknown) => e instanceof OrreryError && e.code === 'ORRERY_ERR_MODEL_NOT_FOUND');
  });

  test('an item overrides the template\'s prompt, seed and negative prompt; an unset seed derives from the job seed and position', () => {
    const c = compile({ template: { prompt: 'template prompt', negative_prompt: 'blur', seed: '5' }, items: { items: [{ custom_id: 'a', planet: { color: 'red' }, prompt_source: 'planet' }, { custom_id: 'b', seed: '9', negative_prompt: '' }] } });
    const a = itemRequest(c.spec, 'j1', 0, sourceOfDef(c.spec, c.items[0]!, 0));
    assert.equal(a.prompt, 'red planet');
    assert.equal(a.negativePrompt, 'blur');
    assert.equal(a.requestId, 'j1-0');
    const b = itemRequest(c.spec, 'j1', 1, sourceOfDef(c.spec, c.items[1]!, 1));
    assert.equal(b.prompt, 'template prompt');
    assert.equal(b.seed, 9n);
    assert.equal(b.negativePrompt, '');
    assert.notEqual(itemRequest(c.spec, 'j1', 0, sourceOfDef(c.spec, c.items[0]!, 0)).seed, itemRequest(c.spec, 'j1', 2, sourceOfDef(c.spec, c.items[0]!, 2)).seed);
  });
});
