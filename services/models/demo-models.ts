/**
 * The demo models Orrery ships without any download: built by code, deterministic (weights come
 * from a seeded PRNG at build time; nothing is random at run time), small enough for CI.
 *
 * `texture` (served by the `texture` stage): inputs `noise` float32 [B,3,H,W] and `tint`
 * float32 [B,3] (an RGB colour in [0,1]); output `image` float32 [B,3,H,W] in [0,1]. A stack of
 * dilated 5x5 blur-like convolutions turns white noise into soft multi-scale "clouds", whose
 * brightness is laid over the tint: the result looks like the banded, cloudy surface of a planet.
 * B, H and W are dynamic; every layer keeps the spatial size, so any H, W ≥ 1 works.
 */
import fs from 'node:fs';
import path from 'node:path';
import { GraphBuilder } from './onnx/onnx-model.js';

/** Model ids {@link writeDemoModels} provides. */
export const DEMO_MODEL_IDS = ['texture'] as const;

/** mulberry32: a tiny 32-bit PRNG returning numbers in [0, 1); fully reproducible (weights, benchmark arrivals). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  // Box-Muller; 1 - u keeps log() away from 0.
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/**
 * The 5x5 blur every conv layer shares (sum 1): binomial taps, whose response is exactly zero at
 * the pixel-scale (Nyquist) frequency, so stacked dilated layers cannot pass the white noise's
 * checkerboard through (a truncated Gaussian leaks it). Wider in x ([1,4,6,4,1]) than in y
 * ([1,2,1]), so clouds stretch into the horizontal bands of a gas giant.
 */
function blurKernel(): Float32Array {
  const kx = [1, 4, 6, 4, 1];
  const ky = [0, 1, 2, 1, 0];
  const k = new Float32Array(25);
  ky.forEach((fy, y) => kx.forEach((fx, x) => { k[y * 5 + x] = (fx * fy) / 64; }));
  return k;
}

/**
 * Conv weights [out, in, 5, 5]: a random channel-mixing matrix times the shared blur. No per-tap
 * noise: a jagged kernel lets the noise's pixel-scale checkerboard through. `gain` compensates for
 * the variance the blur removes, keeping Tanh out of saturation.
 */
function blurConvWeights(rand: () => number, out: number, inp: number, gain: number): Float32Array {
  const blur = blurKernel();
  const w = new Float32Array(out * inp * 25);
  const scale = gain / Math.sqrt(inp);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inp; i++) {
      const mix = gaussian(rand) * scale;
      for (let t = 0; t < 25; t++) w[(o * inp + i) * 25 + t] = mix * blur[t]!;
    }
  }
  return w;
}

/** Channels of the hidden layers; 8 keeps a 512x512 batch well under a second on one CPU core. */
const HIDDEN = 8;
/** Dilations of the blur stack: receptive field ~60 px, so clouds span a visible fraction of the image. */
const DILATIONS = [1, 2, 4, 8];

/** The `texture` model as ONNX bytes (opset 17). Same `seed` → same bytes. */
export function buildTextureModel(seed = 0x0e1e7): Uint8Array {
  const rand = mulberry32(seed);
  const g = new GraphBuilder('texture');
  g.addInput('noise', 'FLOAT', ['batch', 3, 'height', 'width']);
  g.addInput('tint', 'FLOAT', ['batch', 3]);

  let x = 'noise';
  let channels = 3;
  DILATIONS.forEach((d, layer) => {
    const w = `conv${layer}.weight`;
    const b = `conv${layer}.bias`;
    // Blurred white noise loses most of its variance; the first layer needs the biggest gain.
    g.addInitializer(w, blurConvWeights(rand, HIDDEN, channels, layer === 0 ? 4.5 : 2.2), [HIDDEN, channels, 5, 5]);
    g.addInitializer(b, Float32Array.from({ length: HIDDEN }, () => 0.1 * gaussian(rand)), [HIDDEN]);
    g.addNode('Conv', [x, w, b], [`conv${layer}`], { kernel_shape: [5, 5], dilations: [d, d], pads: [2 * d, 2 * d, 2 * d, 2 * d] });
    g.addNode('Tanh', [`conv${layer}`], [`act${layer}`]);
    x = `act${layer}`;
    channels = HIDDEN;
  });

  // Project to RGB: mostly one shared brightness pattern (clouds), a little colour variation. The
  // head blurs at dilation 1 too: Tanh makes pixel-scale harmonics that the dilated layers pass.
  const blur = blurKernel();
  const shared = Float32Array.from({ length: HIDDEN }, () => gaussian(rand) / Math.sqrt(HIDDEN));
  const head = new Float32Array(3 * HIDDEN * 25);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < HIDDEN; i++) {
      const mix = 2.2 * (shared[i]! + 0.15 * gaussian(rand));
      for (let t = 0; t < 25; t++) head[(c * HIDDEN + i) * 25 + t] = mix * blur[t]!;
    }
  }
  g.addInitializer('head.weight', head, [3, HIDDEN, 5, 5]);
  g.addNode('Conv', [x, 'head.weight'], ['pattern'], { kernel_shape: [5, 5], pads: [2, 2, 2, 2] });

  // Tint [B,3] in [0,1] → per-image logit offsets in [-2.5, 2.5], broadcast over H and W.
  g.addInitializer('tint.shape', new BigInt64Array([-1n, 3n, 1n, 1n]), [4]);
  g.addInitializer('tint.scale', new Float32Array([5]), []);
  g.addInitializer('tint.shift', new Float32Array([-2.5]), []);
  g.addNode('Reshape', ['tint', 'tint.shape'], ['tint4']);
  g.addNode('Mul', ['tint4', 'tint.scale'], ['tint_scaled']);
  g.addNode('Add', ['tint_scaled', 'tint.shift'], ['tint_logit']);
  g.addNode('Add', ['pattern', 'tint_logit'], ['logits']);
  g.addNode('Sigmoid', ['logits'], ['image']);
  g.addOutput('image', 'FLOAT', ['batch', 3, 'height', 'width']);
  return g.toBytes(17, { metadata: { 'orrery.model': 'texture', 'orrery.seed': String(seed) } });
}

/** The bundle's config.json: what the model is and which stage serves it. */
function textureConfig(): string {
  return `${JSON.stringify({
    model_id: 'texture', stage: 'texture', format: 'onnx', file: 'model.onnx',
    inputs: { noise: 'float32[batch,3,height,width]', tint: 'float32[batch,3]' },
    outputs: { image: 'float32[batch,3,height,width] in [0,1]' },
  }, null, 2)}\n`;
}

/** Writes `file` atomically (temp + rename) so concurrent replicas never read half a model. */
function writeAtomic(file: string, data: Uint8Array | string): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/**
 * Writes the demo models into the model repository `repoDir` (created if needed), skipping files
 * that already exist, so it is cheap to call at every start. Returns the paths it wrote.
 */
export function writeDemoModels(repoDir: string): string[] {
  const written: string[] = [];
  const dir = path.join(repoDir, 'texture');
  fs.mkdirSync(dir, { recursive: true });
  const files: Array<[string, () => Uint8Array | string]> = [
    ['model.onnx', () => buildTextureModel()],
    ['config.json', textureConfig],
  ];
  for (const [name, make] of files) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) continue;
    writeAtomic(file, make());
    written.push(file);
  }
  return written;
}
