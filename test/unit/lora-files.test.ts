import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LoraFormatError, parseLoraKeys } from '../../services/models/lora/lora-keys.js';
import { encodeSafetensors, parseSafetensors, SafetensorsError } from '../../services/models/lora/safetensors.js';
import { diffusersToSgm, sgmToDiffusers } from '../../services/models/lora/sgm-names.js';
import { float32ToHalf } from '../../services/models/onnx/float16.js';

const t = (shape: number[], fill = 0.5) => ({ data: new Float32Array(shape.reduce((a, d) => a * d, 1)).fill(fill), shape });

function withHeader(json: string, data = new Uint8Array(0), declaredLength?: number): Uint8Array {
  const head = Buffer.from(json);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLength ?? head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

describe('safetensors', () => {
  test('round-trips F32 and F16 tensors and metadata', () => {
    const bytes = encodeSafetensors({ a: { ...t([2, 3], 0.25) }, b: { ...t([4], -1.5), dtype: 'F16' } }, { format: 'pt' }, float32ToHalf);
    const f = parseSafetensors(bytes, 'x.safetensors');
    assert.deepEqual([...f.tensors.get('a')!.data], [0.25, 0.25, 0.25, 0.25, 0.25, 0.25]);
    assert.deepEqual(f.tensors.get('b')!.shape, [4]);
    assert.deepEqual([...f.tensors.get('b')!.data], [-1.5, -1.5, -1.5, -1.5]);
    assert.equal(f.metadata['format'], 'pt');
  });
  test('reads BF16 as the upper half of a float32', () => {
    const data = new Uint8Array([0x80, 0x3f]); // 1.0 in bf16
    const f = parseSafetensors(withHeader('{"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}', data), 'x');
    assert.equal(f.tensors.get('w')!.data[0], 1);
  });
  test('a header length past the end of the file is a clear error', () => {
    assert.throws(() => parseSafetensors(withHeader('{}', new Uint8Array(0), 5000), 'bad.safetensors'),
      (err: unknown) => err instanceof SafetensorsError && err.file === 'bad.safetensors' && /bad header length 5000: the file has only 2 bytes/.test(err.message));
  });
  test('an absurd header length is refused without allocating it', () => {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigUint64(0, 1n << 60n, true);
    assert.throws(() => parseSafetensors(b, 'f'), /bad header length \d+ \(more than/);
  });
  test('a file shorter than 8 bytes, bad JSON, unsupported dtypes, wrong sizes and overlaps are refused', () => {
    assert.throws(() => parseSafetensors(new Uint8Array(3), 'f'), /fewer than the 8-byte header length/);
    assert.throws(() => parseSafetensors(withHeader('{"a":'), 'f'), /header is not valid UTF-8 JSON/);
    assert.throws(() => parseSafetensors(withHeader('{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(8)), 'f'), /dtype "I64" is not supported/);
    assert.throws(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Uint8Array(8)), 'f'), /hold 8 bytes; shape \[3\] of F32 needs 12/);
    assert.throws(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), 'f'), /overlap/);
  });
  test('truncated data names the tensor and the sizes', () => {
    assert.throws(() => parseSafetensors(withHeader('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', new Uint8Array(10)), 'f.safetensors'),
      /f\.safetensors: truncated data: tensor "w" ends at byte 16 of the data section, which has only 10 bytes/);
  });
});

describe('SGM names', () => {
  test('maps SDXL kohya SGM module names onto diffusers names', () => {
    assert.equal(sgmToDiffusers('input_blocks_4_1_transformer_blocks_0_attn1_to_q'), 'down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q');
    assert.equal(sgmToDiffusers('input_blocks_8_1_transformer_blocks_9_ff_net_0_proj'), 'down_blocks_2_attentions_1_transformer_blocks_9_ff_net_0_proj');
    assert.equal(sgmToDiffusers('input_blocks_1_0_in_layers_2'), 'down_blocks_0_resnets_0_conv1');
    assert.equal(sgmToDiffusers('input_blocks_2_0_emb_layers_1'), 'down_blocks_0_resnets_1_time_emb_proj');
    assert.equal(sgmToDiffusers('input_blocks_4_0_skip_connection'), 'down_blocks_1_resnets_0_conv_shortcut');
    assert.equal(sgmToDiffusers('input_blocks_3_0_op'), 'down_blocks_0_downsamplers_0_conv');
    assert.equal(sgmToDiffusers('middle_block_1_proj_in'), 'mid_block_attentions_0_proj_in');
    assert.equal(sgmToDiffusers('middle_block_2_out_layers_3'), 'mid_block_resnets_1_conv2');
    assert.equal(sgmToDiffusers('output_blocks_5_1_transformer_blocks_1_attn2_to_k'), 'up_blocks_1_attentions_2_transformer_blocks_1_attn2_to_k');
    assert.equal(sgmToDiffusers('output_blocks_2_2_conv'), 'up_blocks_0_upsamplers_0_conv');
    assert.equal(sgmToDiffusers('output_blocks_8_0_skip_connection'), 'up_blocks_2_resnets_2_conv_shortcut');
    assert.equal(sgmToDiffusers('time_embed_0'), 'time_embedding_linear_1');
    assert.equal(sgmToDiffusers('label_emb_0_2'), 'add_embedding_linear_2');
    assert.equal(sgmToDiffusers('down_blocks_1_attentions_0_proj_in'), undefined);
  });
  test('the writer\'s inverse mapping round-trips the tiny UNet\'s modules', () => {
    for (const d of ['down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', 'down_blocks_0_resnets_0_conv1', 'down_blocks_0_resnets_0_time_emb_proj', 'down_blocks_1_attentions_1_proj_out']) {
      assert.equal(sgmToDiffusers(diffusersToSgm(d)!), d);
    }
  });
});

describe('LoRA keys', () => {
  const parse = (tensors: Record<string, { data: Float32Array; shape: number[] }>, metadata?: Record<string, string>) =>
    parseLoraKeys(parseSafetensors(encodeSafetensors(tensors, metadata), 'l.safetensors'), 'l.safetensors');

  test('reads kohya modules with alpha, mapping SGM UNet names and text encoder prefixes', () => {
    const r = parse({
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight': t([4, 8]),
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight': t([8, 4]),
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha': { data: Float32Array.of(2), shape: [] },
      'lora_te2_text_model_encoder_layers_3_self_attn_q_proj.lora_down.weight': t([4, 8]),
      'lora_te2_text_model_encoder_layers_3_self_attn_q_proj.lora_up.weight': t([8, 4]),
    });
    assert.equal(r.format, 'kohya');
    const unet = r.modules.find((m) => m.component === 'unet')!;
    assert.equal(unet.candidates[0], 'down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q');
    assert.equal(unet.alpha, 2);
    const te2 = r.modules.find((m) => m.component === 'text_encoder_2')!;
    assert.equal(te2.alpha, 4, 'no alpha: alpha = rank');
  });
  test('reads PEFT lora_A/lora_B with alpha from diffusers adapter metadata', () => {
    const r = parse({ 'unet.a.to_k.lora_A.weight': t([2, 8]), 'unet.a.to_k.lora_B.weight': t([8, 2]) }, { lora_adapter_metadata: JSON.stringify({ 'unet.lora_alpha': 16, 'unet.r': 2 }) });
    assert.equal(r.format, 'peft');
    assert.equal(r.modules[0]!.alpha, 16);
    assert.deepEqual(r.modules[0]!.candidates, ['a_to_k']);
  });
  test('reads legacy attention-processor keys as the projection they adapt', () => {
    const r = parse({ 'unet.x.attn1.processor.to_out_lora.down.weight': t([2, 8]), 'unet.x.attn1.processor.to_out_lora.up.weight': t([8, 2]) });
    assert.equal(r.format, 'peft-legacy');
    assert.deepEqual(r.modules[0]!.candidates, ['x_attn1_to_out_0']);
  });
  test('unknown keys, half modules and rank mismatches are clear errors', () => {
    assert.throws(() => parse({ 'model.diffusion_model.w': t([2]) }), (e: unknown) => e instanceof LoraFormatError && /neither kohya .* nor diffusers\/PEFT .*: model\.diffusion_model\.w/.test(e.message));
    assert.throws(() => parse({ 'lora_unet_a.lora_down.weight': t([2, 8]) }), /module lora_unet_a has no up weight/);
    assert.throws(() => parse({ 'lora_unet_a.lora_down.weight': t([2, 8]), 'lora_unet_a.lora_up.weight': t([8, 3]) }), /their ranks differ/);
  });
});
