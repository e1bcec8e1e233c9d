/**
 * The VAE at both ends of the pipeline: decoding latents to images (latents ÷ scaling factor,
 * image = clamp(x/2 + 0.5, 0, 1)) and encoding an input image for img2img (pixels in [−1, 1];
 * `latent_parameters` = mean ‖ logvar in newer exports, sampled with the item's noise as
 * diffusers' retrieve_latents does, or `latent_sample` in older ones; × scaling factor).
 */
import type * as ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../../common/errors.js';
import { decodeFailure, inputImagePipeline, inspectInputImage } from '../input-image.js';
import { fromHalf } from '../../models/onnx/float16.js';
import { halfBitsOf } from '../../models/onnx/float16-tensor.js';
import type { GaussianSource } from './gaussian-noise.js';
import { floatTensor, stack, toFloat32, type FloatType } from './tensors.js';

export interface VaeInfo {
  readonly decoder: ort.InferenceSession;
  readonly encoder?: ort.InferenceSession;
  readonly encoderOutput: 'latent_parameters' | 'latent_sample';
  readonly dtype: FloatType;
  readonly scalingFactor: number;
}

/** Decodes a batch of latents (each [C·h·w]) to interleaved 8-bit RGB images of width × height. */
export async function decodeLatents(vae: VaeInfo, latents: readonly Float32Array[], c: number, h: number, w: number): Promise<Uint8Array[]> {
  const scaled = stack(latents);
  for (let i = 0; i < scaled.length; i++) scaled[i]! /= vae.scalingFactor;
  const out = await vae.decoder.run({ latent_sample: floatTensor(vae.dtype, scaled, [latents.length, c, h, w]) }, ['sample']);
  const sample = out.sample!;
  const [, , height, width] = sample.dims as number[];
  const plane = height! * width!;
  // Pixel by pixel, so the interleaved output is written in order (reading the three planes in
  // step): about half the time of one plane at a time, whose writes stride by 3.
  if (sample.type === 'float16') {
    // Straight from the half bits through a byte per half: no float32 copy of the output.
    const x = halfBitsOf(sample);
    const byteOf = halfByteTable();
    return latents.map((_, b) => {
      const rgb = new Uint8Array(plane * 3);
      for (let p = 0, o = 0, r = b * 3 * plane, g = r + plane, bl = g + plane; p < plane; p++, o += 3) {
        rgb[o] = byteOf[x[r + p]!]!;
        rgb[o + 1] = byteOf[x[g + p]!]!;
        rgb[o + 2] = byteOf[x[bl + p]!]!;
      }
      return rgb;
    });
  }
  const x = toFloat32(sample);
  return latents.map((_, b) => {
    const rgb = new Uint8Array(plane * 3);
    for (let p = 0, o = 0, r = b * 3 * plane, g = r + plane, bl = g + plane; p < plane; p++, o += 3) {
      rgb[o] = toByte(x[r + p]!);
      rgb[o + 1] = toByte(x[g + p]!);
      rgb[o + 2] = toByte(x[bl + p]!);
    }
    return rgb;
  });
}

let halfBytes: Uint8Array | undefined;

/** {@link toByte} of every half's value, indexed by its bits (64 KiB, built on first use). */
function halfByteTable(): Uint8Array {
  return (halfBytes ??= Uint8Array.from({ length: 65536 }, (_, h) => toByte(fromHalf(h))));
}

/**
 * round(clamp(x/2 + 0.5, 0, 1) · 255), byte for byte what Math.min/max/round gave (checked over
 * every float32; NaN stores 0 either way) at about a third of the time: adding 0.5 could only
 * round across an integer just below v·255 = 0.5, where a float32 x leaves v too few bits to do so.
 */
function toByte(x: number): number {
  const v = x / 2 + 0.5;
  return v <= 0 ? 0 : v >= 1 ? 255 : (v * 255 + 0.5) | 0;
}

/** Largest input image img2img decodes (declared width × height; the router's side limit squared). */
export const MAX_INIT_IMAGE_PIXELS = 8192 * 8192;

/**
 * Decodes and resizes an input image to width × height, as NCHW float32 in [−1, 1]. Untrusted
 * bytes: input-image.ts's rules (formats, size limit before decoding, orientation, alpha,
 * 16-bit/CMYK/grey to 8-bit sRGB, first frame); a refusal is InvalidArgumentError on init_image.
 */
export async function imageToPixels(bytes: Uint8Array, width: number, height: number): Promise<Float32Array> {
  const header = await inspectInputImage(bytes, MAX_INIT_IMAGE_PIXELS);
  let raw: Buffer;
  try {
    raw = await inputImagePipeline(bytes, MAX_INIT_IMAGE_PIXELS).resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).raw({ depth: 'uchar' }).toBuffer();
  } catch (err) {
    throw decodeFailure(header, bytes, err);
  }
  if (raw.length !== 3 * width * height) throw new InvalidArgumentError('init_image', `decoded to ${raw.length} bytes, expected ${width}x${height} RGB`);
  const plane = width * height;
  const px = new Float32Array(3 * plane);
  const g = plane;
  const b = 2 * plane;
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    px[p] = BYTE_TO_UNIT[raw[i]!]!;
    px[g + p] = BYTE_TO_UNIT[raw[i + 1]!]!;
    px[b + p] = BYTE_TO_UNIT[raw[i + 2]!]!;
  }
  return px;
}

/** (v / 255) · 2 − 1 for every byte v, as float32 (what the per-pixel arithmetic stored). */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => (v / 255) * 2 - 1);

/** Encodes pixels ([3·H·W] each, in [−1, 1]) to scaled latents ([C·H/8·W/8] each). */
export async function encodePixels(vae: VaeInfo, pixels: readonly Float32Array[], height: number, width: number, noise: readonly GaussianSource[]): Promise<Float32Array[]> {
  if (!vae.encoder) throw new Error('this bundle has no vae_encoder (img2img needs vae_encoder/model.onnx)');
  // One item needs no batch copy (3 × H × W floats: 33 MB at 2520x1080).
  const batch = pixels.length === 1 ? pixels[0]! : stack(pixels);
  const out = await vae.encoder.run({ sample: floatTensor(vae.dtype, batch, [pixels.length, 3, height, width]) }, [vae.encoderOutput]);
  const t = out[vae.encoderOutput]!;
  const x = toFloat32(t);
  const [, channels, h, w] = t.dims as number[];
  const plane = h! * w!;
  return pixels.map((_, b) => {
    if (vae.encoderOutput === 'latent_sample') {
      const lat = x.slice(b * channels! * plane, (b + 1) * channels! * plane);
      for (let i = 0; i < lat.length; i++) lat[i]! *= vae.scalingFactor;
      return lat;
    }
    // mean ‖ logvar on channels; sample = mean + exp(logvar / 2) · ε, logvar clamped to [−30, 20].
    const c = channels! / 2;
    const eps = new Float32Array(c * plane);
    noise[b]!.fill(eps);
    const lat = new Float32Array(c * plane);
    const base = b * channels! * plane;
    for (let i = 0; i < c * plane; i++) {
      const mean = x[base + i]!;
      const logvar = Math.min(20, Math.max(-30, x[base + c * plane + i]!));
      lat[i] = (mean + Math.exp(0.5 * logvar) * eps[i]!) * vae.scalingFactor;
    }
    return lat;
  });
}
