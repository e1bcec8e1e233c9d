/**
 * LoRA fusion into one ONNX model: W' = W + scale · (alpha / rank) · (up @ down), written into the
 * weight initializers, so the served graph is the base graph (no adapter cost per step).
 *
 * Modules are found through the graph, not by guessing initializer names: every MatMul, Gemm and
 * Conv whose weight (input 1) is an initializer is indexed under
 * - the module of its node name (torch exports name nodes `/down_blocks.1/attentions.0/…/to_q/MatMul`,
 *   which is how a real Optimum export's `onnx::MatMul_1234` weights are found), and
 * - its initializer name without `.weight` (`….to_q.weight`, as the tiny bundle stores them),
 * both flattened (`.` and `/` → `_`) to meet kohya's flattened keys. The consuming op fixes the layout:
 * MatMul weights are [in, out] (torch's weight transposed) so (up @ down)ᵀ is added; Gemm with
 * transB = 1 and Conv weights keep torch's [out, in(, k, k)].
 *
 * FLOAT and FLOAT16 initializers are handled, inline or in external data (`model.onnx_data`): an
 * external tensor is read from its file and its fused bytes returned as a patch at the same offset,
 * for the caller to write into a copy of that file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { OrreryError } from '../../common/errors.js';
import { fromHalf, halfBits } from '../onnx/float16.js';
import { DataType, type ModelProto, type TensorProto } from '../onnx/onnx-model.js';
import type { LoraModule } from './lora-keys.js';

type Layout = 'in-out' | 'out-in' | 'conv';
interface Target { readonly init: TensorProto; readonly layout: Layout }

/** Bytes to write into an external data file at `offset`. */
export interface ExternalPatch { readonly location: string; readonly offset: number; readonly bytes: Uint8Array }

export interface FuseResult {
  /** Keys (as in the file) of the modules fused. */
  readonly fused: readonly string[];
  readonly unmatched: readonly LoraModule[];
  readonly patches: readonly ExternalPatch[];
}

export class LoraFusionError extends OrreryError {
  constructor(message: string) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', message);
  }
}

const flat = (s: string) => s.replace(/[./]/g, '_');

/** Flattened module name → the initializer a MatMul/Gemm/Conv reads as its weight. */
export function indexWeights(model: ModelProto): Map<string, Target> {
  const graph = model.graph ?? {};
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const index = new Map<string, Target>();
  const ambiguous = new Set<string>();
  const add = (key: string, target: Target) => {
    const seen = index.get(key);
    if (seen && seen.init !== target.init) ambiguous.add(key);
    else index.set(key, target);
  };
  for (const node of graph.node ?? []) {
    const op = node.op_type;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Conv') continue;
    const init = inits.get(node.input?.[1] ?? '');
    if (!init) continue;
    const transB = op === 'Gemm' && (node.attribute ?? []).some((a) => a.name === 'transB' && Number(a.i) === 1);
    const layout: Layout = op === 'Conv' ? 'conv' : transB ? 'out-in' : 'in-out';
    const target = { init, layout };
    const name = node.name ?? '';
    const slash = name.lastIndexOf('/');
    if (name.startsWith('/') && slash > 0) add(flat(name.slice(1, slash)), target);
    const iname = init.name ?? '';
    if (iname.endsWith('.weight')) add(flat(iname.slice(0, -'.weight'.length)), target);
  }
  for (const k of ambiguous) index.delete(k);
  return index;
}

