/**
 * Keras layer → ONNX node translations, one entry per layer class. The ONNX graph works in NCHW
 * (ONNX Runtime's native conv layout) while the Keras graph is NHWC, so channel axes and kernel
 * layouts are remapped here once and no Transpose is ever emitted.
 *
 * Each translation reproduces TensorFlow.js's arithmetic, not just the layer's intent: e.g.
 * `UpSampling2D` is tfjs's resizeNearestNeighbor (asymmetric, floor), and PixelShuffle is
 * `tf.depthToSpace` (DCR order, which is also ONNX DepthToSpace's default).
 */
import { Attr, type GraphBuilder } from '../onnx/onnx-model.js';
import { type KerasLayer, ModelConversionError, type Weight } from './tfjs-layers-model.js';

export interface ConvertContext {
  readonly graph: GraphBuilder;
  /** The model.json, for errors. */
  readonly file: string;
  /** The layer's weight `<layer>/<kind>` (kernel, bias). Throws naming the layer if missing. */
  weight(layer: KerasLayer, kind: string): Weight;
  /** A tensor name not used yet, derived from `base`. */
  fresh(base: string): string;
  /** A float32 scalar initializer holding `value` (deduplicated). */
  scalar(value: number): string;
}

/** Writes the nodes for `layer` reading `inputs` (a layer has at least one) and producing the tensor named `output`. */
export type LayerConverter = (ctx: ConvertContext, layer: KerasLayer, inputs: readonly [string, ...string[]], output: string) => void;

function fail(ctx: ConvertContext, layer: KerasLayer, why: string): never {
  throw new ModelConversionError(ctx.file, `layer "${layer.name}" (${layer.class_name}): ${why}`);
}

function pair(ctx: ConvertContext, layer: KerasLayer, key: string, def: number): [number, number] {
  const v = layer.config[key] ?? def;
  const p = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isInteger(x) && x >= 1)) {
    fail(ctx, layer, `${key} must be a positive integer or a pair of them, got ${JSON.stringify(v)}`);
  }
  return [p[0] as number, p[1] as number];
}

function requireChannelsLast(ctx: ConvertContext, layer: KerasLayer): void {
  const f = layer.config['data_format'] ?? 'channels_last';
  if (f !== 'channels_last') fail(ctx, layer, `data_format ${JSON.stringify(f)} is not supported (only channels_last)`);
}

/** Keras activation names → a node (or two) from `input` to `output`. */
function activation(ctx: ConvertContext, layer: KerasLayer, name: unknown, input: string, output: string): void {
  const g = ctx.graph;
  switch (name ?? 'linear') {
    case 'linear': g.addNode('Identity', [input], [output]); return;
    case 'relu': g.addNode('Relu', [input], [output]); return;
    case 'relu6': g.addNode('Clip', [input, ctx.scalar(0), ctx.scalar(6)], [output]); return;
    case 'sigmoid': g.addNode('Sigmoid', [input], [output]); return;
    case 'tanh': g.addNode('Tanh', [input], [output]); return;
    case 'elu': g.addNode('Elu', [input], [output], { alpha: Attr.float(1) }); return;
    case 'softplus': g.addNode('Softplus', [input], [output]); return;
    case 'swish': {
      const s = ctx.fresh(`${layer.name}_sigmoid`);
      g.addNode('Sigmoid', [input], [s]).addNode('Mul', [input, s], [output]);
      return;
    }
    default: fail(ctx, layer, `unsupported activation ${JSON.stringify(name)} (supported: linear, relu, relu6, sigmoid, tanh, elu, softplus, swish)`);
  }
}

/** Folds a binary ONNX op over n ≥ 2 inputs, left to right (Keras merge layers' order). */
function fold(ctx: ConvertContext, layer: KerasLayer, op: string, inputs: readonly [string, ...string[]], output: string): void {
  if (inputs.length < 2) fail(ctx, layer, `needs at least 2 inputs, got ${inputs.length}`);
  const [first, ...rest] = inputs;
  let acc = first;
  rest.forEach((input, k) => {
    const out = k === rest.length - 1 ? output : ctx.fresh(`${layer.name}_${k + 1}`);
    ctx.graph.addNode(op, [acc, input], [out]);
    acc = out;
  });
}

