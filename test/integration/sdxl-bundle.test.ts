/**
 * The SDXL bundle loader against real ONNX Runtime sessions of the tiny bundle, in all four
 * export variants (fp32/fp16 × float-scalar/int64 timestep × latent_parameters/latent_sample ×
 * external/inline UNet weights), and against broken copies of it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { registerSdxlModelCommands } from '../../services/cli/command-models-sdxl.js';
import { ModelNotFoundError } from '../../services/common/errors.js';
import { decodeModel, encodeModel } from '../../services/models/onnx/onnx-model.js';
import { inspectSdxlBundle, openSdxlBundle, resolveBundleDir, SdxlBundleError, type SdxlBundle } from '../../services/models/sdxl-bundle.js';
import { TINY_SDXL_DIMS as D, writeTinySdxlBundle, type TinySdxlOptions } from '../../services/models/tiny-sdxl.js';
import { floatTensor, toFloat32 } from '../../services/stages/sdxl/tensors.js';

const CPU = { executionProvider: 'cpu' } as const;
const VARIANTS: Record<string, TinySdxlOptions> = {
  'fp32-external': { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true },
  'fp16-external': { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true },
  'fp32-legacy': { dtype: 'float32', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: false },
  'fp16-legacy': { dtype: 'float16', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: false },
};

let root: string;
before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-sdxl-bundle-'));
  for (const [name, options] of Object.entries(VARIANTS)) await writeTinySdxlBundle(path.join(root, name), options);
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Deterministic values of roughly unit variance. */
function values(n: number, phase: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + phase) * 1.7);
}

async function withBundle(dir: string, fn: (b: SdxlBundle) => Promise<void>): Promise<void> {
  const b = await openSdxlBundle(dir, CPU);
  try {
    await fn(b);
  } finally {
    await b.dispose();
  }
}

const finite = (a: Float32Array) => a.every(Number.isFinite);

/** UNet feeds for `batch` items (item i's data from phase i), latents h × w, at timestep 500. */
function unetFeeds(b: SdxlBundle, items: readonly number[], h: number, w: number): Record<string, ort.Tensor> {
  const B = items.length;
  const per = (n: number, k: number) => {
    const out = new Float32Array(B * n);
    items.forEach((item, i) => out.set(values(n, item * 10 + k), i * n));
    return out;
  };
  const cross = b.hiddenSize1 + b.hiddenSize2;
  const ts = b.timestepInput;
  return {
    sample: floatTensor(b.dtype, per(b.latentChannels * h * w, 1), [B, b.latentChannels, h, w]),
    timestep: ts.type === 'int64' ? new ort.Tensor('int64', new BigInt64Array(B).fill(500n), [B]) : floatTensor(ts.type, Float32Array.of(500), []),
    encoder_hidden_states: floatTensor(b.dtype, per(77 * cross, 2), [B, 77, cross]),
    text_embeds: floatTensor(b.dtype, per(b.pooledSize, 3), [B, b.pooledSize]),
    time_ids: floatTensor(b.dtype, Float32Array.from({ length: B * 6 }, (_, i) => [64, 64, 0, 0, 64, 64][i % 6]!), [B, 6]),
  };
}