/** A tensor's float values and a writer for new values in its own type and place (also used by the quantizer). */
export function access(t: TensorProto, modelDir: string): { values: Float32Array; write: (v: Float32Array) => ExternalPatch | undefined } {
  const type = t.data_type;
  if (type !== DataType.FLOAT && type !== DataType.FLOAT16) {
    throw new LoraFusionError(`initializer ${t.name}: data type ${type} cannot take a LoRA (FLOAT or FLOAT16 only)`);
  }
  const width = type === DataType.FLOAT ? 4 : 2;
  let raw: Uint8Array;
  let external: { location: string; offset: number } | undefined;
  if (t.data_location === 1) {
    const kv = Object.fromEntries((t.external_data ?? []).map((e) => [e.key, e.value]));
    const location = kv['location'] ?? '';
    const offset = Number(kv['offset'] ?? 0);
    const count = (t.dims ?? []).reduce((a, d) => a * Number(d), 1);
    const length = Number(kv['length'] ?? count * width);
    if (!location || location.includes('..') || path.isAbsolute(location)) throw new LoraFusionError(`initializer ${t.name}: bad external data location ${JSON.stringify(location)}`);
    raw = new Uint8Array(length);
    const fd = fs.openSync(path.join(modelDir, location), 'r');
    try {
      if (fs.readSync(fd, raw, 0, length, offset) !== length) throw new LoraFusionError(`initializer ${t.name}: ${location} is shorter than offset ${offset} + length ${length}`);
    } finally {
      fs.closeSync(fd);
    }
    external = { location, offset };
  } else if (t.raw_data && t.raw_data.length) {
    raw = t.raw_data;
  } else if (type === DataType.FLOAT && t.float_data) {
    raw = new Uint8Array(Float32Array.from(t.float_data).buffer);
  } else {
    throw new LoraFusionError(`initializer ${t.name}: no data to fuse into`);
  }
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.length / width;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = width === 4 ? dv.getFloat32(4 * i, true) : fromHalf(dv.getUint16(2 * i, true));
  const write = (v: Float32Array): ExternalPatch | undefined => {
    const out = new Uint8Array(n * width);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < n; i++) {
      if (width === 4) ov.setFloat32(4 * i, v[i]!, true);
      else ov.setUint16(2 * i, halfBits(v[i]!), true);
    }
    if (external) return { ...external, bytes: out };
    t.raw_data = out;
    delete t.float_data;
    return undefined;
  };
  return { values, write };
}

/**
 * Fuses `modules` (all of one component) into `model` in place (inline initializers) and returns
 * patches for external ones. `modelDir` is the folder external data locations are relative to.
 * Shape mismatches throw LoraFusionError naming the module; unmatched modules are returned.
 */
export function fuseLoraIntoModel(model: ModelProto, modelDir: string, modules: readonly LoraModule[], scale: number): FuseResult {
  const index = indexWeights(model);
  const fused: string[] = [];
  const unmatched: LoraModule[] = [];
  const patches: ExternalPatch[] = [];
  for (const m of modules) {
    const target = m.candidates.map((c) => index.get(c)).find((t) => t !== undefined);
    if (!target) { unmatched.push(m); continue; }
    const dims = (target.init.dims ?? []).map(Number);
    const [outF, inF, kSize] = fanOf(target.layout, dims);
    const r = m.rank;
    const downCols = m.down.data.length / r;
    const upRows = m.up.data.length / r;
    if (downCols !== inF * kSize || upRows !== outF) {
      throw new LoraFusionError(`LoRA module ${m.key}: down [${m.down.shape.join(', ')}] / up [${m.up.shape.join(', ')}] do not fit ${target.init.name} [${dims.join(', ')}] (${target.layout === 'in-out' ? 'MatMul, stored [in, out]' : target.layout === 'conv' ? 'Conv [out, in, kh, kw]' : 'Gemm [out, in]'})`);
    }
    const { values, write } = access(target.init, modelDir);
    const f = scale * (m.alpha / r);
    const cols = inF * kSize;
    const U = m.up.data;
    const D = m.down.data;
    for (let o = 0; o < outF; o++) {
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += U[o * r + k]! * D[k * cols + c]!;
        // [in, out] stores element (o, c) at c·out + o; [out, in(·k·k)] at o·cols + c.
        const at = target.layout === 'in-out' ? c * outF + o : o * cols + c;
        values[at]! += f * s;
      }
    }
    const patch = write(values);
    if (patch) patches.push(patch);
    fused.push(m.key);
  }
  return { fused, unmatched, patches };
}

/** [out features, in features, kernel elements] of a weight in `layout`. */
function fanOf(layout: Layout, dims: readonly number[]): [number, number, number] {
  if (layout === 'in-out') return [dims[1] ?? 0, dims[0] ?? 0, 1];
  if (layout === 'out-in') return [dims[0] ?? 0, dims[1] ?? 0, 1];
  return [dims[0] ?? 0, dims[1] ?? 0, dims.slice(2).reduce((a, d) => a * d, 1)];
}
