/**
 * One configuration of the SDXL stage benchmark, in its own process so hooks, ONNX Runtime's arena
 * and the profiler are its own: `node child.js '<json ChildArgs>'` prints `result <json ChildResult>`.
 *
 * It loads the `sdxl` stage exactly as a replica does (loadStage('sdxl').load) and times whole
 * stage runs, timestamping from the outside only — production code is not changed:
 * - every InferenceSession.run call (onnxruntime-common's wrapper, so the time includes feed
 *   checks and output Tensor wrapping) and, inside it, the backend handler's run (the native
 *   call on the calling thread); the session is named by its inputs and outputs;
 * - the stage's progress callback after each denoising step;
 * - sharp's toBuffer (the PNG encode, which runs on libuv's thread pool).
 * From those marks a run splits into text encoding, denoising, VAE decode and PNG encode
 * (timeline.ts). With `profile`, one more run at that batch size runs under the V8 CPU profiler
 * (started and stopped around that run only) and the summary of the profile is returned.
 */
import { Session } from 'node:inspector';
import { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import { loadStage } from '../../services/stages/registry.js';
import { DeviceLock } from '../../services/worker/device-lock.js';
import type { RunContext, StageItem, StageOutput } from '../../services/stages/stage.js';
import { summarizeProfile, type ProfileSummary } from '../lib/cpu-profile.js';
import { machineCpuSeconds } from '../lib/proc-cpu.js';
import type { RunRecord, SessionName } from './timeline.js';

export interface ChildArgs {
  readonly repo: string;
  readonly model: string;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly guidanceScale: number;
  /** img2img at this strength (the deployment's image-to-image mode, a synthetic init image of the output size). */
  readonly img2imgStrength?: number;
  readonly batches: readonly number[];
  /** Measured runs per batch size (after one warm-up run each), interleaved across batch sizes. */
  readonly reps: number;
  /** One extra profiled run at this batch size. */
  readonly profileBatch?: number;
  /** Deployment options for the stage (merged over the img2img mode when set). */
  readonly stageOptions?: Readonly<Record<string, unknown>>;
  /**
   * Steady state: `batches` batches of `batch`, first one at a time, then two in flight taking
   * turns on the replica's DeviceLock as in an executor thread with max_ongoing_batches 2.
   */
  readonly steadyState?: { readonly batch: number; readonly batches: number };
}

/** `batches` back-to-back batches: wall time, time inside session.run and in PNG encodes. */
export interface SteadyRun {
  readonly inFlight: 1 | 2;
  readonly batches: number;
  readonly batch: number;
  readonly wallMs: number;
  readonly ortMs: number;
  readonly pngMs: number;
}

export interface ChildResult {
  readonly runs: RunRecord[];
  readonly profile?: ProfileSummary & { wallMs: number };
  readonly intraOpThreads: string;
  readonly peakRssBytes: number;
  /**
   * sharp's PNG encode of one image at each zlib level, with and without adaptive filtering: one
   * of the stage's outputs (the tiny bundle's: noise-like) and a smooth synthetic image.
   */
  readonly pngLevels: PngLevel[];
  readonly steady?: SteadyRun[];
}

export interface PngLevel {
  readonly image: 'output' | 'smooth';
  readonly level: number;
  readonly adaptiveFiltering: boolean;
  /** Median of 3 encodes. */
  readonly ms: number;
  readonly bytes: number;
}

type Mark = { name: SessionName; start: number; end: number; handlerMs: number };
let marks: Mark[] = [];
let pngMarks: Array<{ start: number; end: number }> = [];

function sessionName(s: InferenceSession): SessionName {
  if (s.inputNames.includes('latent_sample')) return 'vae_decoder';
  if (s.inputNames.includes('encoder_hidden_states')) return 'unet';
  if (s.inputNames.includes('input_ids')) return s.outputNames.includes('text_embeds') ? 'text_encoder_2' : 'text_encoder';
  return 'vae_encoder';
}

/** Wraps InferenceSession.prototype.run and (on first use) the backend handler's run. */
function hookOrt(): void {
  type Run = (...a: unknown[]) => Promise<unknown>;
  const proto = (InferenceSession as unknown as { prototype: { run: Run } }).prototype;
  const orig = proto.run;
  const hooked = new Set<object>();
  let handlerMs = 0;
  proto.run = async function (this: InferenceSession & { handler?: object }, ...a: unknown[]) {
    const handler = this.handler ? Object.getPrototypeOf(this.handler) as { run: Run } : undefined;
    if (handler && !hooked.has(handler)) {
      hooked.add(handler);
      const inner = handler.run;
      handler.run = async function (this: unknown, ...b: unknown[]) {
        const t = performance.now();
        try {
          return await inner.apply(this, b);
        } finally {
          handlerMs += performance.now() - t;
        }
      };
    }
    const before = handlerMs;
    const start = performance.now();
    try {
      return await orig.apply(this, a);
    } finally {
      marks.push({ name: sessionName(this), start, end: performance.now(), handlerMs: handlerMs - before });
    }
  };
}

function hookSharp(): void {
  type ToBuffer = (...a: unknown[]) => Promise<unknown>;
  const proto = (sharp as unknown as { prototype: { toBuffer: ToBuffer } }).prototype;
  const orig = proto.toBuffer;
  proto.toBuffer = async function (this: unknown, ...a: unknown[]) {
    const start = performance.now();
    try {
      return await orig.apply(this, a);
    } finally {
      pngMarks.push({ start, end: performance.now() });
    }
  };
}

let float16Ms = 0;

/**
 * Times float16.ts's array converters by putting timed wrappers in the module's exports: the
 * compiled tensors.ts calls them through those exports, so the stage's code is unchanged.
 */
function timeFloat16(): void {
  type Convert = (...a: unknown[]) => unknown;
  const exportsObj = require('../../services/models/onnx/float16.js') as Record<string, Convert>;
  for (const name of ['float32ToHalf', 'halfToFloat32']) {
    const inner = exportsObj[name]!;
    exportsObj[name] = (...a: unknown[]) => {
      const t = performance.now();
      try {
        return inner(...a);
      } finally {
        float16Ms += performance.now() - t;
      }
    };
  }
}

/** A smooth colour field with some texture, as a PNG (the pipeline hands img2img the upscaler's PNG). */
async function syntheticImage(width: number, height: number): Promise<Uint8Array> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0, o = 0; y < height; y++) {
    for (let x = 0; x < width; x++, o += 3) {
      raw[o] = 128 + 100 * Math.sin(x / 97);
      raw[o + 1] = 128 + 100 * Math.sin(y / 53);
      raw[o + 2] = 128 + 60 * Math.sin((x + y) / 31) + ((x * 7 + y * 13) % 17);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

const PROMPTS = [
  'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky',
  'violet gas giant, thin rings, three small moons, nebula sky',
  'burnt orange desert planet, dust storms, one moon, milky way',
  'pale green ocean planet, swirling white clouds, two moons, dark sky',
];

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]!) as ChildArgs;
  hookOrt();
  hookSharp();
  timeFloat16();
  const img2img = a.img2imgStrength !== undefined;
  const model = await loadStage('sdxl').load(a.model, { options: { ...(img2img ? { mode: 'image-to-image' } : {}), ...a.stageOptions }, modelRepository: a.repo });
  const initImage = img2img ? await syntheticImage(a.width, a.height) : undefined;
  const never = new AbortController().signal;
  const item = (i: number): StageItem => ({
    requestId: `bench-${i}`, imageIndex: 0, seed: BigInt(1000 + i), prompt: PROMPTS[i % PROMPTS.length]!, negativePrompt: '',
    steps: a.steps, guidanceScale: a.guidanceScale, width: a.width, height: a.height, strength: a.img2imgStrength ?? 1,
    ...(initImage ? { initImage } : {}), outputFormat: 'png', params: {},
  });
  let lastImage: Uint8Array | undefined;
  const once = async (batch: number, rep: number): Promise<RunRecord> => {
    const steps: number[] = [];
    const ctx: RunContext = { signal: never, itemSignal: () => never, progress: (i) => { if (i === 0) steps.push(performance.now()); } };
    marks = [];
    pngMarks = [];
    float16Ms = 0;
    const cpu0 = process.cpuUsage();
    const machine0 = machineCpuSeconds();
    const start = performance.now();
    const out = await model.run(Array.from({ length: batch }, (_, i) => item(i)), ctx);
    const end = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const machineMs = (machineCpuSeconds() - machine0) * 1000;
    for (const o of out) if (o instanceof Error) throw o;
    lastImage = (out[0] as StageOutput).data;
    return {
      batch, rep, start, end, cpuMs: (cpu.user + cpu.system) / 1000,
      otherCores: (machineMs - (cpu.user + cpu.system) / 1000) / (end - start), float16Ms, steps, sessions: marks, png: pngMarks,
      outputBytes: out.reduce((s, o) => s + (o instanceof Error ? 0 : o.data.length), 0),
    };
  };
  const runs: RunRecord[] = [];
  for (const b of a.batches) runs.push(await once(b, -1)); // warm-up: ONNX Runtime sizes its arena for the shapes
  for (let rep = 0; rep < a.reps; rep++) for (const b of a.batches) runs.push(await once(b, rep));

  let steady: SteadyRun[] | undefined;
  if (a.steadyState) {
    const { batch, batches } = a.steadyState;
    const device = new DeviceLock();
    /** One batch as the executor thread runs it: the device from the start until computeDone. */
    const onDevice = async (k: number) => {
      const release = await device.acquire(never);
      try {
        const out = await model.run(Array.from({ length: batch }, (_, i) => item(k * batch + i)), { signal: never, itemSignal: () => never, progress: () => undefined, computeDone: release });
        for (const o of out) if (o instanceof Error) throw o;
      } finally {
        release();
      }
    };
    steady = [];
    for (const inFlight of [1, 2] as const) {
      marks = [];
      pngMarks = [];
      const start = performance.now();
      let next = 0;
      const lane = async () => {
        while (next < batches) await onDevice(next++);
      };
      await Promise.all(Array.from({ length: inFlight }, lane));
      const wallMs = performance.now() - start;
      const sum = (m: ReadonlyArray<{ start: number; end: number }>) => m.reduce((s, x) => s + x.end - x.start, 0);
      steady.push({ inFlight, batches, batch, wallMs, ortMs: sum(marks), pngMs: sum(pngMarks) });
    }
  }

  let profile: ChildResult['profile'];
  if (a.profileBatch) {
    const session = new Session();
    session.connect();
    const post = <T>(method: string, params?: object) => new Promise<T>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res as T))));
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 200 });
    await post('Profiler.start');
    const r = await once(a.profileBatch, -2);
    const { profile: p } = await post<{ profile: Parameters<typeof summarizeProfile>[0] }>('Profiler.stop');
    session.disconnect();
    runs.push(r);
    profile = { ...summarizeProfile(p, 40), wallMs: r.end - r.start };
  }
  await model.dispose();

  const pngLevels: PngLevel[] = [];
  const output = await sharp(lastImage).raw().toBuffer({ resolveWithObject: true });
  const smooth = await sharp(await syntheticImage(output.info.width, output.info.height)).raw().toBuffer();
  for (const [image, data] of [['output', output.data], ['smooth', smooth]] as const) {
    for (const adaptiveFiltering of [false, true]) {
      for (const level of [0, 1, 2, 3, 6, 9]) {
        if (level === 9 && adaptiveFiltering) continue; // ~0.5 s an image, not a candidate
        const ms: number[] = [];
        let bytes = 0;
        for (let k = 0; k < 3; k++) {
          const t = performance.now();
          bytes = (await sharp(data, { raw: { width: output.info.width, height: output.info.height, channels: 3 } }).png({ compressionLevel: level, adaptiveFiltering }).toBuffer()).length;
          ms.push(performance.now() - t);
        }
        pngLevels.push({ image, level, adaptiveFiltering, ms: ms.sort((x, y) => x - y)[1]!, bytes });
      }
    }
  }
  process.stdout.write(`result ${JSON.stringify({
    runs, ...(profile ? { profile } : {}), ...(steady ? { steady } : {}), intraOpThreads: 'ONNX Runtime default (one per physical core)', peakRssBytes: process.resourceUsage().maxRSS * 1024, pngLevels,
  } satisfies ChildResult)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`sdxl bench child: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