describe('openSdxlBundle on the tiny bundle', () => {
  for (const [name, options] of Object.entries(VARIANTS)) {
    test(`${name}: loads five sessions with the export's facts and runs each model to finite outputs of the right shapes`, async () => {
      await withBundle(path.join(root, name), async (b) => {
        assert.equal(b.dtype, options.dtype);
        assert.deepEqual(b.timestepInput, options.timestep === 'int64-batch' ? { type: 'int64', scalar: false } : { type: options.dtype, scalar: true });
        assert.equal(b.vaeEncoderOutput, options.vaeEncoderOutput);
        assert.deepEqual([b.hiddenSize1, b.hiddenSize2, b.pooledSize, b.latentChannels], [D.hiddenSize1, D.hiddenSize2, D.projectionDim, 4]);
        assert.equal(b.scalingFactor, 0.13025);
        assert.equal(b.forceZerosForEmptyPrompt, true);
        assert.ok(fs.existsSync(path.join(b.tokenizerDirs[2], 'vocab.json')));
        assert.equal((b.schedulerConfigJson as Record<string, unknown>)['_class_name'], 'EulerDiscreteScheduler');
        assert.equal(b.layout.unet.externalData !== undefined, options.externalData);
        const modelBytes = ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder']
          .flatMap((c) => ['model.onnx', 'model.onnx_data'].map((f) => path.join(b.dir, c, f)))
          .filter((f) => fs.existsSync(f)).reduce((a, f) => a + fs.statSync(f).size, 0);
        assert.equal(b.sizeBytes, modelBytes);

        const ids = new BigInt64Array(2 * 77).fill(0n);
        ids.set([2560n, 320n, 1125n, 539n, 320n, 2368n, 2561n]);
        ids.set([2560n, 1125n, 2561n], 77);
        const t1 = await b.textEncoder.run({ input_ids: new ort.Tensor('int64', ids, [2, 77]) });
        assert.deepEqual(t1['hidden_states.11']!.dims, [2, 77, D.hiddenSize1]);
        assert.deepEqual(t1['pooler_output']!.dims, [2, D.hiddenSize1]);
        assert.equal(Object.keys(t1).filter((k) => k.startsWith('hidden_states.')).length, 13);
        const t2 = await b.textEncoder2.run({ input_ids: new ort.Tensor('int64', ids, [2, 77]) });
        assert.deepEqual(t2['text_embeds']!.dims, [2, D.projectionDim]);
        assert.deepEqual(t2['hidden_states.31']!.dims, [2, 77, D.hiddenSize2]);
        for (const t of [...Object.values(t1), ...Object.values(t2)]) {
          assert.equal(t.type, options.dtype);
          assert.ok(finite(toFloat32(t)));
        }

        const u = (await b.unet.run(unetFeeds(b, [0, 1], 8, 8)))['out_sample']!;
        assert.deepEqual(u.dims, [2, 4, 8, 8]);
        assert.ok(finite(toFloat32(u)));
        const img = (await b.vaeDecoder.run({ latent_sample: floatTensor(b.dtype, values(2 * 4 * 64, 4), [2, 4, 8, 8]) }))['sample']!;
        assert.deepEqual(img.dims, [2, 3, 64, 64]);
        assert.ok(toFloat32(img).every((v) => v >= -1 && v <= 1));
        const enc = (await b.vaeEncoder!.run({ sample: floatTensor(b.dtype, values(2 * 3 * 64 * 64, 5).map((v) => v / 2), [2, 3, 64, 64]) }))[b.vaeEncoderOutput]!;
        assert.deepEqual(enc.dims, [2, options.vaeEncoderOutput === 'latent_parameters' ? 8 : 4, 8, 8]);
        assert.ok(finite(toFloat32(enc)));
      });
    });
  }

  test('the UNet gives an item alone the same output as inside a batch of 3 (every variant)', async () => {
    for (const name of Object.keys(VARIANTS)) {
      await withBundle(path.join(root, name), async (b) => {
        const alone = toFloat32((await b.unet.run(unetFeeds(b, [1], 8, 8)))['out_sample']!);
        const batch = toFloat32((await b.unet.run(unetFeeds(b, [0, 1, 2], 8, 8)))['out_sample']!);
        const inBatch = batch.subarray(alone.length, 2 * alone.length);
        let worst = 0;
        for (let i = 0; i < alone.length; i++) worst = Math.max(worst, Math.abs(alone[i]! - inBatch[i]!));
        assert.ok(worst <= 1e-5, `${name}: max difference ${worst}`);
      });
    }
  });

  test('the UNet output depends on every input and stays at unit scale', async () => {
    await withBundle(path.join(root, 'fp32-external'), async (b) => {
      const base = unetFeeds(b, [0], 8, 8);
      const ref = toFloat32((await b.unet.run(base))['out_sample']!);
      let variance = 0;
      for (const v of ref) variance += v * v;
      const std = Math.sqrt(variance / ref.length);
      assert.ok(std > 0.5 && std < 2, `out_sample std ${std}`);
      for (const input of ['sample', 'timestep', 'encoder_hidden_states', 'text_embeds', 'time_ids']) {
        const t = base[input]!;
        const data = Float32Array.from(t.data as Float32Array, (v, i) => v + (i % 3 === 0 ? 0.5 : 0));
        const changed = toFloat32((await b.unet.run({ ...base, [input]: new ort.Tensor('float32', data, t.dims) }))['out_sample']!);
        const diff = changed.reduce((a, v, i) => a + Math.abs(v - ref[i]!), 0) / ref.length;
        assert.ok(diff > 1e-3 && diff < 1, `${input}: mean change ${diff}`);
      }
    });
  });

  test('vae_encoder then vae_decoder returns a smooth image close to the input (both encoder outputs)', async () => {
    for (const name of ['fp32-external', 'fp32-legacy']) {
      await withBundle(path.join(root, name), async (b) => {
        const [H, W] = [64, 64];
        const px = new Float32Array(3 * H * W);
        for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) px[(c * H + y) * W + x] = 0.7 * Math.sin(0.04 * (x + 2 * y) + 2 * c);
        const enc = (await b.vaeEncoder!.run({ sample: new ort.Tensor('float32', px, [1, 3, H, W]) }))[b.vaeEncoderOutput]!;
        const mean = (enc.data as Float32Array).subarray(0, 4 * 64); // mean channels come first in latent_parameters
        const out = (await b.vaeDecoder.run({ latent_sample: new ort.Tensor('float32', Float32Array.from(mean), [1, 4, 8, 8]) }))['sample']!.data as Float32Array;
        const err = out.reduce((a, v, i) => a + Math.abs(v - px[i]!), 0) / px.length;
        assert.ok(err < 0.06, `${name}: mean absolute round-trip error ${err}`);
      });
    }
  });
});

