/** Variants (fp16, int8, q4): written next to the base, checked against it by PSNR, served by id. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packageRoot } from '../../services/common/package-root.js';
import { decodeModel, type TensorProto } from '../../services/models/onnx/onnx-model.js';
import { quantizeBundle, QuantizeRefusedError, type QuantizeReport } from '../../services/models/quantize/quantize-bundle.js';
import { imagePsnr } from '../../services/stages/sdxl/image-psnr.js';
import { openSdxlBundle } from '../../services/models/sdxl-bundle.js';
import { writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';
import { loadStage } from '../../services/stages/registry.js';

const CPU = { executionProvider: 'cpu' } as const;
const orrery = (args: string[]) => spawnSync(process.execPath, [path.join(packageRoot(), 'bin/orrery.js'), ...args], { encoding: 'utf8', timeout: 120_000 });

/** The PSNR each variant of the tiny bundle must reach (measured: fp16 ≈ 59, int8 ≈ 39, q4 ≈ 27 dB). */
const BOUND_DB = { fp16: 45, int8: 30, q4: 22 } as const;

const unetBytes = (bundle: string) => fs.readdirSync(path.join(bundle, 'unet')).filter((f) => f.startsWith('model.onnx')).reduce((n, f) => n + fs.statSync(path.join(bundle, 'unet', f)).size, 0);

