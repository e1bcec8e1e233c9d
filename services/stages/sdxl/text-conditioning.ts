/**
 * SDXL's text conditioning (diffusers StableDiffusionXLPipeline.encode_prompt): both text
 * encoders, the penultimate hidden state of each concatenated on channels (768 + 1280 = 2048 in a
 * real export), and text_encoder_2's `text_embeds` as the pooled embedding. With
 * `force_zeros_for_empty_prompt` an empty negative prompt gives zero embeddings.
 */
import * as ort from 'onnxruntime-node';
import type { ClipTokenizer } from './clip-tokenizer.js';
import { toFloat32 } from './tensors.js';

export interface TextEncoders {
  readonly textEncoder: ort.InferenceSession;
  readonly textEncoder2: ort.InferenceSession;
  readonly tokenizer: ClipTokenizer;
  readonly tokenizer2: ClipTokenizer;
  readonly forceZerosForEmptyPrompt: boolean;
}

export interface Conditioning {
  /** [n, 77, H1 + H2] per prompt, float32. */
  readonly embeds: Float32Array[];
  /** [n, P] per prompt. */
  readonly pooled: Float32Array[];
  readonly seqLen: number;
  readonly hiddenSize: number;
  readonly pooledSize: number;
}

/** The penultimate of the `hidden_states.N` outputs (SDXL conditions on it, not on the last layer). */
export function penultimateHiddenState(session: ort.InferenceSession): string {
  const n = session.outputNames.filter((o) => /^hidden_states\.\d+$/.test(o)).length;
  if (n < 2) throw new Error(`text encoder has ${n} hidden_states outputs; SDXL needs the penultimate one`);
  return `hidden_states.${n - 2}`;
}

/** Encodes prompts (one run of each encoder for all of them). Empty strings are encoded normally. */
async function encode(enc: TextEncoders, texts: readonly string[]): Promise<Conditioning> {
  const b = texts.length;
  const ids1 = enc.tokenizer.encodeBatch(texts);
  const ids2 = enc.tokenizer2.encodeBatch(texts);
  const seqLen = ids1.length / b;
  const h1 = penultimateHiddenState(enc.textEncoder);
  const h2 = penultimateHiddenState(enc.textEncoder2);
  const [o1, o2] = [
    await enc.textEncoder.run({ input_ids: new ort.Tensor('int64', ids1, [b, seqLen]) }, [h1]),
    await enc.textEncoder2.run({ input_ids: new ort.Tensor('int64', ids2, [b, seqLen]) }, [h2, 'text_embeds']),
  ];
  const a = toFloat32(o1[h1]!);
  const c = toFloat32(o2[h2]!);
  const pooledAll = toFloat32(o2.text_embeds!);
  const d1 = o1[h1]!.dims[2]!;
  const d2 = o2[h2]!.dims[2]!;
  const p = o2.text_embeds!.dims[1]!;
  const embeds: Float32Array[] = [];
  const pooled: Float32Array[] = [];
  for (let i = 0; i < b; i++) {
    const e = new Float32Array(seqLen * (d1 + d2));
    for (let t = 0; t < seqLen; t++) {
      e.set(a.subarray((i * seqLen + t) * d1, (i * seqLen + t + 1) * d1), t * (d1 + d2));
      e.set(c.subarray((i * seqLen + t) * d2, (i * seqLen + t + 1) * d2), t * (d1 + d2) + d1);
    }
    embeds.push(e);
    pooled.push(pooledAll.slice(i * p, (i + 1) * p));
  }
  return { embeds, pooled, seqLen, hiddenSize: d1 + d2, pooledSize: p };
}

/**
 * Positive and negative conditioning for a batch of items. Identical texts are encoded once.
 * A negative that is empty under force_zeros_for_empty_prompt is all zeros, as diffusers does.
 */
export async function conditionBatch(enc: TextEncoders, prompts: readonly string[], negatives: readonly string[]): Promise<{ positive: Conditioning; negative: Conditioning }> {
  const zeroNeg = negatives.map((n) => enc.forceZerosForEmptyPrompt && n.trim() === '');
  const unique = [...new Set([...prompts, ...negatives.filter((_, i) => !zeroNeg[i])])];
  const all = await encode(enc, unique);
  const at = (t: string) => unique.indexOf(t);
  const pick = (texts: readonly string[], zero: readonly boolean[]): Conditioning => ({
    ...all,
    embeds: texts.map((t, i) => (zero[i] ? new Float32Array(all.seqLen * all.hiddenSize) : all.embeds[at(t)]!)),
    pooled: texts.map((t, i) => (zero[i] ? new Float32Array(all.pooledSize) : all.pooled[at(t)]!)),
  });
  return { positive: pick(prompts, prompts.map(() => false)), negative: pick(negatives, zeroNeg) };
}
