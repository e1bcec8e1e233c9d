/**
 * The tiny SDXL UNet, with the inputs and output of Optimum's `unet-2d-condition` export for
 * `addition_embed_type: "text_time"`: `sample` [batch_size, 4, height, width], `timestep` (float
 * scalar [] in newer exports, int64 [steps] in older ones), `encoder_hidden_states`
 * [batch_size, sequence_length, cross_attention_dim], `text_embeds` [batch_size, P], `time_ids`
 * [batch_size, 6] → `out_sample` [batch_size, 4, height, width].
 *
 * One level of a real UNet, with diffusers' module names:
 * time_proj (sinusoids, flip_sin_to_cos, freq_shift 0) → time_embedding.linear_1/2;
 * add_time_proj(time_ids) ‖ text_embeds → add_embedding.linear_1/2; conv_in;
 * down_blocks.0.resnets.0 (norm1, conv1, time_emb_proj, norm2, conv2);
 * down_blocks.0.attentions.0 (norm, proj_in, transformer_blocks.0.{norm1, attn1, norm2, attn2, norm3, ff}, proj_out);
 * conv_norm_out, conv_out. The sinusoids are computed in float32 and cast, as diffusers does in
 * fp16. GroupNorm is written as exports before opset 18 write it (Reshape, InstanceNormalization,
 * affine). Every op is per item (no BatchNorm, no batch reshapes): batch items never mix.
 *
 * Tiny-bundle only: `out_sample = sample + conv_out(…)`. For pure-noise "data" the ideal ε-prediction
 * of the scaled input is about the input itself; this skip keeps the prediction near it, so 30 Euler
 * steps end at unit-scale latents, and conv_out adds a smooth, prompt-dependent part on top.
 */
import type { ModelProto } from '../onnx/onnx-model.js';
import { Net, type TinyDtype } from './net.js';

export interface UnetSpec {
  readonly timestep: 'float-scalar' | 'int64-batch';
  readonly latentChannels: number;
  readonly channels: number;
  /** GroupNorm groups (norm_num_groups; SDXL: 32). */
  readonly groups: number;
  readonly heads: number;
  readonly timeEmbedDim: number;
  readonly additionTimeEmbedDim: number;
  readonly crossAttentionDim: number;
  readonly pooledDim: number;
}

/** The standard deviation of the learned part of out_sample (the skip adds the sample). */
const OUT_GAIN = 0.5;

/** Sinusoidal frequencies exp(−ln(10000)·i/half), i < half (diffusers get_timestep_embedding). */
function frequencies(dim: number): Float32Array {
  const half = dim / 2;
  return Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
}

/** [cos(x·f), sin(x·f)] on a new last axis of width `dim`, computed in float32, cast to the net's type. */
function sinusoids(net: Net, x32: string, axis: number, dim: number, scope: string): string {
  const f = `${scope}/freqs`;
  net.g.addFloatInitializer(f, frequencies(dim), [dim / 2], 'FLOAT');
  const args = net.op('Mul', [net.op('Unsqueeze', [x32, net.ints(`${scope}/axis`, [axis])], scope), f], scope);
  const emb = net.op('Concat', [net.op('Cos', [args], scope), net.op('Sin', [args], scope)], scope, { axis: -1 });
  return net.dtype === 'float16' ? net.op('Cast', [emb], scope, { to: 10 /* FLOAT16 */ }) : emb;
}

function toFloat32(net: Net, x: string, scope: string): string {
  return net.op('Cast', [x], scope, { to: 1 /* FLOAT */ });
}

