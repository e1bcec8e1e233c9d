/**
 * The safetensors format (huggingface/safetensors): an 8-byte little-endian unsigned header
 * length N, N bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets: [begin, end]}, …,
 * "__metadata__"?: {string: string}}`, then the tensor bytes (offsets relative to the byte after
 * the header), little-endian. Hand-written: npm's `safetensors` package is an unmaintained 0.0.1
 * placeholder, and the format is small enough to check completely here.
 *
 * Every malformed file fails with a {@link SafetensorsError} naming the file and what is wrong
 * (bad header length, bad JSON, offsets outside the data, overlapping or not tiling it, truncated
 * data, a dtype other than F16 / BF16 / F32, a shape that does not match the byte count).
 */
import fs from 'node:fs';
import { OrreryError } from '../../common/errors.js';
import { fromHalf } from '../onnx/float16.js';

export type SafetensorsDtype = 'F16' | 'BF16' | 'F32';
const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F16: 2, BF16: 2, F32: 4 };

/** Header sizes past this are refused (the reference implementation's limit is 100 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends OrreryError {
  constructor(readonly file: string, detail: string) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', `${file}: ${detail}`);
  }
}

export interface SafeTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** The values as float32 (F16/BF16 widened). */
  readonly data: Float32Array;
}

export interface SafetensorsFile {
  readonly tensors: ReadonlyMap<string, SafeTensor>;
  readonly metadata: Readonly<Record<string, string>>;
}

interface HeaderEntry { dtype: unknown; shape: unknown; data_offsets: unknown }

/** Parses safetensors bytes; `file` names the source in errors. */
export function parseSafetensors(bytes: Uint8Array, file: string): SafetensorsFile {
  const fail = (detail: string): never => { throw new SafetensorsError(file, detail); };
  if (bytes.length < 8) fail(`not a safetensors file: ${bytes.length} bytes, fewer than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`bad header length ${n} (more than ${MAX_HEADER_BYTES} bytes)`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.length) fail(`bad header length ${headerLen}: the file has only ${bytes.length - 8} bytes after the length field`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen))) as Record<string, unknown>;
  } catch (err) {
    return fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const raw = header['__metadata__'];
  if (raw !== undefined) {
    if (typeof raw !== 'object' || raw === null) fail('__metadata__ must be an object of strings');
    for (const [k, v] of Object.entries(raw as object)) {
      if (typeof v !== 'string') fail(`__metadata__.${k} must be a string`);
      metadata[k] = v as string;
    }
  }
  const tensors = new Map<string, SafeTensor>();
  const spans: Array<[number, number, string]> = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = value as HeaderEntry;
    const dtype = e?.dtype;
    if (dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F32') fail(`tensor "${name}": dtype ${JSON.stringify(dtype)} is not supported (F16, BF16 or F32)`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor "${name}": shape must be a list of non-negative integers`);
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      fail(`tensor "${name}": data_offsets must be [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    const width = DTYPE_BYTES[dtype as SafetensorsDtype];
    if (end - begin !== count * width) fail(`tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes; shape [${(shape as number[]).join(', ')}] of ${dtype as SafetensorsDtype} needs ${count * width}`);
    if (end > dataLen) fail(`truncated data: tensor "${name}" ends at byte ${end} of the data section, which has only ${dataLen} bytes`);
    spans.push([begin, end, name]);
    tensors.set(name, { dtype: dtype as SafetensorsDtype, shape: shape as number[], data: toFloat32(bytes.subarray(dataStart + begin, dataStart + end), dtype as SafetensorsDtype) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]![0] < spans[i - 1]![1]) fail(`tensors "${spans[i - 1]![2]}" and "${spans[i]![2]}" overlap in the data section`);
  }
  // As the reference implementation: the tensors tile the data section, no gap and nothing after.
  // Offsets that leave bytes unaccounted for are a header that lies about where its tensors are.
  let at = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== at) fail(`tensor "${name}": data_offsets begin at byte ${begin}, but the previous tensor ends at byte ${at} (the header's offsets must tile the data section)`);
    at = end;
  }
  if (at !== dataLen) fail(`the header's tensors cover ${at} bytes of the data section, but it holds ${dataLen} (offsets that do not match the data)`);
  return { tensors, metadata };
}

/**
 * Throws SafetensorsError naming the first tensor of `st` holding a NaN or infinite value (with
 * how many it holds and where the first is): weights like that turn every output into NaN.
 */
export function checkFiniteTensors(st: SafetensorsFile, file: string): void {
  for (const [name, t] of st.tensors) {
    let bad = 0;
    let first = -1;
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i]!)) {
        bad++;
        if (first < 0) first = i;
      }
    }
    if (bad) throw new SafetensorsError(file, `tensor "${name}": ${bad} of ${t.data.length} values are NaN or infinite (the first at index ${first}); such weights would make every image NaN`);
  }
}

/** Reads and parses a safetensors file. A missing file is a SafetensorsError too. */
export function readSafetensors(file: string): SafetensorsFile {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new SafetensorsError(file, `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseSafetensors(bytes, file);
}

function toFloat32(b: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dtype === 'F32') {
    const out = new Float32Array(b.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  const out = new Float32Array(b.length / 2);
  if (dtype === 'BF16') {
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < out.length; i++) { u[0] = view.getUint16(2 * i, true) << 16; out[i] = f[0]!; }
    return out;
  }
  for (let i = 0; i < out.length; i++) out[i] = fromHalf(view.getUint16(2 * i, true));
  return out;
}

/** Serialises tensors (F32 or F16 from float32 values) as safetensors bytes; keys sorted, as the reference writer does. */
export function encodeSafetensors(
  tensors: Readonly<Record<string, { data: Float32Array; shape: readonly number[]; dtype?: 'F32' | 'F16' }>>,
  metadata?: Readonly<Record<string, string>>,
  toHalf?: (v: Float32Array) => Uint16Array,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name]!;
    const dtype = t.dtype ?? 'F32';
    let bytes: Uint8Array;
    if (dtype === 'F16') {
      if (!toHalf) throw new RangeError('F16 tensors need a float16 converter');
      const h = toHalf(t.data);
      bytes = new Uint8Array(h.length * 2);
      const dv = new DataView(bytes.buffer);
      h.forEach((v, i) => dv.setUint16(2 * i, v, true));
    } else {
      bytes = new Uint8Array(t.data.length * 4);
      const dv = new DataView(bytes.buffer);
      t.data.forEach((v, i) => dv.setFloat32(4 * i, v, true));
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // The reference writer pads the header with spaces to a multiple of 8 bytes.
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
