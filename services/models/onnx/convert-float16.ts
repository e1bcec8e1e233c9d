/**
 * float32 → float16 model conversion, producing what an `optimum-cli export onnx --fp16` export
 * looks like: every FLOAT graph input, output, initializer and value_info becomes FLOAT16, and the
 * nodes that create float tensors from attributes follow (`Cast(to = FLOAT)`, `Constant`,
 * `ConstantOfShape`, `RandomNormal`/`RandomUniform` dtypes). Initializer values are rounded to
 * nearest even and clamped to ±65504 (no ±Inf from big masks); non-zero values below the smallest
 * subnormal become ±2⁻²⁴ rather than 0 (onnxconverter-common's float16 converter does the same), so
 * small epsilons stay non-zero.
 *
 * **float32 islands.** Some computations stay float32, as in the fp16 models they come from:
 * - the `keepFloat32Ops` (default `Cos`, `Sin`) and every float op whose float outputs only feed
 *   float32 computations (so, back to the Cast or graph input they start from): diffusers computes
 *   the sinusoidal time and `time_ids` embeddings in float32 (`timesteps.float() · exp(…)`) and
 *   casts the result to the UNet's dtype; in float16, t · f for t ≈ 999 would be off by up to 0.25
 *   radians;
 * - inputs whose type the op fixes to float32: Resize's `roi` and `scales`, Upsample's `scales`.
 * `Cast` nodes are inserted where a float32 island meets float16 computation. Ops without a
 * float16 CPU kernel need nothing here: ONNX Runtime's CPU provider casts around them itself.
 *
 * Subgraphs (If, Loop, Scan) are refused (see elem-types.ts).
 */
import { inferElemTypes, attribute } from './elem-types.js';
import { inlineExternalData } from './external-data.js';
import { halfBits } from './float16.js';
import { DataType, makeTensor, type AttributeProto, type ModelProto, type NodeProto, type TensorProto } from './onnx-model.js';

const FLOAT = DataType.FLOAT;
const FLOAT16 = DataType.FLOAT16;
const MAX_HALF = 65504;
const MIN_HALF = 2 ** -24;

export interface Float16Options {
  /** Ops computed in float32, with the float ops feeding only them (default `Cos`, `Sin`). */
  readonly keepFloat32Ops?: readonly string[];
}

export interface Float16Report {
  /** FLOAT initializers stored as FLOAT16. */
  readonly initializers: number;
  /** Nodes left computing in float32 (islands and their feeders). */
  readonly float32Nodes: number;
  /** Cast nodes inserted at island borders. */
  readonly castsInserted: number;
}

/** How a node input takes a float tensor: in the node's precision, any type, or float32 always. */
function slotKind(node: NodeProto, slot: number): 'follow' | 'any' | 'float32' {
  const op = (node.domain ?? '') === '' ? node.op_type : undefined;
  if (slot === 0 && (op === 'Cast' || op === 'CastLike' || op === 'Shape' || op === 'Size')) return 'any';
  if ((op === 'Resize' && (slot === 1 || slot === 2)) || (op === 'Upsample' && slot === 1)) return 'float32';
  return 'follow';
}

/** float32 values → clamped half bits (see the module comment). */
export function toClampedHalfBits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const a = Math.abs(v);
    out[i] = halfBits(a > MAX_HALF ? Math.sign(v) * MAX_HALF : a > 0 && a < MIN_HALF ? Math.sign(v) * MIN_HALF : v);
  }
  return out;
}

/** The float32 values of an inline FLOAT tensor (raw_data or float_data). */
function floatValues(t: TensorProto): Float32Array {
  if (t.raw_data && t.raw_data.length) {
    const dv = new DataView(t.raw_data.buffer, t.raw_data.byteOffset, t.raw_data.byteLength);
    return Float32Array.from({ length: t.raw_data.length / 4 }, (_, i) => dv.getFloat32(4 * i, true));
  }
  return Float32Array.from(t.float_data ?? []);
}

function toHalfTensor(t: TensorProto): TensorProto {
  const dims = (t.dims ?? []).map(Number);
  const half = makeTensor(t.name ?? '', toClampedHalfBits(floatValues(t)), dims, 'FLOAT16');
  return t.doc_string ? { ...half, doc_string: t.doc_string } : half;
}

/** Attributes of a node converted to float16 that create FLOAT tensors. */
function halfAttributes(node: NodeProto): AttributeProto[] | undefined {
  const op = (node.domain ?? '') === '' ? node.op_type : undefined;
  const attrs = node.attribute ?? [];
  const map = (f: (a: AttributeProto) => AttributeProto) => attrs.map(f);
  if (op === 'Cast') return map((a) => (a.name === 'to' && Number(a.i) === FLOAT ? { ...a, i: FLOAT16 } : a));
  if (op === 'Constant' || op === 'ConstantOfShape') {
    return map((a) => {
      if (a.name === 'value' && a.t?.data_type === FLOAT) return { ...a, t: toHalfTensor(a.t) };
      if (a.name === 'value_float') return { name: 'value', type: 4, t: makeTensor('', toClampedHalfBits(Float32Array.of(a.f ?? 0)), [], 'FLOAT16') };
      if (a.name === 'value_floats') return { name: 'value', type: 4, t: makeTensor('', toClampedHalfBits(Float32Array.from(a.floats ?? [])), [(a.floats ?? []).length], 'FLOAT16') };
      return a;
    });
  }
  if (op === 'RandomNormal' || op === 'RandomUniform') {
    const dtype = attribute(node, 'dtype');
    if (!dtype) return [...attrs, { name: 'dtype', type: 2, i: FLOAT16 }];
    return map((a) => (a === dtype && Number(a.i) === FLOAT ? { ...a, i: FLOAT16 } : a));
  }
  return undefined;
}

