/**
 * The tiny VAE halves, shaped like Optimum's `vae-decoder` and `vae-encoder` exports (factor 8,
 * 3 colour channels, 4 latent channels), and built to be inverses of each other on smooth images:
 *
 * - decoder: `latent_sample` [B,4,h,w] → decoder.conv_in (1×1, D = s·Q₃ with Q a random rotation
 *   of R⁴ and s the scaling factor) → bilinear ×8 Resize → Tanh → `sample` [B,3,8h,8w] in (−1, 1);
 * - encoder: `sample` [B,3,H,W] → 8×8 AveragePool → Clip(±0.995) → Atanh → quant_conv (1×1:
 *   mean = E·a with E = Q₃ᵀ/s, so D·E = I; logvar = −12) → `latent_parameters` [B,8,H/8,W/8]
 *   (mean ‖ logvar, newer exports) or `latent_sample` [B,4,H/8,W/8] (the mean, older exports).
 *
 * So decode(encode(x)) is x's 8×8 block colours, smoothly upsampled: img2img at strength 0 returns
 * the input blurred at the latent scale. Unit-variance scaled latents give pre-Tanh colours of unit
 * variance: smooth colour fields, not static.
 */
import type { ModelProto } from '../onnx/onnx-model.js';
import { Net, randomValues, type TinyDtype } from './net.js';

export interface VaeSpec {
  readonly latentChannels: number;
  readonly scalingFactor: number;
  /** 'latent_parameters' (newer exports) or 'latent_sample' (older exports, older axis names too). */
  readonly encoderOutput: 'latent_parameters' | 'latent_sample';
}

const FACTOR = 8;
const CLIP = 0.995;
const LOGVAR = -12;

/** Rows of a random orthogonal C×C matrix (Gram–Schmidt on seeded vectors), row-major. */
function rotation(seed: number, c: number): Float64Array {
  const raw = randomValues(seed, 'vae/rotation', c * c, 1);
  const q = new Float64Array(c * c);
  for (let i = 0; i < c; i++) {
    for (let k = 0; k < c; k++) q[i * c + k] = raw[i * c + k]!;
    for (let j = 0; j < i; j++) {
      let dot = 0;
      for (let k = 0; k < c; k++) dot += q[i * c + k]! * q[j * c + k]!;
      for (let k = 0; k < c; k++) q[i * c + k]! -= dot * q[j * c + k]!;
    }
    let norm = 0;
    for (let k = 0; k < c; k++) norm += q[i * c + k]! ** 2;
    for (let k = 0; k < c; k++) q[i * c + k]! /= Math.sqrt(norm);
  }
  return q;
}

/** D [3, C] (decoder) and E [C, 3] (encoder) with D·E = I₃, row-major float32. */
function colourMaps(seed: number, spec: VaeSpec): { decode: Float32Array; encode: Float32Array } {
  const c = spec.latentChannels;
  const q = rotation(seed, c);
  const s = spec.scalingFactor;
  const decode = new Float32Array(3 * c);
  const encode = new Float32Array(c * 3);
  for (let i = 0; i < 3; i++) {
    for (let k = 0; k < c; k++) {
      decode[i * c + k] = s * q[i * c + k]!;
      encode[k * 3 + i] = q[i * c + k]! / s;
    }
  }
  return { decode, encode };
}

/** vae_decoder as an ONNX model object (opset 17). */
export function buildVaeDecoder(spec: VaeSpec, dtype: TinyDtype, seed: number): ModelProto {
  const net = new Net('vae_decoder', dtype, seed);
  const c = spec.latentChannels;
  const legacy = spec.encoderOutput === 'latent_sample';
  net.g.addInput('latent_sample', net.floatType, legacy ? ['batch_size', c, 'height_latent', 'width_latent'] : ['batch_size', c, 'latent_height', 'latent_width']);
  const w = net.constant('decoder.conv_in.weight', colourMaps(seed, spec).decode, [3, c, 1, 1]);
  const colour = net.op('Conv', ['latent_sample', w, net.filled('decoder.conv_in.bias', [3], 0)], '/decoder/conv_in', { kernel_shape: [1, 1] });
  // Resize takes float32 scales whatever the data type.
  net.g.addFloatInitializer('/decoder/upsample/scales', Float32Array.of(1, 1, FACTOR, FACTOR), [4], 'FLOAT');
  const up = net.op('Resize', [colour, '', '/decoder/upsample/scales'], '/decoder/upsample', { mode: 'linear', coordinate_transformation_mode: 'half_pixel' });
  const out = net.op('Tanh', [up], '/decoder/conv_act');
  net.output(out, 'sample', net.floatType, legacy ? ['batch_size', 3, 'height', 'width'] : ['batch_size', 3, `latent_height * ${FACTOR}`, `latent_width * ${FACTOR}`]);
  return net.g.toModel(17);
}

/** vae_encoder as an ONNX model object (opset 17). */
export function buildVaeEncoder(spec: VaeSpec, dtype: TinyDtype, seed: number): ModelProto {
  const net = new Net('vae_encoder', dtype, seed);
  const c = spec.latentChannels;
  const legacy = spec.encoderOutput === 'latent_sample';
  net.g.addInput('sample', net.floatType, legacy ? ['batch_size', 3, 'height', 'width'] : ['batch_size', 3, 'sample_height', 'sample_width']);
  const pooled = net.op('AveragePool', ['sample'], '/encoder/down', { kernel_shape: [FACTOR, FACTOR], strides: [FACTOR, FACTOR] });
  const clipped = net.op('Clip', [pooled, net.scalar('/encoder/clip_min', -CLIP), net.scalar('/encoder/clip_max', CLIP)], '/encoder/clip');
  const a = net.op('Atanh', [clipped], '/encoder/act');
  const out = legacy ? c : 2 * c;
  const weight = new Float32Array(out * 3);
  weight.set(colourMaps(seed, spec).encode);
  const bias = new Float32Array(out);
  bias.fill(LOGVAR, c);
  const w = net.constant('quant_conv.weight', weight, [out, 3, 1, 1]);
  const moments = net.op('Conv', [a, w, net.constant('quant_conv.bias', bias, [out])], '/quant_conv', { kernel_shape: [1, 1] });
  if (legacy) net.output(moments, 'latent_sample', net.floatType, ['batch_size', c, 'height_latent', 'width_latent']);
  else net.output(moments, 'latent_parameters', net.floatType, ['batch_size', 2 * c, `sample_height / ${FACTOR}`, `sample_width / ${FACTOR}`]);
  return net.g.toModel(17);
}
