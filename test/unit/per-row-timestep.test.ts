/**
 * The per-row timestep rewrite as a pure graph transform: which uses of `timestep` it rewrites,
 * which it accepts as already per row, and which it refuses (naming the node).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, type ModelProto } from '../../services/models/onnx/onnx-model.js';
import { PER_ROW_TIMESTEP_METADATA, perRowTimestep, PerRowTimestepError } from '../../services/models/onnx/per-row-timestep.js';

/** sample [B, 4] and a timestep of `dims`; `body` adds nodes from "timestep" to "t_rows" ([B]). */
function unet(dims: ReadonlyArray<number | string>, elem: 'FLOAT' | 'FLOAT16' | 'INT64', body: (b: GraphBuilder) => void, opset = 17): ModelProto {
  const b = new GraphBuilder('unet');
  b.addInput('sample', 'FLOAT', ['batch_size', 4]);
  b.addInput('timestep', elem, dims);
  b.addOutput('out', 'FLOAT', ['batch_size', 4]);
  b.addInitializer('s0', BigInt64Array.of(0n), [1]);
  b.addInitializer('s1', BigInt64Array.of(1n), [1]);
  b.addNode('Shape', ['sample'], ['shape'], {}, { name: '/Shape' });
  b.addNode('Slice', ['shape', 's0', 's1'], ['batch'], {}, { name: '/Slice' });
  body(b);
  b.addNode('Cast', ['t_rows'], ['t_f'], { to: 1 }, { name: '/Cast_out' });
  b.addNode('Unsqueeze', ['t_f', 's1'], ['t_col'], {}, { name: '/Unsqueeze_col' });
  b.addNode('Mul', ['sample', 't_col'], ['out'], {}, { name: '/Mul_out' });
  return b.toModel(opset);
}

const refusedAt = (model: ModelProto, node: string | undefined, why: RegExp) =>
  assert.throws(() => perRowTimestep(model), (err: unknown) => {
    assert.ok(err instanceof PerRowTimestepError, String(err));
    assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
    assert.equal(err.node, node);
    assert.match(err.message, why);
    return true;
  });

describe('perRowTimestep', () => {
  test('a float16 scalar broadcast by Expand becomes a [batch] input named like the sample\'s batch axis', () => {
    const model = unet([], 'FLOAT16', (b) => b.addNode('Expand', ['timestep', 'batch'], ['t_rows'], {}, { name: '/Expand' }));
    const r = perRowTimestep(model);
    assert.equal(r.elemType, 'float16');
    assert.equal(r.alreadyPerRow, false);
    assert.deepEqual(r.perRowAt, ['/Expand']);
    const input = r.model.graph!.input!.find((i) => i.name === 'timestep')!;
    assert.equal(input.type!.tensor_type!.elem_type, 10);
    assert.deepEqual(input.type!.tensor_type!.shape!.dim, [{ dim_param: 'batch_size' }]);
    assert.ok(r.model.metadata_props!.some((m) => m.key === PER_ROW_TIMESTEP_METADATA));
    // The source model object is not modified.
    assert.deepEqual(model.graph!.input!.find((i) => i.name === 'timestep')!.type!.tensor_type!.shape!.dim, []);
  });

  test('a Reshape of the scalar to [1] and an opset-11 Unsqueeze (axes attribute) become Identity; scalar arithmetic stays', () => {
    const reshaped = unet([], 'FLOAT', (b) => {
      b.addInitializer('one_shape', BigInt64Array.of(1n), [1]);
      b.addInitializer('k', Float32Array.of(0.5), []);
      b.addNode('Mul', ['timestep', 'k'], ['t_half'], {}, { name: '/Mul_k' });
      b.addNode('Reshape', ['t_half', 'one_shape'], ['t1'], {}, { name: '/Reshape_1' });
      b.addNode('Expand', ['t1', 'batch'], ['t_rows'], {}, { name: '/Expand' });
    });
    const r = perRowTimestep(reshaped);
    assert.deepEqual(r.rewrittenNodes, ['/Reshape_1']);
    assert.equal(r.model.graph!.node!.find((n) => n.name === '/Reshape_1')!.op_type, 'Identity');
    assert.equal(r.model.graph!.node!.find((n) => n.name === '/Mul_k')!.op_type, 'Mul');

    const b = new GraphBuilder('unet11');
    b.addInput('sample', 'FLOAT', ['batch_size', 4]);
    b.addInput('timestep', 'FLOAT', []);
    b.addOutput('out', 'FLOAT', ['batch_size', 4]);
    b.addNode('Shape', ['sample'], ['shape'], {}, { name: '/Shape' });
    b.addNode('Slice', ['shape'], ['batch'], { starts: [0], ends: [1] }, { name: '/Slice' });
    b.addNode('Unsqueeze', ['timestep'], ['t1'], { axes: [0] }, { name: '/Unsqueeze_0' });
    b.addNode('Expand', ['t1', 'batch'], ['t_rows'], {}, { name: '/Expand' });
    b.addNode('Unsqueeze', ['t_rows'], ['t_col'], { axes: [1] }, { name: '/Unsqueeze_col' });
    b.addNode('Mul', ['sample', 't_col'], ['out'], {}, { name: '/Mul_out' });
    assert.deepEqual(perRowTimestep(b.toModel(9)).rewrittenNodes, ['/Unsqueeze_0']);
  });

  test('an int64 [steps] input used row by row is returned unchanged, flagged as already per row', () => {
    const model = unet(['steps'], 'INT64', (b) => b.addNode('Identity', ['timestep'], ['t_rows'], {}, { name: '/Identity' }));
    const r = perRowTimestep(model);
    assert.equal(r.alreadyPerRow, true);
    assert.equal(r.model, model);
    assert.deepEqual(r.perRowAt, ['/Unsqueeze_col']);
  });

  test('refuses a scalar timestep that reaches the batch only by plain broadcasting (no Expand)', () => {
    refusedAt(unet([], 'FLOAT', (b) => b.addNode('Identity', ['timestep'], ['t_rows'], {}, { name: '/Identity' })), '/Unsqueeze_col', /not the scalar's lift/);
  });

  test('refuses a Shape taken of the timestep', () => {
    refusedAt(unet([], 'FLOAT', (b) => {
      b.addNode('Shape', ['timestep'], ['t_shape'], {}, { name: '/Shape_t' });
      b.addNode('Expand', ['timestep', 'batch'], ['t_rows'], {}, { name: '/Expand' });
    }), '/Shape_t', /cannot prove per row/);
  });

  test('refuses a model without a timestep input, or with a timestep of another type', () => {
    const b = new GraphBuilder('none');
    b.addInput('sample', 'FLOAT', ['batch_size', 4]);
    b.addOutput('out', 'FLOAT', ['batch_size', 4]);
    b.addNode('Identity', ['sample'], ['out']);
    refusedAt(b.toModel(17), undefined, /no input "timestep"/);
    const int32 = unet([], 'FLOAT', (g) => g.addNode('Expand', ['timestep', 'batch'], ['t_rows'], {}, { name: '/Expand' }));
    int32.graph!.input!.find((i) => i.name === 'timestep')!.type!.tensor_type!.elem_type = 6;
    refusedAt(int32, undefined, /element type 6/);
  });
});
