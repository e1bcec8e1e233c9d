/**
 * Load-time probes of an SDXL bundle's VAE: the pipeline sizes latents as image / 8, so a VAE
 * whose decoder does not upsample by exactly 8 (or whose encoder does not downsample by 8) would
 * pass every metadata check and then fail each request deep in the image encoder ("VipsImage:
 * memory area too small"). Symbolic axes cannot tell, so one tiny inference says it at load, as
 * an SdxlBundleError naming the file and the tensor.
 */
import * as ort from 'onnxruntime-node';
import type { FloatType, VaeEncoderOutput } from './sdxl-bundle-facts.js';
import { SdxlBundleError, type BundleLayout } from './sdxl-bundle-layout.js';
import { halfTensor } from './onnx/float16-tensor.js';

/** SDXL's VAE scale: one latent cell per 8×8 pixels. */
export const VAE_SCALE = 8;
/** The probe's latent side (the image side is 8× this): tiny, so even a real SDXL VAE answers in well under a second. */
const PROBE_LATENT = 2;

/** The part of an InferenceSession a probe uses. */
export type ProbeSession = Pick<ort.InferenceSession, 'run'>;

/** A zero-filled float tensor of `dtype` (zero is 0x0000 in float16 as in float32). */
function zeros(dtype: FloatType, dims: number[]): ort.Tensor {
  const n = dims.reduce((a, d) => a * d, 1);
  return dtype === 'float16' ? halfTensor(new Uint16Array(n), dims) : new ort.Tensor('float32', new Float32Array(n), dims);
}

async function run(layout: BundleLayout, file: string, session: ProbeSession, input: string, tensor: ort.Tensor, output: string): Promise<readonly number[]> {
  try {
    const out = await session.run({ [input]: tensor }, [output]);
    return (out[output] as ort.Tensor).dims;
  } catch (err) {
    throw new SdxlBundleError(layout.dir, file, `a ${tensor.dims.join('x')} "${input}" fails to run (${(err as Error).message.split('\n')[0]}); the pipeline feeds it inputs of that shape`, { cause: err });
  }
}

/**
 * Runs vae_decoder on a [1, C, 2, 2] latent (expects `sample` [1, 3, 16, 16]) and, when present,
 * vae_encoder on a [1, 3, 16, 16] image (expects [1, C or 2C, 2, 2]). Throws SdxlBundleError
 * (ORRERY_ERR_MODEL_LOAD_FAILED) naming the file, the tensor and the scale it found.
 */
export async function probeVaeScale(
  layout: BundleLayout, dtype: FloatType, decoder: ProbeSession, encoder?: { session: ProbeSession; output: VaeEncoderOutput },
): Promise<void> {
  const c = layout.latentChannels;
  const side = PROBE_LATENT * VAE_SCALE;
  const decoded = await run(layout, 'vae_decoder/model.onnx', decoder, 'latent_sample', zeros(dtype, [1, c, PROBE_LATENT, PROBE_LATENT]), 'sample');
  const [, ch, h, w] = decoded;
  if (decoded.length !== 4 || ch !== 3 || h !== side || w !== side) {
    const scale = decoded.length === 4 ? `${h! / PROBE_LATENT}x${w! / PROBE_LATENT}` : 'unknown';
    throw new SdxlBundleError(layout.dir, 'vae_decoder/model.onnx', `output "sample" is [${decoded.join(', ')}] for a [1, ${c}, ${PROBE_LATENT}, ${PROBE_LATENT}] "latent_sample"; expected [1, 3, ${side}, ${side}]: this VAE upsamples by ${scale}, SDXL's by ${VAE_SCALE} (the pipeline sizes latents as image / ${VAE_SCALE})`);
  }
  if (!encoder) return;
  const channels = encoder.output === 'latent_parameters' ? 2 * c : c;
  const encoded = await run(layout, 'vae_encoder/model.onnx', encoder.session, 'sample', zeros(dtype, [1, 3, side, side]), encoder.output);
  const [, ec, eh, ew] = encoded;
  if (encoded.length !== 4 || ec !== channels || eh !== PROBE_LATENT || ew !== PROBE_LATENT) {
    const scale = encoded.length === 4 && eh && ew ? `${side / eh}x${side / ew}` : 'unknown';
    throw new SdxlBundleError(layout.dir, 'vae_encoder/model.onnx', `output "${encoder.output}" is [${encoded.join(', ')}] for a [1, 3, ${side}, ${side}] "sample"; expected [1, ${channels}, ${PROBE_LATENT}, ${PROBE_LATENT}]: this VAE downsamples by ${scale}, SDXL's by ${VAE_SCALE}`);
  }
}
