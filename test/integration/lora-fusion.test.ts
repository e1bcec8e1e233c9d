/**
 * LoRA fusion against real ONNX Runtime sessions: the tiny bundle with an adapter fused into its
 * weights computes what the same bundle computes with the adapter as an explicit low-rank branch.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { fuseLoraIntoBundle } from '../../services/models/lora/fused-bundle.js';
import { LoraFusionError } from '../../services/models/lora/fuse-onnx.js';
import { SafetensorsError } from '../../services/models/lora/safetensors.js';
import { addUnfusedLoraBranches } from '../../services/models/lora/unfused-branch.js';
import { float32ToHalf, halfToFloat32 } from '../../services/models/onnx/float16.js';
import { halfBitsOf, halfTensor } from '../../services/models/onnx/float16-tensor.js';
import { decodeModel, encodeModel } from '../../services/models/onnx/onnx-model.js';
import { randomValues } from '../../services/models/tiny-sdxl/net.js';
import { writeTinyLora, type TinyLoraModule, type TinyLoraOptions } from '../../services/models/tiny-sdxl/tiny-lora.js';
import { writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';

type Feeds = Record<string, Tensor>;
const COMPONENTS = ['text_encoder', 'text_encoder_2', 'unet'] as const;

function feedsFor(component: string, half: boolean): Feeds {
  const f = (name: string, dims: number[], std = 1) => {
    const v = randomValues(7, name, dims.reduce((a, d) => a * d, 1), std);
    return half ? halfTensor(float32ToHalf(v), dims) : new Tensor('float32', v, dims);
  };
  if (component !== 'unet') {
    const ids = BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i === 0 ? 2560 : i < 9 ? 100 + 37 * i : 2561));
    return { input_ids: new Tensor('int64', ids, [1, 77]) };
  }
  return {
    sample: f('sample', [2, 4, 8, 8]), timestep: half ? halfTensor(float32ToHalf(Float32Array.of(500)), []) : new Tensor('float32', Float32Array.of(500), []),
    encoder_hidden_states: f('ehs', [2, 77, 96]), text_embeds: f('te', [2, 48]), time_ids: f('tid', [2, 6], 300),
  };
}

async function run(file: string, feeds: Feeds): Promise<Float32Array[]> {
  const s = await InferenceSession.create(file);
  try {
    const out = await s.run(feeds);
    // float16 outputs as their values (the half bits through the codec), float32 ones copied.
    return s.outputNames.map((n) => (out[n]!.type === 'float16' ? halfToFloat32(halfBitsOf(out[n]!)) : Float32Array.from(out[n]!.data as Float32Array)));
  } finally {
    await s.release();
  }
}

const maxDiff = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((x, i) => x.reduce((m, v, j) => Math.max(m, Math.abs(v - b[i]![j]!)), 0)));

describe('LoRA fusion into the tiny SDXL bundle', () => {
  let root: string;
  let bundle: string;
  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-lora-'));
    bundle = path.join(root, 'tiny-sdxl');
    await writeTinySdxlBundle(bundle, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  /** Fused (through the file, parser and graph index) vs unfused (branches from the writer's own modules). */
  async function proof(name: string, options: TinyLoraOptions, scale = 1) {
    const file = path.join(root, 'loras', `${name}.safetensors`);
    const modules = writeTinyLora(file, options);
    const out = path.join(root, `fused-${name}`);
    const fused = fuseLoraIntoBundle(bundle, file, { scale, unmatched: 'error', outDir: out });
    assert.equal(fused.matched, modules.length, 'every module fused');
    assert.equal(fused.format, options.format);
    for (const component of COMPONENTS) {
      const mine = modules.filter((m: TinyLoraModule) => m.component === component);
      const srcDir = path.join(bundle, component);
      const model = decodeModel(fs.readFileSync(path.join(srcDir, 'model.onnx')));
      addUnfusedLoraBranches(model, mine.map((m) => ({ ...m, factor: m.factor * scale })));
      // Beside the original, so its external data location still resolves.
      const unfusedFile = path.join(srcDir, `unfused-${name}.onnx`);
      fs.writeFileSync(unfusedFile, encodeModel(model));
      const feeds = feedsFor(component, false);
      const [base, withBranch, withFused] = await Promise.all([
        run(path.join(srcDir, 'model.onnx'), feeds), run(unfusedFile, feeds), run(fused.modelPaths[component]!, feeds),
      ]);
      fs.rmSync(unfusedFile);
      const d = maxDiff(withBranch, withFused);
      assert.ok(d <= 1e-4, `${component}: fused and unfused differ by ${d}`);
      assert.ok(maxDiff(base, withFused) > 1e-2, `${component}: the LoRA changes the outputs (${maxDiff(base, withFused)})`);
    }
  }

  test('a kohya LoRA with SGM UNet names fused into the weights equals the unfused low-rank branches within 1e-4', () => proof('kohya-sgm', { format: 'kohya', seed: 1, alpha: 2 }));
  test('a kohya LoRA with flattened diffusers UNet names fuses the same way', () => proof('kohya-diffusers', { format: 'kohya', seed: 2, sgmNames: false }));
  test('a diffusers/PEFT LoRA (lora_A/lora_B, alpha in metadata) fused equals unfused, with lora_scale 0.7', () => proof('peft', { format: 'peft', seed: 3, alpha: 8 }, 0.7));
  test('a legacy diffusers LoRA (lora.down/lora.up, alpha = rank) with float16 tensors fused equals unfused', () => proof('legacy', { format: 'peft-legacy', seed: 4, dtype: 'F16' }));

  test('fusing writes the UNet external data to a patched copy and leaves the bundle untouched', () => {
    const before = fs.readFileSync(path.join(bundle, 'unet', 'model.onnx_data'));
    const file = path.join(root, 'loras', 'copy.safetensors');
    writeTinyLora(file, { format: 'kohya', seed: 5 });
    const fused = fuseLoraIntoBundle(bundle, file, { scale: 1, unmatched: 'error', outDir: path.join(root, 'fused-copy') });
    const copy = fs.readFileSync(path.join(path.dirname(fused.modelPaths.unet!), 'model.onnx_data'));
    assert.equal(copy.length, before.length);
    assert.notDeepEqual(copy, before);
    assert.deepEqual(fs.readFileSync(path.join(bundle, 'unet', 'model.onnx_data')), before);
  });

  test('modules that match no weight are listed in the error, or only reported with lora_unmatched: warn', () => {
    const file = path.join(root, 'loras', 'bogus.safetensors');
    writeTinyLora(file, { format: 'kohya', seed: 6, sgmNames: false, bogusModules: ['up_blocks.3.attentions.2.proj_out', 'mid_block.attentions.0.proj_in'] });
    assert.throws(() => fuseLoraIntoBundle(bundle, file, { scale: 1, unmatched: 'error', outDir: path.join(root, 'fused-bogus') }), (err: unknown) => {
      assert.ok(err instanceof LoraFusionError);
      assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
      assert.match(err.message, /bogus\.safetensors: 2 of 14 LoRA modules match no weight/);
      assert.match(err.message, /unet: lora_unet_up_blocks_3_attentions_2_proj_out/);
      assert.match(err.message, /unet: lora_unet_mid_block_attentions_0_proj_in/);
      return true;
    });
    const warned = fuseLoraIntoBundle(bundle, file, { scale: 1, unmatched: 'warn', outDir: path.join(root, 'fused-bogus-warn') });
    assert.equal(warned.matched, 12);
    assert.deepEqual([...warned.unmatched].sort(), ['unet: lora_unet_mid_block_attentions_0_proj_in', 'unet: lora_unet_up_blocks_3_attentions_2_proj_out']);
  });

  test('a truncated LoRA file fails with an error naming the file and the truncation', () => {
    const file = path.join(root, 'loras', 'cut.safetensors');
    writeTinyLora(file, { format: 'peft', seed: 7 });
    fs.truncateSync(file, fs.statSync(file).size - 100);
    assert.throws(() => fuseLoraIntoBundle(bundle, file, { scale: 1, unmatched: 'error', outDir: path.join(root, 'fused-cut') }), (err: unknown) => {
      assert.ok(err instanceof SafetensorsError);
      assert.equal(err.file, file);
      assert.match(err.message, /cut\.safetensors: truncated data: tensor ".*" ends at byte \d+ of the data section, which has only \d+ bytes/);
      return true;
    });
  });
});
