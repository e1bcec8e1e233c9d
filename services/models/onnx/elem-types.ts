/**
 * Element types of every value in a graph, for rewrites that must know which tensors are float
 * (the float16 conversion). Declared types win (graph inputs, initializers, value_info, outputs);
 * the rest follow from the node that produces them: the few ops whose output type is not their
 * first input's (Cast, Shape, comparisons, ArgMax, Constant, …) are listed, every other op
 * yields its first input's type, which is right for the elementwise, shape-moving and
 * normalization ops exports are made of. Nodes must be in topological order (ONNX requires it).
 */
import { DataType, type GraphProto, type NodeProto } from './onnx-model.js';

const INT64_OUTPUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin']);
const BOOL_OUTPUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);

/** An attribute of `node` by name. */
export function attribute(node: NodeProto, name: string) {
  return (node.attribute ?? []).find((a) => a.name === name);
}

/** The element types of node `node`'s outputs, given its inputs' types (undefined = unknown). */
function outputTypes(node: NodeProto, typeOf: (name: string) => number | undefined): Array<number | undefined> {
  const op = node.op_type ?? '';
  const domain = node.domain ?? '';
  const first = typeOf(node.input?.[0] ?? '');
  const outs = node.output ?? [];
  const all = (t: number | undefined) => outs.map(() => t);
  if (domain !== '' && domain !== 'ai.onnx') return all(first);
  if (INT64_OUTPUT.has(op)) return all(DataType.INT64);
  if (BOOL_OUTPUT.has(op)) return all(DataType.BOOL);
  switch (op) {
    case 'Cast': return all(Number(attribute(node, 'to')?.i));
    case 'CastLike': return all(typeOf(node.input?.[1] ?? ''));
    case 'Constant': {
      const a = (node.attribute ?? [])[0];
      if (a?.name === 'value') return all(a.t?.data_type);
      if (a?.name === 'value_float' || a?.name === 'value_floats') return all(DataType.FLOAT);
      if (a?.name === 'value_int' || a?.name === 'value_ints') return all(DataType.INT64);
      return all(undefined);
    }
    case 'ConstantOfShape': return all(attribute(node, 'value')?.t?.data_type ?? DataType.FLOAT);
    case 'RandomNormal': case 'RandomUniform': return all(Number(attribute(node, 'dtype')?.i ?? DataType.FLOAT));
    case 'Where': return all(typeOf(node.input?.[1] ?? ''));
    case 'DequantizeLinear': return all(typeOf(node.input?.[1] ?? ''));
    case 'QuantizeLinear': return all(typeOf(node.input?.[2] ?? '') ?? DataType.UINT8);
    case 'TopK': return [first, DataType.INT64];
    case 'LayerNormalization': return [first, ...outs.slice(1).map(() => Number(attribute(node, 'stash_type')?.i ?? DataType.FLOAT))];
    default: return all(first);
  }
}

/**
 * Name → ONNX element type for every value of `graph`. Throws on subgraphs (If, Loop, Scan): their
 * values are not walked, so a rewrite relying on this map would miss them.
 */
export function inferElemTypes(graph: GraphProto): Map<string, number> {
  const types = new Map<string, number>();
  const declare = (name: string | undefined, t: number | undefined) => {
    if (name && t !== undefined && t !== 0) types.set(name, t);
  };
  for (const t of graph.initializer ?? []) declare(t.name, t.data_type);
  for (const v of [...(graph.input ?? []), ...(graph.value_info ?? []), ...(graph.output ?? [])]) declare(v.name, v.type?.tensor_type?.elem_type);
  for (const node of graph.node ?? []) {
    if ((node.attribute ?? []).some((a) => a.type === 5 || a.type === 10)) throw new Error(`node ${node.name ?? node.op_type}: ${node.op_type} has a subgraph, which these graph tools do not rewrite`);
    const inferred = outputTypes(node, (n) => types.get(n));
    (node.output ?? []).forEach((o, i) => {
      if (!types.has(o)) declare(o, inferred[i]);
    });
  }
  return types;
}
