/**
 * The converter against the originals: every UpscalerJS ESRGAN package at scales 2, 3 and 4,
 * evaluated with TensorFlow.js (cpu backend) and, converted, with ONNX Runtime, on crops of real
 * photographs. Crops are small because TensorFlow.js's pure-JS convolutions are slow (esrgan-thick
 * has 154 convolutions); the whole file runs in about 30 s on two cores.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import { Command } from 'commander';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { registerUpscalerModelCommands } from '../../services/cli/command-models-upscaler.js';
import { convertLayersModel, convertUpscaler } from '../../services/models/upscaler/convert-upscaler.js';
import { readLayersModel, UnsupportedLayerError } from '../../services/models/upscaler/tfjs-layers-model.js';
import { parseUpscalerInfo, readModelMetadata } from '../../services/models/upscaler/upscaler-metadata.js';
import {
  compareBytes, fileIoHandler, loadImageFile, loadPhoto, loadTfjsUpscaler, PHOTOS, tfjs, toNchw, UPSCALER_PACKAGES, upscalerPackageDir,
} from './upscaler-reference.js';

/** Crop side per package: esrgan-thick costs ~20x esrgan-slim per pixel in TensorFlow.js. */
const CROP: Record<(typeof UPSCALER_PACKAGES)[number], number> = { 'esrgan-slim': 48, 'esrgan-medium': 40, 'esrgan-thick': 20 };

let dir: string;
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-upconv-')); });
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function runOnnx(file: string, input: Float32Array, dims: number[]): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const session = await InferenceSession.create(file);
  try {
    const out = await session.run({ input: new Tensor('float32', input, dims) });
    const y = out['output'];
    assert.ok(y, 'the model has an output named "output"');
    return { data: y.data as Float32Array, dims: y.dims };
  } finally {
    await session.release();
  }
}

describe('convert-upscaler on the UpscalerJS ESRGAN packages', () => {
  let photo = 0;
  for (const pkg of UPSCALER_PACKAGES) {
    for (const scale of [2, 3, 4]) {
      test(`${pkg} x${scale}: ONNX Runtime matches TensorFlow.js on a real photo, and the package's published sample, to the 8-bit value`, async (t) => {
        const name = PHOTOS[photo++ % PHOTOS.length]!;
        const side = CROP[pkg];
        // A crop from the middle of the photo, where there is detail.
        const img = await loadPhoto(name, { left: 64 - side / 2, top: 64 - side / 2, width: side, height: side });
        const out = path.join(dir, `${pkg}-x${scale}.onnx`);
        const res = await convertUpscaler({ from: upscalerPackageDir(pkg), scale, out });
        assert.equal(res.info.scale, scale);
        // The packages' own definitions: RDN (slim, medium) works in 0–255, RRDN (thick) in 0–1.
        assert.deepEqual(res.info.inputRange, pkg === 'esrgan-thick' ? [0, 1] : [0, 255]);
        assert.deepEqual(res.info.outputRange, res.info.inputRange);

        const original = await loadTfjsUpscaler(pkg, scale);
        const expected = await original.predict(img);
        const got = await runOnnx(out, toNchw(img, res.info.inputRange), [1, 3, side, side]);
        assert.deepEqual(got.dims, [1, 3, side * scale, side * scale]);
        const cmp = compareBytes(expected, got.data, side * scale, side * scale, res.info.outputRange);
        const equalShare = cmp.equal / cmp.values;
        t.diagnostic(`${name} ${side}x${side}: ${cmp.equal}/${cmp.values} values equal (${(100 * equalShare).toFixed(3)}%), max difference ${cmp.maxDiff}`);
        assert.ok(equalShare >= 0.999, `${name}: ${(100 * equalShare).toFixed(3)}% of ${cmp.values} values equal (need ≥ 99.9%)`);
        assert.ok(cmp.maxDiff <= 1, `${name}: a value differs by ${cmp.maxDiff}/255`);

        // The package's own published sample: assets/fixture.png as UpscalerJS itself upscaled it.
        const pkgDir = upscalerPackageDir(pkg);
        const fixture = await loadImageFile(path.join(pkgDir, 'assets', 'fixture.png'));
        const published = await loadImageFile(path.join(pkgDir, 'assets', 'samples', `${scale}x`, 'result.png'));
        assert.deepEqual([published.width, published.height], [fixture.width * scale, fixture.height * scale]);
        const mine = await runOnnx(out, toNchw(fixture, res.info.inputRange), [1, 3, fixture.height, fixture.width]);
        const [lo, hi] = res.info.outputRange;
        const publishedValues = Float32Array.from(published.data, (b) => lo + (b / 255) * (hi - lo));
        const vsPublished = compareBytes(publishedValues, mine.data, published.width, published.height, res.info.outputRange);
        t.diagnostic(`published sample ${fixture.width}x${fixture.height} → ${published.width}x${published.height}: ${(100 * vsPublished.equal / vsPublished.values).toFixed(3)}% equal, max difference ${vsPublished.maxDiff}`);
        assert.ok(vsPublished.equal / vsPublished.values >= 0.999 && vsPublished.maxDiff <= 1, `published sample: ${JSON.stringify(vsPublished)}`);
      });
    }
  }
});

