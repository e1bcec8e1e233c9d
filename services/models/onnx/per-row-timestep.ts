/**
 * Per-row UNet timesteps: rewrites a UNet whose `timestep` input is one scalar for the whole batch
 * (Optimum's SDXL export: float `[]`) into one whose `timestep` is `[batch]`, each row's time
 * embedding computed from its own value; step-level continuous batching runs rows at different
 * steps in one UNet call.
 *
 * How: diffusers broadcasts the scalar to the batch (`timesteps[None]` then
 * `timesteps.expand(sample.shape[0])`), which a traced graph writes as Unsqueeze/Reshape → Expand
 * to `[Shape(sample)[0]]`. Every value computed from the timestep before that Expand is followed,
 * node by node (topological order). Per-element ops (Cast, arithmetic with one-element constants)
 * work unchanged on `[batch]`; the ops that only lift the scalar to `[1]` (Unsqueeze axis 0,
 * Reshape to [1], Squeeze of that [1]) become Identity, since the input already has rank 1; the
 * Expand to `[batch]` (proven by batch-size-pattern.ts) becomes the identity on `[batch]` by
 * itself, so each row keeps its value. Any other use of a timestep-derived value before the
 * Expand — a Gather of one element, arithmetic with a non-scalar tensor, a Shape, a graph output —
 * is refused with {@link PerRowTimestepError} naming the node: it could mix rows or change shapes.
 *
 * A `[steps]` input (older exports, int64) is checked by the same walk: when every use is
 * per-element up to the Expand (or to an Unsqueeze that puts each row's value on its own row), the
 * model is returned unchanged with `alreadyPerRow` set.
 *
 * Pure: returns a new model object sharing the untouched parts (initializers included) with the input.
 */
import { OrreryError } from '../../common/errors.js';
import { isBatchVector, intsOperand, type GraphIndex } from './batch-size-pattern.js';
import { elementCount, graphConstants } from './graph-constants.js';
import { DataType, type ModelProto, type NodeProto, type TensorShapeDimension, type ValueInfoProto } from './onnx-model.js';

/** Bumped whenever the rewrite changes what it writes (part of the rewritten-model cache key). */
export const PER_ROW_TIMESTEP_VERSION = 1;
/** Metadata key the rewritten model carries (value: the transform version). */
export const PER_ROW_TIMESTEP_METADATA = 'orrery.per_row_timestep';

/** The UNet cannot be given per-row timesteps safely; `node` names the node at fault, if one. */
export class PerRowTimestepError extends OrreryError {
  constructor(readonly node: string | undefined, why: string) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', `per-row timestep rewrite refused${node ? ` at node "${node}"` : ''}: ${why}`);
  }
}

export type TimestepElemType = 'float32' | 'float16' | 'int64';

export interface PerRowTimestepResult {
  /** The model whose `timestep` is `[batch]` (the input object itself when `alreadyPerRow`). */
  readonly model: ModelProto;
  readonly elemType: TimestepElemType;
  /** The input already took one value per row and uses each: nothing was rewritten. */
  readonly alreadyPerRow: boolean;
  /** Nodes turned into Identity (the scalar's lift to rank 1). */
  readonly rewrittenNodes: readonly string[];
  /** Nodes where the rows separate (the Expand to the batch, or a per-row Unsqueeze). */
  readonly perRowAt: readonly string[];
}

const ELEM_TYPES: Readonly<Record<number, TimestepElemType>> = {
  [DataType.FLOAT]: 'float32', [DataType.FLOAT16]: 'float16', [DataType.INT64]: 'int64',
};
const BATCH_INPUTS = ['sample', 'encoder_hidden_states', 'text_embeds', 'time_ids'];
/** Ops whose output is their first input's shape, element by element. */
const UNARY = new Set(['Cast', 'CastLike', 'Identity', 'Neg', 'Abs', 'Floor', 'Ceil', 'Round', 'Sqrt', 'Exp', 'Log', 'Reciprocal', 'Sign']);
/** Broadcasting element-wise ops: per row when every other operand is one element. */
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Mod']);

