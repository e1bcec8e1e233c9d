/**
 * Reading a TensorFlow.js Layers model from disk: `model.json` (format `layers-model`: a Keras
 * functional topology plus a weights manifest) and its weight shards. Only what the converter
 * needs is typed; the topology stays plain JSON.
 *
 * Weights: each manifest group's shard files are concatenated in `paths` order, and the group's
 * weights lie back to back in that buffer, in manifest order, as little-endian float32 (the
 * TensorFlow.js converter's layout). Quantized or non-float32 weights are refused by name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { OrreryError } from '../../common/errors.js';

/** A model file could not be read or converted. `file` is the model.json (or shard) concerned. */
export class ModelConversionError extends OrreryError {
  readonly file: string;
  constructor(file: string, why: string, options?: { cause?: unknown }) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', `${file}: ${why}`, options);
    this.file = file;
  }
}

/** The model uses a layer type the converter does not know; names the type, layer and file. */
export class UnsupportedLayerError extends OrreryError {
  readonly file: string;
  readonly layerType: string;
  readonly layerName: string;
  constructor(file: string, layerType: string, layerName: string, supported: readonly string[]) {
    super('ORRERY_ERR_UNIMPLEMENTED',
      `${file}: unsupported layer type "${layerType}" (layer "${layerName}"); supported: ${supported.join(', ')}`);
    this.file = file;
    this.layerType = layerType;
    this.layerName = layerName;
  }
}

/** One inbound connection of a Keras functional layer: [layer name, node index, tensor index, kwargs]. */
export type InboundTensor = [string, number, number, Record<string, unknown>?];

export interface KerasLayer {
  readonly class_name: string;
  readonly name: string;
  readonly config: Readonly<Record<string, unknown>>;
  /** One entry per call of the layer; each call lists its input tensors. */
  readonly inbound_nodes: ReadonlyArray<ReadonlyArray<InboundTensor>>;
}

export interface WeightSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: string;
  readonly quantization?: unknown;
}

/** A weight tensor in TensorFlow's own layout (e.g. a Conv2D kernel is HWIO). */
export interface Weight {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface LayersModel {
  /** The model.json path, for error messages and provenance. */
  readonly file: string;
  /** Layers in the file's (topological) order. */
  readonly layers: readonly KerasLayer[];
  readonly inputLayers: readonly InboundTensor[];
  readonly outputLayers: readonly InboundTensor[];
  readonly weights: ReadonlyMap<string, Weight>;
}

interface KerasModelConfig {
  class_name?: string;
  config?: { layers?: KerasLayer[]; input_layers?: InboundTensor[]; output_layers?: InboundTensor[] };
}

interface ModelJson {
  format?: string;
  /** The Python converter nests the Keras config in `model_config`; tfjs's own `save()` does not. */
  modelTopology?: KerasModelConfig & { model_config?: KerasModelConfig };
  weightsManifest?: Array<{ paths: string[]; weights: WeightSpec[] }>;
}

function readWeights(file: string, manifest: NonNullable<ModelJson['weightsManifest']>): Map<string, Weight> {
  const weights = new Map<string, Weight>();
  const dir = path.dirname(file);
  for (const group of manifest) {
    const shards = group.paths.map((p) => {
      // Shard paths come from the file: keep them inside the model's folder.
      const shard = path.resolve(dir, p);
      if (path.dirname(shard) !== path.resolve(dir)) throw new ModelConversionError(file, `weight shard path "${p}" leaves the model folder`);
      try {
        return fs.readFileSync(shard);
      } catch (err) {
        throw new ModelConversionError(file, `reading weight shard ${p}: ${(err as Error).message}`, { cause: err });
      }
    });
    const bytes = Buffer.concat(shards);
    let offset = 0;
    for (const spec of group.weights) {
      if (spec.dtype !== 'float32' || spec.quantization) {
        throw new ModelConversionError(file, `weight ${spec.name}: only unquantized float32 weights are supported (dtype ${spec.dtype}${spec.quantization ? ', quantized' : ''})`);
      }
      const count = spec.shape.reduce((a, d) => a * d, 1);
      const end = offset + count * 4;
      if (end > bytes.length) throw new ModelConversionError(file, `weight ${spec.name} [${spec.shape.join(',')}] runs past the end of its shards (${bytes.length} bytes)`);
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = bytes.readFloatLE(offset + 4 * i);
      weights.set(spec.name, { shape: spec.shape, data });
      offset = end;
    }
    if (offset !== bytes.length) throw new ModelConversionError(file, `shards ${group.paths.join(', ')} hold ${bytes.length} bytes, the manifest describes ${offset}`);
  }
  return weights;
}

/** Reads `model.json` and its shards. Throws ModelConversionError naming the file on any problem. */
export function readLayersModel(file: string): LayersModel {
  let json: ModelJson;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as ModelJson;
  } catch (err) {
    throw new ModelConversionError(file, `not a readable JSON file: ${(err as Error).message}`, { cause: err });
  }
  const config = (json.modelTopology?.model_config ?? json.modelTopology)?.config;
  if (json.format !== undefined && json.format !== 'layers-model') {
    throw new ModelConversionError(file, `format "${json.format}" is not a TensorFlow.js Layers model (layers-model)`);
  }
  if (!config?.layers || !config.input_layers || !config.output_layers || !json.weightsManifest) {
    throw new ModelConversionError(file, 'missing modelTopology[.model_config].config.{layers,input_layers,output_layers} or weightsManifest (only functional Layers models are supported)');
  }
  return {
    file,
    layers: config.layers,
    inputLayers: config.input_layers,
    outputLayers: config.output_layers,
    weights: readWeights(file, json.weightsManifest),
  };
}
