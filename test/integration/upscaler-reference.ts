/**
 * Test and benchmark helpers for the upscaler: the ORIGINAL UpscalerJS models evaluated with
 * TensorFlow.js (pure-JS cpu backend, dev dependency only), the committed photographs, and the
 * 8-bit comparison the exactness criterion is stated in.
 */
import fs from 'node:fs';
import path from 'node:path';
import type * as TfCore from '@tensorflow/tfjs-core';
import type * as TfLayers from '@tensorflow/tfjs-layers';
import sharp from 'sharp';
import { packageRoot } from '../../services/common/package-root.js';
import { readPackageDefinition } from '../../services/models/upscaler/convert-upscaler.js';
import type { UpscalerModelInfo } from '../../services/models/upscaler/upscaler-metadata.js';

/** The three UpscalerJS ESRGAN packages. */
export const UPSCALER_PACKAGES = ['esrgan-slim', 'esrgan-medium', 'esrgan-thick'] as const;

export function upscalerPackageDir(pkg: string): string {
  return path.join(packageRoot(), 'node_modules', '@upscalerjs', pkg);
}

/** The committed photographs (test/fixtures/photos; see its README for sources and licences). */
export function photoPath(name: string): string {
  return path.join(packageRoot(), 'test', 'fixtures', 'photos', `${name}.png`);
}
export const PHOTOS = ['astronaut-face', 'astronaut-patch', 'chelsea', 'coffee', 'rocket'] as const;

export interface RgbImage { readonly data: Uint8Array; readonly width: number; readonly height: number }

/** An image file (or a crop of it) as interleaved RGB bytes, alpha dropped. */
export async function loadImageFile(file: string, crop?: { left: number; top: number; width: number; height: number }): Promise<RgbImage> {
  let img = sharp(file).removeAlpha();
  if (crop) img = img.extract(crop);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

/** One of the committed photos (or a crop of it). */
export function loadPhoto(name: string, crop?: { left: number; top: number; width: number; height: number }): Promise<RgbImage> {
  return loadImageFile(photoPath(name), crop);
}

let tfLoaded: { tf: typeof TfCore; tfl: typeof TfLayers } | undefined;
/** TensorFlow.js on its cpu backend, loaded on first use (it is a dev dependency only). */
export async function tfjs(): Promise<{ tf: typeof TfCore; tfl: typeof TfLayers }> {
  if (!tfLoaded) {
    const tf = require('@tensorflow/tfjs-core') as typeof TfCore;
    require('@tensorflow/tfjs-backend-cpu');
    const tfl = require('@tensorflow/tfjs-layers') as typeof TfLayers;
    tf.env().set('PROD', true); // no "install tfjs-node" banner, no debug checks
    await tf.setBackend('cpu');
    tfLoaded = { tf, tfl };
  }
  return tfLoaded;
}

/** A file-system IOHandler: loads model.json + shards (manifest order), saves one shard. */
export function fileIoHandler(modelJson: string): TfCore.io.IOHandler {
  const dir = path.dirname(modelJson);
  return {
    async load() {
      const json = JSON.parse(fs.readFileSync(modelJson, 'utf8')) as TfCore.io.ModelJSON;
      const specs: TfCore.io.WeightsManifestEntry[] = [];
      const shards: Buffer[] = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) shards.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(shards);
      return {
        modelTopology: json.modelTopology, weightSpecs: specs, format: json.format,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
    async save(artifacts) {
      const weights = artifacts.weightData as ArrayBuffer;
      fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), new Uint8Array(weights));
      fs.writeFileSync(modelJson, JSON.stringify({
        format: 'layers-model', generatedBy: 'orrery tests', convertedBy: null, modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: artifacts.weightSpecs }],
      }));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
  };
}

export interface TfjsUpscaler {
  readonly info: UpscalerModelInfo;
  readonly model: TfLayers.LayersModel;
  /** Runs the original model on RGB bytes; returns its raw NHWC output [h·s, w·s, 3]. */
  predict(img: RgbImage): Promise<Float32Array>;
}

/**
 * The original model of an UpscalerJS package at `scale`, set up the way UpscalerJS does it: the
 * package's own definition registers its custom layers (MultiplyBeta, PixelShuffle<N>x) and gives
 * the input range the pixels are mapped to.
 */
export async function loadTfjsUpscaler(pkg: string, scale: number): Promise<TfjsUpscaler> {
  const { tf, tfl } = await tfjs();
  const dir = upscalerPackageDir(pkg);
  const { modelJson, info } = readPackageDefinition(dir, scale);
  const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { exports: Record<string, { require: string }> };
  const entry = pj.exports[`./${scale}x`];
  if (!entry) throw new Error(`${dir}: no ./${scale}x export`);
  const mod = require(path.resolve(dir, entry.require)) as { setup?: (tf: unknown) => void; default?: { setup?: (tf: unknown) => void } };
  (mod.default ?? mod).setup?.({ ...tf, layers: tfl.layers, serialization: tf.serialization });
  const model = await tfl.loadLayersModel(fileIoHandler(modelJson));
  const [lo, hi] = info.inputRange;
  return {
    info, model,
    async predict(img) {
      const x = new Float32Array(img.data.length);
      for (let i = 0; i < x.length; i++) x[i] = lo + (img.data[i]! / 255) * (hi - lo);
      const input = tf.tensor4d(x, [1, img.height, img.width, 3]);
      const out = model.predict(input) as TfCore.Tensor;
      const data = await out.data() as Float32Array;
      input.dispose();
      out.dispose();
      return data;
    },
  };
}

/** Model output → 8-bit as the upscaler stage quantises it (range mapped to 0…255, clamped, rounded). */
export function toByte(v: number, range: readonly [number, number]): number {
  const b = Math.round(((v - range[0]) / (range[1] - range[0])) * 255);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

export interface ByteComparison { readonly values: number; readonly equal: number; readonly maxDiff: number }

/** Compares two outputs after 8-bit rounding: `a` NHWC, `b` NCHW, both [s·h, s·w, 3]. */
export function compareBytes(a: Float32Array, b: Float32Array, width: number, height: number, range: readonly [number, number]): ByteComparison {
  const plane = width * height;
  let equal = 0;
  let maxDiff = 0;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(toByte(a[p * 3 + c]!, range) - toByte(b[c * plane + p]!, range));
      if (d === 0) equal++;
      if (d > maxDiff) maxDiff = d;
    }
  }
  return { values: plane * 3, equal, maxDiff };
}

/** Interleaved RGB bytes → NCHW float32 in `range`, the converted model's input. */
export function toNchw(img: RgbImage, range: readonly [number, number]): Float32Array {
  const plane = img.width * img.height;
  const out = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = range[0] + (img.data[p * 3 + c]! / 255) * (range[1] - range[0]);
  }
  return out;
}
