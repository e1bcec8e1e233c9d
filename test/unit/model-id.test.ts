import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { InvalidArgumentError, ModelNotFoundError } from '../../services/common/errors.js';
import { bundleDirOf, bundleFolderName, loraFileOf, ModelIdError, parseModelId, withoutLora } from '../../services/common/model-id.js';
import { resolveModelFiles } from '../../services/models/model-files.js';

describe('parseModelId', () => {
  test('splits base+lora@variant into its parts', () => {
    assert.deepEqual({ ...parseModelId('sdxl-base+planets_v2@int8') }, { id: 'sdxl-base+planets_v2@int8', base: 'sdxl-base', lora: 'planets_v2', variant: 'int8' });
    assert.deepEqual({ ...parseModelId('tiny-sdxl') }, { id: 'tiny-sdxl', base: 'tiny-sdxl' });
    assert.deepEqual({ ...parseModelId('b@fp16') }, { id: 'b@fp16', base: 'b', variant: 'fp16' });
  });

  for (const id of ['../x', '/abs', 'a/b', 'a\\b', '.hidden', 'base+..', 'base+../../etc/passwd', 'Base', 'a b', 'base+a+b', 'base+', 'base@', '', 'a'.repeat(65),
    'base+../x@int8', 'base+lora@../int8', 'base+lora@int8/..', '..+lora@q4', 'base+.lora@fp16', 'base@int8+lora', 'base+lora@int8@q4']) {
    test(`refuses ${JSON.stringify(id.slice(0, 30))} before touching the file system`, () => {
      assert.throws(() => parseModelId(id), ModelIdError);
    });
  }

  test('refuses a variant outside the documented set, naming the set', () => {
    assert.throws(() => parseModelId('base@int3'), /unknown variant "int3" \(one of fp32, fp16, int8, q4\)/);
  });

  test('names one folder per bundle: base, base@variant, and base+lora@variant for a LoRA fused before the variant was written', () => {
    assert.equal(bundleFolderName(parseModelId('b')), 'b');
    assert.equal(bundleFolderName(parseModelId('b@int8')), 'b@int8');
    assert.equal(bundleFolderName(parseModelId('b+l@q4')), 'b+l@q4');
    assert.equal(bundleFolderName(parseModelId('b+l')), 'b', 'base+lora fuses into the base at load');
    assert.deepEqual({ ...withoutLora(parseModelId('b+l@fp16')) }, { id: 'b@fp16', base: 'b', variant: 'fp16' });
    assert.deepEqual({ ...withoutLora(parseModelId('b+l')) }, { id: 'b', base: 'b' });
  });

  test('every folder name is one path segment inside the repository', () => {
    for (const id of ['sdxl-base', 'sdxl-base+planets_v2@int8', 'a.b+c-d@q4', '0+0@fp16', `${'a'.repeat(64)}+${'b'.repeat(64)}@fp32`]) {
      const name = bundleFolderName(parseModelId(id));
      assert.ok(!name.includes('/') && !name.includes('\\') && name !== '.' && name !== '..' && !name.startsWith('.'), name);
      assert.equal(path.dirname(bundleDirOf('/repo', parseModelId(id))), '/repo');
    }
  });

  test('resolves bundles, variants and LoRA files inside the repository', () => {
    assert.equal(bundleDirOf('/repo', parseModelId('b+l@q4')), path.join('/repo', 'b+l@q4'));
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
  test('gives NOT_FOUND for base@fp32 saying the fp32 model is the base itself, not a quantize command that would be refused', () => {
    assert.throws(() => resolveModelFiles(repo, 'base@fp32'), (err: unknown) => {
      assert.ok(err instanceof ModelNotFoundError);
      assert.match(err.message, /the fp32 model is the base bundle itself, served as model id base\b/);
      assert.doesNotMatch(err.message, /--variant fp32/);
      return true;
    });
    assert.throws(() => resolveModelFiles(repo, 'base+good@fp32'), /served as model id base\+good\)?$/);
  });
  test('gives NOT_FOUND with the command that fuses the LoRA before quantizing for base+lora@int8 and @q4, even when base@int8 exists', () => {
    fs.mkdirSync(path.join(repo, 'base@int8'));
    try {
      for (const v of ['int8', 'q4']) {
        assert.throws(() => resolveModelFiles(repo, `base+good@${v}`), (err: unknown) => {
          assert.ok(err instanceof ModelNotFoundError);
          assert.equal(err.code, 'ORRERY_ERR_MODEL_NOT_FOUND');
          assert.ok(err.message.includes(path.join(repo, `base+good@${v}`)), err.message);
          assert.ok(err.message.endsWith(`write it with: orrery models quantize --model base+good --variant ${v})`), err.message);
          return true;
        });
      }
    } finally {
      fs.rmSync(path.join(repo, 'base@int8'), { recursive: true });
    }
  });
  test('serves base+lora@variant from its pre-fused folder (no LoRA to fuse at load, no LoRA file needed)', () => {
    fs.mkdirSync(path.join(repo, 'base+gone@q4'));
    try {
      const f = resolveModelFiles(repo, 'base+gone@q4');
      assert.equal(f.bundleDir, path.join(repo, 'base+gone@q4'));
      assert.equal(f.loraFile, undefined);
    } finally {
      fs.rmSync(path.join(repo, 'base+gone@q4'), { recursive: true });
    }
  });
  test('base+lora@fp16 prefers its pre-fused folder, else fuses the LoRA into base@fp16 at load, else names the command', () => {
    assert.throws(() => resolveModelFiles(repo, 'base+good@fp16'), (err: unknown) => err instanceof ModelNotFoundError
      && err.message.includes(`${path.join(repo, 'base+good@fp16')} nor ${path.join(repo, 'base@fp16')}`)
      && err.message.includes('orrery models quantize --model base+good --variant fp16'));
    fs.mkdirSync(path.join(repo, 'base@fp16'));
    try {
      const atLoad = resolveModelFiles(repo, 'base+good@fp16');
      assert.equal(atLoad.bundleDir, path.join(repo, 'base@fp16'));
      assert.equal(atLoad.loraFile, path.join(repo, 'loras', 'good.safetensors'));
      fs.mkdirSync(path.join(repo, 'base+good@fp16'));
      const prebuilt = resolveModelFiles(repo, 'base+good@fp16');
      assert.equal(prebuilt.bundleDir, path.join(repo, 'base+good@fp16'));
      assert.equal(prebuilt.loraFile, undefined);
    } finally {
      for (const d of ['base@fp16', 'base+good@fp16']) fs.rmSync(path.join(repo, d), { recursive: true, force: true });
    }
  });
  test('finds an existing base and LoRA', () => {
    const f = resolveModelFiles(repo, 'base+good');
    assert.equal(f.bundleDir, path.join(repo, 'base'));
    assert.equal(f.loraFile, path.join(repo, 'loras', 'good.safetensors'));
  });
});
