/**
 * The tiny SDXL bundle generator, read back as files and ONNX protobufs (no sessions here; the
 * integration test runs the models): determinism, the Optimum layout and names, dynamic axes,
 * float16 storage, external data, and the initializer names LoRA fusion relies on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { moveInitializersToExternalData } from '../../services/models/onnx/external-data.js';
import { halfBits } from '../../services/models/onnx/float16.js';
import { DataType, decodeModel, GraphBuilder, type ModelProto, type ValueInfoProto } from '../../services/models/onnx/onnx-model.js';
import { TINY_CROSS_ATTENTION_DIM, TINY_SDXL_DIMS, writeTinySdxlBundle, type TinySdxlOptions } from '../../services/models/tiny-sdxl.js';

const BASE: TinySdxlOptions = { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true };

let root: string;
before(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-tiny-sdxl-')); });
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
async function write(options: Partial<TinySdxlOptions> = {}): Promise<string> {
  const dir = path.join(root, `b${n++}`);
  await writeTinySdxlBundle(dir, { ...BASE, ...options });
  return dir;
}

/** Relative path → sha256 of every file under `dir`. */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const file = path.join(dir, rel);
    if (fs.statSync(file).isFile()) out[rel.split(path.sep).join('/')] = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  }
  return out;
}

const model = (dir: string, component: string): ModelProto => decodeModel(fs.readFileSync(path.join(dir, component, 'model.onnx')));
const readJson = (dir: string, file: string): Record<string, unknown> => JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>;

/** A value's type as `TYPE[dim, …]` with symbolic dims by name, for compact assertions. */
function signature(v: ValueInfoProto): string {
  const t = v.type?.tensor_type;
  const name = Object.entries(DataType).find(([, num]) => num === t?.elem_type)?.[0];
  return `${name}[${(t?.shape?.dim ?? []).map((d) => d.dim_param ?? d.dim_value).join(', ')}]`;
}
const io = (m: ModelProto, kind: 'input' | 'output'): Record<string, string> =>
  Object.fromEntries((m.graph?.[kind] ?? []).map((v) => [v.name!, signature(v)]));

