/**
 * `base+lora@variant`: the LoRA fused into the float weights, then the variant written
 * (`orrery models quantize --model base+lora`), served by id through the real SDXL stage.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, ModelNotFoundError } from '../../services/common/errors.js';
import { packageRoot } from '../../services/common/package-root.js';
import { FUSED_LORA_RECORD } from '../../services/models/lora/fused-lora-record.js';
import { decodeModel } from '../../services/models/onnx/onnx-model.js';
import { quantizeBundle, QuantizeRefusedError } from '../../services/models/quantize/quantize-bundle.js';
import { imagePsnr } from '../../services/stages/sdxl/image-psnr.js';
import { writeTinyLora } from '../../services/models/tiny-sdxl/tiny-lora.js';
import { writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';
import { loadStage } from '../../services/stages/registry.js';

const orrery = (args: string[]) => spawnSync(process.execPath, [path.join(packageRoot(), 'bin/orrery.js'), ...args], { encoding: 'utf8', timeout: 120_000 });

/** The PSNR against fp32 base+lora each variant must reach (measured: fp16 ≈ 60, int8 ≈ 47, q4 ≈ 26 dB; the LoRA itself moves the image to ≈ 12 dB from the base's). */
const BOUND_DB = { fp16: 45, int8: 30, q4: 22 } as const;

async function load(repo: string, modelId: string, options: Record<string, unknown> = {}) {
  return loadStage('sdxl').load(modelId, { options, modelRepository: repo });
}

