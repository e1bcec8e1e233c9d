/**
 * A thin layer over {@link GraphBuilder} for writing the tiny SDXL graphs: unique intermediate
 * names, seeded weights in the bundle's float type, and the few blocks the graphs repeat (linear,
 * layer norm, SiLU). Weights are stored as an export stores them: a torch `Linear(in, out)` weight
 * becomes a MatMul initializer of shape [in, out] (transposed), named after the diffusers /
 * transformers module (`….to_q.weight`), so LoRA fusion can find it by name.
 */
import { GraphBuilder, type AttributeValue } from '../onnx/onnx-model.js';

export type TinyDtype = 'float32' | 'float16';

/**
 * Seeded uniform numbers: a per-tensor xoshiro128** state derived (splitmix32) from the bundle
 * seed and an FNV-1a hash of the tensor name, so each weight depends only on (seed, name), not
 * on the order tensors are created in. Integer arithmetic only: identical on every platform.
 */
export function uniformSource(seed: number, name: string): () => number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  let s = (seed ^ h) >>> 0;
  const next32 = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = next32();
  let b = next32();
  let c = next32();
  let d = next32();
  if ((a | b | c | d) === 0) a = 1;
  return () => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t;
    d = rotl(d, 11);
    return r / 4294967296;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** `n` values of mean 0 and standard deviation `std` (uniform, so no transcendental functions). */
export function randomValues(seed: number, name: string, n: number, std: number): Float32Array {
  const u = uniformSource(seed, name);
  const half = std * Math.sqrt(3);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * u() - 1) * half;
  return out;
}

/** A graph under construction in one float type. */
export class Net {
  readonly g: GraphBuilder;
  private count = 0;

  constructor(name: string, readonly dtype: TinyDtype, readonly seed: number) {
    this.g = new GraphBuilder(name);
  }

  /** ONNX type name of the float tensors. */
  get floatType(): 'FLOAT' | 'FLOAT16' {
    return this.dtype === 'float16' ? 'FLOAT16' : 'FLOAT';
  }

  /** Adds a node with one output named after `scope` and returns that name. */
  op(opType: string, inputs: readonly string[], scope: string, attrs: Readonly<Record<string, AttributeValue>> = {}): string {
    const id = this.count++;
    const out = `${scope}/${opType}_${id}_output_0`;
    this.g.addNode(opType, inputs, [out], attrs, { name: `${scope}/${opType}_${id}` });
    return out;
  }

  /** A float initializer from explicit float32 values. */
  constant(name: string, values: Float32Array, dims: readonly number[]): string {
    this.g.addFloatInitializer(name, values, dims, this.floatType);
    return name;
  }

  /** A float scalar constant (shape []), for Mul/Add/Pow operands. */
  scalar(name: string, value: number): string {
    return this.constant(name, Float32Array.of(value), []);
  }

  /** An int64 constant (shapes, axes, indices). */
  ints(name: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    this.g.addInitializer(name, BigInt64Array.from(values, (v) => BigInt(v)), dims);
    return name;
  }

  /** A seeded random weight with standard deviation `std`. */
  weight(name: string, dims: readonly number[], std: number): string {
    const n = dims.reduce((a, d) => a * d, 1);
    return this.constant(name, randomValues(this.seed, name, n, std), dims);
  }

  /** A weight filled with one value (norm scales = 1, biases = 0). */
  filled(name: string, dims: readonly number[], value: number): string {
    const n = dims.reduce((a, d) => a * d, 1);
    return this.constant(name, new Float32Array(n).fill(value), dims);
  }

  /**
   * `x @ W (+ b)` for a torch Linear(in, out) named `module`: `module.weight` [in, out] (Xavier-like
   * std `gain / √in`) and, when `bias`, `module.bias` [out] (zeros).
   */
  linear(x: string, module: string, inDim: number, outDim: number, opts: { bias?: boolean; gain?: number } = {}): string {
    const w = this.weight(`${module}.weight`, [inDim, outDim], (opts.gain ?? 1) / Math.sqrt(inDim));
    const y = this.op('MatMul', [x, w], `/${module}`);
    if (opts.bias === false) return y;
    return this.op('Add', [y, this.filled(`${module}.bias`, [outDim], 0)], `/${module}`);
  }

