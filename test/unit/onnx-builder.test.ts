import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InferenceSession, Tensor } from 'onnxruntime-node';

import { Attr, DataType, decodeModel, GraphBuilder, makeTensor } from '../../services/models/onnx/onnx-model.js';
import { buildTextureModel } from '../../services/models/demo-models.js';

describe('GraphBuilder', () => {
  test('builds a graph that ONNX Runtime runs with the expected numbers', async () => {
    // y = LeakyRelu(x @ W + b, alpha=0.5), reshaped with an int64 shape initializer.
    const g = new GraphBuilder('tiny')
      .addInput('x', 'FLOAT', ['batch', 2])
      .addInitializer('W', new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3])
      .addInitializer('b', new Float32Array([0.5, -10, 0]), [3])
      .addInitializer('shape', new BigInt64Array([-1n, 3n]), [2])
      .addNode('MatMul', ['x', 'W'], ['xw'])
      .addNode('Add', ['xw', 'b'], ['z'])
      .addNode('Reshape', ['z', 'shape'], ['zr'])
      .addNode('LeakyRelu', ['zr'], ['y'], { alpha: 0.5 })
      .addOutput('y', 'FLOAT', ['batch', 3]);
    const session = await InferenceSession.create(g.toBytes(17));
    try {
      const out = await session.run({ x: new Tensor('float32', new Float32Array([1, 1, 2, -1]), [2, 2]) });
      assert.deepEqual(out['y']?.dims, [2, 3]);
      // Row 1: [1+4, 2+5, 3+6] + b = [5.5, -3, 9] → leaky: [5.5, -1.5, 9].
      // Row 2: [2-4, 4-5, 6-6] + b = [-1.5, -11, 0] → leaky: [-0.75, -5.5, 0].
      assert.deepEqual([...(out['y']?.data as Float32Array)], [5.5, -1.5, 9, -0.75, -5.5, 0]);
    } finally {
      await session.release();
    }
  });

  test('keeps dynamic axes symbolic and honours explicitly typed attributes', async () => {
    const g = new GraphBuilder()
      .addInput('x', 'FLOAT', ['n'])
      .addNode('LeakyRelu', ['x'], ['y'], { alpha: Attr.float(2) })
      .addOutput('y', 'FLOAT', ['n']);
    const model = decodeModel(g.toBytes(17));
    assert.deepEqual(model.graph?.input?.[0]?.type?.tensor_type?.shape?.dim, [{ dim_param: 'n' }]);
    assert.equal(model.graph?.node?.[0]?.attribute?.[0]?.f, 2);
    assert.equal(model.graph?.node?.[0]?.attribute?.[0]?.type, 1); // FLOAT, not INT
    const session = await InferenceSession.create(g.toBytes(17));
    try {
      const out = await session.run({ x: new Tensor('float32', new Float32Array([-1, 3, -4]), [3]) });
      assert.deepEqual([...(out['y']?.data as Float32Array)], [-2, 3, -8]);
    } finally {
      await session.release();
    }
  });

  test('stores initializers as little-endian raw_data with upstream field values', () => {
    const bytes = new GraphBuilder()
      .addInput('x', 'FLOAT', [1])
      .addInitializer('w', new Float32Array([1.5]), [1])
      .addInitializer('h', new Uint16Array([0x3c00]), [1], 'FLOAT16')
      .addNode('Identity', ['x'], ['y'])
      .addOutput('y', 'FLOAT', [1])
      .toBytes(13, { metadata: { k: 'v' } });
    const model = decodeModel(bytes);
    assert.equal(model.ir_version, 7);
    assert.deepEqual(model.opset_import, [{ domain: '', version: 13 }]);
    assert.deepEqual(model.metadata_props, [{ key: 'k', value: 'v' }]);
    const [w, h] = model.graph?.initializer ?? [];
    assert.equal(w?.data_type, DataType.FLOAT);
    assert.deepEqual([...(w?.raw_data ?? [])], [0x00, 0x00, 0xc0, 0x3f]);
    assert.equal(h?.data_type, DataType.FLOAT16);
    assert.deepEqual([...(h?.raw_data ?? [])], [0x00, 0x3c]);
  });

  test('rejects tensors whose element count or width does not match', () => {
    assert.throws(() => makeTensor('w', new Float32Array(5), [2, 3]), RangeError);
    assert.throws(() => makeTensor('w', new Float32Array(1), [1], 'FLOAT16'), RangeError);
    assert.throws(() => new GraphBuilder().addInput('x', 'FLOAT', [1]).addInput('x', 'FLOAT', [1]), /duplicate input "x"/);
  });
});

describe('texture demo model', () => {
  test('is byte-for-byte reproducible and differs by seed', () => {
    assert.deepEqual(buildTextureModel(), buildTextureModel());
    assert.notDeepEqual(buildTextureModel(1), buildTextureModel(2));
  });

  test('runs with dynamic batch and size and yields smooth images in [0, 1] that follow the tint', async () => {
    const session = await InferenceSession.create(buildTextureModel());
    try {
      const [b, h, w] = [2, 24, 40];
      const noise = Float32Array.from({ length: b * 3 * h * w }, (_, i) => Math.sin(i * 12.9898) * 1.7);
      const tint = new Float32Array([0.1, 0.3, 0.9, 0.9, 0.5, 0.1]);
      const out = await session.run({
        noise: new Tensor('float32', noise, [b, 3, h, w]),
        tint: new Tensor('float32', tint, [b, 3]),
      });
      assert.deepEqual(out['image']?.dims, [b, 3, h, w]);
      const img = out['image']?.data as Float32Array;
      assert.ok(img.every((v) => v >= 0 && v <= 1));
      const plane = h * w;
      const mean = (bi: number, c: number) => img.subarray((bi * 3 + c) * plane, (bi * 3 + c + 1) * plane).reduce((a, v) => a + v, 0) / plane;
      assert.ok(mean(0, 2) > mean(0, 0) + 0.3, 'a blue tint gives a blue image');
      assert.ok(mean(1, 0) > mean(1, 2) + 0.3, 'an orange tint gives an orange image');
      // Smoothed, not white: neighbouring pixels differ much less than the image varies.
      let diff = 0;
      let variance = 0;
      const m = mean(0, 1);
      for (let p = 0; p < plane - 1; p++) {
        diff += Math.abs(img[plane + p + 1]! - img[plane + p]!);
        variance += (img[plane + p]! - m) ** 2;
      }
      assert.ok(diff / plane < 0.5 * Math.sqrt(variance / plane), 'neighbours are correlated');
    } finally {
      await session.release();
    }
  });
});