describe('orrery models quantize --model base+lora', () => {
  let repo: string;
  const listing = () => fs.readdirSync(repo).sort();
  before(async () => {
    repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-quant-lora-'));
    await writeTinySdxlBundle(path.join(repo, 'tiny-sdxl'), { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    writeTinyLora(path.join(repo, 'loras', 'planets.safetensors'), { format: 'kohya', seed: 1 });
    writeTinyLora(path.join(repo, 'loras', 'moons.safetensors'), { format: 'peft', seed: 2, alpha: 8 });
  });
  after(() => fs.rmSync(repo, { recursive: true, force: true }));

  for (const variant of ['int8', 'q4'] as const) {
    test(`writes <base>+<lora>@${variant} with the LoRA fused in; served by id it fuses nothing at load and its image is nearer fp32 base+lora's than base's`, async (t) => {
      const id = `tiny-sdxl+planets@${variant}`;
      const r = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', lora: 'planets', variant, minPsnrDb: BOUND_DB[variant] }, imagePsnr);
      assert.equal(r.dir, path.join(repo, id));
      assert.equal(r.loraModulesFused, 12);
      assert.deepEqual(r.models, ['text_encoder', 'text_encoder_2', 'unet']);
      assert.ok(r.psnrDb >= BOUND_DB[variant], `PSNR ${r.psnrDb} against tiny-sdxl+planets`);
      const unet = decodeModel(fs.readFileSync(path.join(r.dir, 'unet', 'model.onnx')));
      assert.ok(unet.graph!.node!.some((n) => n.op_type === (variant === 'int8' ? 'DequantizeLinear' : 'MatMulNBits')), 'the weights are quantized');
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(r.dir, FUSED_LORA_RECORD), 'utf8')), { lora: 'planets', lora_scale: 1, lora_modules_fused: 12 });

      const m = await load(repo, id);
      assert.equal(m.loadReport, undefined, 'no LoRA fused at load: it is in the weights');
      await m.dispose();
      const toLora = await imagePsnr(repo, 'tiny-sdxl+planets', repo, id);
      const toBase = await imagePsnr(repo, 'tiny-sdxl', repo, id);
      t.diagnostic(`${id}: ${r.tensorsRewritten} MatMul weights, ${r.bytesBefore} → ${r.bytesAfter} bytes; PSNR vs fp32 tiny-sdxl+planets ${toLora.toFixed(2)} dB, vs tiny-sdxl ${toBase.toFixed(2)} dB`);
      assert.ok(toLora >= BOUND_DB[variant], `PSNR ${toLora.toFixed(2)} dB against fp32 tiny-sdxl+planets`);
      assert.ok(toLora > toBase + 10, `nearer base+lora (${toLora.toFixed(2)} dB) than base (${toBase.toFixed(2)} dB)`);
    });
  }

  test('base+lora@int8 without its folder is NOT_FOUND naming the command that builds it (even with base@int8 present), and that command builds a folder that loads', async () => {
    await quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: 'int8', minPsnrDb: BOUND_DB.int8 }, imagePsnr);
    await assert.rejects(load(repo, 'tiny-sdxl+moons@int8'), (err: unknown) => {
      assert.ok(err instanceof ModelNotFoundError);
      assert.equal(err.code, 'ORRERY_ERR_MODEL_NOT_FOUND');
      assert.ok(err.message.includes(path.join(repo, 'tiny-sdxl+moons@int8')), err.message);
      assert.match(err.message, /write it with: orrery models quantize --model tiny-sdxl\+moons --variant int8\)$/);
      assert.doesNotMatch(err.message, /match no weight/);
      return true;
    });
    const r = orrery(['models', 'quantize', repo, '--model', 'tiny-sdxl+moons', '--variant', 'int8']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /tiny-sdxl\+moons@int8: LoRA moons fused \(12 modules, scale 1\), then \d+ MatMul weights quantized \(int8\) in text_encoder, text_encoder_2, unet; .* PSNR \d+\.\d\d dB against tiny-sdxl\+moons \(fp32\)/);
    const m = await load(repo, 'tiny-sdxl+moons@int8');
    assert.equal(m.loadReport, undefined);
    await m.dispose();
  });

  test('base+lora@fp16 fuses into base@fp16 at load until its own folder exists, then serves that folder; both render base+lora', async (t) => {
    await quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: 'fp16', minPsnrDb: BOUND_DB.fp16 }, imagePsnr);
    const atLoad = await load(repo, 'tiny-sdxl+planets@fp16');
    assert.equal(atLoad.loadReport?.loraModulesFused, 12);
    await atLoad.dispose();
    const atLoadPsnr = await imagePsnr(repo, 'tiny-sdxl+planets', repo, 'tiny-sdxl+planets@fp16');
    const r = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', lora: 'planets', variant: 'fp16', minPsnrDb: BOUND_DB.fp16 }, imagePsnr);
    assert.equal(r.dir, path.join(repo, 'tiny-sdxl+planets@fp16'));
    const prebuilt = await load(repo, 'tiny-sdxl+planets@fp16');
    assert.equal(prebuilt.loadReport, undefined, 'the pre-fused folder wins');
    await prebuilt.dispose();
    const prebuiltPsnr = await imagePsnr(repo, 'tiny-sdxl+planets', repo, 'tiny-sdxl+planets@fp16');
    t.diagnostic(`tiny-sdxl+planets@fp16 vs fp32 tiny-sdxl+planets: fused into tiny-sdxl@fp16 at load ${atLoadPsnr.toFixed(2)} dB, pre-fused folder ${prebuiltPsnr.toFixed(2)} dB`);
    assert.ok(atLoadPsnr >= BOUND_DB.fp16 && prebuiltPsnr >= BOUND_DB.fp16, `fused at load ${atLoadPsnr.toFixed(2)} dB, pre-fused ${prebuiltPsnr.toFixed(2)} dB`);
  });

  test('--lora-scale fuses at that strength, checked against base+lora at lora_scale; a deployment asking another lora_scale is refused', async (t) => {
    writeTinyLora(path.join(repo, 'loras', 'rings.safetensors'), { format: 'kohya', seed: 3 });
    const r = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', lora: 'rings', loraScale: 0.5, variant: 'int8', minPsnrDb: BOUND_DB.int8 }, imagePsnr);
    assert.equal((JSON.parse(fs.readFileSync(path.join(r.dir, FUSED_LORA_RECORD), 'utf8')) as { lora_scale?: unknown }).lora_scale, 0.5);
    const atHalf = await imagePsnr(repo, 'tiny-sdxl+rings', repo, 'tiny-sdxl+rings@int8', {}, { lora_scale: 0.5 });
    const atFull = await imagePsnr(repo, 'tiny-sdxl+rings', repo, 'tiny-sdxl+rings@int8', {}, {});
    t.diagnostic(`tiny-sdxl+rings@int8 (lora_scale 0.5) vs fp32 tiny-sdxl+rings at lora_scale 0.5: ${atHalf.toFixed(2)} dB, at 1: ${atFull.toFixed(2)} dB`);
    assert.ok(atHalf >= BOUND_DB.int8 && atHalf > atFull, `nearer lora_scale 0.5 (${atHalf.toFixed(2)} dB) than 1 (${atFull.toFixed(2)} dB)`);
    await assert.rejects(load(repo, 'tiny-sdxl+rings@int8', { lora_scale: 1 }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.key, 'options.lora_scale');
      assert.match(err.message, /fused in at lora_scale 0\.5; rebuild it with orrery models quantize --lora-scale 1/);
      return true;
    });
    await (await load(repo, 'tiny-sdxl+rings@int8', { lora_scale: 0.5 })).dispose();
  });

  test('refuses a missing LoRA file, a LoRA with modules that match no weight, and fp32, writing nothing', async () => {
    const before = listing();
    await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-sdxl', lora: 'absent', variant: 'int8', minPsnrDb: 0 }, imagePsnr), (err: unknown) => {
      assert.ok(err instanceof QuantizeRefusedError);
      assert.equal(err.message, `tiny-sdxl+absent@int8 refused: no LoRA file ${path.join(repo, 'loras', 'absent.safetensors')}`);
      return true;
    });
    writeTinyLora(path.join(repo, 'loras', 'bogus.safetensors'), { format: 'kohya', seed: 6, sgmNames: false, bogusModules: ['mid_block.attentions.0.proj_in'] });
    await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-sdxl', lora: 'bogus', variant: 'q4', minPsnrDb: 0 }, imagePsnr),
      /tiny-sdxl\+bogus@q4 refused: .*bogus\.safetensors: 1 of 13 LoRA modules match no weight .*unet: lora_unet_mid_block_attentions_0_proj_in/);
    await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-sdxl', lora: 'planets', variant: 'fp32', minPsnrDb: 0 }, imagePsnr),
      /variant fp32: the fp32 model is tiny-sdxl\+planets \(the LoRA fused into the base bundle at load\) itself/);
    assert.deepEqual(listing(), before, 'no folder written, no staging left');
  });

  test('the command takes base or base+lora in --model and refuses a path or a variant there; --help tells how LoRAs and variants combine', () => {
    for (const [model, why] of [['../tiny-sdxl', /is invalid\. expected base, base\+lora/], ['tiny-sdxl+../x', /is invalid\. expected base, base\+lora/], ['tiny-sdxl@int8', /the variant goes in --variant/]] as const) {
      const r = orrery(['models', 'quantize', repo, '--model', model, '--variant', 'int8']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, why);
    }
    const help = orrery(['models', 'quantize', '--help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /With --model <base>\+<lora>, writes <repository>\/<base>\+<lora>@<variant>\//);
    assert.match(help.stdout, /--lora-scale <s>/);
    assert.doesNotMatch(help.stdout, /fuses into fp16 variants only/);
  });
});