  /** LayerNormalization over the last axis with `module.weight` = 1 and `module.bias` = 0. */
  layerNorm(x: string, module: string, dim: number): string {
    const scale = this.filled(`${module}.weight`, [dim], 1);
    const bias = this.filled(`${module}.bias`, [dim], 0);
    return this.op('LayerNormalization', [x, scale, bias], `/${module}`, { axis: -1, epsilon: 1e-5 });
  }

  /**
   * Conv2d `module` (weight [out, in, k, k] with std `gain / √(in·k²)`, bias zeros), same padding.
   * `zeroMean` centres each output channel's kernel, so a constant input offset (SiLU's positive
   * mean) adds nothing to the output.
   */
  conv(x: string, module: string, inC: number, outC: number, k: number, gain = 1, zeroMean = false): string {
    const fan = inC * k * k;
    const values = randomValues(this.seed, `${module}.weight`, outC * fan, gain / Math.sqrt(fan));
    if (zeroMean) {
      for (let o = 0; o < outC; o++) {
        const row = values.subarray(o * fan, (o + 1) * fan);
        const mean = row.reduce((a, v) => a + v, 0) / fan;
        for (let i = 0; i < fan; i++) row[i]! -= mean;
      }
    }
    const w = this.constant(`${module}.weight`, values, [outC, inC, k, k]);
    const b = this.filled(`${module}.bias`, [outC], 0);
    const p = (k - 1) / 2;
    return this.op('Conv', [x, w, b], `/${module}`, { kernel_shape: [k, k], pads: [p, p, p, p] });
  }

  /**
   * GroupNorm over `groups` groups of [B, C, H, W], written as torch exported it before opset 18:
   * Reshape to [B, groups, -1], InstanceNormalization, Reshape back, then the per-channel affine
   * `module.weight` (ones) and `module.bias` (zeros), both [C].
   */
  groupNorm(x: string, module: string, channels: number, groups: number): string {
    const scope = `/${module}`;
    const grouped = this.op('Reshape', [x, this.ints(`${scope}/group_shape`, [0, groups, -1])], scope);
    const normed = this.op('InstanceNormalization', [grouped, this.filled(`${scope}/ones`, [groups], 1), this.filled(`${scope}/zeros`, [groups], 0)], scope, { epsilon: 1e-5 });
    const back = this.op('Reshape', [normed, this.op('Shape', [x], scope)], scope);
    const axes = this.ints(`${scope}/affine_axes`, [1, 2]);
    const scale = this.op('Unsqueeze', [this.filled(`${module}.weight`, [channels], 1), axes], scope);
    const bias = this.op('Unsqueeze', [this.filled(`${module}.bias`, [channels], 0), axes], scope);
    return this.op('Add', [this.op('Mul', [back, scale], scope), bias], scope);
  }

  /** SiLU as an export writes it: x · sigmoid(x). */
  silu(x: string, scope: string): string {
    return this.op('Mul', [x, this.op('Sigmoid', [x], scope)], scope);
  }

  /** CLIP's QuickGELU: x · sigmoid(1.702 x). */
  quickGelu(x: string, scope: string, constName: string): string {
    const k = this.scalar(constName, 1.702);
    return this.op('Mul', [x, this.op('Sigmoid', [this.op('Mul', [x, k], scope)], scope)], scope);
  }

  /** Marks `value` as graph output `name` (through Identity, as exports name outputs). */
  output(value: string, name: string, elemType: 'FLOAT' | 'FLOAT16' | 'INT64', dims: ReadonlyArray<number | string>): void {
    this.g.addNode('Identity', [value], [name], {}, { name: `/${name}/Identity` });
    this.g.addOutput(name, elemType, dims);
  }
}