describe('bundle errors name the file and what was expected', () => {
  let n = 0;
  /** A copy of a variant to break. */
  const copy = (variant: string): string => {
    const dir = path.join(root, `broken-${n++}`);
    fs.cpSync(path.join(root, variant), dir, { recursive: true });
    return dir;
  };
  const rewriteModel = (file: string, edit: (m: ReturnType<typeof decodeModel>) => void) => {
    const m = decodeModel(fs.readFileSync(file));
    edit(m);
    fs.writeFileSync(file, encodeModel(m));
  };
  const rejectsWith = async (p: Promise<unknown>, file: string, pattern: RegExp) => {
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof SdxlBundleError, `got ${String(err)}`);
      assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
      assert.equal(err.file, file);
      assert.match(err.message, pattern);
      assert.ok(err.message.startsWith(`${file}: `), err.message);
      return true;
    });
  };

  test('a missing model file', async () => {
    const dir = copy('fp32-legacy');
    fs.rmSync(path.join(dir, 'unet/model.onnx'));
    await rejectsWith(openSdxlBundle(dir, CPU), 'unet/model.onnx', /missing \(an Optimum SDXL export has unet\/model\.onnx\)/);
  });

  test('missing external data fails in ONNX Runtime with a hint at model.onnx_data', async () => {
    const dir = copy('fp32-external');
    assert.ok(fs.statSync(path.join(dir, 'unet/model.onnx')).size < 100_000, 'the weights live outside model.onnx');
    fs.rmSync(path.join(dir, 'unet/model.onnx_data'));
    await rejectsWith(openSdxlBundle(dir, CPU), 'unet/model.onnx', /ONNX Runtime could not load it.*unet\/model\.onnx_data/s);
  });

  test('a UNet input under another name', async () => {
    const dir = copy('fp32-legacy');
    rewriteModel(path.join(dir, 'unet/model.onnx'), (m) => {
      m.graph!.input!.find((v) => v.name === 'encoder_hidden_states')!.name = 'context';
      for (const node of m.graph!.node!) node.input = node.input!.map((i) => (i === 'encoder_hidden_states' ? 'context' : i));
    });
    await rejectsWith(openSdxlBundle(dir, CPU), 'unet/model.onnx', /missing input "encoder_hidden_states" .*this model has sample, timestep, context, text_embeds, time_ids/);
  });

  test('a text encoder input of the wrong dtype', async () => {
    const dir = copy('fp32-legacy');
    rewriteModel(path.join(dir, 'text_encoder/model.onnx'), (m) => {
      m.graph!.input![0]!.type!.tensor_type!.elem_type = 6; // INT32
    });
    await rejectsWith(openSdxlBundle(dir, CPU), 'text_encoder/model.onnx', /input "input_ids" is int32; expected int64/);
  });

  test('models of different float types in one bundle', async () => {
    const dir = copy('fp32-legacy');
    fs.copyFileSync(path.join(root, 'fp16-legacy/vae_decoder/model.onnx'), path.join(dir, 'vae_decoder/model.onnx'));
    await rejectsWith(openSdxlBundle(dir, CPU), 'vae_decoder/model.onnx', /input "latent_sample" is float16, but the bundle's other models use float32/);
  });

  test('malformed JSON and missing config keys', async () => {
    const dir = copy('fp32-legacy');
    fs.writeFileSync(path.join(dir, 'unet/config.json'), '{"_class_name": ');
    await rejectsWith(openSdxlBundle(dir, CPU), 'unet/config.json', /is not valid JSON/);
    const dir2 = copy('fp32-legacy');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir2, 'vae_decoder/config.json'), 'utf8')) as Record<string, unknown>;
    delete cfg.scaling_factor;
    fs.writeFileSync(path.join(dir2, 'vae_decoder/config.json'), JSON.stringify(cfg));
    assert.throws(() => inspectSdxlBundle(dir2), (err: unknown) => err instanceof SdxlBundleError && err.file === 'vae_decoder/config.json' && /"scaling_factor" must be a positive number/.test(err.message));
    const dir3 = copy('fp32-legacy');
    fs.writeFileSync(path.join(dir3, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
    assert.throws(() => inspectSdxlBundle(dir3), /model_index.json: _class_name is "StableDiffusionPipeline"; expected an SDXL pipeline/);
    const dir4 = copy('fp32-legacy');
    fs.rmSync(path.join(dir4, 'tokenizer_2/merges.txt'));
    assert.throws(() => inspectSdxlBundle(dir4), /^SdxlBundleError: tokenizer_2\/merges.txt: missing/);
  });

  test('a bundle without vae_encoder/ opens for text-to-image only', async () => {
    const dir = copy('fp32-legacy');
    fs.rmSync(path.join(dir, 'vae_encoder'), { recursive: true });
    await withBundle(dir, async (b) => assert.equal(b.vaeEncoder, undefined));
  });
});

