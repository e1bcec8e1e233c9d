/**
 * The continuous-batching step loop's own JS cost per image-step, beside the request-level loop's
 * (denoise-probe.ts), without ONNX Runtime's time: services/stages/running-set.ts driving
 * sdxl-step-model.ts with a stand-in UNet session whose run() answers at once with a freshly
 * allocated output of the right shape. The text encoders are the tiny bundle's real ones (joining
 * is not timed), and finishing (VAE decode) is left out: what is timed is every boundary of the
 * loop (admission, grouping, reporting) and every step (scaling the latents, per-row timesteps,
 * feeds rebuilt when the composition changes, the guidance mix, the scheduler step).
 *
 * `staggered`: images join one step apart, so the composition changes at every one of the first
 * `batch` steps (the worst case for feed allocation); otherwise all join at once.
 */
import * as ort from 'onnxruntime-node';
import { openSdxlBundle } from '../../services/models/sdxl-bundle.js';
import { RunningSet, type StepModel } from '../../services/stages/running-set.js';
import { ClipTokenizer } from '../../services/stages/sdxl/clip-tokenizer.js';
import { gaussianSource } from '../../services/stages/sdxl/gaussian-noise.js';
import { createScheduler, parseSchedulerConfig } from '../../services/stages/sdxl/schedulers/index.js';
import { SdxlImage, SdxlStepModel } from '../../services/stages/sdxl/sdxl-step-model.js';
import { workItem } from '../../test/support/work-items.js';

export interface StepLoopProbeCase {
  readonly label: string;
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  readonly staggered: boolean;
}

export interface StepLoopProbeResult extends StepLoopProbeCase {
  readonly steps: number;
  /** Median over repetitions of (time in boundaries and steps) ÷ image-steps. */
  readonly msPerImageStep: number;
}

/** Runs the cases on the fp32 tiny bundle in `bundleDir`. */
export async function probeStepLoop(bundleDir: string, cases: readonly StepLoopProbeCase[], steps = 30, reps = 5): Promise<StepLoopProbeResult[]> {
  const bundle = await openSdxlBundle(bundleDir, { executionProvider: 'cpu' });
  try {
    const config = parseSchedulerConfig(bundle.schedulerConfigJson);
    const session = {
      async run(feeds: Record<string, ort.Tensor>) {
        const dims = feeds.sample!.dims;
        return { out_sample: new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.5), dims) };
      },
    } as unknown as ort.InferenceSession;
    const inner = new SdxlStepModel({
      encoders: {
        textEncoder: bundle.textEncoder, textEncoder2: bundle.textEncoder2, forceZerosForEmptyPrompt: bundle.forceZerosForEmptyPrompt,
        tokenizer: ClipTokenizer.fromDirectory(bundle.tokenizerDirs[1]), tokenizer2: ClipTokenizer.fromDirectory(bundle.tokenizerDirs[2]),
      },
      unet: { session, dtype: 'float32', timestep: { type: 'float32', scalar: false } },
      vae: { decoder: bundle.vaeDecoder, encoderOutput: bundle.vaeEncoderOutput, dtype: bundle.dtype, scalingFactor: bundle.scalingFactor },
      img2img: false,
    });
    const results: StepLoopProbeResult[] = [];
    for (const c of cases) {
      const times: number[] = [];
      for (let rep = -1; rep < reps; rep++) { // rep −1 warms the JIT up
        let untimed = 0;
        const model: StepModel<SdxlImage> = {
          start: async (ms) => {
            const t = performance.now();
            await inner.start(ms);
            untimed += performance.now() - t;
          },
          step: (ms) => inner.step(ms),
          finish: async () => undefined,
          idle: () => inner.idle(),
        };
        const set = new RunningSet(model, { capacity: c.batch });
        const image = (i: number, onStep: (step: number) => void) => new SdxlImage(
          workItem({ seed: BigInt(i + 1), steps, width: c.width, height: c.height, guidanceScale: 5 }),
          createScheduler(config, { steps }), gaussianSource(BigInt(i + 1)), 'online', new AbortController().signal, 4, (step) => onStep(step),
        );
        const runs: Array<Promise<unknown>> = [];
        const t = performance.now();
        if (c.staggered) {
          let joined = 1;
          const onStep = (step: number) => {
            if (step === joined && joined < c.batch) runs.push(set.run([image(joined++, onStep)]));
          };
          runs.push(set.run([image(0, onStep)]));
        } else {
          runs.push(set.run(Array.from({ length: c.batch }, (_, i) => image(i, () => undefined))));
        }
        await runs[0];
        await Promise.all(runs);
        if (rep >= 0) times.push((performance.now() - t - untimed) / (steps * c.batch));
      }
      times.sort((a, b) => a - b);
      results.push({ ...c, steps, msPerImageStep: times[times.length >> 1]! });
    }
    return results;
  } finally {
    await bundle.dispose();
  }
}