/** NHWC axis (Keras, possibly negative) → NCHW axis (ONNX), for rank-4 tensors. */
function nchwAxis(ctx: ConvertContext, layer: KerasLayer, axis: unknown): number {
  const a = typeof axis === 'number' ? (axis < 0 ? axis + 4 : axis) : NaN;
  const nchw = Number.isInteger(a) ? [0, 2, 3, 1][a] : undefined;
  if (nchw === undefined) fail(ctx, layer, `axis ${JSON.stringify(axis)} is not an axis of a rank-4 tensor`);
  return nchw;
}

const conv2d: LayerConverter = (ctx, layer, inputs, output) => {
  requireChannelsLast(ctx, layer);
  const c = layer.config;
  const [kh, kw] = pair(ctx, layer, 'kernel_size', 1);
  const strides = pair(ctx, layer, 'strides', 1);
  const dilations = pair(ctx, layer, 'dilation_rate', 1);
  // Grouped convolutions (Keras `groups`) never occur in the packages; refuse rather than guess.
  if ((c['groups'] ?? 1) !== 1) fail(ctx, layer, `groups ${JSON.stringify(c['groups'])} is not supported (1)`);
  const kernel = ctx.weight(layer, 'kernel');
  const [h, w, cin, cout] = kernel.shape;
  if (kernel.shape.length !== 4 || h !== kh || w !== kw || cin === undefined || cout === undefined) fail(ctx, layer, `kernel shape [${kernel.shape.join(',')}] does not match kernel_size ${kh}x${kw}`);
  // HWIO → OIHW: out[o][i][y][x] = in[y][x][i][o].
  const oihw = new Float32Array(kernel.data.length);
  for (let y = 0; y < kh; y++) {
    for (let x = 0; x < kw; x++) {
      for (let i = 0; i < cin; i++) {
        for (let o = 0; o < cout; o++) oihw[((o * cin + i) * kh + y) * kw + x] = kernel.data[((y * kw + x) * cin + i) * cout + o]!;
      }
    }
  }
  const wName = ctx.fresh(`${layer.name}_W`);
  ctx.graph.addInitializer(wName, oihw, [cout, cin, kh, kw]);
  const convInputs = [inputs[0], wName];
  if (c['use_bias'] !== false) {
    const bias = ctx.weight(layer, 'bias');
    const bName = ctx.fresh(`${layer.name}_B`);
    ctx.graph.addInitializer(bName, bias.data, [cout]);
    convInputs.push(bName);
  }
  const attrs: Record<string, ReturnType<typeof Attr.ints> | string | number> = {
    kernel_shape: Attr.ints([kh, kw]), strides: Attr.ints(strides), dilations: Attr.ints(dilations),
  };
  const padding = c['padding'] ?? 'valid';
  if (padding === 'valid') {
    attrs['pads'] = Attr.ints([0, 0, 0, 0]);
  } else if (padding === 'same') {
    if (strides[0] === 1 && strides[1] === 1) {
      // TensorFlow pads (k-1)·d in total, the odd pixel at the end: static pads say so exactly.
      const th = (kh - 1) * dilations[0];
      const tw = (kw - 1) * dilations[1];
      attrs['pads'] = Attr.ints([th >> 1, tw >> 1, th - (th >> 1), tw - (tw >> 1)]);
    } else {
      // With strides the total depends on the input size: SAME_UPPER is TensorFlow's rule.
      attrs['auto_pad'] = 'SAME_UPPER';
    }
  } else {
    fail(ctx, layer, `padding ${JSON.stringify(padding)} is not supported (same, valid)`);
  }
  const act = c['activation'] ?? 'linear';
  const convOut = act === 'linear' ? output : ctx.fresh(`${layer.name}_preact`);
  ctx.graph.addNode('Conv', convInputs, [convOut], attrs, { name: layer.name });
  if (act !== 'linear') activation(ctx, layer, act, convOut, output);
};