/** Multi-head attention of `q` tokens over `kv` tokens (both [B, n, *]); diffusers `Attention` names. */
function attention(net: Net, module: string, x: string, context: string, dim: number, contextDim: number, heads: number): string {
  const scope = `/${module}`;
  const dh = dim / heads;
  const q = net.linear(x, `${module}.to_q`, dim, dim, { bias: false });
  const k = net.linear(context, `${module}.to_k`, contextDim, dim, { bias: false });
  const v = net.linear(context, `${module}.to_v`, contextDim, dim, { bias: false });
  const split = net.ints(`${scope}/heads_shape`, [0, -1, heads, dh]);
  const qh = net.op('Transpose', [net.op('Reshape', [q, split], scope)], scope, { perm: [0, 2, 1, 3] });
  const kh = net.op('Transpose', [net.op('Reshape', [k, split], scope)], scope, { perm: [0, 2, 3, 1] });
  const vh = net.op('Transpose', [net.op('Reshape', [v, split], scope)], scope, { perm: [0, 2, 1, 3] });
  const scores = net.op('Mul', [net.op('MatMul', [qh, kh], scope), net.scalar(`${scope}/scale`, 1 / Math.sqrt(dh))], scope);
  const ctx = net.op('MatMul', [net.op('Softmax', [scores], scope, { axis: -1 }), vh], scope);
  const merged = net.op('Reshape', [net.op('Transpose', [ctx], scope, { perm: [0, 2, 1, 3] }), net.ints(`${scope}/merge_shape`, [0, -1, dim])], scope);
  return net.linear(merged, `${module}.to_out.0`, dim, dim, { gain: 0.5 });
}

/** GEGLU feed-forward (ff.net.0.proj → hidden · gelu(gate), ff.net.2), inner width 4·dim. */
function feedForward(net: Net, module: string, x: string, dim: number): string {
  const scope = `/${module}`;
  const inner = 4 * dim;
  const proj = net.linear(x, `${module}.net.0.proj`, dim, 2 * inner);
  const hidden = net.op('Slice', [proj, net.ints(`${scope}/s0`, [0]), net.ints(`${scope}/s1`, [inner]), net.ints(`${scope}/ax`, [-1])], scope);
  const gate = net.op('Slice', [proj, net.ints(`${scope}/s2`, [inner]), net.ints(`${scope}/s3`, [2 * inner]), net.ints(`${scope}/ax2`, [-1])], scope);
  // gelu(x) = 0.5·x·(1 + erf(x/√2)), as torch exports it before opset 20.
  const erf = net.op('Erf', [net.op('Mul', [gate, net.scalar(`${scope}/inv_sqrt2`, Math.SQRT1_2)], scope)], scope);
  const gelu = net.op('Mul', [net.op('Mul', [gate, net.op('Add', [erf, net.scalar(`${scope}/one`, 1)], scope)], scope), net.scalar(`${scope}/half`, 0.5)], scope);
  return net.linear(net.op('Mul', [hidden, gelu], scope), `${module}.net.2`, inner, dim, { gain: 0.5 });
}

