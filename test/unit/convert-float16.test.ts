/** float32 → float16 model conversion (the fp16 variant), run in ONNX Runtime on CPU. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { convertModelToFloat16, toClampedHalfBits } from '../../services/models/onnx/convert-float16.js';
import { Attr, DataType, decodeModel, encodeModel, GraphBuilder, type ModelProto } from '../../services/models/onnx/onnx-model.js';
import { halfToFloat32, float32ToHalf } from '../../services/models/onnx/float16.js';
import { halfBitsOf, halfTensor } from '../../services/models/onnx/float16-tensor.js';
import { randomValues } from '../../services/models/tiny-sdxl/net.js';

/** Runs `model` on one float input, giving and taking float32 (converted at the edges when the model is float16). */
async function run(model: ModelProto, input: string, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const half = model.graph!.input![0]!.type!.tensor_type!.elem_type === DataType.FLOAT16;
  const s = await InferenceSession.create(encodeModel(model));
  try {
    const feed = half ? halfTensor(float32ToHalf(x), dims) : new Tensor('float32', x, dims);
    const y = (await s.run({ [input]: feed }))['y']!;
    return y.type === 'float16' ? halfToFloat32(halfBitsOf(y)) : (y.data as Float32Array);
  } finally {
    await s.release();
  }
}