/**
 * Converts `model` to float16 in place (see the module comment). `modelDir` resolves external
 * data; the result is all-inline (the caller moves large initializers back out when writing).
 */
export function convertModelToFloat16(model: ModelProto, modelDir: string, options: Float16Options = {}): Float16Report {
  const graph = model.graph!;
  const keepOps = new Set(options.keepFloat32Ops ?? ['Cos', 'Sin']);
  const types = inferElemTypes(graph);
  const isFloat = (v: string | undefined) => !!v && types.get(v) === FLOAT;
  const nodes = graph.node ?? [];
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name));
  const uses = new Map<string, Array<{ node: number; slot: number }>>();
  nodes.forEach((n, i) => (n.input ?? []).forEach((v, slot) => {
    if (v) uses.set(v, [...(uses.get(v) ?? []), { node: i, slot }]);
  }));

  // Does every typed use of `v` want float32 (and at least one)? `kept` must hold its consumers.
  const kept = new Set<number>();
  const wantsFloat32 = (v: string): boolean => {
    let some = false;
    for (const u of uses.get(v) ?? []) {
      const kind = slotKind(nodes[u.node]!, u.slot);
      if (kind === 'any') continue;
      if (kind === 'follow' && !kept.has(u.node)) return false;
      some = true;
    }
    return some;
  };
  // Reverse topological order: every consumer is decided before its producer.
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    const floatOuts = (n.output ?? []).filter(isFloat);
    if (floatOuts.length === 0 || floatOuts.some((o) => graphOutputs.has(o))) continue;
    const seed = (n.domain ?? '') === '' && keepOps.has(n.op_type ?? '');
    if (seed || floatOuts.every(wantsFloat32)) kept.add(i);
  }

  // The type each FLOAT value has after conversion.
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const float32Inits = new Set((graph.initializer ?? []).filter((t) => t.data_type === FLOAT && !graphOutputs.has(t.name) && wantsFloat32(t.name ?? '')).map((t) => t.name));
  const newType = (v: string): number => {
    const p = producer.get(v);
    // LayerNormalization's Mean and InvStdDev outputs have its stash_type (float32), whatever X is.
    if (p !== undefined && nodes[p]!.op_type === 'LayerNormalization' && nodes[p]!.output!.indexOf(v) > 0) return FLOAT;
    if (p !== undefined) return kept.has(p) ? FLOAT : FLOAT16;
    return float32Inits.has(v) ? FLOAT : FLOAT16;
  };

  const taken = new Set<string>([...types.keys(), ...nodes.map((n) => n.name ?? '')]);
  const casts = new Map<string, string>();
  const out: NodeProto[] = [];
  nodes.forEach((n, i) => {
    const input = (n.input ?? []).map((v, slot) => {
      if (!isFloat(v)) return v;
      const kind = slotKind(n, slot);
      if (kind === 'any') return v;
      const want = kind === 'float32' || kept.has(i) ? FLOAT : FLOAT16;
      if (newType(v) === want) return v;
      const key = `${v}\u0000${want}`;
      let cast = casts.get(key);
      if (!cast) {
        cast = `${v}_${want === FLOAT ? 'float32' : 'float16'}`;
        while (taken.has(cast)) cast += '_';
        taken.add(cast);
        casts.set(key, cast);
        out.push({ op_type: 'Cast', name: `${cast}/Cast`, input: [v], output: [cast], attribute: [{ name: 'to', type: 2, i: want }] });
      }
      return cast;
    });
    const attrs = kept.has(i) ? undefined : halfAttributes(n);
    out.push({ ...n, input, ...(attrs ? { attribute: attrs } : {}) });
  });
  graph.node = out;

  let converted = 0;
  // One tensor at a time: read (external data too), convert, let the float32 bytes go.
  graph.initializer = (graph.initializer ?? []).map((t) => {
    inlineExternalData(t, modelDir);
    if (t.data_type !== FLOAT || float32Inits.has(t.name)) return t;
    converted++;
    return toHalfTensor(t);
  });
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.value_info ?? [])]) {
    const tt = v.type?.tensor_type;
    if (tt && tt.elem_type === FLOAT && v.name) tt.elem_type = newType(v.name);
  }
  return { initializers: converted, float32Nodes: kept.size, castsInserted: casts.size };
}