describe('tiny SDXL bundle files', () => {
  test('the same options write byte-identical files, and another seed changes the weights only', async () => {
    const [a, b, c] = [await write(), await write(), await write({ seed: 7 })];
    const ha = hashes(a);
    assert.deepEqual(hashes(b), ha);
    const hc = hashes(c);
    assert.deepEqual(Object.keys(hc).sort(), Object.keys(ha).sort());
    assert.notEqual(hc['unet/model.onnx_data'], ha['unet/model.onnx_data']);
    assert.notEqual(hc['text_encoder/model.onnx'], ha['text_encoder/model.onnx']);
    assert.equal(hc['unet/config.json'], ha['unet/config.json']);
  });

  test('has the layout of an Optimum SDXL export with SDXL pipeline and scheduler configs', async () => {
    const dir = await write();
    const files = Object.keys(hashes(dir)).sort();
    assert.deepEqual(files, [
      'model_index.json', 'scheduler/scheduler_config.json',
      'text_encoder/config.json', 'text_encoder/model.onnx', 'text_encoder_2/config.json', 'text_encoder_2/model.onnx',
      ...['tokenizer', 'tokenizer_2'].flatMap((t) => ['merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'vocab.json'].map((f) => `${t}/${f}`)),
      'unet/config.json', 'unet/model.onnx', 'unet/model.onnx_data',
      'vae_decoder/config.json', 'vae_decoder/model.onnx', 'vae_encoder/config.json', 'vae_encoder/model.onnx',
    ]);
    const index = readJson(dir, 'model_index.json');
    assert.equal(index['_class_name'], 'StableDiffusionXLPipeline');
    assert.equal(index['force_zeros_for_empty_prompt'], true);
    assert.deepEqual(index['scheduler'], ['diffusers', 'EulerDiscreteScheduler']);
    assert.deepEqual(index['text_encoder_2'], ['transformers', 'CLIPTextModelWithProjection']);
    const sched = readJson(dir, 'scheduler/scheduler_config.json');
    assert.deepEqual(
      [sched['beta_schedule'], sched['beta_start'], sched['beta_end'], sched['num_train_timesteps'], sched['timestep_spacing'],
        sched['steps_offset'], sched['prediction_type'], sched['use_karras_sigmas'], sched['interpolation_type']],
      ['scaled_linear', 0.00085, 0.012, 1000, 'leading', 1, 'epsilon', false, 'linear'],
    );
    assert.equal(readJson(dir, 'vae_decoder/config.json')['scaling_factor'], 0.13025);
    assert.equal(readJson(dir, 'unet/config.json')['cross_attention_dim'], TINY_CROSS_ATTENTION_DIM);
    assert.equal(readJson(dir, 'tokenizer/special_tokens_map.json')['pad_token'], '<|endoftext|>');
    assert.equal(readJson(dir, 'tokenizer_2/special_tokens_map.json')['pad_token'], '!');
    assert.equal(readJson(dir, 'tokenizer_2/tokenizer_config.json')['model_max_length'], 77);
  });

  test('declares the export\'s tensor names, dtypes and dynamic axes', async () => {
    const dir = await write();
    const D = TINY_SDXL_DIMS;
    const te1 = model(dir, 'text_encoder');
    assert.deepEqual(io(te1, 'input'), { input_ids: 'INT64[batch_size, sequence_length]' });
    assert.deepEqual(Object.keys(io(te1, 'output')), ['last_hidden_state', 'pooler_output', ...Array.from({ length: 13 }, (_, i) => `hidden_states.${i}`)]);
    assert.equal(io(te1, 'output')['pooler_output'], `FLOAT[batch_size, ${D.hiddenSize1}]`);
    assert.equal(io(te1, 'output')['hidden_states.11'], `FLOAT[batch_size, sequence_length, ${D.hiddenSize1}]`);
    const te2 = model(dir, 'text_encoder_2');
    assert.deepEqual(Object.keys(io(te2, 'output')), ['text_embeds', 'last_hidden_state', ...Array.from({ length: 33 }, (_, i) => `hidden_states.${i}`)]);
    assert.equal(io(te2, 'output')['text_embeds'], 'FLOAT[batch_size, sequence_length]', 'Optimum names the projection axis sequence_length');
    assert.deepEqual(io(model(dir, 'unet'), 'input'), {
      sample: 'FLOAT[batch_size, 4, height, width]',
      timestep: 'FLOAT[]',
      encoder_hidden_states: `FLOAT[batch_size, sequence_length, ${TINY_CROSS_ATTENTION_DIM}]`,
      text_embeds: `FLOAT[batch_size, ${D.projectionDim}]`,
      time_ids: 'FLOAT[batch_size, 6]',
    });
    assert.deepEqual(io(model(dir, 'unet'), 'output'), { out_sample: 'FLOAT[batch_size, 4, height, width]' });
    assert.deepEqual(io(model(dir, 'vae_decoder'), 'input'), { latent_sample: 'FLOAT[batch_size, 4, latent_height, latent_width]' });
    assert.deepEqual(io(model(dir, 'vae_decoder'), 'output'), { sample: 'FLOAT[batch_size, 3, latent_height * 8, latent_width * 8]' });
    assert.deepEqual(io(model(dir, 'vae_encoder'), 'input'), { sample: 'FLOAT[batch_size, 3, sample_height, sample_width]' });
    assert.deepEqual(io(model(dir, 'vae_encoder'), 'output'), { latent_parameters: 'FLOAT[batch_size, 8, sample_height / 8, sample_width / 8]' });
    for (const c of ['text_encoder', 'unet', 'vae_decoder']) {
      const m = model(dir, c);
      assert.equal(m.ir_version, 8);
      assert.deepEqual(m.opset_import, [{ domain: '', version: 17 }]);
    }
  });

  test('the older-export variants take an int64 [steps] timestep and output latent_sample', async () => {
    const dir = await write({ timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample' });
    assert.equal(io(model(dir, 'unet'), 'input')['timestep'], 'INT64[steps]');
    assert.deepEqual(io(model(dir, 'vae_encoder'), 'output'), { latent_sample: 'FLOAT[batch_size, 4, height_latent, width_latent]' });
    assert.deepEqual(io(model(dir, 'vae_decoder'), 'input'), { latent_sample: 'FLOAT[batch_size, 4, height_latent, width_latent]' });
  });

  test('the fp16 variant stores every float tensor as FLOAT16 raw half bits and keeps int64', async () => {
    const dir = await write({ dtype: 'float16', externalData: false });
    assert.ok(!fs.existsSync(path.join(dir, 'unet/model.onnx_data')));
    for (const c of ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder']) {
      const m = model(dir, c);
      const types = new Set([...m.graph!.input!, ...m.graph!.output!].map((v) => v.type!.tensor_type!.elem_type));
      for (const t of types) assert.ok(t === DataType.FLOAT16 || t === DataType.INT64, `${c}: io type ${t}`);
      for (const init of m.graph!.initializer!) {
        // Float32 is allowed only for the two tables that must be float32 in any export:
        // sinusoid frequencies (computed in float32, as diffusers does) and Resize scales.
        if (init.data_type === DataType.FLOAT) assert.match(init.name!, /freqs$|scales$/, `${c}: ${init.name} is float32`);
        else assert.ok(init.data_type === DataType.FLOAT16 || init.data_type === DataType.INT64, `${c}: ${init.name}`);
        assert.ok(init.raw_data && init.raw_data.length > 0, `${c}: ${init.name} has raw_data`);
      }
    }
    const ln = model(dir, 'text_encoder').graph!.initializer!.find((t) => t.name === 'text_model.final_layer_norm.weight')!;
    assert.deepEqual([...new Uint16Array(Uint8Array.from(ln.raw_data!).buffer)].slice(0, 2), [0x3c00, 0x3c00]); // 1.0 in half
  });

  test('external data holds the UNet weights, with offsets and lengths inside model.onnx_data', async () => {
    const dir = await write();
    const data = fs.readFileSync(path.join(dir, 'unet/model.onnx_data'));
    const external = model(dir, 'unet').graph!.initializer!.filter((t) => t.data_location === 1);
    assert.ok(external.length > 10);
    for (const t of external) {
      const kv = Object.fromEntries(t.external_data!.map((e) => [e.key, e.value]));
      assert.equal(kv['location'], 'model.onnx_data');
      assert.ok(!t.raw_data || t.raw_data.length === 0);
      assert.ok(Number(kv['offset']) + Number(kv['length']) <= data.length, t.name);
    }
    const inline = await write({ externalData: false });
    const w = model(inline, 'unet').graph!.initializer!.find((t) => t.name === 'conv_in.weight')!;
    const e = external.find((t) => t.name === 'conv_in.weight')!;
    const kv = Object.fromEntries(e.external_data!.map((x) => [x.key, Number(x.value)]));
    assert.deepEqual(data.subarray(kv['offset'], kv['offset']! + kv['length']!), Buffer.from(w.raw_data!));
  });

  test('names the UNet initializers after diffusers modules, MatMul weights stored [in, out]', async () => {
    const dir = await write({ externalData: false });
    const inits = new Map(model(dir, 'unet').graph!.initializer!.map((t) => [t.name!, t.dims!]));
    const C = TINY_SDXL_DIMS.unetChannels;
    const attn = 'down_blocks.0.attentions.0.transformer_blocks.0';
    assert.deepEqual(inits.get(`${attn}.attn2.to_q.weight`), [C, C]);
    assert.deepEqual(inits.get(`${attn}.attn2.to_k.weight`), [TINY_CROSS_ATTENTION_DIM, C]);
    assert.deepEqual(inits.get(`${attn}.attn2.to_v.weight`), [TINY_CROSS_ATTENTION_DIM, C]);
    assert.deepEqual(inits.get(`${attn}.attn2.to_out.0.weight`), [C, C]);
    assert.deepEqual(inits.get(`${attn}.attn2.to_out.0.bias`), [C]);
    for (const name of [`${attn}.attn1.to_q.weight`, `${attn}.ff.net.0.proj.weight`, `${attn}.ff.net.2.weight`,
      'down_blocks.0.attentions.0.proj_in.weight', 'down_blocks.0.resnets.0.conv1.weight', 'down_blocks.0.resnets.0.time_emb_proj.weight',
      'time_embedding.linear_1.weight', 'add_embedding.linear_2.weight']) assert.ok(inits.has(name), name);
    assert.deepEqual(inits.get('add_embedding.linear_1.weight'), [TINY_SDXL_DIMS.projectionDim + 6 * TINY_SDXL_DIMS.additionTimeEmbedDim, TINY_SDXL_DIMS.timeEmbedDim]);
    assert.deepEqual(inits.get('conv_in.weight'), [C, 4, 3, 3]);
    assert.deepEqual(inits.get('conv_out.weight'), [4, C, 3, 3]);
    const te = new Set(model(dir, 'text_encoder').graph!.initializer!.map((t) => t.name));
    assert.ok(te.has('text_model.encoder.layers.0.self_attn.q_proj.weight'));
    assert.ok(te.has('text_model.embeddings.token_embedding.weight'));
    assert.ok(new Set(model(dir, 'text_encoder_2').graph!.initializer!.map((t) => t.name)).has('text_projection.weight'));
  });
});

describe('ONNX graph tool extensions', () => {
  test('addFloatInitializer rounds to half precision to nearest even', () => {
    assert.deepEqual([1, -2, 65504, 1e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11].map(halfBits), [0x3c00, 0xc000, 0x7bff, 0, 0x3c00, 0x3c02]);
    const m = decodeModel(new GraphBuilder().addFloatInitializer('h', Float32Array.of(0.5, 100000), [2], 'FLOAT16')
      .addInput('x', 'FLOAT16', [1]).addNode('Identity', ['x'], ['y']).addOutput('y', 'FLOAT16', [1]).toBytes());
    assert.deepEqual([...m.graph!.initializer![0]!.raw_data!], [0x00, 0x38, 0x00, 0x7c]);
  });

  test('moveInitializersToExternalData keeps small tensors inline and leaves the input model unchanged', () => {
    const g = new GraphBuilder().addInput('x', 'FLOAT', [1])
      .addInitializer('big', new Float32Array(300).fill(1), [300]).addInitializer('small', Float32Array.of(2), [1])
      .addNode('Identity', ['x'], ['y']).addOutput('y', 'FLOAT', [1]);
    const original = g.toModel();
    const { model: moved, data } = moveInitializersToExternalData(original, { location: 'w.bin' });
    assert.equal(data.length, 1200);
    assert.equal(moved.graph!.initializer![0]!.data_location, 1);
    assert.equal(moved.graph!.initializer![1]!.raw_data!.length, 4);
    assert.equal(original.graph!.initializer![0]!.raw_data!.length, 1200);
    assert.throws(() => moveInitializersToExternalData(original, { location: '../w.bin' }), RangeError);
  });
});