type Step =
  | { readonly kind: 'follow'; readonly rank: number }
  | { readonly kind: 'lift'; readonly rank: number }
  | { readonly kind: 'per-row' };

const nodeName = (n: NodeProto, i: number): string => n.name || `${n.op_type ?? '?'}#${i}`;
const same = (a: readonly number[] | undefined, b: readonly number[]): boolean =>
  a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Rewrites `model` (a UNet with a `timestep` input) so that `timestep` takes `[batch]` values of
 * its element type (float32, float16 or int64). Throws PerRowTimestepError when there is no such
 * input, its type or rank is not one an export uses, or a use of it is not provably per row.
 */
export function perRowTimestep(model: ModelProto): PerRowTimestepResult {
  const graph = model.graph ?? {};
  const inputs = graph.input ?? [];
  const tsIndex = inputs.findIndex((i) => i.name === 'timestep');
  if (tsIndex < 0) throw new PerRowTimestepError(undefined, 'the model has no input "timestep"');
  const ts = inputs[tsIndex]!;
  const tensorType = ts.type?.tensor_type;
  const elemType = ELEM_TYPES[tensorType?.elem_type ?? 0];
  if (!elemType) throw new PerRowTimestepError(undefined, `input "timestep" has element type ${tensorType?.elem_type}; expected float32, float16 or int64`);
  const dims = tensorType?.shape?.dim ?? [];
  if (dims.length > 1) throw new PerRowTimestepError(undefined, `input "timestep" has rank ${dims.length}; expected [] or [steps]`);
  // One value for the whole batch: a scalar, or a [1] fixed in the graph.
  const shared = dims.length === 0 || Number(dims[0]?.dim_value ?? 0) === 1;

  const nodes = graph.node ?? [];
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const g: GraphIndex = { producer, constants: graphConstants(graph), batchInputs: new Set(BATCH_INPUTS.filter((n) => inputs.some((i) => i.name === n))) };

  // rank (in the source graph) of every value computed from the timestep before the rows separate.
  const chain = new Map<string, number>([['timestep', dims.length]]);
  const lifts = new Set<number>();
  const perRowAt: string[] = [];
  nodes.forEach((node, i) => {
    const ins = node.input ?? [];
    if (!ins.some((x) => chain.has(x))) return;
    const name = nodeName(node, i);
    const step = classify(g, node, name, chain, shared);
    if (step.kind === 'per-row') {
      perRowAt.push(name);
      return;
    }
    if (step.kind === 'lift') lifts.add(i);
    for (const o of node.output ?? []) if (o) chain.set(o, step.rank);
  });
  const leaked = (graph.output ?? []).find((o) => chain.has(o.name ?? ''));
  if (leaked) throw new PerRowTimestepError(undefined, `graph output "${leaked.name}" is computed from the shared timestep before it reaches the batch`);
  if (perRowAt.length === 0) throw new PerRowTimestepError(undefined, 'no use of "timestep" reaches the batch (no Expand to the batch size found)');

  if (!shared) return { model, elemType, alreadyPerRow: true, rewrittenNodes: [], perRowAt };

  const rewrittenNodes: string[] = [];
  const node = nodes.map((n, i): NodeProto => {
    if (!lifts.has(i)) return n;
    rewrittenNodes.push(nodeName(n, i));
    return { ...n, op_type: 'Identity', domain: '', input: [n.input![0]!], attribute: [] };
  });
  const sampleBatch = inputs.find((i) => i.name === 'sample')?.type?.tensor_type?.shape?.dim?.[0];
  const batchDim: TensorShapeDimension = sampleBatch?.dim_param ? { dim_param: sampleBatch.dim_param } : { dim_param: 'batch_size' };
  const perRowInput: ValueInfoProto = { ...ts, type: { ...ts.type, tensor_type: { elem_type: tensorType!.elem_type!, shape: { dim: [batchDim] } } } };
  const metadata = (model.metadata_props ?? []).filter((m) => m.key !== PER_ROW_TIMESTEP_METADATA);
  return {
    model: {
      ...model,
      metadata_props: [...metadata, { key: PER_ROW_TIMESTEP_METADATA, value: String(PER_ROW_TIMESTEP_VERSION) }],
      graph: {
        ...graph,
        input: inputs.map((v, i) => (i === tsIndex ? perRowInput : v)),
        node,
        // Shapes recorded for the scalar chain would contradict the new [batch] values.
        value_info: (graph.value_info ?? []).filter((v) => !chain.has(v.name ?? '')),
      },
    },
    elemType, alreadyPerRow: false, rewrittenNodes, perRowAt,
  };
}