const copy = (m: ModelProto): ModelProto => decodeModel(encodeModel(m));
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('float16 conversion', () => {
  test('makes float inputs, outputs, initializers, value_info, Cast and Constant float16, and ORT agrees with float32 to half precision', async () => {
    const g = new GraphBuilder('g')
      .addInput('x', 'FLOAT', ['n', 16])
      .addInitializer('w', randomValues(1, 'w', 16 * 8, 0.25), [16, 8])
      .addNode('MatMul', ['x', 'w'], ['h'])
      .addNode('Constant', [], ['c'], { value: Attr.tensor(Float32Array.of(0.5), []) })
      .addNode('Add', ['h', 'c'], ['h2'])
      .addNode('Shape', ['h2'], ['shape'])
      .addNode('Cast', ['shape'], ['shape_f'], { to: DataType.FLOAT })
      .addNode('ReduceMean', ['shape_f'], ['mean_dim'], { keepdims: 0 })
      .addNode('Div', ['h2', 'mean_dim'], ['y'])
      .addOutput('y', 'FLOAT', ['n', 8]);
    const float = g.toModel(17);
    float.graph!.value_info = [{ name: 'h', type: { tensor_type: { elem_type: DataType.FLOAT } } }];
    const half = copy(float);
    const report = convertModelToFloat16(half, '/nonexistent');
    const gr = half.graph!;
    assert.equal(gr.input![0]!.type!.tensor_type!.elem_type, DataType.FLOAT16);
    assert.equal(gr.output![0]!.type!.tensor_type!.elem_type, DataType.FLOAT16);
    assert.equal(gr.value_info![0]!.type!.tensor_type!.elem_type, DataType.FLOAT16);
    assert.equal(gr.initializer![0]!.data_type, DataType.FLOAT16);
    assert.equal(gr.node!.find((n) => n.op_type === 'Constant')!.attribute![0]!.t!.data_type, DataType.FLOAT16);
    assert.equal(Number(gr.node!.find((n) => n.op_type === 'Cast')!.attribute![0]!.i), DataType.FLOAT16);
    assert.deepEqual(report, { initializers: 1, float32Nodes: 0, castsInserted: 0 });
    const x = randomValues(2, 'x', 3 * 16, 1);
    const want = await run(float, 'x', x, [3, 16]);
    const got = await run(half, 'x', x, [3, 16]);
    assert.ok(maxAbsDiff(want, got) < 5e-3, `max difference ${maxAbsDiff(want, got)}`);
  });

  test('keeps a sinusoidal embedding float32 back to its Cast, casting to float16 where it meets the rest', async () => {
    // As diffusers' time_proj: cos/sin(float(t) · freqs) → Linear. t = 999 is where float16 products go wrong.
    const half = 16;
    const g = new GraphBuilder('t')
      .addInput('t', 'FLOAT', [1])
      .addInitializer('freqs', Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half)), [half])
      .addInitializer('axis', BigInt64Array.of(1n), [1])
      .addInitializer('w', randomValues(3, 'w', 2 * half * 8, 0.2), [2 * half, 8])
      .addNode('Cast', ['t'], ['t32'], { to: DataType.FLOAT })
      .addNode('Unsqueeze', ['t32', 'axis'], ['tu'])
      .addNode('Mul', ['tu', 'freqs'], ['args'])
      .addNode('Cos', ['args'], ['cos'])
      .addNode('Sin', ['args'], ['sin'])
      .addNode('Concat', ['cos', 'sin'], ['emb'], { axis: -1 })
      .addNode('MatMul', ['emb', 'w'], ['y'])
      .addOutput('y', 'FLOAT', [1, 8]);
    const float = g.toModel(17);
    const islands = copy(float);
    const report = convertModelToFloat16(islands, '/nonexistent');
    assert.deepEqual(report, { initializers: 1, float32Nodes: 5, castsInserted: 2 });
    const gr = islands.graph!;
    assert.equal(gr.initializer!.find((t) => t.name === 'freqs')!.data_type, DataType.FLOAT, 'freqs only feed float32 nodes');
    assert.equal(gr.initializer!.find((t) => t.name === 'w')!.data_type, DataType.FLOAT16);
    assert.equal(Number(gr.node!.find((n) => n.name?.startsWith('Cast') && n.input![0] === 't')!.attribute![0]!.i), DataType.FLOAT, 'the upcast stays');
    assert.deepEqual(gr.node!.find((n) => n.op_type === 'Concat')!.input, ['cos_float16', 'sin_float16']);
    const naive = copy(float);
    convertModelToFloat16(naive, '/nonexistent', { keepFloat32Ops: [] });
    const t = Float32Array.of(999);
    const want = await run(float, 't', t, [1]);
    const errIslands = maxAbsDiff(want, await run(islands, 't', t, [1]));
    const errNaive = maxAbsDiff(want, await run(naive, 't', t, [1]));
    assert.ok(errIslands < 5e-3, `error with float32 sinusoids ${errIslands}`);
    assert.ok(errNaive > 4 * errIslands, `all-float16 sinusoids err more: ${errNaive} vs ${errIslands}`);
  });

  test('keeps Resize scales float32 (the op fixes their type) and ORT runs the float16 Resize', async () => {
    const g = new GraphBuilder('r')
      .addInput('x', 'FLOAT', [1, 1, 2, 2])
      .addInitializer('scales', Float32Array.of(1, 1, 2, 2), [4])
      .addNode('Resize', ['x', '', 'scales'], ['y'], { mode: 'nearest' })
      .addOutput('y', 'FLOAT', [1, 1, 4, 4]);
    const model = g.toModel(17);
    convertModelToFloat16(model, '/nonexistent');
    assert.equal(model.graph!.initializer![0]!.data_type, DataType.FLOAT);
    const y = await run(model, 'x', Float32Array.of(1, 2, 3, 4), [1, 1, 2, 2]);
    assert.deepEqual([...y], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
  });

  test('clamps to ±65504 instead of overflowing and keeps tiny non-zero values non-zero', () => {
    assert.deepEqual([...toClampedHalfBits(Float32Array.of(1e9, -1e9, 1e-9, -1e-9, 0, 1))], [0x7bff, 0xfbff, 0x0001, 0x8001, 0, 0x3c00]);
  });

  test('refuses models with subgraphs', () => {
    const model = new GraphBuilder('s').addInput('c', 'BOOL', []).addNode('If', ['c'], ['y']).addOutput('y', 'FLOAT', []).toModel(17);
    model.graph!.node![0]!.attribute = [{ name: 'then_branch', type: 5 }];
    assert.throws(() => convertModelToFloat16(model, '/nonexistent'), /If has a subgraph/);
  });
});
