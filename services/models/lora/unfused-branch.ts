/**
 * The LoRA applied UNFUSED: an explicit low-rank branch beside each adapted layer,
 * y = base(x) + f · up(down(x)), the way an adapter runs when it is not merged. The proof that
 * fusion is right compares a model fused by fuse-onnx.ts with one built here; the benchmark uses it
 * for the per-step cost of an unfused adapter.
 *
 * Works on graphs whose weights are named `<module>.weight` and consumed by MatMul ([in, out]) or
 * Conv (the tiny bundle's layout).
 */
import { DataType, makeTensor, type ModelProto, type NodeProto } from '../onnx/onnx-model.js';
import { float32ToHalf } from '../onnx/float16.js';

export interface UnfusedModule {
  readonly module: string;
  /** [rank, in·k²] */
  readonly down: Float32Array;
  /** [out, rank] */
  readonly up: Float32Array;
  readonly rank: number;
  readonly inDim: number;
  readonly outDim: number;
  readonly kernel?: number;
  /** scale · alpha / rank */
  readonly factor: number;
}

function transpose(v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = v[r * cols + c]!;
  return out;
}

/** Adds the branches to `model` in place. Throws if a module's layer is not in the graph. */
export function addUnfusedLoraBranches(model: ModelProto, modules: readonly UnfusedModule[]): void {
  const graph = model.graph!;
  const nodes = graph.node!;
  const inits = graph.initializer!;
  const weightType = new Map(inits.map((t) => [t.name, t.data_type]));
  for (const m of modules) {
    const at = nodes.findIndex((n) => (n.op_type === 'MatMul' || n.op_type === 'Conv') && n.input?.[1] === `${m.module}.weight`);
    if (at < 0) throw new Error(`no MatMul/Conv reads ${m.module}.weight`);
    const node = nodes[at]!;
    const half = weightType.get(`${m.module}.weight`) === DataType.FLOAT16;
    const tensor = (name: string, v: Float32Array, dims: number[]) => {
      inits.push(half ? makeTensor(name, float32ToHalf(v), dims, 'FLOAT16') : makeTensor(name, v, dims));
      return name;
    };
    const p = `/${m.module}/lora`;
    const y = node.output![0]!;
    const base = `${y}_base`;
    node.output = [base];
    const added: NodeProto[] = [];
    const op = (type: string, inputs: string[], out: string, attribute: NodeProto['attribute'] = []) => {
      added.push({ op_type: type, input: inputs, output: [out], name: `${p}/${out.split('/').pop()}`, attribute });
      return out;
    };
    let branch: string;
    if (node.op_type === 'MatMul') {
      const d = tensor(`${m.module}.lora_down_t`, transpose(m.down, m.rank, m.inDim), [m.inDim, m.rank]);
      const u = tensor(`${m.module}.lora_up_t`, transpose(m.up, m.outDim, m.rank), [m.rank, m.outDim]);
      branch = op('MatMul', [op('MatMul', [node.input![0]!, d], `${p}/down`), u], `${p}/up`);
    } else {
      const k = m.kernel ?? 1;
      const d = tensor(`${m.module}.lora_down`, m.down, [m.rank, m.inDim, k, k]);
      const u = tensor(`${m.module}.lora_up`, m.up, [m.outDim, m.rank, 1, 1]);
      const attrs = (node.attribute ?? []).filter((a) => a.name !== 'group');
      branch = op('Conv', [op('Conv', [node.input![0]!, d], `${p}/down`, attrs), u], `${p}/up`);
    }
    const f = tensor(`${m.module}.lora_factor`, Float32Array.of(m.factor), []);
    op('Add', [base, op('Mul', [branch, f], `${p}/scaled`)], y);
    nodes.splice(at + 1, 0, ...added);
  }
}