/** What one node that reads a timestep-derived value does with it; throws if not provably per row. */
function classify(g: GraphIndex, node: NodeProto, name: string, chain: ReadonlyMap<string, number>, shared: boolean): Step {
  const op = (node.domain ?? '') === '' ? node.op_type ?? '' : `${node.domain}.${node.op_type}`;
  const ins = node.input ?? [];
  const in0 = ins[0] ?? '';
  const rank = chain.get(in0);
  const refuse = (why: string): never => {
    throw new PerRowTimestepError(name, `${op} ${why}`);
  };
  const onlyFirst = () => {
    if (rank === undefined || ins.slice(1).some((x) => chain.has(x))) refuse('reads the timestep in an operand other than its first');
  };
  if (UNARY.has(op)) {
    onlyFirst();
    return { kind: 'follow', rank: rank! };
  }
  if (BINARY.has(op)) {
    let out = 0;
    for (const x of ins) {
      const r = chain.get(x);
      if (r !== undefined) {
        out = Math.max(out, r);
        continue;
      }
      const c = g.constants.get(x);
      if (!c || elementCount(c.dims) !== 1 || c.dims.length > 1) refuse(`combines the timestep with "${x}", which is not a one-element constant: rows could mix`);
      out = Math.max(out, c!.dims.length);
    }
    return { kind: 'follow', rank: out };
  }
  switch (op) {
    case 'Expand':
      onlyFirst();
      if (rank! > 1 || !isBatchVector(g, ins[1] ?? '')) refuse(`broadcasts the timestep to "${ins[1]}", which is not proven to be [batch] (Shape(sample)[0])`);
      return { kind: 'per-row' };
    case 'Unsqueeze': {
      onlyFirst();
      const axes = intsOperand(g, node, 'axes', 1);
      if (rank === 0 && (same(axes, [0]) || same(axes, [-1]))) return { kind: 'lift', rank: 1 };
      if (rank === 1 && !shared && (same(axes, [1]) || same(axes, [-1]))) return { kind: 'per-row' };
      return refuse(`adds axes [${axes?.join(', ') ?? '?'}] to a rank-${rank} timestep value, which is not the scalar's lift to [1]`);
    }
    case 'Reshape': {
      onlyFirst();
      const shape = g.constants.get(ins[1] ?? '')?.values;
      if (same(shape, [-1])) return { kind: 'follow', rank: 1 };
      if (same(shape, [1]) && shared) return { kind: 'lift', rank: 1 };
      return refuse(`reshapes the timestep to [${shape?.join(', ') ?? 'not a constant'}]; only [1] or [-1] keep one value per row`);
    }
    case 'Squeeze':
      onlyFirst();
      if (rank === 1 && shared) return { kind: 'lift', rank: 0 };
      return refuse('squeezes a timestep value that has one value per row');
    case 'Gather':
      return refuse('reads single elements of the timestep: every row would use the same one');
    default:
      return refuse('uses the timestep before it is broadcast to the batch, in a way this rewrite cannot prove per row');
  }
}
