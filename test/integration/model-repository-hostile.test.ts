/**
 * A hostile model repository, tried as a new user would: one sdxl deployment lists a good bundle
 * and bad ones — a VAE that does not upsample by 8, truncated ONNX files, a model of the wrong
 * float type, a missing tokenizer file, a LoRA whose safetensors header offsets lie, a LoRA with
 * NaN weights. Each bad model is refused at load (ORRERY_ERR_MODEL_LOAD_FAILED) with a message
 * naming the file and, where there is one, the tensor; the replica keeps serving the good model.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { generate } from '../../services/cli/client.js';
import { decodeModel, encodeModel } from '../../services/models/onnx/onnx-model.js';
import { encodeSafetensors, parseSafetensors } from '../../services/models/lora/safetensors.js';
import { writeTinySdxlBundle, type TinySdxlOptions } from '../../services/models/tiny-sdxl/index.js';
import { writeTinyLora } from '../../services/models/tiny-sdxl/tiny-lora.js';
import { ESCAPED_ERROR } from '../support/fuzz-runner.js';
import { grpcError, startCluster, testConfig, type TestCluster } from './harness.js';

const FP32: TinySdxlOptions = { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true };

/** Rewrites the tiny VAE decoder's ×8 Resize scales to ×4 (what a VAE of another family would do). */
function upsampleBy4(file: string): void {
  const model = decodeModel(fs.readFileSync(file));
  const scales = model.graph!.initializer!.find((t) => t.name === '/decoder/upsample/scales');
  assert.ok(scales, 'the tiny decoder has its Resize scales as an initializer');
  scales.raw_data = new Uint8Array(Float32Array.of(1, 1, 4, 4).buffer);
  delete scales.float_data;
  fs.writeFileSync(file, encodeModel(model));
}

/** Cuts a file to `fraction` of its length. */
function truncate(file: string, fraction: number): void {
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length * fraction)));
}

/**
 * A LoRA whose header moves every tensor after the first 16 bytes further into the data section
 * (16 padding bytes inserted there): sizes stay right and nothing overlaps, but the offsets no
 * longer tile the data — the reference implementation refuses such a file.
 */
function withLyingOffsets(file: string): string {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
  const data = bytes.subarray(8 + n);
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__').sort((a, b) => a[1].data_offsets![0] - b[1].data_offsets![0]);
  const firstEnd = entries[0]![1].data_offsets![1];
  for (const [, e] of entries.slice(1)) e.data_offsets = [e.data_offsets![0] + 16, e.data_offsets![1] + 16];
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), data.subarray(0, firstEnd), Buffer.alloc(16), data.subarray(firstEnd)]));
  return entries[1]![0];
}

/** A LoRA with a NaN in its second tensor (by name order); returns that tensor's name. */
function withNaN(file: string): string {
  const st = parseSafetensors(fs.readFileSync(file), file);
  const names = [...st.tensors.keys()].sort();
  const tensors: Record<string, { data: Float32Array; shape: readonly number[] }> = {};
  for (const name of names) tensors[name] = { data: Float32Array.from(st.tensors.get(name)!.data), shape: st.tensors.get(name)!.shape };
  const victim = names.find((n) => tensors[n]!.data.length > 3)!;
  tensors[victim]!.data[3] = Number.NaN;
  fs.writeFileSync(file, encodeSafetensors(tensors, st.metadata));
  return victim;
}

