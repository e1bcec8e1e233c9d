import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { InvalidArgumentError, ModelNotFoundError } from '../../services/common/errors.js';
import { bundleDirOf, loraFileOf, ModelIdError, parseModelId } from '../../services/models/model-id.js';
import { resolveModelFiles } from '../../services/models/model-files.js';

describe('parseModelId', () => {
  test('splits base+lora@variant into its parts', () => {
    assert.deepEqual({ ...parseModelId('sdxl-base+planets_v2@int8') }, { id: 'sdxl-base+planets_v2@int8', base: 'sdxl-base', lora: 'planets_v2', variant: 'int8' });
    assert.deepEqual({ ...parseModelId('tiny-sdxl') }, { id: 'tiny-sdxl', base: 'tiny-sdxl' });
    assert.deepEqual({ ...parseModelId('b@fp16') }, { id: 'b@fp16', base: 'b', variant: 'fp16' });
  });

  for (const id of ['../x', '/abs', 'a/b', 'a\\b', '.hidden', 'base+..', 'base+../../etc/passwd', 'Base', 'a b', 'base+a+b', 'base+', 'base@', '', 'a'.repeat(65)]) {
    test(`refuses ${JSON.stringify(id.slice(0, 30))} before touching the file system`, () => {
      assert.throws(() => parseModelId(id), ModelIdError);
    });
  }

  test('refuses a variant outside the documented set, naming the set', () => {
    assert.throws(() => parseModelId('base@int3'), /unknown variant "int3" \(one of fp32, fp16, int8, q4\)/);
  });

  test('resolves bundles, variants and LoRA files inside the repository', () => {
    assert.equal(bundleDirOf('/repo', parseModelId('b+l@q4')), path.join('/repo', 'b@q4'));
    assert.equal(bundleDirOf('/repo', parseModelId('b+l')), path.join('/repo', 'b'));
    assert.equal(loraFileOf('/repo', parseModelId('b+l')), path.join('/repo', 'loras', 'l.safetensors'));
    assert.equal(loraFileOf('/repo', parseModelId('b')), undefined);
  });
});

describe('resolveModelFiles', () => {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-ids-'));
  fs.mkdirSync(path.join(repo, 'base'));
  fs.mkdirSync(path.join(repo, 'loras'));
  fs.writeFileSync(path.join(repo, 'loras', 'good.safetensors'), '');

  test('rejects a path-like id with INVALID_ARGUMENT on model_id', () => {
    assert.throws(() => resolveModelFiles(repo, '../base'), (err: unknown) => err instanceof InvalidArgumentError && err.field === 'model_id');
  });
  test('gives NOT_FOUND naming the missing LoRA file', () => {
    assert.throws(() => resolveModelFiles(repo, 'base+missing'), (err: unknown) => err instanceof ModelNotFoundError && err.message.includes(path.join(repo, 'loras', 'missing.safetensors')));
  });
  test('gives NOT_FOUND with the quantize command for a missing variant', () => {
    assert.throws(() => resolveModelFiles(repo, 'base@int8'), /orrery models quantize --model base --variant int8/);
  });
  test('finds an existing base and LoRA', () => {
    const f = resolveModelFiles(repo, 'base+good');
    assert.equal(f.bundleDir, path.join(repo, 'base'));
    assert.equal(f.loraFile, path.join(repo, 'loras', 'good.safetensors'));
  });
});
