/**
 * Weight-only int8 quantization of MatMul weights, in QDQ form: each FLOAT [in, out] MatMul
 * weight W becomes an INT8 initializer q with a per-output-channel scale s (symmetric, zero point
 * 0: s[o] = max|W[:, o]| / 127, q = round(W / s)) and a `DequantizeLinear(q, s, 0, axis = 1)` node
 * that yields a tensor named like the old weight, so every consumer is unchanged. ONNX Runtime's
 * QDQ fusions may turn DequantizeLinear → MatMul into an integer kernel; either way the file holds
 * a quarter of the bytes. Activations stay float (weight-only), so there is no calibration.
 *
 * Inline and external-data initializers are read; the result is an all-inline model object (the
 * caller moves large initializers back to external data when it writes the file).
 */
import { DataType, makeTensor, type ModelProto, type NodeProto, type TensorProto } from '../onnx/onnx-model.js';
import { access } from '../lora/fuse-onnx.js';
import { inlineExternalData } from '../onnx/external-data.js';

export interface QuantizeResult {
  readonly quantized: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

/** Quantizes `model` in place; `modelDir` resolves external data. Weights under `minElements` stay float. */
export function quantizeMatMulWeightsInt8(model: ModelProto, modelDir: string, minElements = 1024): QuantizeResult {
  const graph = model.graph!;
  const inits = graph.initializer ?? [];
  const byName = new Map(inits.map((t) => [t.name ?? '', t]));
  const targets = new Set<string>();
  for (const n of graph.node ?? []) {
    const w = byName.get(n.input?.[1] ?? '');
    if (n.op_type === 'MatMul' && w && w.data_type === DataType.FLOAT && (w.dims ?? []).length === 2 && Number(w.dims![0]) * Number(w.dims![1]) >= minElements) targets.add(w.name!);
  }
  const dq: NodeProto[] = [];
  let before = 0;
  let after = 0;
  const out: TensorProto[] = [];
  for (const t of inits) {
    const name = t.name ?? '';
    if (!targets.has(name)) {
      inlineExternalData(t, modelDir);
      out.push(t);
      continue;
    }
    const [rows, cols] = (t.dims ?? []).map(Number) as [number, number];
    const { values } = access(t, modelDir);
    const scale = new Float32Array(cols);
    for (let i = 0; i < rows; i++) for (let o = 0; o < cols; o++) scale[o] = Math.max(scale[o]!, Math.abs(values[i * cols + o]!));
    for (let o = 0; o < cols; o++) scale[o] = scale[o]! > 0 ? scale[o]! / 127 : 1;
    const q = new Int8Array(rows * cols);
    for (let i = 0; i < rows; i++) for (let o = 0; o < cols; o++) q[i * cols + o] = Math.max(-127, Math.min(127, Math.round(values[i * cols + o]! / scale[o]!)));
    out.push(makeTensor(`${name}_quantized`, q, [rows, cols]), makeTensor(`${name}_scale`, scale, [cols]), makeTensor(`${name}_zero_point`, new Int8Array(cols), [cols]));
    dq.push({
      op_type: 'DequantizeLinear', name: `${name}_DequantizeLinear`, input: [`${name}_quantized`, `${name}_scale`, `${name}_zero_point`], output: [name],
      attribute: [{ name: 'axis', type: 2, i: 1 }],
    });
    before += rows * cols * 4;
    after += rows * cols + cols * 5;
  }
  graph.initializer = out;
  // Dequantized weights depend only on initializers: first in topological order.
  graph.node = [...dq, ...(graph.node ?? [])];
  return { quantized: dq.length, bytesBefore: before, bytesAfter: after };
}