describe('converter rules', () => {
  test('converts strided, dilated and valid convolutions, activations, merges and upsampling exactly as TensorFlow.js computes them', async () => {
    const { tf, tfl } = await tfjs();
    const x = tfl.input({ shape: [null, null, 3] });
    const init = { kernelInitializer: tfl.initializers.randomNormal({ seed: 1, stddev: 0.3 }), biasInitializer: tfl.initializers.randomNormal({ seed: 2 }) };
    const a = tfl.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6', ...init }).apply(x) as TfLayers.SymbolicTensor;
    const b = tfl.layers.conv2d({ filters: 6, kernelSize: [3, 2], dilationRate: 2, padding: 'same', activation: 'swish', ...init }).apply(a) as TfLayers.SymbolicTensor;
    const c = tfl.layers.conv2d({ filters: 6, kernelSize: 1, padding: 'valid', useBias: false, activation: 'tanh', ...init }).apply(a) as TfLayers.SymbolicTensor;
    const d = tfl.layers.leakyReLU({ alpha: 0.1 }).apply(tfl.layers.add().apply([b, c])) as TfLayers.SymbolicTensor;
    const e = tfl.layers.multiply().apply([d, tfl.layers.activation({ activation: 'sigmoid' }).apply(b) as TfLayers.SymbolicTensor]) as TfLayers.SymbolicTensor;
    const f = tfl.layers.concatenate({ axis: -1 }).apply([e, tfl.layers.reLU({ maxValue: 0.5 }).apply(c) as TfLayers.SymbolicTensor]) as TfLayers.SymbolicTensor;
    const g = tfl.layers.upSampling2d({ size: [2, 3] }).apply(tfl.layers.add().apply([f, f, f])) as TfLayers.SymbolicTensor;
    const y = tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'valid', activation: 'elu', ...init }).apply(g) as TfLayers.SymbolicTensor;
    const model = tfl.model({ inputs: x, outputs: y });
    const modelDir = path.join(dir, 'synthetic');
    fs.mkdirSync(modelDir);
    await model.save(fileIoHandler(path.join(modelDir, 'model.json')));

    const bytes = convertLayersModel(readLayersModel(path.join(modelDir, 'model.json')), { scale: 1, inputRange: [0, 1], outputRange: [0, 1], source: 'test' });
    const file = path.join(modelDir, 'model.onnx');
    fs.writeFileSync(file, bytes);
    const h = 11;
    const w = 9; // odd sizes: 'same' with stride 2 pads unevenly
    const input = tf.randomUniform([1, h, w, 3], 0, 1, 'float32', 3);
    const expected = await (model.predict(input) as TfCore.Tensor).data() as Float32Array;
    const nchw = await tf.transpose(input, [0, 3, 1, 2]).data() as Float32Array;
    const got = await runOnnx(file, nchw, [1, 3, h, w]);
    const [oh, ow] = [Math.ceil(h / 2) * 2 - 2, Math.ceil(w / 2) * 3 - 2];
    assert.deepEqual(got.dims, [1, 3, oh, ow]);
    const plane = oh * ow;
    let maxErr = 0;
    for (let p = 0; p < plane; p++) for (let ch = 0; ch < 3; ch++) maxErr = Math.max(maxErr, Math.abs(expected[p * 3 + ch]! - got.data[ch * plane + p]!));
    assert.ok(maxErr < 1e-5, `max |TF.js - ONNX| = ${maxErr}`);
  });

  test('an unknown layer type fails with an error naming the type, the layer and the model file', () => {
    const src = path.join(upscalerPackageDir('esrgan-slim'), 'models', 'x2');
    const modelDir = path.join(dir, 'unknown');
    fs.mkdirSync(modelDir);
    fs.copyFileSync(path.join(src, 'group1-shard1of1.bin'), path.join(modelDir, 'group1-shard1of1.bin'));
    const json = JSON.parse(fs.readFileSync(path.join(src, 'model.json'), 'utf8')) as { modelTopology: { model_config: { config: { layers: Array<{ class_name: string; name: string }> } } } };
    const layer = json.modelTopology.model_config.config.layers.find((l) => l.name === 'UPsample')!;
    layer.class_name = 'Conv2DTranspose';
    const file = path.join(modelDir, 'model.json');
    fs.writeFileSync(file, JSON.stringify(json));
    assert.throws(() => convertLayersModel(readLayersModel(file), { scale: 2, inputRange: [0, 255], outputRange: [0, 255], source: 'test' }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedLayerError);
      assert.equal(err.code, 'ORRERY_ERR_UNIMPLEMENTED');
      assert.equal(err.layerType, 'Conv2DTranspose');
      assert.equal(err.file, file);
      assert.match(err.message, /unsupported layer type "Conv2DTranspose" \(layer "UPsample"\)/);
      assert.ok(err.message.includes(file));
      return true;
    });
  });

  test('`orrery models convert-upscaler` writes a model whose metadata carries the scale and value ranges', async () => {
    let printed = '';
    const program = new Command().exitOverride().configureOutput({ writeOut: (s) => { printed += s; }, writeErr: () => {} });
    registerUpscalerModelCommands(program.command('models'));
    const out = path.join(dir, 'cli', 'x3', 'model.onnx');
    await program.parseAsync(['models', 'convert-upscaler', '--from', upscalerPackageDir('esrgan-slim'), '--scale', '3', '--out', out], { from: 'user' });
    assert.match(printed, /@upscalerjs\/esrgan-slim@1\.0\.0 models\/x3\/model\.json/);
    const info = parseUpscalerInfo(readModelMetadata(fs.readFileSync(out)));
    assert.deepEqual(info, { scale: 3, inputRange: [0, 255], outputRange: [0, 255], source: '@upscalerjs/esrgan-slim@1.0.0 models/x3/model.json' });
    await assert.rejects(
      program.parseAsync(['models', 'convert-upscaler', '--from', upscalerPackageDir('esrgan-slim'), '--scale', '5', '--out', out], { from: 'user' }),
      /must be one of 2, 3, 4/,
    );
  });
});
