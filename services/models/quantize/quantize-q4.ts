/**
 * Weight-only 4-bit quantization of MatMul weights into ONNX Runtime's `com.microsoft`
 * `MatMulNBits` (docs/ContribOperators.md): `Y = A · dequant(B)` with B block-quantized along K.
 *
 * A MatMul weight W is stored [K, N] (an export's transposed torch Linear weight); MatMulNBits wants
 * it per output channel: for each n, K is cut into `nBlocks = ⌈K / blockSize⌉` blocks, each with
 * its own scale and 4-bit zero point (asymmetric; the block's range is widened to include 0, so
 * 0 is exact and `zp ∈ [0, 15]`): `q = clamp(round(w / s) + zp, 0, 15)`, `ŵ = (q − zp) · s`, so
 * `|w − ŵ| ≤ s / 2` with `s = (max(w, 0) − min(w, 0)) / 15`. The last block is padded with 0 (code
 * zp) past K. Layouts (ContribOperators.md, low nibble first):
 *
 * - `B` uint8 [N, nBlocks, blockSize / 2]: element k of column n is nibble k mod blockSize of blob
 *   (n, ⌊k / blockSize⌋);
 * - `scales` [N, nBlocks] in the activation's float type;
 * - `zero_points` uint8 [N, ⌈nBlocks / 2⌉], packed like B.
 *
 * Only MatMuls whose B is a 2-D FLOAT or FLOAT16 initializer of at least `minElements` elements
 * with K ≥ blockSize are rewritten; the rest stay float.
 */
import { DataType, makeTensor, type ModelProto, type NodeProto, type TensorProto } from '../onnx/onnx-model.js';
import { inlineExternalData } from '../onnx/external-data.js';
import { fromHalf, halfBits } from '../onnx/float16.js';
import { access } from '../lora/fuse-onnx.js';
import type { QuantizeResult } from './quantize-int8.js';

/** A [K, N] weight in MatMulNBits form (4 bits). */
export interface BlockQuantized4 {
  readonly k: number;
  readonly n: number;
  readonly blockSize: number;
  readonly nBlocks: number;
  /** [N, nBlocks, blockSize / 2] */
  readonly packed: Uint8Array;
  /** [N, nBlocks] */
  readonly scales: Float32Array;
  /** [N, ⌈nBlocks / 2⌉] */
  readonly zeroPoints: Uint8Array;
}

export interface Q4Options {
  /** Block size along K: a power of two ≥ 16 (default 32, ONNX Runtime's quantizer default). */
  readonly blockSize?: number;
  /** Weights with fewer elements stay float (default 1024, as int8). */
  readonly minElements?: number;
}

/**
 * Quantizes row-major `w` [k, n]. `roundScale` maps each scale to the value the file will hold
 * (half precision for a float16 model), so codes are chosen against the scale actually used.
 */
export function quantizeBlockwise4(w: Float32Array, k: number, n: number, blockSize: number, roundScale: (s: number) => number = Math.fround): BlockQuantized4 {
  if (!(blockSize >= 16 && (blockSize & (blockSize - 1)) === 0)) throw new RangeError(`block size must be a power of two ≥ 16, got ${blockSize}`);
  if (w.length !== k * n) throw new RangeError(`weight has ${w.length} elements, expected ${k}·${n}`);
  const nBlocks = Math.ceil(k / blockSize);
  const blob = blockSize / 2;
  const zpRow = Math.ceil(nBlocks / 2);
  const packed = new Uint8Array(n * nBlocks * blob);
  const scales = new Float32Array(n * nBlocks);
  const zeroPoints = new Uint8Array(n * zpRow);
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      for (let i = k0; i < k1; i++) {
        const v = w[i * n + col]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const raw = (hi - lo) / 15;
      const s = raw > 0 ? roundScale(raw) : 1;
      const zp = Math.max(0, Math.min(15, Math.round(-lo / s)));
      scales[col * nBlocks + b] = s;
      zeroPoints[col * zpRow + (b >> 1)]! |= zp << ((b & 1) * 4);
      const base = (col * nBlocks + b) * blob;
      for (let j = 0; j < blockSize; j++) {
        const i = k0 + j;
        // Padding past K gets the zero point: it dequantizes to exactly 0.
        const q = i < k1 ? Math.max(0, Math.min(15, Math.round(w[i * n + col]! / s) + zp)) : zp;
        packed[base + (j >> 1)]! |= q << ((j & 1) * 4);
      }
    }
  }
  return { k, n, blockSize, nBlocks, packed, scales, zeroPoints };
}

