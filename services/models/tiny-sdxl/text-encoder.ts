/**
 * The tiny CLIP text encoders, shaped like Optimum's `clip-text` (text_encoder) and
 * `clip-text-with-projection` (text_encoder_2) exports with `output_hidden_states`:
 *
 * - input `input_ids` int64 [batch_size, sequence_length];
 * - token + position embeddings (Gather, and a Slice of the position table to the sequence length);
 * - per layer, pre-LayerNorm causal self-attention (one head) and a QuickGELU MLP, each residual;
 *   `hidden_states.0` is the embeddings, `hidden_states.i` the output of layer i;
 * - `last_hidden_state` = final_layer_norm(last layer);
 * - pooled = last_hidden_state at the EOS position, found as CLIP does: argmax of the ids (EOS has
 *   the largest id in CLIP vocabularies) after a Cast to int32;
 * - text_encoder: `pooler_output` = pooled; text_encoder_2: `text_embeds` = pooled @ text_projection.
 *
 * Causal attention makes every position (padding included) depend on the prompt, as in CLIP.
 * Nothing mixes batch items.
 */
import { encodeModel } from '../onnx/onnx-model.js';
import { Net, type TinyDtype } from './net.js';

export interface TextEncoderSpec {
  readonly kind: 'clip-text' | 'clip-text-with-projection';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly layers: number;
  readonly maxPositions: number;
  /** text_projection output size (clip-text-with-projection only). */
  readonly projectionDim?: number;
}

/** A big negative instead of −inf above the causal diagonal: finite in float16 too. */
const MASKED = -1e4;

/** The encoder as ONNX bytes (opset 17). `seed` and the spec fix every weight. */
export function buildTextEncoder(spec: TextEncoderSpec, dtype: TinyDtype, seed: number): Uint8Array {
  const net = new Net(spec.kind === 'clip-text' ? 'text_encoder' : 'text_encoder_2', dtype, seed);
  const { g } = net;
  const H = spec.hiddenSize;
  const S = spec.maxPositions;
  const ft = net.floatType;
  const seqAxes = ['batch_size', 'sequence_length', H] as const;
  g.addInput('input_ids', 'INT64', ['batch_size', 'sequence_length']);

  // Embeddings. Token embeddings have unit scale so the first LayerNorm sees well-spread values.
  const emb = '/text_model/embeddings';
  const tokens = net.op('Gather', [net.weight('text_model.embeddings.token_embedding.weight', [spec.vocabSize, H], 1), 'input_ids'], emb, { axis: 0 });
  const seqLen = net.op('Slice', [net.op('Shape', ['input_ids'], emb), net.ints('/text_model/const_1', [1]), net.ints('/text_model/const_2', [2])], emb);
  const zero = net.ints('/text_model/const_0', [0]);
  const positions = net.op('Slice', [net.weight('text_model.embeddings.position_embedding.weight', [S, H], 0.5), zero, seqLen, zero], emb);
  let h = net.op('Add', [tokens, positions], emb);

  // Causal mask [S, S], sliced to [seq, seq] at run time.
  const mask = new Float32Array(S * S);
  for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) mask[i * S + j] = MASKED;
  const seqSquare = net.op('Concat', [seqLen, seqLen], '/text_model/encoder', { axis: 0 });
  const causal = net.op('Slice', [net.constant('/text_model/causal_mask', mask, [S, S]), net.ints('/text_model/const_00', [0, 0]), seqSquare], '/text_model/encoder');
  const attnScale = net.scalar('/text_model/attn_scale', 1 / Math.sqrt(H));

  net.output(h, 'hidden_states.0', ft, seqAxes);
  for (let i = 0; i < spec.layers; i++) {
    const layer = `text_model.encoder.layers.${i}`;
    const a = net.layerNorm(h, `${layer}.layer_norm1`, H);
    const q = net.linear(a, `${layer}.self_attn.q_proj`, H, H);
    const k = net.linear(a, `${layer}.self_attn.k_proj`, H, H);
    const v = net.linear(a, `${layer}.self_attn.v_proj`, H, H);
    const scope = `/${layer}/self_attn`;
    const scores = net.op('Add', [net.op('Mul', [net.op('MatMul', [q, net.op('Transpose', [k], scope, { perm: [0, 2, 1] })], scope), attnScale], scope), causal], scope);
    const ctx = net.op('MatMul', [net.op('Softmax', [scores], scope, { axis: -1 }), v], scope);
    h = net.op('Add', [h, net.linear(ctx, `${layer}.self_attn.out_proj`, H, H, { gain: 0.5 })], `/${layer}`);
    const m = net.layerNorm(h, `${layer}.layer_norm2`, H);
    const act = net.quickGelu(net.linear(m, `${layer}.mlp.fc1`, H, H), `/${layer}/mlp`, `/${layer}/mlp/quick_gelu_const`);
    h = net.op('Add', [h, net.linear(act, `${layer}.mlp.fc2`, H, H, { gain: 0.5 })], `/${layer}`);
    net.output(h, `hidden_states.${i + 1}`, ft, seqAxes);
  }
  const last = net.layerNorm(h, 'text_model.final_layer_norm', H);

  // Pooled: the row at argmax(input_ids) of each item (GatherND with batch_dims = 1).
  const pool = '/text_model/pooler';
  const eos = net.op('ArgMax', [net.op('Cast', ['input_ids'], pool, { to: 6 /* INT32 */ })], pool, { axis: -1, keepdims: 1 });
  const pooled = net.op('GatherND', [last, eos], pool, { batch_dims: 1 });

  if (spec.kind === 'clip-text') {
    net.output(last, 'last_hidden_state', ft, seqAxes);
    net.output(pooled, 'pooler_output', ft, ['batch_size', H]);
  } else {
    const P = spec.projectionDim ?? H;
    const projected = net.op('MatMul', [pooled, net.weight('text_projection.weight', [H, P], 1 / Math.sqrt(H))], '/text_projection');
    // Optimum's CLIPTextWithProjectionOnnxConfig names text_embeds' axis 1 "sequence_length" (it
    // is the projection size): a real export carries that name, so readers must not trust it.
    net.output(projected, 'text_embeds', ft, ['batch_size', 'sequence_length']);
    net.output(last, 'last_hidden_state', ft, seqAxes);
  }
  return reorderOutputs(net, spec);
}

/** Serialises with the outputs in the export's order (the hidden states were declared first). */
function reorderOutputs(net: Net, spec: TextEncoderSpec): Uint8Array {
  const model = net.g.toModel(17);
  const first = spec.kind === 'clip-text' ? ['last_hidden_state', 'pooler_output'] : ['text_embeds', 'last_hidden_state'];
  const outs = model.graph!.output!;
  const rank = (n: string | undefined) => (first.includes(n ?? '') ? first.indexOf(n ?? '') : first.length);
  // sort is stable: hidden_states.0..N keep their order after the first two.
  model.graph!.output = [...outs].sort((a, b) => rank(a.name) - rank(b.name));
  return encodeModel(model);
}