describe('orrery models quantize', () => {
  let repo: string;
  const written: Partial<Record<'fp16' | 'int8' | 'q4', QuantizeReport>> = {};
  before(async () => {
    repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-quant-'));
    await writeTinySdxlBundle(path.join(repo, 'tiny-sdxl'), { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
  });
  after(() => fs.rmSync(repo, { recursive: true, force: true }));

  test('refuses a variant whose image error exceeds the bound, giving the measured PSNR, and writes nothing', async () => {
    for (const variant of ['int8', 'q4'] as const) {
      await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant, minPsnrDb: 200 }, imagePsnr), (err: unknown) => {
        assert.ok(err instanceof QuantizeRefusedError);
        assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
        assert.match(err.message, new RegExp(`tiny-sdxl@${variant} refused: its image differs from tiny-sdxl's by PSNR \\d+\\.\\d\\d dB, below the bound of 200 dB`));
        assert.ok(Number.isFinite(err.psnrDb), `${variant} weights change the image a little`);
        assert.ok(err.message.includes(err.psnrDb!.toFixed(2)), 'the message gives the measured figure');
        return true;
      });
    }
    assert.deepEqual(fs.readdirSync(repo), ['tiny-sdxl']);
  });

  for (const variant of ['fp16', 'int8', 'q4'] as const) {
    test(`writes <base>@${variant} within ${BOUND_DB[variant]} dB of the fp32 image, and the SDXL stage serves it by id`, async () => {
      const r = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant, minPsnrDb: BOUND_DB[variant] }, imagePsnr);
      written[variant] = r;
      assert.equal(r.dir, path.join(repo, `tiny-sdxl@${variant}`));
      assert.equal(r.variant, variant);
      assert.ok(r.psnrDb >= BOUND_DB[variant], `PSNR ${r.psnrDb}`);
      assert.ok(r.bytesAfter < r.bytesBefore * 0.6, `${r.bytesAfter} vs ${r.bytesBefore} bytes`);
      if (variant === 'fp16') {
        assert.deepEqual(r.models, ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder']);
      } else {
        assert.deepEqual(r.models, ['text_encoder', 'text_encoder_2', 'unet']);
        assert.ok(r.tensorsRewritten >= 100, `${r.tensorsRewritten} MatMul weights quantized`);
      }
      const bundle = await openSdxlBundle(r.dir, CPU);
      try {
        assert.equal(bundle.dtype, variant === 'fp16' ? 'float16' : 'float32');
        assert.deepEqual(bundle.timestepInput, { type: variant === 'fp16' ? 'float16' : 'float32', scalar: true });
      } finally {
        await bundle.dispose();
      }
      const m = await loadStage('sdxl').load(`tiny-sdxl@${variant}`, { options: {}, modelRepository: repo });
      await m.dispose();
    });
  }

  test('the q4 unet is smaller than the int8 unet, which is smaller than the fp32 unet', () => {
    const fp32 = unetBytes(path.join(repo, 'tiny-sdxl'));
    const int8 = unetBytes(path.join(repo, 'tiny-sdxl@int8'));
    const q4 = unetBytes(path.join(repo, 'tiny-sdxl@q4'));
    assert.ok(q4 < int8 && int8 < fp32, `unet bytes: q4 ${q4}, int8 ${int8}, fp32 ${fp32}`);
    assert.ok(written.q4!.bytesAfter < written.int8!.bytesAfter, 'and so is the whole bundle');
  });

  test('the q4 unet runs its MatMuls as com.microsoft MatMulNBits with 4-bit blocks of 32', () => {
    const dir = path.join(repo, 'tiny-sdxl@q4', 'unet');
    const model = decodeModel(fs.readFileSync(path.join(dir, 'model.onnx')));
    const nbits = model.graph!.node!.filter((n) => n.op_type === 'MatMulNBits');
    assert.ok(nbits.length >= 10, `${nbits.length} MatMulNBits nodes`);
    for (const n of nbits) {
      assert.equal(n.domain, 'com.microsoft');
      const attr = Object.fromEntries((n.attribute ?? []).map((a): [string, number] => [a.name ?? '', Number(a.i)]));
      assert.equal(attr['bits'], 4);
      assert.equal(attr['block_size'], 32);
    }
    assert.ok(model.opset_import!.some((o) => o.domain === 'com.microsoft' && Number(o.version) === 1));
  });

  test('the fp16 variant of the tiny fp32 bundle holds the weights make-tiny --fp16 writes, and renders its image', async () => {
    await writeTinySdxlBundle(path.join(repo, 'tiny-half'), { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    try {
      for (const c of ['text_encoder', 'unet', 'vae_decoder']) {
        const weights = (bundle: string): Map<string, TensorProto> => {
          const dir = path.join(repo, bundle, c);
          const model = decodeModel(fs.readFileSync(path.join(dir, 'model.onnx')));
          const data = fs.existsSync(path.join(dir, 'model.onnx_data')) ? fs.readFileSync(path.join(dir, 'model.onnx_data')) : undefined;
          return new Map(model.graph!.initializer!.map((t) => {
            if (t.data_location !== 1) return [t.name!, t];
            const kv = Object.fromEntries(t.external_data!.map((e) => [e.key, e.value]));
            return [t.name!, { ...t, raw_data: data!.subarray(Number(kv['offset']), Number(kv['offset']) + Number(kv['length'])) }];
          }));
        };
        const ours = weights('tiny-sdxl@fp16');
        const theirs = weights('tiny-half');
        for (const [name, t] of theirs) {
          const o = ours.get(name);
          assert.ok(o, `${c}: ${name} is in the variant`);
          assert.equal(o.data_type, t.data_type, `${c}: ${name} type`);
          assert.deepEqual(Buffer.from(o.raw_data ?? []), Buffer.from(t.raw_data ?? []), `${c}: ${name} bits`);
        }
      }
      const psnr = await imagePsnr(repo, 'tiny-half', repo, 'tiny-sdxl@fp16');
      assert.ok(psnr >= 60, `PSNR ${psnr} against make-tiny --fp16`);
    } finally {
      fs.rmSync(path.join(repo, 'tiny-half'), { recursive: true, force: true });
    }
  });

  test('q4 of an fp16 export keeps float16 activations and scales; int8 of one is refused as having nothing to quantize', async () => {
    await writeTinySdxlBundle(path.join(repo, 'tiny-half'), { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    try {
      const r = await quantizeBundle({ repository: repo, base: 'tiny-half', variant: 'q4', minPsnrDb: BOUND_DB.q4 }, imagePsnr);
      const unet = decodeModel(fs.readFileSync(path.join(r.dir, 'unet', 'model.onnx')));
      const scales = unet.graph!.initializer!.filter((t) => t.name!.endsWith('_q4_scales'));
      assert.ok(scales.length > 0 && scales.every((t) => t.data_type === 10), 'FLOAT16 scales, as MatMulNBits wants the type of A');
      const bundle = await openSdxlBundle(r.dir, CPU);
      assert.equal(bundle.dtype, 'float16');
      await bundle.dispose();
      await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-half', variant: 'int8', minPsnrDb: 0 }, imagePsnr), /tiny-half@int8 refused: nothing to rewrite: .*int8 does not take float16 exports; q4 does/);
    } finally {
      for (const d of ['tiny-half', 'tiny-half@q4']) fs.rmSync(path.join(repo, d), { recursive: true, force: true });
    }
  });

  test('refuses fp16 of a bundle that is already float16, and fp32, naming why', async () => {
    await writeTinySdxlBundle(path.join(repo, 'tiny-half'), { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: false });
    try {
      await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-half', variant: 'fp16', minPsnrDb: 30 }, imagePsnr), (err: unknown) => {
        assert.ok(err instanceof QuantizeRefusedError);
        assert.match(err.message, /tiny-half@fp16 refused: text_encoder\/model\.onnx is already float16/);
        assert.equal(err.psnrDb, undefined);
        return true;
      });
      await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-half', variant: 'fp32', minPsnrDb: 30 }, imagePsnr), /variant fp32: the fp32 model is the base bundle tiny-half itself/);
      assert.ok(!fs.existsSync(path.join(repo, 'tiny-half@fp16')));
    } finally {
      fs.rmSync(path.join(repo, 'tiny-half'), { recursive: true, force: true });
    }
  });

  test('the command refuses a too-strict bound with the measured PSNR and exit status 1, and --help lists the variants', () => {
    const r = orrery(['models', 'quantize', repo, '--model', 'tiny-sdxl', '--variant', 'q4', '--min-psnr-db', '99']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /tiny-sdxl@q4 refused: its image differs from tiny-sdxl's by PSNR \d+\.\d\d dB, below the bound of 99 dB/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    const help = orrery(['models', 'quantize', '--help']);
    assert.equal(help.status, 0);
    for (const v of ['fp16', 'int8', 'q4']) assert.match(help.stdout, new RegExp(`^  ${v} `, 'm'));
    assert.match(help.stdout, /MatMulNBits/);
    assert.doesNotMatch(help.stdout, /not implemented/);
  });
});
