/**
 * ONNX model files as plain objects: encode/decode with the upstream-compatible schema in
 * `onnx.proto` (loaded at run time with protobufjs, keeping upstream snake_case field names), and
 * a small typed {@link GraphBuilder} for models the project generates itself (demo models,
 * SDXL-shaped test bundles, fixtures).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import protobuf from 'protobufjs';
import { float32ToHalf } from './float16.js';

/** ONNX TensorProto.DataType numbers (upstream values). */
export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;
export type DataTypeName = keyof typeof DataType;

/** Bytes per element of the fixed-width types GraphBuilder can write as raw_data. */
const ELEMENT_BYTES: Partial<Record<DataTypeName, number>> = {
  FLOAT: 4, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, INT32: 4, INT64: 8, BOOL: 1,
  FLOAT16: 2, DOUBLE: 8, UINT32: 4, UINT64: 8, BFLOAT16: 2,
};

// Plain-object shapes of the messages (field names as upstream; a subset of what decode yields).
export interface StringStringEntry { key: string; value: string }
export interface TensorProto {
  name?: string; dims?: number[]; data_type?: number; raw_data?: Uint8Array;
  float_data?: number[]; int32_data?: number[]; int64_data?: number[]; double_data?: number[];
  external_data?: StringStringEntry[]; data_location?: number; doc_string?: string;
}
export interface TensorShapeDimension { dim_value?: number; dim_param?: string; denotation?: string }
export interface ValueInfoProto {
  name?: string;
  type?: { tensor_type?: { elem_type?: number; shape?: { dim?: TensorShapeDimension[] } }; denotation?: string };
  doc_string?: string;
}
export interface AttributeProto {
  name?: string; type?: number; f?: number; i?: number; s?: Uint8Array; t?: TensorProto;
  floats?: number[]; ints?: number[]; strings?: Uint8Array[]; tensors?: TensorProto[];
}
export interface NodeProto {
  input?: string[]; output?: string[]; name?: string; op_type?: string; domain?: string;
  attribute?: AttributeProto[]; doc_string?: string;
}
export interface GraphProto {
  name?: string; node?: NodeProto[]; initializer?: TensorProto[]; input?: ValueInfoProto[];
  output?: ValueInfoProto[]; value_info?: ValueInfoProto[]; doc_string?: string;
}
export interface OperatorSetId { domain?: string; version?: number }
export interface ModelProto {
  ir_version?: number; opset_import?: OperatorSetId[]; producer_name?: string; producer_version?: string;
  domain?: string; model_version?: number; doc_string?: string; graph?: GraphProto;
  metadata_props?: StringStringEntry[];
}

/**
 * The repository root: the nearest folder above this file holding package.json. Works from both
 * `services/models/onnx` (sources) and `dist/services/models/onnx` (compiled), where the .proto
 * is not copied.
 */
