/**
 * Constant tensors of a graph (initializers and `Constant` node outputs) read as plain numbers, for
 * rewrites that must know a shape, an axis list or a scalar operand before changing a node.
 * Only inline values are read: an external initializer is a weight, never a shape.
 */
import { DataType, type GraphProto, type NodeProto, type TensorProto } from './onnx-model.js';

/** A constant's dims and, for integer and float tensors stored inline, its values. */
export interface ConstantValue {
  readonly dims: readonly number[];
  /** Undefined when the values are external or of a type not read here. */
  readonly values?: readonly number[];
}

function readValues(t: TensorProto): number[] | undefined {
  const raw = t.raw_data;
  const type = t.data_type;
  if (raw && raw.length > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const read = (width: number, get: (offset: number) => number): number[] =>
      Array.from({ length: raw.length / width }, (_, i) => get(i * width));
    switch (type) {
      case DataType.INT64: return read(8, (o) => Number(view.getBigInt64(o, true)));
      case DataType.INT32: return read(4, (o) => view.getInt32(o, true));
      case DataType.FLOAT: return read(4, (o) => view.getFloat32(o, true));
      case DataType.DOUBLE: return read(8, (o) => view.getFloat64(o, true));
      default: return undefined;
    }
  }
  if (t.data_location === 1) return undefined;
  if (type === DataType.INT64) return (t.int64_data ?? []).map(Number);
  if (type === DataType.INT32) return [...(t.int32_data ?? [])];
  if (type === DataType.FLOAT) return [...(t.float_data ?? [])];
  if (type === DataType.DOUBLE) return [...(t.double_data ?? [])];
  return undefined;
}

function fromTensor(t: TensorProto): ConstantValue {
  const values = readValues(t);
  return { dims: (t.dims ?? []).map(Number), ...(values ? { values } : {}) };
}

/** The value a `Constant` node carries (value, value_int(s), value_float(s)), if one of those. */
function fromConstantNode(node: NodeProto): ConstantValue | undefined {
  const a = (node.attribute ?? [])[0];
  switch (a?.name) {
    case 'value': return a.t ? fromTensor(a.t) : undefined;
    case 'value_int': return { dims: [], values: [Number(a.i ?? 0)] };
    case 'value_float': return { dims: [], values: [Number(a.f ?? 0)] };
    case 'value_ints': return { dims: [a.ints?.length ?? 0], values: (a.ints ?? []).map(Number) };
    case 'value_floats': return { dims: [a.floats?.length ?? 0], values: [...(a.floats ?? [])] };
    default: return undefined;
  }
}

/**
 * The constants of `graph` by tensor name. Graph inputs shadow initializers of the same name (an
 * initializer that is also an input is a default the caller may override, so it is no constant).
 */
export function graphConstants(graph: GraphProto): ReadonlyMap<string, ConstantValue> {
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  const out = new Map<string, ConstantValue>();
  for (const t of graph.initializer ?? []) if (t.name && !inputs.has(t.name)) out.set(t.name, fromTensor(t));
  for (const node of graph.node ?? []) {
    if (node.op_type !== 'Constant' || (node.domain ?? '') !== '') continue;
    const v = fromConstantNode(node);
    const name = node.output?.[0];
    if (v && name) out.set(name, v);
  }
  return out;
}

/** Number of elements of a constant with these dims. */
export const elementCount = (dims: readonly number[]): number => dims.reduce((a, d) => a * d, 1);
