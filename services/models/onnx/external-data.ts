/**
 * ONNX external data: large initializers stored in a side file next to the model (how exports past
 * protobuf's 2 GB limit, such as SDXL's UNet, ship: `unet/model.onnx` + `unet/model.onnx_data`).
 * Each moved TensorProto keeps its name, type and dims, loses raw_data, and gets
 * `data_location = EXTERNAL` with `external_data` entries `location`, `offset`, `length`
 * (onnx/docs/ExternalData.md). ONNX Runtime resolves `location` relative to the model file's
 * folder, so such a model must be loaded from its path, not from bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ModelProto, TensorProto } from './onnx-model.js';

/** TensorProto.DataLocation.EXTERNAL */
const EXTERNAL = 1;

export interface ExternalDataOptions {
  /** The side file's name, relative to the model file (Optimum writes `model.onnx_data`). */
  readonly location: string;
  /** Initializers with fewer raw bytes stay inline (onnx's `convert_model_to_external_data` default: 1024). */
  readonly sizeThresholdBytes?: number;
  /** Each tensor starts at a multiple of this many bytes in the side file (default 64). */
  readonly alignBytes?: number;
}

/**
 * The copy of `model` whose graph initializers of at least `sizeThresholdBytes` refer to the side
 * file `location`; `place(bytes, offset)` stores each moved tensor's bytes (tensors in initializer
 * order, each aligned). Returns the copy and the side file's length.
 */
function externalize(model: ModelProto, options: ExternalDataOptions, place: (bytes: Uint8Array, offset: number) => void): { model: ModelProto; length: number } {
  const { location } = options;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(location)) throw new RangeError(`external data location must be a plain file name, got ${JSON.stringify(location)}`);
  const threshold = options.sizeThresholdBytes ?? 1024;
  const align = options.alignBytes ?? 64;
  const graph = model.graph ?? {};
  let end = 0;
  const initializer = (graph.initializer ?? []).map((t): TensorProto => {
    const raw = t.raw_data;
    if (!raw || raw.length < threshold) return t;
    const offset = Math.ceil(end / align) * align;
    place(raw, offset);
    end = offset + raw.length;
    const { raw_data: _moved, ...rest } = t;
    return {
      ...rest,
      data_location: EXTERNAL,
      external_data: [
        { key: 'location', value: location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.length) },
      ],
    };
  });
  return { model: { ...model, graph: { ...graph, initializer } }, length: end };
}

/**
 * A copy of `model` whose graph initializers of at least `sizeThresholdBytes` live in one external
 * file, and that file's bytes (tensors in initializer order). `model` itself is not modified.
 * Throws if `location` is not a plain file name.
 */
export function moveInitializersToExternalData(model: ModelProto, options: ExternalDataOptions): { model: ModelProto; data: Uint8Array } {
  const parts: Array<{ offset: number; bytes: Uint8Array }> = [];
  const moved = externalize(model, options, (bytes, offset) => parts.push({ offset, bytes }));
  const data = new Uint8Array(moved.length);
  for (const p of parts) data.set(p.bytes, p.offset);
  return { model: moved.model, data };
}

/**
 * Makes an external initializer inline (raw_data), whatever its type, reading `location` relative
 * to `modelDir`; inline initializers are left alone. Throws if the location is not a plain relative
 * path inside the folder or the file is too short.
 */
export function inlineExternalData(t: TensorProto, modelDir: string): void {
  if (t.data_location !== EXTERNAL) return;
  const kv = Object.fromEntries((t.external_data ?? []).map((e) => [e.key, e.value]));
  const location = kv['location'] ?? '';
  if (!location || location.includes('..') || path.isAbsolute(location)) throw new Error(`initializer ${t.name}: bad external data location ${JSON.stringify(location)}`);
  const offset = Number(kv['offset'] ?? 0);
  const length = Number(kv['length']);
  const bytes = new Uint8Array(length);
  const fd = fs.openSync(path.join(modelDir, location), 'r');
  try {
    if (fs.readSync(fd, bytes, 0, length, offset) !== length) throw new Error(`initializer ${t.name}: ${location} is too short`);
  } finally {
    fs.closeSync(fd);
  }
  delete t.external_data;
  delete t.data_location;
  t.raw_data = bytes;
}

/**
 * Like {@link moveInitializersToExternalData}, but writes the side file `dataFile` tensor by tensor
 * instead of building it in memory: an SDXL UNet's weights (5 GB in float16) do not fit one Node
 * buffer. `location` is the file's base name. Returns the model copy that refers to it.
 */
export function writeInitializersToExternalFile(model: ModelProto, dataFile: string, options: Omit<ExternalDataOptions, 'location'> = {}): ModelProto {
  const location = path.basename(dataFile);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(location)) throw new RangeError(`external data file name must be plain, got ${JSON.stringify(location)}`);
  const fd = fs.openSync(dataFile, 'w');
  try {
    return externalize(model, { ...options, location }, (bytes, offset) => fs.writeSync(fd, bytes, 0, bytes.length, offset)).model;
  } finally {
    fs.closeSync(fd);
  }
}
