/**
 * Per-row UNet timesteps (issue 12): the rewritten UNet of every tiny-bundle timestep variant, run
 * by ONNX Runtime on rows at different steps, equals the source UNet run on each row alone; equal
 * timesteps reproduce today's batched output exactly; the torch-exported broadcast pattern of a
 * real Optimum export is rewritten too; unsafe uses are refused naming the node; the load path
 * rewrites once and reuses its cache entry.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { halfBitsOf, halfTensor } from '../../services/models/onnx/float16-tensor.js';
import { float32ToHalf, halfToFloat32 } from '../../services/models/onnx/float16.js';
import { decodeModel, encodeModel, GraphBuilder, type ModelProto } from '../../services/models/onnx/onnx-model.js';
import { perRowTimestep, PerRowTimestepError } from '../../services/models/onnx/per-row-timestep.js';
import { perRowTimestepUnet, PER_ROW_TIMESTEP_DIR } from '../../services/models/per-row-timestep-unet.js';
import { openSdxlBundle } from '../../services/models/sdxl-bundle.js';
import { TINY_CROSS_ATTENTION_DIM, TINY_SDXL_DIMS as D, writeTinySdxlBundle, type TinySdxlOptions } from '../../services/models/tiny-sdxl.js';

const VARIANTS: Record<string, TinySdxlOptions & { tolerance: number }> = {
  'fp32-scalar': { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true, tolerance: 1e-4 },
  'fp16-scalar': { dtype: 'float16', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: false, tolerance: 5e-3 },
  'fp32-int64': { dtype: 'float32', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: false, tolerance: 1e-4 },
  'fp16-int64': { dtype: 'float16', timestep: 'int64-batch', vaeEncoderOutput: 'latent_sample', externalData: true, tolerance: 5e-3 },
};

/** Timestep of step k of a 30-step "leading" schedule (SDXL's scheduler config: steps_offset 1). */
const leading30 = (k: number): number => (29 - k) * Math.floor(1000 / 30) + 1;
const ROW_STEPS = [0, 7, 19];
const H = 8;
const W = 12;
const SEQ = 77;

let root: string;
before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-per-row-timestep-'));
  for (const [name, options] of Object.entries(VARIANTS)) await writeTinySdxlBundle(path.join(root, name), options);
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

type Dtype = 'float32' | 'float16';
const floatTensor = (dtype: Dtype, data: Float32Array, dims: readonly number[]): ort.Tensor =>
  dtype === 'float16' ? halfTensor(float32ToHalf(data), dims) : new ort.Tensor('float32', data, dims);
const toFloat32 = (t: ort.Tensor): Float32Array =>
  t.type === 'float16' ? halfToFloat32(halfBitsOf(t)) : (t.data as Float32Array);

/** The UNet's non-timestep inputs for `rows` rows (row r's values depend only on r). */
function rowInputs(rows: readonly number[]) {
  const per = { sample: D.latentChannels * H * W, ehs: SEQ * TINY_CROSS_ATTENTION_DIM, te: D.projectionDim };
  const cat = (n: number, salt: number) => {
    const out = new Float32Array(rows.length * n);
    rows.forEach((r, i) => out.set(values(n, 1000 * r + salt), i * n));
    return out;
  };
  const ids = new Float32Array(rows.length * 6);
  rows.forEach((_, i) => ids.set([1024, 1024, 0, 0, 1024, 1024], i * 6));
  return {
    sample: cat(per.sample, 1), ehs: cat(per.ehs, 2), te: cat(per.te, 3), ids,
    feeds(dtype: Dtype, timestep: ort.Tensor): Record<string, ort.Tensor> {
      const b = rows.length;
      return {
        sample: floatTensor(dtype, this.sample, [b, D.latentChannels, H, W]),
        timestep,
        encoder_hidden_states: floatTensor(dtype, this.ehs, [b, SEQ, TINY_CROSS_ATTENTION_DIM]),
        text_embeds: floatTensor(dtype, this.te, [b, D.projectionDim]),
        time_ids: floatTensor(dtype, this.ids, [b, 6]),
      };
    },
  };
}

/** A timestep tensor of the model's own type: `shape` [] (one for all) or [n]. */
function timestepTensor(type: 'float32' | 'float16' | 'int64', ts: readonly number[], shape: readonly number[]): ort.Tensor {
  if (type === 'int64') return new ort.Tensor('int64', BigInt64Array.from(ts.map((t) => BigInt(t))), shape);
  return floatTensor(type, Float32Array.from(ts), shape);
}

const maxAbsDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe('per-row UNet timesteps on the tiny SDXL bundle', () => {
  for (const [name, variant] of Object.entries(VARIANTS)) {
    test(`${name}: each row of one call at steps 0, 7 and 19 equals that row run alone through the source UNet`, async () => {
      const unetPath = path.join(root, name, 'unet/model.onnx');
      const perRow = await perRowTimestepUnet(unetPath, path.join(root, `cache-${name}`));
      assert.equal(perRow.alreadyPerRow, variant.timestep === 'int64-batch');
      assert.equal(perRow.elemType, variant.timestep === 'int64-batch' ? 'int64' : variant.dtype);
      const source = await ort.InferenceSession.create(unetPath);
      const rewritten = await ort.InferenceSession.create(perRow.path);
      try {
        const ts = ROW_STEPS.map(leading30);
        const batch = rowInputs([0, 1, 2]);
        const together = toFloat32((await rewritten.run(batch.feeds(variant.dtype, timestepTensor(perRow.elemType, ts, [3]))))['out_sample']!);
        const n = together.length / 3;
        const scalar = variant.timestep === 'float-scalar';
        const alone: Float32Array[] = [];
        for (let r = 0; r < 3; r++) {
          const one = rowInputs([r]);
          const out = await source.run(one.feeds(variant.dtype, timestepTensor(perRow.elemType, [ts[r]!], scalar ? [] : [1])));
          alone.push(toFloat32(out['out_sample']!));
          const d = maxAbsDiff(together.subarray(r * n, (r + 1) * n), alone[r]!);
          assert.ok(d <= variant.tolerance, `row ${r} (step ${ROW_STEPS[r]}, t=${ts[r]}): max difference ${d}`);
        }
        // The rows really are at different timesteps: the same row at another step differs.
        const other = toFloat32((await source.run(rowInputs([0]).feeds(variant.dtype, timestepTensor(perRow.elemType, [ts[2]!], scalar ? [] : [1]))))['out_sample']!);
        assert.ok(maxAbsDiff(other, alone[0]!) > 1e-2, 'the timestep changes a row\'s output');
      } finally {
        await source.release();
        await rewritten.release();
      }
    });

    test(`${name}: rows with equal timesteps reproduce the source UNet's batched output exactly`, async () => {
      const unetPath = path.join(root, name, 'unet/model.onnx');
      const perRow = await perRowTimestepUnet(unetPath, path.join(root, `cache-${name}`));
      const source = await ort.InferenceSession.create(unetPath);
      const rewritten = await ort.InferenceSession.create(perRow.path);
      try {
        const t = leading30(7);
        const batch = rowInputs([0, 1, 2]);
        const today = variant.timestep === 'float-scalar' ? timestepTensor(perRow.elemType, [t], []) : timestepTensor(perRow.elemType, [t, t, t], [3]);
        const want = toFloat32((await source.run(batch.feeds(variant.dtype, today)))['out_sample']!);
        const got = toFloat32((await rewritten.run(batch.feeds(variant.dtype, timestepTensor(perRow.elemType, [t, t, t], [3]))))['out_sample']!);
        assert.deepEqual(got, want);
      } finally {
        await source.release();
        await rewritten.release();
      }
    });
  }

  test('the load path rewrites once: a second call reuses the entry, whose weights are linked, not copied', async () => {
    const cacheDir = path.join(root, 'cache-reuse');
    const unetPath = path.join(root, 'fp32-scalar', 'unet/model.onnx');
    const first = await perRowTimestepUnet(unetPath, cacheDir);
    const second = await perRowTimestepUnet(unetPath, cacheDir);
    assert.equal(first.outcome, 'written');
    assert.equal(second.outcome, 'hit');
    assert.equal(second.path, first.path);
    assert.ok(first.path.startsWith(path.join(cacheDir, PER_ROW_TIMESTEP_DIR)));
    const data = path.join(path.dirname(first.path), 'model.onnx_data');
    assert.equal(fs.statSync(data).ino, fs.statSync(path.join(root, 'fp32-scalar', 'unet/model.onnx_data')).ino);
    const model = decodeModel(fs.readFileSync(first.path));
    const input = model.graph!.input!.find((i) => i.name === 'timestep')!;
    assert.deepEqual(input.type!.tensor_type!.shape!.dim!.map((d) => d.dim_param), ['batch_size']);
    // A damaged entry is written again, not served.
    fs.truncateSync(first.path, 10);
    assert.equal((await perRowTimestepUnet(unetPath, cacheDir)).outcome, 'written');
  });

  test('a bundle opened with the rewritten UNet reports one timestep per row; the source bundle does not', async () => {
    const dir = path.join(root, 'fp32-scalar');
    const perRow = await perRowTimestepUnet(path.join(dir, 'unet/model.onnx'), path.join(root, 'cache-open'));
    const plain = await openSdxlBundle(dir, { executionProvider: 'cpu' });
    const opted = await openSdxlBundle(dir, { executionProvider: 'cpu' }, { modelPaths: { unet: perRow.path } });
    try {
      assert.equal(plain.timestepPerRow, false);
      assert.equal(opted.timestepPerRow, true);
      assert.deepEqual(opted.timestepInput, { type: 'float32', scalar: false });
    } finally {
      await plain.dispose();
      await opted.dispose();
    }
    const legacy = await openSdxlBundle(path.join(root, 'fp32-int64'), { executionProvider: 'cpu' });
    try {
      assert.equal(legacy.timestepPerRow, true);
    } finally {
      await legacy.dispose();
    }
  });
});