/** ŵ as row-major [K, N] float32: what MatMulNBits multiplies by (for tests and error figures). */
export function dequantizeBlockwise4(q: BlockQuantized4): Float32Array {
  const { k, n, blockSize, nBlocks, packed, scales, zeroPoints } = q;
  const zpRow = Math.ceil(nBlocks / 2);
  const out = new Float32Array(k * n);
  for (let col = 0; col < n; col++) {
    for (let i = 0; i < k; i++) {
      const b = Math.floor(i / blockSize);
      const j = i % blockSize;
      const code = (packed[(col * nBlocks + b) * (blockSize / 2) + (j >> 1)]! >> ((j & 1) * 4)) & 15;
      const zp = (zeroPoints[col * zpRow + (b >> 1)]! >> ((b & 1) * 4)) & 15;
      out[i * n + col] = (code - zp) * scales[col * nBlocks + b]!;
    }
  }
  return out;
}

/** The three initializers of weight `weight` in MatMulNBits form: `<weight>_q4`, `…_q4_scales`, `…_q4_zero_points`. */
export function q4Initializers(weight: string, q: BlockQuantized4, floatType: 'FLOAT' | 'FLOAT16'): TensorProto[] {
  const scales = floatType === 'FLOAT16' ? Uint16Array.from(q.scales, (s) => halfBits(s)) : q.scales;
  return [
    makeTensor(`${weight}_q4`, q.packed, [q.n, q.nBlocks, q.blockSize / 2]),
    makeTensor(`${weight}_q4_scales`, scales, [q.n, q.nBlocks], floatType),
    makeTensor(`${weight}_q4_zero_points`, q.zeroPoints, [q.n, Math.ceil(q.nBlocks / 2)]),
  ];
}

/** `output = MatMulNBits(a, <weight>_q4, …)`: the node replacing `MatMul(a, weight)`. */
export function matMulNBitsNode(name: string, a: string, weight: string, output: string, q: BlockQuantized4): NodeProto {
  return {
    op_type: 'MatMulNBits', domain: 'com.microsoft', name,
    input: [a, `${weight}_q4`, `${weight}_q4_scales`, `${weight}_q4_zero_points`], output: [output],
    attribute: [
      { name: 'K', type: 2, i: q.k }, { name: 'N', type: 2, i: q.n },
      { name: 'bits', type: 2, i: 4 }, { name: 'block_size', type: 2, i: q.blockSize },
    ],
  };
}

/**
 * Rewrites every eligible `MatMul(A, W)` of `model` (in place) as MatMulNBits; `modelDir` resolves
 * external data. A weight another node also reads keeps its float copy. The result is all-inline
 * (the caller moves large initializers back to external data when it writes the file).
 */
export function quantizeMatMulWeightsQ4(model: ModelProto, modelDir: string, options: Q4Options = {}): QuantizeResult {
  const blockSize = options.blockSize ?? 32;
  const minElements = options.minElements ?? 1024;
  const graph = model.graph!;
  const inits = graph.initializer ?? [];
  const byName = new Map(inits.map((t) => [t.name ?? '', t]));
  const eligible = (t: TensorProto | undefined): t is TensorProto => {
    if (!t || (t.data_type !== DataType.FLOAT && t.data_type !== DataType.FLOAT16) || (t.dims ?? []).length !== 2) return false;
    const [k, n] = t.dims!.map(Number) as [number, number];
    return k >= blockSize && k * n >= minElements;
  };
  const quantized = new Map<string, BlockQuantized4>();
  const added: TensorProto[] = [];
  let before = 0;
  let after = 0;
  let count = 0;
  const nodes = (graph.node ?? []).map((node): NodeProto => {
    const w = byName.get(node.input?.[1] ?? '');
    if (node.op_type !== 'MatMul' || (node.domain ?? '') !== '' || !eligible(w)) return node;
    const [k, n] = w.dims!.map(Number) as [number, number];
    const half = w.data_type === DataType.FLOAT16;
    let q = quantized.get(w.name!);
    if (!q) {
      q = quantizeBlockwise4(access(w, modelDir).values, k, n, blockSize, half ? (s) => fromHalf(halfBits(s)) : Math.fround);
      quantized.set(w.name!, q);
      const tensors = q4Initializers(w.name!, q, half ? 'FLOAT16' : 'FLOAT');
      added.push(...tensors);
      before += k * n * (half ? 2 : 4);
      after += tensors.reduce((a, t) => a + (t.raw_data?.length ?? 0), 0);
    }
    count++;
    return matMulNBitsNode(`${node.name || w.name}_MatMulNBits`, node.input![0]!, w.name!, node.output![0]!, q);
  });
  const stillRead = new Set(nodes.flatMap((nd) => nd.input ?? []));
  graph.node = nodes;
  // Quantized weights were read straight from external data; only what stays is made inline, so a
  // multi-gigabyte float UNet is never all in memory at once.
  const kept = inits.filter((t) => !quantized.has(t.name ?? '') || stillRead.has(t.name ?? ''));
  for (const t of kept) inlineExternalData(t, modelDir);
  graph.initializer = [...kept, ...added];
  if (count > 0 && !(model.opset_import ?? []).some((o) => o.domain === 'com.microsoft')) {
    model.opset_import = [...(model.opset_import ?? []), { domain: 'com.microsoft', version: 1 }];
  }
  return { quantized: quantized.size, bytesBefore: before, bytesAfter: after };
}