describe('resolveBundleDir', () => {
  test('maps a plain base id to its folder and refuses anything else as NOT_FOUND', () => {
    assert.equal(resolveBundleDir(root, 'fp32-legacy'), path.join(root, 'fp32-legacy'));
    for (const id of ['..', '../fp32-legacy', 'a/b', '.hidden', '', 'fp32-legacy/../x', 'absent']) {
      assert.throws(() => resolveBundleDir(root, id), (err: unknown) => err instanceof ModelNotFoundError && err.code === 'ORRERY_ERR_MODEL_NOT_FOUND', id);
    }
  });
});

describe('orrery models make-tiny', () => {
  test('writes a loadable bundle and says that its images are noise', async () => {
    let out = '';
    const program = new Command('orrery').exitOverride().configureOutput({ writeOut: (s) => { out += s; } });
    registerSdxlModelCommands(program.command('models'));
    const dir = path.join(root, 'cli');
    await program.parseAsync(['models', 'make-tiny', dir, '--fp16', '--legacy-timestep', '--no-external-data'], { from: 'user' });
    assert.match(out, /unet\/model\.onnx/);
    assert.doesNotMatch(out, /model\.onnx_data/);
    assert.match(out, /images are noise/);
    await withBundle(dir, async (b) => {
      assert.equal(b.dtype, 'float16');
      assert.deepEqual(b.timestepInput, { type: 'int64', scalar: false });
      assert.equal(b.vaeEncoderOutput, 'latent_parameters');
    });
  });
});