describe('a hostile model repository', () => {
  let c: TestCluster;
  let repo: string;
  const expected: Record<string, RegExp> = {};
  before(async () => {
    repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-hostile-repo-'));
    const bundle = async (name: string, options = FP32) => {
      await writeTinySdxlBundle(path.join(repo, name), options);
      return path.join(repo, name);
    };

    upsampleBy4(path.join(await bundle('vae-x4'), 'vae_decoder', 'model.onnx'));
    expected['vae-x4'] = /vae_decoder\/model\.onnx: output "sample" is \[1, 3, 8, 8\] .*upsamples by 4x4, SDXL's by 8/;

    truncate(path.join(await bundle('cut-unet'), 'unet', 'model.onnx'), 0.5);
    expected['cut-unet'] = /unet\/model\.onnx: ONNX Runtime could not load it/;

    truncate(path.join(await bundle('cut-unet-data'), 'unet', 'model.onnx_data'), 0.5);
    expected['cut-unet-data'] = /unet\/model\.onnx: ONNX Runtime could not load it: .*(model\.onnx_data|external data|out of bounds|[Ee]xternal)/;

    // text_encoder_2 from the fp16 export in an fp32 bundle: its outputs are float16.
    const mixed = await bundle('mixed-dtypes');
    const fp16 = await bundle('fp16-donor', { ...FP32, dtype: 'float16' });
    fs.copyFileSync(path.join(fp16, 'text_encoder_2', 'model.onnx'), path.join(mixed, 'text_encoder_2', 'model.onnx'));
    expected['mixed-dtypes'] = /text_encoder_2\/model\.onnx: output "last_hidden_state" is float16, but the bundle's other models use float32/;

    fs.rmSync(path.join(await bundle('no-merges'), 'tokenizer_2', 'merges.txt'));
    expected['no-merges'] = /tokenizer_2\/merges\.txt: missing/;

    await bundle('tiny-sdxl');
    const loras = path.join(repo, 'loras');
    writeTinyLora(path.join(loras, 'gap.safetensors'), { format: 'kohya', seed: 7 });
    const moved = withLyingOffsets(path.join(loras, 'gap.safetensors'));
    expected['tiny-sdxl+gap'] = new RegExp(`loras/gap\\.safetensors: tensor "${moved.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}": data_offsets begin at byte \\d+, but the previous tensor ends at byte \\d+`);
    writeTinyLora(path.join(loras, 'nan.safetensors'), { format: 'kohya', seed: 8 });
    const poisoned = withNaN(path.join(loras, 'nan.safetensors'));
    expected['tiny-sdxl+nan'] = new RegExp(`loras/nan\\.safetensors: tensor "${poisoned.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}": 1 of \\d+ values are NaN or infinite \\(the first at index 3\\)`);

    c = await startCluster(testConfig({
      sdxl: {
        stage: 'sdxl', models: ['tiny-sdxl', ...Object.keys(expected)], preload_models: ['tiny-sdxl'],
        max_models_per_replica: 2, default_steps: 2,
      },
    }, { model_repository: repo }));
  });
  after(async () => {
    await c?.stop();
    fs.rmSync(repo, { recursive: true, force: true });
  });

  const ask = (model: string) => generate(c.client, { pipeline: 'sdxl', model_id: model, prompt: 'a planet', seed: '1', width: 64, height: 64 }, 120_000);

  for (const model of ['vae-x4', 'cut-unet', 'cut-unet-data', 'mixed-dtypes', 'no-merges', 'tiny-sdxl+gap', 'tiny-sdxl+nan']) {
    test(`refuses ${model} at load with ORRERY_ERR_MODEL_LOAD_FAILED naming the file and tensor, and keeps serving tiny-sdxl`, async (t) => {
      const err = await grpcError(ask(model));
      t.diagnostic(err.details);
      assert.equal(err.code, status.INTERNAL, err.details);
      assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_MODEL_LOAD_FAILED', err.details);
      assert.match(err.details, expected[model]!);
      const ok = await ask('tiny-sdxl');
      assert.equal(ok.images.length, 1);
    });
  }

  test('a second request for a bad model is refused the same way (no half-loaded model is kept)', async () => {
    const err = await grpcError(ask('vae-x4'));
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_MODEL_LOAD_FAILED');
    assert.match(err.details, expected['vae-x4']!);
  });

  test('the replica never died and no process logged an escaped error', () => {
    assert.equal(c.cluster.replicas.length, 1);
    assert.equal(c.cluster.replicas[0]!.child.exitCode, null);
    assert.deepEqual(fs.readFileSync(c.logFile, 'utf8').split('\n').filter((l) => ESCAPED_ERROR.test(l)).slice(0, 5), []);
  });
});
