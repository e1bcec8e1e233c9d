/**
 * The upscaler converter: a TensorFlow.js Layers super-resolution model (UpscalerJS's ESRGAN
 * packages: idealo ISR's RDN and RRDN trained on DIV2K) → an equivalent ONNX model.
 *
 * The ONNX model computes exactly the Keras graph, in NCHW:
 * - input `input` float32 [batch, 3, height, width], RGB, values in the package's input range;
 * - output `output` float32 [batch, 3, height·scale, width·scale], RGB, in its output range,
 *   unclamped (as the original: the caller clamps when it quantises).
 * The ranges come from the package's own model definition — RDN (esrgan-slim, esrgan-medium)
 * takes and gives 0–255, RRDN (esrgan-thick) 0–1 — and are recorded with the scale in the
 * model's metadata (see upscaler-metadata.ts), which the upscaler stage reads.
 */
import fs from 'node:fs';
import path from 'node:path';
import { GraphBuilder } from '../onnx/onnx-model.js';
import { converterFor, supportedLayerTypes, type ConvertContext } from './layer-converters.js';
import { type LayersModel, ModelConversionError, readLayersModel, UnsupportedLayerError, type Weight } from './tfjs-layers-model.js';
import { upscalerMetadata, type UpscalerModelInfo } from './upscaler-metadata.js';

/** Scales the converter accepts (the ones UpscalerJS's ESRGAN packages ship and the tests cover). */
export const UPSCALER_SCALES = [2, 3, 4] as const;
/** ai.onnx opset of converted models. */
const OPSET = 17;

export interface ConvertUpscalerOptions {
  /** An UpscalerJS model package directory, e.g. node_modules/@upscalerjs/esrgan-slim. */
  readonly from: string;
  readonly scale: number;
  /** The ONNX file to write (parent folders are created). */
  readonly out: string;
}

export interface ConvertedUpscaler {
  readonly file: string;
  readonly info: UpscalerModelInfo;
  /** The model.json converted. */
  readonly source: string;
  readonly layers: number;
  readonly bytes: number;
}

/**
 * Converts a layers model already read from disk. `info` is recorded as metadata. Throws
 * UnsupportedLayerError naming an unknown layer type, ModelConversionError for anything else.
 */
export function convertLayersModel(model: LayersModel, info: UpscalerModelInfo): Uint8Array {
  const { file } = model;
  const graph = new GraphBuilder(path.basename(path.dirname(file)) || 'upscaler');
  const used = new Set<string>(['input', 'output']);
  const fresh = (base: string): string => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  const scalars = new Map<number, string>();
  const usedWeights = new Set<string>();
  const ctx: ConvertContext = {
    graph, file, fresh,
    weight(layer, kind): Weight {
      const key = `${layer.name}/${kind}`;
      const name = model.weights.has(key) ? key : [...model.weights.keys()].find((k) => k.endsWith(`/${key}`));
      if (!name) throw new ModelConversionError(file, `layer "${layer.name}" (${layer.class_name}): no weight ${key} in the manifest`);
      usedWeights.add(name);
      return model.weights.get(name)!;
    },
    scalar(value): string {
      let name = scalars.get(value);
      if (!name) {
        name = fresh(`const_${scalars.size}`);
        graph.addInitializer(name, new Float32Array([value]), []);
        scalars.set(value, name);
      }
      return name;
    },
  };

  if (model.inputLayers.length !== 1 || model.outputLayers.length !== 1) {
    throw new ModelConversionError(file, `expected one input and one output, got ${model.inputLayers.length} and ${model.outputLayers.length}`);
  }
  graph.addInput('input', 'FLOAT', ['batch', 3, 'height', 'width']);
  const tensors = new Map<string, string>();
  for (const layer of model.layers) {
    if (layer.class_name === 'InputLayer') {
      const shape = layer.config['batch_input_shape'] as unknown[] | undefined;
      if (layer.name !== model.inputLayers[0]?.[0] || shape?.length !== 4 || shape[3] !== 3) {
        throw new ModelConversionError(file, `input layer "${layer.name}" must be the model input with shape [batch, h, w, 3], got ${JSON.stringify(shape)}`);
      }
      tensors.set(layer.name, 'input');
      continue;
    }
    const convert = converterFor(layer.class_name);
    if (!convert) throw new UnsupportedLayerError(file, layer.class_name, layer.name, supportedLayerTypes());
    const [call] = layer.inbound_nodes;
    if (call === undefined || layer.inbound_nodes.length !== 1) {
      throw new ModelConversionError(file, `layer "${layer.name}" is called ${layer.inbound_nodes.length} times; only layers called once are supported`);
    }
    const inputs = call.map(([name, node, index]) => {
      const t = tensors.get(name);
      if (!t || node !== 0 || index !== 0) throw new ModelConversionError(file, `layer "${layer.name}" reads ${name}[${node}][${index}], which is not an earlier single-output layer`);
      return t;
    });
    const [first, ...rest] = inputs;
    if (first === undefined) throw new ModelConversionError(file, `layer "${layer.name}" has no inputs`);
    const output = fresh(layer.name);
    convert(ctx, layer, [first, ...rest], output);
    tensors.set(layer.name, output);
  }
  const outputName = model.outputLayers[0]?.[0] ?? '';
  const last = tensors.get(outputName);
  if (!last) throw new ModelConversionError(file, `output layer "${outputName}" is not in the topology`);
  graph.addNode('Identity', [last], ['output']).addOutput('output', 'FLOAT', ['batch', 3, 'out_height', 'out_width']);

  const unused = [...model.weights.keys()].filter((k) => !usedWeights.has(k));
  if (unused.length > 0) throw new ModelConversionError(file, `weights not used by any converted layer: ${unused.slice(0, 5).join(', ')}${unused.length > 5 ? ', …' : ''}`);
  return graph.toBytes(OPSET, { producerName: 'orrery convert-upscaler', metadata: upscalerMetadata(info) });
}

