/**
 * Recognises the tensors a traced UNet computes the batch size with, so a rewrite can prove that an
 * `Expand` broadcasts to exactly `[batch]` (diffusers: `timesteps.expand(sample.shape[0])`).
 *
 * What torch's exporter writes for `x.expand(sample.shape[0])`:
 * `Shape(sample) → Gather(0) → Unsqueeze(0) → Concat → Reshape([-1])`, then `Where(Equal(size,
 * -ones), ones, size)` with `ones = ConstantOfShape(Shape(size), 1)` (its handling of -1 sizes);
 * hand-built graphs (the tiny bundle) write `Slice(Shape(sample), [0], [1])`. Each recogniser
 * follows only these forms and answers false for anything else: false means "not proven", and the
 * caller refuses rather than guesses.
 */
import { attribute } from './elem-types.js';
import type { ConstantValue } from './graph-constants.js';
import type { NodeProto, TensorProto } from './onnx-model.js';

/** What the recognisers read of a graph. */
export interface GraphIndex {
  /** The node producing each tensor. */
  readonly producer: ReadonlyMap<string, NodeProto>;
  readonly constants: ReadonlyMap<string, ConstantValue>;
  /** Graph inputs whose axis 0 is the batch (sample, encoder_hidden_states, …). */
  readonly batchInputs: ReadonlySet<string>;
}

const same = (a: readonly number[] | undefined, b: readonly number[]): boolean =>
  a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

/** An int list given as attribute `name` (older opsets) or as constant input `index` (newer ones). */
export function intsOperand(g: GraphIndex, node: NodeProto, name: string, index: number): readonly number[] | undefined {
  const a = attribute(node, name);
  if (a) return a.ints ? a.ints.map(Number) : a.i !== undefined ? [Number(a.i)] : undefined;
  const input = node.input?.[index];
  if (!input) return undefined;
  return g.constants.get(input)?.values;
}

/** `Shape(x)` of a batch-first graph input, whole (no `start` other than 0). */
function isShapeOfBatchInput(g: GraphIndex, name: string): boolean {
  const node = g.producer.get(name);
  if (node?.op_type !== 'Shape') return false;
  const start = attribute(node, 'start');
  return (start === undefined || Number(start.i ?? 0) === 0) && g.batchInputs.has(node.input?.[0] ?? '');
}

/** A scalar holding the batch size: `Gather(Shape(sample), 0)`. */
export function isBatchScalar(g: GraphIndex, name: string, depth = 0): boolean {
  const node = g.producer.get(name);
  if (!node || depth > 16) return false;
  const in0 = node.input?.[0] ?? '';
  switch (node.op_type) {
    case 'Gather': {
      const index = g.constants.get(node.input?.[1] ?? '');
      const axis = Number(attribute(node, 'axis')?.i ?? 0);
      return axis === 0 && index !== undefined && index.dims.length === 0 && same(index.values, [0]) && isShapeOfBatchInput(g, in0);
    }
    case 'Squeeze': return isBatchVector(g, in0, depth + 1);
    case 'Cast': case 'Identity': return isBatchScalar(g, in0, depth + 1);
    default: return false;
  }
}

/** A one-element vector `[batch]`, fit to be an `Expand` shape. */
export function isBatchVector(g: GraphIndex, name: string, depth = 0): boolean {
  const node = g.producer.get(name);
  if (!node || depth > 16) return false;
  const in0 = node.input?.[0] ?? '';
  switch (node.op_type) {
    case 'Slice': {
      const axes = intsOperand(g, node, 'axes', 3);
      const steps = intsOperand(g, node, 'steps', 4);
      return isShapeOfBatchInput(g, in0) && same(intsOperand(g, node, 'starts', 1), [0]) && same(intsOperand(g, node, 'ends', 2), [1])
        && (axes === undefined || same(axes, [0])) && (steps === undefined || same(steps, [1]));
    }
    case 'Unsqueeze': return isBatchScalar(g, in0, depth + 1) && same(intsOperand(g, node, 'axes', 1), [0]);
    case 'Reshape': {
      const shape = g.constants.get(node.input?.[1] ?? '')?.values;
      return (same(shape, [1]) || same(shape, [-1])) && (isBatchVector(g, in0, depth + 1) || isBatchScalar(g, in0, depth + 1));
    }
    case 'Concat': return node.input?.length === 1 && isBatchVector(g, in0, depth + 1);
    case 'Cast': case 'Identity': return isBatchVector(g, in0, depth + 1);
    case 'Where': {
      // torch's -1 handling: where(size == -1, ones_like(size), size) is `size` for a real batch.
      const size = node.input?.[2] ?? '';
      return isBatchVector(g, size, depth + 1) && (isOnesLike(g, node.input?.[1] ?? '', depth + 1) || isBatchVector(g, node.input?.[1] ?? '', depth + 1));
    }
    default: return false;
  }
}

/** `ConstantOfShape(Shape(v), 1)` where v is a batch vector: ones of the batch vector's shape. */
function isOnesLike(g: GraphIndex, name: string, depth: number): boolean {
  const node = g.producer.get(name);
  if (node?.op_type !== 'ConstantOfShape') return false;
  const shapeNode = g.producer.get(node.input?.[0] ?? '');
  const value = attribute(node, 'value')?.t;
  const one = value !== undefined && readOne(value);
  return one && shapeNode?.op_type === 'Shape' && isBatchVector(g, shapeNode.input?.[0] ?? '', depth + 1);
}

/** Whether a one-element int64 tensor holds 1. */
function readOne(t: TensorProto): boolean {
  const raw = t.raw_data;
  if (raw && raw.length === 8) return new DataView(raw.buffer, raw.byteOffset, 8).getBigInt64(0, true) === 1n;
  return t.int64_data?.length === 1 && Number(t.int64_data[0]) === 1;
}