const upSampling2d: LayerConverter = (ctx, layer, inputs, output) => {
  requireChannelsLast(ctx, layer);
  const [sy, sx] = pair(ctx, layer, 'size', 2);
  const interpolation = layer.config['interpolation'] ?? 'nearest';
  if (interpolation !== 'nearest') fail(ctx, layer, `interpolation ${JSON.stringify(interpolation)} is not supported (nearest)`);
  const scales = ctx.fresh(`${layer.name}_scales`);
  ctx.graph.addInitializer(scales, new Float32Array([1, 1, sy, sx]), [4]);
  // tfjs: source index = floor(dst · in/out), no half-pixel offset.
  ctx.graph.addNode('Resize', [inputs[0], '', scales], [output], {
    mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor',
  }, { name: layer.name });
};

const pixelShuffle: LayerConverter = (ctx, layer, inputs, output) => {
  // UpscalerJS's PixelShuffle<N>x: tf.depthToSpace(x, N, 'NHWC'); N is in the class name and config.
  const fromName = Number(/^PixelShuffle(\d+)x$/.exec(layer.class_name)?.[1]);
  const scale = (layer.config['scale'] as number | undefined) ?? fromName;
  if (!Number.isInteger(scale) || scale < 1 || (Number.isInteger(fromName) && fromName !== scale)) {
    fail(ctx, layer, `block size ${JSON.stringify(layer.config['scale'])} does not match the class name`);
  }
  ctx.graph.addNode('DepthToSpace', [inputs[0]], [output], { blocksize: Attr.int(scale), mode: 'DCR' }, { name: layer.name });
};

/** Converters by Keras class name. PixelShuffle<N>x classes are matched by {@link converterFor}. */
export const LAYER_CONVERTERS: Readonly<Record<string, LayerConverter>> = {
  Conv2D: conv2d,
  UpSampling2D: upSampling2d,
  Activation: (ctx, layer, inputs, output) => activation(ctx, layer, layer.config['activation'], inputs[0], output),
  ReLU: (ctx, layer, inputs, output) => {
    const { max_value: max, negative_slope: slope = 0, threshold = 0 } = layer.config as { max_value?: number | null; negative_slope?: number; threshold?: number };
    if (threshold !== 0 || (slope !== 0 && max != null)) fail(ctx, layer, 'threshold ≠ 0, or negative_slope with max_value, is not supported');
    if (slope !== 0) ctx.graph.addNode('LeakyRelu', [inputs[0]], [output], { alpha: Attr.float(slope) });
    else if (max != null) ctx.graph.addNode('Clip', [inputs[0], ctx.scalar(0), ctx.scalar(max)], [output]);
    else ctx.graph.addNode('Relu', [inputs[0]], [output]);
  },
  LeakyReLU: (ctx, layer, inputs, output) => {
    ctx.graph.addNode('LeakyRelu', [inputs[0]], [output], { alpha: Attr.float((layer.config['alpha'] as number | undefined) ?? 0.3) });
  },
  Add: (ctx, layer, inputs, output) => fold(ctx, layer, 'Add', inputs, output),
  Multiply: (ctx, layer, inputs, output) => fold(ctx, layer, 'Mul', inputs, output),
  Concatenate: (ctx, layer, inputs, output) => {
    ctx.graph.addNode('Concat', inputs, [output], { axis: Attr.int(nchwAxis(ctx, layer, layer.config['axis'] ?? -1)) }, { name: layer.name });
  },
  // RRDN's residual scaling (idealo ISR; UpscalerJS registers it as a custom class): x · beta.
  MultiplyBeta: (ctx, layer, inputs, output) => {
    const beta = (layer.config['beta'] as number | undefined) ?? 0.2;
    ctx.graph.addNode('Mul', [inputs[0], ctx.scalar(beta)], [output], {}, { name: layer.name });
  },
};

/** Class names accepted, for error messages. */
export function supportedLayerTypes(): string[] {
  return ['InputLayer', ...Object.keys(LAYER_CONVERTERS), 'PixelShuffle<N>x'];
}

/** The converter for a Keras class name, or undefined. */
export function converterFor(className: string): LayerConverter | undefined {
  if (/^PixelShuffle\d+x$/.test(className)) return pixelShuffle;
  return Object.hasOwn(LAYER_CONVERTERS, className) ? LAYER_CONVERTERS[className] : undefined;
}