interface PackageDefinition {
  scale?: unknown; modelType?: unknown; inputRange?: unknown; outputRange?: unknown;
  _internals?: { path?: unknown };
}

function isRange(v: unknown): v is [number, number] {
  return Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) && v[0] < v[1];
}

/**
 * The model file and contract of `<packageDir>` at `scale`, from the package's own model
 * definition: its `./<scale>x` CommonJS export (plain JS, no dependencies), loaded with
 * `require` exactly as UpscalerJS would load it. Only point `from` at packages you trust.
 */
export function readPackageDefinition(packageDir: string, scale: number): { modelJson: string; info: UpscalerModelInfo } {
  const pjFile = path.join(packageDir, 'package.json');
  let pj: { name?: string; version?: string; exports?: Record<string, unknown> };
  try {
    pj = JSON.parse(fs.readFileSync(pjFile, 'utf8')) as typeof pj;
  } catch (err) {
    throw new ModelConversionError(pjFile, `not an npm package directory: ${(err as Error).message}`, { cause: err });
  }
  const entry = pj.exports?.[`./${scale}x`];
  const rel = typeof entry === 'string' ? entry : (entry as { require?: unknown } | undefined)?.require;
  if (typeof rel !== 'string') {
    const scales = Object.keys(pj.exports ?? {}).filter((k) => /^\.\/\d+x$/.test(k)).join(', ');
    throw new ModelConversionError(pjFile, `no CommonJS export ./${scale}x (model definitions exported: ${scales || 'none'})`);
  }
  const defFile = path.resolve(packageDir, rel);
  let def: PackageDefinition;
  try {
    const mod = require(defFile) as PackageDefinition & { default?: PackageDefinition };
    def = mod.default ?? mod;
  } catch (err) {
    throw new ModelConversionError(defFile, `loading the model definition: ${(err as Error).message}`, { cause: err });
  }
  if (def.modelType !== 'layers' || def.scale !== scale || !isRange(def.inputRange) || !isRange(def.outputRange)) {
    throw new ModelConversionError(defFile, `not a ${scale}x layers-model definition with inputRange/outputRange (modelType ${String(def.modelType)}, scale ${String(def.scale)})`);
  }
  const modelRel = typeof def._internals?.path === 'string' ? def._internals.path : `models/x${scale}/model.json`;
  const modelJson = path.resolve(packageDir, modelRel);
  if (path.relative(path.resolve(packageDir), modelJson).startsWith('..')) {
    throw new ModelConversionError(defFile, `model path ${modelRel} leaves the package directory`);
  }
  return {
    modelJson,
    info: { scale, inputRange: def.inputRange, outputRange: def.outputRange, source: `${pj.name}@${pj.version} ${modelRel}` },
  };
}

/** Converts UpscalerJS package `from` at `scale` into the ONNX file `out` (written atomically). */
export async function convertUpscaler(options: ConvertUpscalerOptions): Promise<ConvertedUpscaler> {
  if (!(UPSCALER_SCALES as readonly number[]).includes(options.scale)) {
    throw new ModelConversionError(options.from, `scale must be one of ${UPSCALER_SCALES.join(', ')}, got ${options.scale}`);
  }
  const { modelJson, info } = readPackageDefinition(options.from, options.scale);
  const model = readLayersModel(modelJson);
  const bytes = convertLayersModel(model, info);
  await fs.promises.mkdir(path.dirname(path.resolve(options.out)), { recursive: true });
  const tmp = `${options.out}.${process.pid}.tmp`;
  await fs.promises.writeFile(tmp, bytes);
  await fs.promises.rename(tmp, options.out);
  return { file: options.out, info, source: modelJson, layers: model.layers.length, bytes: bytes.length };
}