function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${__dirname}`);
  }
}

let modelType: protobuf.Type | undefined;
function modelProtoType(): protobuf.Type {
  if (!modelType) {
    const file = path.join(repoRoot(), 'services/models/onnx/onnx.proto');
    // keepCase: the objects read like upstream ONNX (raw_data, op_type), as in the Python API.
    const root = new protobuf.Root().loadSync(file, { keepCase: true });
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

/** Serialises a model object to ONNX protobuf bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  const t = modelProtoType();
  return t.encode(t.fromObject(model)).finish();
}

/**
 * Parses ONNX bytes into a plain object (int64 values as numbers; bytes fields stay views into
 * `bytes`). Fields outside this schema's subset are dropped (see onnx.proto).
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const t = modelProtoType();
  return t.toObject(t.decode(bytes), { longs: Number, enums: Number, arrays: true });
}

/** The data types a typed array carries by default. */
export type TensorData =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

function defaultDataType(data: TensorData): DataTypeName {
  if (data instanceof Float32Array) return 'FLOAT';
  if (data instanceof Float64Array) return 'DOUBLE';
  if (data instanceof Int8Array) return 'INT8';
  if (data instanceof Uint8Array) return 'UINT8';
  if (data instanceof Int16Array) return 'INT16';
  if (data instanceof Uint16Array) return 'UINT16';
  if (data instanceof Int32Array) return 'INT32';
  if (data instanceof Uint32Array) return 'UINT32';
  if (data instanceof BigInt64Array) return 'INT64';
  return 'UINT64';
}

/** Raw little-endian element bytes, as ONNX raw_data requires (a view on LE hosts, no copy). */
function littleEndianBytes(data: TensorData): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (os.endianness() === 'LE') return bytes;
  const swapped = new Uint8Array(bytes.length);
  const n = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += n) for (let b = 0; b < n; b++) swapped[i + b] = bytes[i + n - 1 - b]!;
  return swapped;
}

/**
 * A tensor as an ONNX TensorProto with raw_data. `elemType` overrides the typed array's own type
 * when the bits mean something else (Uint16Array holding FLOAT16/BFLOAT16 bits, Uint8Array BOOL);
 * its element width must match. Throws RangeError if the element count does not match `dims`.
 */
export function makeTensor(name: string, data: TensorData, dims: readonly number[], elemType?: DataTypeName): TensorProto {
  const type = elemType ?? defaultDataType(data);
  const width = ELEMENT_BYTES[type];
  if (width !== data.BYTES_PER_ELEMENT) {
    throw new RangeError(`tensor ${name}: ${type} cannot be stored from a ${data.constructor.name}`);
  }
  const count = dims.reduce((a, d) => a * d, 1);
  if (count !== data.length) throw new RangeError(`tensor ${name}: dims [${dims.join(',')}] need ${count} elements, got ${data.length}`);
  return { name, dims: [...dims], data_type: DataType[type], raw_data: littleEndianBytes(data) };
}

/** An attribute with an explicit type, for values plain inference gets wrong (e.g. `alpha: 1.0`). */
export type TypedAttribute =
  | { readonly attrType: 'FLOAT'; readonly value: number }
  | { readonly attrType: 'FLOATS'; readonly value: readonly number[] }
  | { readonly attrType: 'INT'; readonly value: number }
  | { readonly attrType: 'INTS'; readonly value: readonly number[] }
  | { readonly attrType: 'TENSOR'; readonly value: TensorProto };

/**
 * Node attribute values. Plain numbers are INT when integral, else FLOAT; number arrays are INTS
 * when all integral (also when empty), else FLOATS; strings are STRING(S). Use {@link Attr} to force.
 */
export type AttributeValue = number | string | readonly number[] | readonly string[] | TypedAttribute;

/** Explicitly typed attribute values. */
export const Attr = {
  float: (value: number): TypedAttribute => ({ attrType: 'FLOAT', value }),
  floats: (value: readonly number[]): TypedAttribute => ({ attrType: 'FLOATS', value }),
  int: (value: number): TypedAttribute => ({ attrType: 'INT', value }),
  ints: (value: readonly number[]): TypedAttribute => ({ attrType: 'INTS', value }),
  tensor: (data: TensorData, dims: readonly number[], elemType?: DataTypeName): TypedAttribute =>
    ({ attrType: 'TENSOR', value: makeTensor('', data, dims, elemType) }),
};

// AttributeProto.AttributeType numbers.
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

function makeAttribute(name: string, v: AttributeValue): AttributeProto {
  const utf8 = (s: string) => new TextEncoder().encode(s);
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: ATTR.INT, i: v } : { name, type: ATTR.FLOAT, f: v };
  if (typeof v === 'string') return { name, type: ATTR.STRING, s: utf8(v) };
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'string')) {
      if (v.length > 0) return { name, type: ATTR.STRINGS, strings: (v).map(utf8) };
    }
    const nums = v as number[];
    return nums.every(Number.isInteger) ? { name, type: ATTR.INTS, ints: [...nums] } : { name, type: ATTR.FLOATS, floats: [...nums] };
  }
  const t = v as TypedAttribute;
  switch (t.attrType) {
    case 'FLOAT': return { name, type: ATTR.FLOAT, f: t.value };
    case 'INT': return { name, type: ATTR.INT, i: t.value };
    case 'FLOATS': return { name, type: ATTR.FLOATS, floats: [...t.value] };
    case 'INTS': return { name, type: ATTR.INTS, ints: [...t.value] };
    case 'TENSOR': return { name, type: ATTR.TENSOR, t: t.value };
  }
}

/** A graph input/output type. String dims are symbolic (dynamic) axes, e.g. `'batch'`. */
export function makeValueInfo(name: string, elemType: DataTypeName, dims: ReadonlyArray<number | string>): ValueInfoProto {
  const dim = dims.map((d): TensorShapeDimension => (typeof d === 'string' ? { dim_param: d } : { dim_value: d }));
  return { name, type: { tensor_type: { elem_type: DataType[elemType], shape: { dim } } } };
}

/** IR version paired with an ai.onnx opset (onnx/docs/Versioning.md). */
function irVersionFor(opset: number): number {
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

export interface ModelOptions {
  readonly irVersion?: number;
  readonly producerName?: string;
  /** Opsets of other domains the nodes use (e.g. `com.microsoft`). */
  readonly extraOpsets?: readonly OperatorSetId[];
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * Builds an ONNX graph node by node. Names must be unique per kind (inputs, outputs,
 * initializers); nodes must be added in topological order, as ONNX requires. Not validated
 * beyond that: ONNX Runtime's loader is the checker.
 */
export class GraphBuilder {
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly nodes: NodeProto[] = [];
  private readonly names = new Set<string>();

  constructor(readonly name = 'graph') {}

  private claim(kind: string, name: string): void {
    const key = `${kind}:${name}`;
    if (this.names.has(key)) throw new RangeError(`duplicate ${kind} "${name}"`);
    this.names.add(key);
  }

  addInput(name: string, elemType: DataTypeName, dims: ReadonlyArray<number | string>): this {
    this.claim('input', name);
    this.inputs.push(makeValueInfo(name, elemType, dims));
    return this;
  }

  addOutput(name: string, elemType: DataTypeName, dims: ReadonlyArray<number | string>): this {
    this.claim('output', name);
    this.outputs.push(makeValueInfo(name, elemType, dims));
    return this;
  }

  /** A constant weight stored in raw_data (little-endian). The builder keeps a view on `data`. */
  addInitializer(name: string, data: TensorData, dims: readonly number[], elemType?: DataTypeName): this {
    this.claim('initializer', name);
    this.initializers.push(makeTensor(name, data, dims, elemType));
    return this;
  }

  /**
   * A float weight given as float32 values, stored as FLOAT or as FLOAT16 (values rounded to
   * nearest-even half precision, raw little-endian half bits, as fp16 exports store them).
   */
  addFloatInitializer(name: string, data: Float32Array, dims: readonly number[], elemType: 'FLOAT' | 'FLOAT16' = 'FLOAT'): this {
    return this.addInitializer(name, elemType === 'FLOAT16' ? float32ToHalf(data) : data, dims, elemType);
  }

  addNode(
    opType: string, inputs: readonly string[], outputs: readonly string[],
    attrs: Readonly<Record<string, AttributeValue>> = {}, opts: { name?: string; domain?: string } = {},
  ): this {
    const node: NodeProto = {
      op_type: opType, input: [...inputs], output: [...outputs],
      name: opts.name ?? `${opType}_${this.nodes.length}`,
      attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
    };
    if (opts.domain) node.domain = opts.domain;
    this.nodes.push(node);
    return this;
  }

  /** The model as a plain object (to edit further, e.g. move weights to external data). */
  toModel(opset = 17, options: ModelOptions = {}): ModelProto {
    return {
      ir_version: options.irVersion ?? irVersionFor(opset),
      producer_name: options.producerName ?? 'orrery',
      opset_import: [{ domain: '', version: opset }, ...(options.extraOpsets ?? [])],
      metadata_props: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name, node: this.nodes, initializer: this.initializers,
        input: this.inputs, output: this.outputs,
      },
    };
  }

  /** Serialised ONNX bytes for ai.onnx opset `opset`. */
  toBytes(opset = 17, options: ModelOptions = {}): Uint8Array {
    return encodeModel(this.toModel(opset, options));
  }
}