/** The UNet as an ONNX model object (opset 17), for the caller to serialise with or without external data. */
export function buildUnet(spec: UnetSpec, dtype: TinyDtype, seed: number): ModelProto {
  const net = new Net('unet', dtype, seed);
  const { g } = net;
  const ft = net.floatType;
  const C = spec.channels;
  const T = spec.timeEmbedDim;
  const A = spec.additionTimeEmbedDim;
  g.addInput('sample', ft, ['batch_size', spec.latentChannels, 'height', 'width']);
  if (spec.timestep === 'float-scalar') g.addInput('timestep', ft, []);
  else g.addInput('timestep', 'INT64', ['steps']);
  g.addInput('encoder_hidden_states', ft, ['batch_size', 'sequence_length', spec.crossAttentionDim]);
  g.addInput('text_embeds', ft, ['batch_size', spec.pooledDim]);
  g.addInput('time_ids', ft, ['batch_size', 6]);

  // Timestep → [B] float32 (diffusers: timesteps.expand(sample.shape[0])) → time embedding.
  const batch = net.op('Slice', [net.op('Shape', ['sample'], '/time_proj'), net.ints('/time_proj/s0', [0]), net.ints('/time_proj/s1', [1])], '/time_proj');
  const t = net.op('Expand', [toFloat32(net, 'timestep', '/time_proj'), batch], '/time_proj');
  const tProj = sinusoids(net, t, 1, C, '/time_proj');
  const tEmb = net.linear(net.silu(net.linear(tProj, 'time_embedding.linear_1', C, T), '/time_embedding/act'), 'time_embedding.linear_2', T, T);

  // SDXL micro-conditioning: sinusoids of the six time_ids, after text_embeds, → add_embedding.
  const idsProj = sinusoids(net, toFloat32(net, 'time_ids', '/add_time_proj'), 2, A, '/add_time_proj');
  const idsFlat = net.op('Reshape', [idsProj, net.ints('/add_time_proj/shape', [0, -1])], '/add_time_proj');
  const addIn = net.op('Concat', ['text_embeds', idsFlat], '/add_embedding', { axis: 1 });
  const aEmb = net.linear(net.silu(net.linear(addIn, 'add_embedding.linear_1', spec.pooledDim + 6 * A, T), '/add_embedding/act'), 'add_embedding.linear_2', T, T);
  const emb = net.op('Add', [tEmb, aEmb], '/emb');

  let x = net.conv('sample', 'conv_in', spec.latentChannels, C, 3);

  // ResnetBlock2D with the time embedding added between the convolutions.
  const rn = 'down_blocks.0.resnets.0';
  let r = net.conv(net.silu(net.groupNorm(x, `${rn}.norm1`, C, spec.groups), `/${rn}/act1`), `${rn}.conv1`, C, C, 3);
  const te = net.linear(net.silu(emb, `/${rn}/time_act`), `${rn}.time_emb_proj`, T, C);
  r = net.op('Add', [r, net.op('Unsqueeze', [te, net.ints(`/${rn}/hw_axes`, [2, 3])], `/${rn}`)], `/${rn}`);
  r = net.conv(net.silu(net.groupNorm(r, `${rn}.norm2`, C, spec.groups), `/${rn}/act2`), `${rn}.conv2`, C, C, 3, 0.5);
  x = net.op('Add', [x, r], `/${rn}`);

  // Transformer2DModel (use_linear_projection) with one BasicTransformerBlock, on features pooled
  // to a quarter of the latent resolution: SDXL's attention blocks also run on downsampled
  // features, and self-attention over every latent position of a 1536x640 image (15,360 tokens)
  // would need gigabytes per call.
  const at = 'down_blocks.0.attentions.0';
  const pooled = net.op('AveragePool', [x], `/${at}/down`, { kernel_shape: [4, 4], strides: [4, 4], ceil_mode: 1 });
  const tokens = net.op('Transpose', [net.op('Reshape', [net.groupNorm(pooled, `${at}.norm`, C, spec.groups), net.ints(`/${at}/tokens_shape`, [0, C, -1])], `/${at}`)], `/${at}`, { perm: [0, 2, 1] });
  let h = net.linear(tokens, `${at}.proj_in`, C, C);
  const tb = `${at}.transformer_blocks.0`;
  const n1 = net.layerNorm(h, `${tb}.norm1`, C);
  h = net.op('Add', [h, attention(net, `${tb}.attn1`, n1, n1, C, C, spec.heads)], `/${tb}`);
  const n2 = net.layerNorm(h, `${tb}.norm2`, C);
  h = net.op('Add', [h, attention(net, `${tb}.attn2`, n2, 'encoder_hidden_states', C, spec.crossAttentionDim, spec.heads)], `/${tb}`);
  h = net.op('Add', [h, feedForward(net, `${tb}.ff`, net.layerNorm(h, `${tb}.norm3`, C), C)], `/${tb}`);
  const out = net.linear(h, `${at}.proj_out`, C, C, { gain: 0.5 });
  const spatial = net.op('Reshape', [net.op('Transpose', [out], `/${at}`, { perm: [0, 2, 1] }), net.op('Shape', [pooled], `/${at}`)], `/${at}`);
  const up = net.op('Resize', [spatial, '', '', net.op('Shape', [x], `/${at}/up`)], `/${at}/up`, { mode: 'nearest' });
  x = net.op('Add', [x, up], `/${at}`);

  // SiLU(norm) has a standard deviation of about 0.6: the gain gives conv_out a std of OUT_GAIN;
  // zero-mean kernels keep SiLU's positive mean from drifting the latents over the steps.
  const eps = net.conv(net.silu(net.groupNorm(x, 'conv_norm_out', C, spec.groups), '/conv_act'), 'conv_out', C, spec.latentChannels, 3, OUT_GAIN / 0.6, true);
  net.output(net.op('Add', ['sample', eps], '/out'), 'out_sample', ft, ['batch_size', spec.latentChannels, 'height', 'width']);
  return net.g.toModel(17);
}
