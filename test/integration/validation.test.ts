/** Bad input at the edge: every invalid field gets INVALID_ARGUMENT naming it, and nothing breaks. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { generate } from '../../services/cli/client.js';
import { grpcError, startCluster, testConfig, type TestCluster } from './harness.js';

const OK = { prompt: 'a planet', model_id: 'syn-a' };

/** [field named in the error, request] */
const INVALID: Array<[string, Record<string, unknown>]> = [
  ['model_id', { ...OK, model_id: '../etc/passwd' }],
  ['model_id', { ...OK, model_id: '/abs/path' }],
  ['model_id', { ...OK, model_id: 'Bad Model' }],
  ['prompt', { model_id: 'syn-a', prompt: '' }],
  ['prompt', { ...OK, prompt: 'x'.repeat(2001) }],
  ['planet', { model_id: 'syn-a', planet: { color: ' ', atmosphere: '', moons: '', sky: '', extras: [] } }],
  ['planet.extras', { model_id: 'syn-a', planet: { color: 'red', extras: Array.from({ length: 17 }, () => 'x') } }],
  ['negative_prompt', { ...OK, negative_prompt: 'bad\u0001text' }],
  ['num_images', { ...OK, num_images: 17 }],
  ['steps', { ...OK, steps: 201 }],
  ['guidance_scale', { ...OK, guidance_scale: -1 }],
  ['guidance_scale', { ...OK, guidance_scale: 51 }],
  ['width', { ...OK, width: 1001, height: 1000 }],
  ['height', { ...OK, width: 1000 }],
  ['width', { ...OK, height: 1000 }],
  ['width', { ...OK, width: 16, height: 64 }],
  ['aspect', { ...OK, aspect: 'wide' }],
  ['width', { ...OK, aspect: '21:9', width: 1536 }],
  ['pipeline', { ...OK, pipeline: '../x' }],
  ['init_image', { ...OK, init_image: Buffer.from('definitely not an image') }],
  ['strength', { ...OK, strength: 1.5 }],
  ['output_format', { ...OK, output_format: 7 }],
  ['timeout_ms', { ...OK, timeout_ms: 25 * 3600 * 1000 }],
  ['request_id', { ...OK, request_id: 'has spaces' }],
];

describe('validation at the edge', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({ synthetic: { stage: 'synthetic', models: ['syn-a'], options: {} } }));
  });
  after(() => c?.stop());

  for (const [field, req] of INVALID) {
    test(`rejects a bad ${field} with INVALID_ARGUMENT naming the field (${JSON.stringify(req).slice(0, 60)})`, async () => {
      const err = await grpcError(generate(c.client, req));
      assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
      assert.ok(err.details.startsWith(`${field}:`), `"${err.details}" names ${field}`);
      assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_INVALID_ARGUMENT');
    });
  }

  test('an unknown model is NOT_FOUND, naming the model and what the deployment serves', async () => {
    const err = await grpcError(generate(c.client, { ...OK, model_id: 'nope' }));
    assert.equal(err.code, status.NOT_FOUND);
    assert.match(err.details, /model_id: unknown model "nope".*syn-a/);
  });

  test('an unknown pipeline is NOT_FOUND, listing the known ones', async () => {
    const err = await grpcError(generate(c.client, { ...OK, pipeline: 'planet-ultrawide' }));
    assert.equal(err.code, status.NOT_FOUND);
    assert.match(err.details, /pipeline: unknown pipeline "planet-ultrawide" \(known: synthetic\)/);
  });

  test('a SubmitJob without items says which field is missing', async () => {
    const err = await grpcError(new Promise((resolve, reject) => c.client.SubmitJob({ template: { pipeline: 'synthetic' } }, (e, r) => (e ? reject(e) : resolve(r)))));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /grid|items/);
  });

  test('the server keeps serving after all the bad requests', async () => {
    const res = await generate(c.client, { ...OK, seed: '3' });
    assert.equal(res.images.length, 1);
    assert.equal(res.images[0]!.seed, '3');
  });
});
