/**
 * Splitting one timed SDXL stage run (child.ts) into its phases, from marks taken outside the
 * stage: session.run start/end per session, the step-progress callbacks, sharp's toBuffer calls.
 *
 *   run() start ──text──▶ first UNet run ──denoise──▶ last step's progress ──vae──▶ first toBuffer ──png──▶ run() end
 *
 * - text: tokenising, both text encoders, conditioning and the initial latents (img2img: also
 *   decoding the init image and the VAE encoder run);
 * - denoise: every step (UNet run + scaling, batching copies, guidance mix, scheduler step);
 * - vae: the VAE decode run plus its conversion to 8-bit RGB;
 * - png: sharp's PNG encodes of every image of the batch (concurrent, on libuv's pool) and the
 *   parameters tEXt chunk.
 */

export type SessionName = 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae_decoder' | 'vae_encoder';

export interface RunRecord {
  readonly batch: number;
  /** −1 warm-up, −2 the profiled run, else the repetition. */
  readonly rep: number;
  readonly start: number;
  readonly end: number;
  /** Process CPU time (user + system, every thread) during the run. */
  readonly cpuMs: number;
  /**
   * Cores' worth of CPU the rest of the machine used during the run (machine busy time from
   * /proc/stat minus this process's), i.e. how much other work competed with it.
   */
  readonly otherCores: number;
  /** Inside float16.ts's float32ToHalf/halfToFloat32 (fp16 bundles; 0 for fp32). */
  readonly float16Ms: number;
  /** Progress-callback time of each step (item 0). */
  readonly steps: number[];
  readonly sessions: Array<{ name: SessionName; start: number; end: number; handlerMs: number }>;
  readonly png: Array<{ start: number; end: number }>;
  readonly outputBytes: number;
}

export interface Phases {
  readonly batch: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly otherCores: number;
  readonly float16Ms: number;
  /** Inside InferenceSession.run calls (all sessions). */
  readonly ortMs: number;
  /** Inside the backend's native run (a subset of ortMs). */
  readonly nativeMs: number;
  readonly textMs: number;
  readonly textOrtMs: number;
  readonly denoiseMs: number;
  readonly unetOrtMs: number;
  readonly steps: number;
  readonly vaeMs: number;
  readonly vaeOrtMs: number;
  readonly pngMs: number;
  /** wall − ortMs. */
  readonly outsideMs: number;
  /** (wall − ort) / wall, %. */
  readonly outsidePct: number;
  /** The same with the PNG encode taken out of both: (wall − png − ort) / (wall − png), %. */
  readonly outsideNoPngPct: number;
  readonly imagesPerSecond: number;
  /** Bytes of every output image of the run. */
  readonly outputBytes: number;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

export function phases(r: RunRecord): Phases {
  const dur = (name: SessionName) => sum(r.sessions.filter((s) => s.name === name).map((s) => s.end - s.start));
  const wallMs = r.end - r.start;
  const ortMs = sum(r.sessions.map((s) => s.end - s.start));
  const firstUnet = r.sessions.find((s) => s.name === 'unet')!.start;
  const lastStep = r.steps.at(-1)!;
  // sharp's toBuffer calls after the last step are the output encodes (img2img decodes its init image before).
  const encodes = r.png.filter((p) => p.start >= lastStep);
  const firstPng = encodes.length ? Math.min(...encodes.map((p) => p.start)) : r.end;
  const pngMs = r.end - firstPng;
  const outsideMs = wallMs - ortMs;
  return {
    batch: r.batch, wallMs, cpuMs: r.cpuMs, otherCores: r.otherCores, float16Ms: r.float16Ms, ortMs, nativeMs: sum(r.sessions.map((s) => s.handlerMs)),
    textMs: firstUnet - r.start, textOrtMs: dur('text_encoder') + dur('text_encoder_2') + dur('vae_encoder'),
    denoiseMs: lastStep - firstUnet, unetOrtMs: dur('unet'), steps: r.steps.length,
    vaeMs: firstPng - lastStep, vaeOrtMs: dur('vae_decoder'),
    pngMs, outsideMs, outsidePct: (100 * outsideMs) / wallMs, outsideNoPngPct: (100 * (outsideMs - pngMs)) / (wallMs - pngMs),
    imagesPerSecond: (1000 * r.batch) / wallMs, outputBytes: r.outputBytes,
  };
}

/**
 * The run with the median share of wall time outside ONNX Runtime (PNG excluded; the lower median
 * for an even count), so the figures of one row add up; with the median of each share over the
 * runs. Shares vary less than wall times when other work competes for the cores.
 */
export function medianRun(runs: readonly Phases[]): Phases {
  const s = [...runs].sort((a, b) => a.outsideNoPngPct - b.outsideNoPngPct);
  return s[(s.length - 1) >> 1]!;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