/**
 * A graph with the ops torch writes for diffusers' time projection of a scalar timestep:
 * `timesteps[None]` (Unsqueeze 0), `.expand(sample.shape[0])` (Shape → Gather → Unsqueeze → Concat →
 * Reshape, then Where(Equal(size, -ones), ones, size) → Expand), `[:, None].float() * freqs` →
 * cos ‖ sin; out = sample-mean-per-row + embedding.
 */
function torchStyleTimeProjection(mutate?: (b: GraphBuilder) => void): ModelProto {
  const b = new GraphBuilder('torch_style');
  b.addInput('sample', 'FLOAT', ['batch_size', 4]);
  b.addInput('timestep', 'FLOAT', []);
  b.addOutput('out', 'FLOAT', ['batch_size', 8]);
  b.addInitializer('zero_axis', BigInt64Array.of(0n), [1]);
  b.addInitializer('one_axis', BigInt64Array.of(1n), [1]);
  b.addInitializer('index0', BigInt64Array.of(0n), []);
  b.addInitializer('minus1', BigInt64Array.of(-1n), [1]);
  b.addInitializer('neg', BigInt64Array.of(-1n), []);
  b.addInitializer('freqs', Float32Array.of(1, 0.1, 0.01, 0.001), [4]);
  b.addNode('Unsqueeze', ['timestep', 'zero_axis'], ['t1'], {}, { name: '/Unsqueeze' });
  b.addNode('Shape', ['sample'], ['shape'], {}, { name: '/Shape' });
  b.addNode('Gather', ['shape', 'index0'], ['bs'], { axis: 0 }, { name: '/Gather' });
  b.addNode('Unsqueeze', ['bs', 'zero_axis'], ['bs1'], {}, { name: '/Unsqueeze_1' });
  b.addNode('Concat', ['bs1'], ['size0'], { axis: 0 }, { name: '/Concat' });
  b.addNode('Reshape', ['size0', 'minus1'], ['size'], {}, { name: '/Reshape' });
  b.addNode('Shape', ['size'], ['size_shape'], {}, { name: '/Shape_1' });
  b.addNode('ConstantOfShape', ['size_shape'], ['ones'], { value: { attrType: 'TENSOR', value: { name: '', dims: [1], data_type: 7, raw_data: new Uint8Array(BigInt64Array.of(1n).buffer) } } }, { name: '/ConstantOfShape' });
  b.addNode('Mul', ['ones', 'neg'], ['neg_ones'], {}, { name: '/Mul' });
  b.addNode('Equal', ['size', 'neg_ones'], ['is_neg'], {}, { name: '/Equal' });
  b.addNode('Where', ['is_neg', 'ones', 'size'], ['size_fixed'], {}, { name: '/Where' });
  mutate?.(b);
  b.addNode('Expand', ['t1', 'size_fixed'], ['tb'], {}, { name: '/Expand' });
  b.addNode('Unsqueeze', ['tb', 'one_axis'], ['tcol'], {}, { name: '/time_proj/Unsqueeze' });
  b.addNode('Mul', ['tcol', 'freqs'], ['args'], {}, { name: '/time_proj/Mul' });
  b.addNode('Cos', ['args'], ['cos'], {}, { name: '/time_proj/Cos' });
  b.addNode('Sin', ['args'], ['sin'], {}, { name: '/time_proj/Sin' });
  b.addNode('Concat', ['cos', 'sin'], ['emb'], { axis: -1 }, { name: '/time_proj/Concat' });
  b.addNode('ReduceMean', ['sample'], ['mean'], { axes: [1], keepdims: 1 }, { name: '/ReduceMean' });
  b.addNode('Add', ['emb', 'mean'], ['out'], {}, { name: '/Add' });
  return b.toModel(17);
}

