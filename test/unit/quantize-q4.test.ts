/** 4-bit block quantization (MatMulNBits layout), checked against ONNX Runtime's kernel on CPU. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { encodeModel, GraphBuilder, type ModelProto } from '../../services/models/onnx/onnx-model.js';
import {
  dequantizeBlockwise4, matMulNBitsNode, q4Initializers, quantizeBlockwise4, quantizeMatMulWeightsQ4,
} from '../../services/models/quantize/quantize-q4.js';
import { randomValues } from '../../services/models/tiny-sdxl/net.js';

async function run(model: ModelProto, a: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await InferenceSession.create(encodeModel(model));
  try {
    return (await s.run({ a: new Tensor('float32', a, dims) }))['y']!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** y = a · w for row-major a [m, k] and w [k, n], in float64. */
function matmul(a: Float32Array, w: Float32Array, m: number, k: number, n: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) for (let i = 0; i < k; i++) for (let c = 0; c < n; c++) y[r * n + c]! += a[r * k + i]! * w[i * n + c]!;
  return y;
}

describe('4-bit block quantization (MatMulNBits)', () => {
  test('every dequantized weight is within half its block scale; 0 is exact', () => {
    const k = 100;
    const n = 7;
    const w = randomValues(1, 'w', k * n, 0.2);
    w[5 * n + 3] = 0;
    const q = quantizeBlockwise4(w, k, n, 32);
    assert.equal(q.nBlocks, 4);
    const d = dequantizeBlockwise4(q);
    for (let i = 0; i < k; i++) {
      for (let c = 0; c < n; c++) {
        const s = q.scales[c * q.nBlocks + Math.floor(i / 32)]!;
        assert.ok(Math.abs(d[i * n + c]! - w[i * n + c]!) <= s / 2 + 1e-7, `w[${i},${c}]`);
      }
    }
    assert.equal(d[5 * n + 3], 0);
  });

  test('packs B as [N, blocks, blockSize/2] and zero points as [N, ceil(blocks/2)], low nibble first; padding gets the zero point', () => {
    // K = 20 with blocks of 16: column 0 is 0, 1, …, 19 (block 0: 0…15, block 1: 16…19 then padding).
    const k = 20;
    const w = Float32Array.from({ length: k }, (_, i) => i);
    const q = quantizeBlockwise4(w, k, 1, 16);
    assert.deepEqual([q.nBlocks, q.packed.length, q.zeroPoints.length], [2, 16, 1]);
    assert.deepEqual([...q.scales], [1, Math.fround(19 / 15)]);
    // Block 0: codes 0…15 (scale 1, zero point 0) → bytes 0x10, 0x32, …
    assert.deepEqual([...q.packed.subarray(0, 8)], [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]);
    // Block 1: 16…19 / (19/15) → codes 13, 13, 14, 15; then the zero point (0) for the 12 padded elements.
    assert.deepEqual([...q.packed.subarray(8)], [0xdd, 0xfe, 0, 0, 0, 0, 0, 0]);
    assert.equal(q.zeroPoints[0], 0);
    // A block of negatives has its zero point at the top: codes dequantize as (q − zp)·s ≤ 0.
    const neg = quantizeBlockwise4(Float32Array.from({ length: 16 }, (_, i) => -i), 16, 1, 16);
    assert.equal(neg.zeroPoints[0], 15);
  });

  test('refuses block sizes that are not a power of two of at least 16', () => {
    assert.throws(() => quantizeBlockwise4(new Float32Array(48), 48, 1, 24), RangeError);
    assert.throws(() => quantizeBlockwise4(new Float32Array(16), 16, 1, 8), RangeError);
  });

  for (const [k, n, dims] of [[96, 40, [2, 5, 96]], [100, 20, [6, 100]], [64, 33, [3, 64]]] as const) {
    test(`ONNX Runtime's MatMulNBits equals A·Ŵ and stays within Σ|a|·s/2 of A·W (K ${k}, N ${n}, A [${dims.join(', ')}])`, async () => {
      const w = randomValues(2, `w${k}`, k * n, 0.3);
      const q = quantizeBlockwise4(w, k, n, 32);
      const g = new GraphBuilder('q4').addInput('a', 'FLOAT', [...dims]).addOutput('y', 'FLOAT', [...dims.slice(0, -1), n]);
      const model = g.toModel(17, { extraOpsets: [{ domain: 'com.microsoft', version: 1 }] });
      model.graph!.initializer = q4Initializers('w', q, 'FLOAT');
      model.graph!.node = [matMulNBitsNode('mm', 'a', 'w', 'y', q)];
      const m = dims.slice(0, -1).reduce((x, d) => x * d, 1);
      const a = randomValues(3, 'a', m * k, 1);
      const y = await run(model, a, [...dims]);
      const exact = matmul(a, w, m, k, n);
      const dequantized = matmul(a, dequantizeBlockwise4(q), m, k, n);
      for (let r = 0; r < m; r++) {
        for (let c = 0; c < n; c++) {
          let bound = 0;
          for (let i = 0; i < k; i++) bound += Math.abs(a[r * k + i]!) * q.scales[c * q.nBlocks + Math.floor(i / 32)]! / 2;
          const got = y[r * n + c]!;
          assert.ok(Math.abs(got - dequantized[r * n + c]!) < 1e-4, `y[${r},${c}] = ${got} vs A·Ŵ ${dequantized[r * n + c]}`);
          assert.ok(Math.abs(got - exact[r * n + c]!) <= bound + 1e-4, `y[${r},${c}]: error ${Math.abs(got - exact[r * n + c]!)} > bound ${bound}`);
        }
      }
    });
  }

  test('quantizeMatMulWeightsQ4 rewrites eligible MatMuls only, keeps a weight another node still reads, and ORT runs the result', async () => {
    const g = new GraphBuilder('g')
      .addInput('a', 'FLOAT', ['m', 64])
      .addInitializer('big', randomValues(4, 'big', 64 * 32, 0.2), [64, 32])
      .addInitializer('small', randomValues(4, 'small', 32 * 16, 0.2), [32, 16])
      .addInitializer('shared', randomValues(4, 'shared', 32 * 32, 0.2), [32, 32])
      .addNode('MatMul', ['a', 'big'], ['h'])
      .addNode('MatMul', ['h', 'shared'], ['h2'])
      .addNode('Transpose', ['shared'], ['sharedT'])
      .addNode('MatMul', ['h2', 'sharedT'], ['h3'])
      .addNode('MatMul', ['h3', 'small'], ['y'])
      .addOutput('y', 'FLOAT', ['m', 16]);
    const float = g.toModel(17);
    const quantized = g.toModel(17);
    quantized.graph = { ...quantized.graph, node: [...quantized.graph!.node!], initializer: [...quantized.graph!.initializer!] };
    const r = quantizeMatMulWeightsQ4(quantized, '/nonexistent');
    assert.equal(r.quantized, 2, 'big and shared; small has 512 < 1024 elements');
    assert.deepEqual(quantized.graph.node!.map((x) => x.op_type), ['MatMulNBits', 'MatMulNBits', 'Transpose', 'MatMul', 'MatMul']);
    const names = quantized.graph.initializer!.map((t) => t.name).sort();
    assert.deepEqual(names, ['big_q4', 'big_q4_scales', 'big_q4_zero_points', 'shared', 'shared_q4', 'shared_q4_scales', 'shared_q4_zero_points', 'small']);
    const a = randomValues(5, 'a', 4 * 64, 1);
    const want = await run(float, a, [4, 64]);
    const got = await run(quantized, a, [4, 64]);
    let se = 0;
    let ss = 0;
    for (let i = 0; i < want.length; i++) {
      se += (got[i]! - want[i]!) ** 2;
      ss += want[i]! ** 2;
    }
    assert.ok(Math.sqrt(se / ss) < 0.15, `relative RMS error ${Math.sqrt(se / ss)}`);
  });
});