describe('per-row timestep rewrite of torch-exported graphs', () => {
  test('the scalar lift before the Expand becomes Identity, and each row then uses its own timestep', async () => {
    const source = torchStyleTimeProjection();
    const r = perRowTimestep(source);
    assert.equal(r.alreadyPerRow, false);
    assert.deepEqual(r.rewrittenNodes, ['/Unsqueeze']);
    assert.deepEqual(r.perRowAt, ['/Expand']);
    const src = await ort.InferenceSession.create(encodeModel(source));
    const out = await ort.InferenceSession.create(encodeModel(r.model));
    try {
      const sample = values(12, 9);
      const ts = [958, 727, 331];
      const got = (await out.run({ sample: new ort.Tensor('float32', sample, [3, 4]), timestep: new ort.Tensor('float32', Float32Array.from(ts), [3]) }))['out']!.data as Float32Array;
      for (let i = 0; i < 3; i++) {
        const want = (await src.run({ sample: new ort.Tensor('float32', sample.slice(4 * i, 4 * i + 4), [1, 4]), timestep: new ort.Tensor('float32', Float32Array.of(ts[i]!), []) }))['out']!.data as Float32Array;
        assert.ok(maxAbsDiff(got.subarray(8 * i, 8 * i + 8), want) <= 1e-5, `row ${i}`);
      }
    } finally {
      await src.release();
      await out.release();
    }
  });

  test('refuses, naming the node, a timestep combined with a non-scalar tensor before the Expand', () => {
    const model = torchStyleTimeProjection((b) => {
      b.addInitializer('scale4', Float32Array.of(1, 2, 3, 4), [4]);
      b.addNode('Mul', ['timestep', 'scale4'], ['scaled'], {}, { name: '/bad/Mul' });
      b.addNode('ReduceSum', ['scaled'], ['summed'], { keepdims: 0 }, { name: '/bad/ReduceSum' });
    });
    assert.throws(() => perRowTimestep(model), (err: unknown) => {
      assert.ok(err instanceof PerRowTimestepError);
      assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
      assert.equal(err.node, '/bad/Mul');
      assert.match(err.message, /"scale4", which is not a one-element constant/);
      return true;
    });
  });

  test('refuses an int64 [steps] timestep of which the graph reads element 0 only', () => {
    const b = new GraphBuilder('first_only');
    b.addInput('sample', 'FLOAT', ['batch_size', 4]);
    b.addInput('timestep', 'INT64', ['steps']);
    b.addOutput('out', 'FLOAT', ['batch_size', 4]);
    b.addInitializer('index0', BigInt64Array.of(0n), []);
    b.addNode('Gather', ['timestep', 'index0'], ['t0'], { axis: 0 }, { name: '/first/Gather' });
    b.addNode('Cast', ['t0'], ['tf'], { to: 1 }, { name: '/first/Cast' });
    b.addNode('Mul', ['sample', 'tf'], ['out'], {}, { name: '/first/Mul' });
    assert.throws(() => perRowTimestep(b.toModel(17)), (err: unknown) => {
      assert.ok(err instanceof PerRowTimestepError);
      assert.equal(err.node, '/first/Gather');
      assert.match(err.message, /every row would use the same one/);
      return true;
    });
  });

  test('refuses an Expand whose shape is not proven to be the batch size', () => {
    const b = new GraphBuilder('fixed_expand');
    b.addInput('sample', 'FLOAT', ['batch_size', 4]);
    b.addInput('timestep', 'FLOAT', []);
    b.addOutput('out', 'FLOAT', ['batch_size', 4]);
    b.addInitializer('four', BigInt64Array.of(4n), [1]);
    b.addNode('Expand', ['timestep', 'four'], ['t4'], {}, { name: '/fixed/Expand' });
    b.addNode('Mul', ['sample', 't4'], ['out'], {}, { name: '/fixed/Mul' });
    assert.throws(() => perRowTimestep(b.toModel(17)), (err: unknown) => err instanceof PerRowTimestepError && err.node === '/fixed/Expand');
  });
});
