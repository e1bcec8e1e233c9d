/**
 * The SDXL-on-onnxruntime-node issue's benchmark: the `sdxl` stage on the tiny SDXL-shaped bundle
 * on CPU — per-stage time (text encoding, UNet per step, VAE decode, PNG encode), images/s at
 * batch 1, 2 and 4, and the share of wall time spent outside ONNX Runtime's session.run calls
 * (target ≤ 5 % at batch 4). Each configuration runs in its own process (sdxl/child.ts), which
 * times the stage's run() against its session.run calls by wrapping InferenceSession.prototype.run
 * there — production code is unchanged. One run per configuration is profiled (V8 CPU profiler,
 * around that run only) to say where the outside time goes.
 *
 * `SDXL_BENCH_CONFIGS=fp32-1536x640,fp16-1536x640` runs only some configurations;
 * `SDXL_BENCH_REPS=<n>` overrides the measured runs per batch size.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeTinySdxlBundle } from '../services/models/tiny-sdxl.js';
import { round } from './lib/stats.js';
import type { BenchResult, Check, Table } from './lib/types.js';
import type { ChildArgs, ChildResult, SteadyRun } from './sdxl/child.js';
import { probeDenoise, type DenoiseProbeCase } from './sdxl/denoise-probe.js';
import { probeFloat16 } from './sdxl/float16-probe.js';
import { median, medianRun, phases, type Phases } from './sdxl/timeline.js';

interface Config {
  readonly key: string;
  readonly dtype: 'float32' | 'float16';
  readonly width: number;
  readonly height: number;
  readonly batches: readonly number[];
  readonly reps: number;
  /** img2img at this strength (default: text-to-image). */
  readonly img2imgStrength?: number;
  readonly profileBatch?: number;
  /** Deployment options for the stage (default: none, i.e. the stage's defaults). */
  readonly stageOptions?: Readonly<Record<string, unknown>>;
  /** Also run back-to-back batches one at a time and two in flight (ChildArgs.steadyState). */
  readonly steadyState?: { readonly batch: number; readonly batches: number };
}

const STEPS = 30;
const TARGET_SIZE = '1536x640';
const GUIDANCE = 5; // the local deployments' default_guidance_scale: classifier-free guidance doubles the UNet batch
const CONFIGS: readonly Config[] = [
  { key: 'fp32-1536x640', dtype: 'float32', width: 1536, height: 640, batches: [1, 2, 4], reps: 5, profileBatch: 4, steadyState: { batch: 4, batches: 6 } },
  // The target's case with other PNG settings: sharp's default (level 6, no filtering), and level 0
  // (stored), which is how a pipeline's intermediate images are always encoded.
  { key: 'fp32-1536x640-png6', dtype: 'float32', width: 1536, height: 640, batches: [4], reps: 3, stageOptions: { png_compression_level: 6, png_adaptive_filtering: false } },
  { key: 'fp32-1536x640-png0', dtype: 'float32', width: 1536, height: 640, batches: [4], reps: 3, stageOptions: { png_compression_level: 0, png_adaptive_filtering: false } },
  { key: 'fp32-768x320', dtype: 'float32', width: 768, height: 320, batches: [1, 4], reps: 3 },
  // The pipeline's img2img stage: the target size, strength 0.3 of 30 steps = 9 denoising steps.
  { key: 'fp32-img2img-2520x1080', dtype: 'float32', width: 2520, height: 1080, batches: [1, 4], reps: 3, img2imgStrength: 0.3 },
  { key: 'fp16-1536x640', dtype: 'float16', width: 1536, height: 640, batches: [1, 4], reps: 3, profileBatch: 4 },
];
const PROBE_CASES: readonly DenoiseProbeCase[] = [
  { label: 'tiny bundle, fp32', dtype: 'float32', width: 1536, height: 640, batch: 4, hiddenSize: 96, pooledSize: 48 },
  { label: 'tiny bundle, fp16', dtype: 'float16', width: 1536, height: 640, batch: 4, hiddenSize: 96, pooledSize: 48 },
  { label: 'SDXL base shapes, fp32', dtype: 'float32', width: 1536, height: 640, batch: 4, hiddenSize: 2048, pooledSize: 1280 },
  { label: 'SDXL base shapes, fp16', dtype: 'float16', width: 1536, height: 640, batch: 4, hiddenSize: 2048, pooledSize: 1280 },
];
/** The configuration and batch size the target is about. */
const TARGET = { key: 'fp32-1536x640', batch: 4 } as const;

function runChild(args: ChildArgs): Promise<ChildResult> {
  const child = spawn(process.execPath, [path.join(__dirname, 'sdxl', 'child.js'), JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('result '));
      if (code !== 0 || !line) reject(new Error(`sdxl bench child exited with ${code}`));
      else resolve(JSON.parse(line.slice('result '.length)) as ChildResult);
    });
  });
}

const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
const ms = (x: number) => round(x);
const pct = (x: number) => Math.round(x * 10) / 10;

export async function run(): Promise<BenchResult> {
  const loadStart = load();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-sdxl-'));
  try {
    const wanted = process.env.SDXL_BENCH_CONFIGS?.split(',');
    const configs = CONFIGS.filter((c) => !wanted || wanted.includes(c.key));
    const reps = Number(process.env.SDXL_BENCH_REPS) || undefined;
    const results: Record<string, { config: Config; child: ChildResult; median: Record<number, Phases>; all: Record<number, Phases[]>; profiled?: Phases }> = {};
    for (const dtype of new Set(configs.map((c) => c.dtype))) {
      // The local default's variant (prepareLocalModels), and its fp16 twin.
      await writeTinySdxlBundle(path.join(tmp, `tiny-sdxl-${dtype}`), { dtype, timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
    }
    for (const c of configs) {
      process.stdout.write(`  ${c.key}: batches ${c.batches.join(', ')}, ${reps ?? c.reps} runs each after a warm-up\n`);
      const child = await runChild({
        repo: tmp, model: `tiny-sdxl-${c.dtype}`, width: c.width, height: c.height, steps: STEPS, guidanceScale: GUIDANCE,
        ...(c.img2imgStrength !== undefined ? { img2imgStrength: c.img2imgStrength } : {}),
        batches: c.batches, reps: reps ?? c.reps, ...(c.profileBatch ? { profileBatch: c.profileBatch } : {}),
        ...(c.stageOptions ? { stageOptions: c.stageOptions } : {}), ...(c.steadyState ? { steadyState: c.steadyState } : {}),
      });
      const all: Record<number, Phases[]> = {};
      for (const r of child.runs.filter((x) => x.rep >= 0)) (all[r.batch] ??= []).push(phases(r));
      const median = Object.fromEntries(Object.entries(all).map(([b, runs]) => [b, medianRun(runs)]));
      const prof = child.runs.find((x) => x.rep === -2);
      results[c.key] = { config: c, child, median, all, ...(prof ? { profiled: phases(prof) } : {}) };
    }
    // One step's conversions at the target shape: sample in (2·B rows) and noise prediction out.
    const perStepValues = 2 * TARGET.batch * 4 * (1536 / 8) * (640 / 8);
    const f16 = probeFloat16(perStepValues);
    process.stdout.write('  denoising loop with a stand-in UNet (JS per step)\n');
    const bundleDir = path.join(tmp, `tiny-sdxl-${configs[0]?.dtype ?? 'float32'}`);
    const probe = await probeDenoise(bundleDir, PROBE_CASES);
    const loadEnd = load();

    const checks: Check[] = [];
    const range = (runs: readonly Phases[], k: keyof Phases) => `${pct(Math.min(...runs.map((r) => r[k])))}–${pct(Math.max(...runs.map((r) => r[k])))} %`;
    /**
     * The share on an unloaded machine, estimated from the fastest ONNX Runtime time and the fastest
     * outside time among the runs: other work on the 2 cores slows ONNX Runtime's two threads more
     * than the single-threaded JS, which lowers the measured share when the machine is busy.
     */
    const quiet = (runs: readonly Phases[], withPng: boolean) => {
      const ort = Math.min(...runs.map((r) => r.ortMs));
      const out = Math.min(...runs.map((r) => r.outsideMs - (withPng ? 0 : r.pngMs)));
      return (100 * out) / (ort + out);
    };
    const target = results[TARGET.key]?.median[TARGET.batch];
    const targetRuns = results[TARGET.key]?.all[TARGET.batch] ?? [];
    if (target) {
      checks.push({
        name: `Wall time outside ONNX Runtime session.run, batch ${TARGET.batch}, fp32 tiny bundle 1536x640, ${STEPS} steps — excluding the PNG encode`,
        measured: pct(target.outsideNoPngPct), unit: '%', target: '≤ 5 %', pass: target.outsideNoPngPct <= 5,
        note: `median of ${targetRuns.length} runs (range ${range(targetRuns, 'outsideNoPngPct')}); median run: ${ms(target.outsideMs - target.pngMs)} ms of ${ms(target.wallMs - target.pngMs)} ms; uncontended estimate ${pct(quiet(targetRuns, false))} % (see notes)`,
      });
      const withPng = median(targetRuns.map((r) => r.outsidePct));
      const stored = results['fp32-1536x640-png0']?.all[TARGET.batch] ?? [];
      checks.push({
        name: `The same including the PNG encode of images for the client (the stage's default, level 3 with adaptive filtering; sharp on libuv's pool, ${ms(target.pngMs)} ms for ${TARGET.batch} images in the median run)`,
        measured: pct(withPng), unit: '%', target: '≤ 5 %', pass: withPng <= 5,
        note: `median of ${targetRuns.length} runs (range ${range(targetRuns, 'outsidePct')}); uncontended estimate ${pct(quiet(targetRuns, true))} %`,
      });
      if (stored.length) {
        const storedPct = median(stored.map((r) => r.outsidePct));
        checks.push({
          name: `The same including the PNG encode of images for the next pipeline stage (always level 0, stored; row fp32-1536x640-png0)`,
          measured: pct(storedPct), unit: '%', target: '≤ 5 %', pass: storedPct <= 5,
          note: `median of ${stored.length} runs (range ${range(stored, 'outsidePct')})`,
        });
      }
    }
    const fp16 = results['fp16-1536x640']?.median[TARGET.batch];
    const fp16Runs = results['fp16-1536x640']?.all[TARGET.batch] ?? [];
    if (fp16) {
      checks.push({
        name: `fp16 export, batch ${TARGET.batch}, 1536x640: outside ONNX Runtime excluding the PNG encode`,
        measured: pct(fp16.outsideNoPngPct), unit: '%', target: '≤ 5 %', pass: fp16.outsideNoPngPct <= 5,
        note: `median of ${fp16Runs.length} runs (range ${range(fp16Runs, 'outsideNoPngPct')}); with the PNG encode ${pct(median(fp16Runs.map((r) => r.outsidePct)))} % (see notes)`,
      });
    }

    const steady = results[TARGET.key]?.child.steady;
    const steadyShare = (s: SteadyRun) => (100 * (s.wallMs - s.ortMs)) / s.wallMs;
    const overlapped = steady?.find((s) => s.inFlight === 2);
    if (overlapped) {
      checks.push({
        name: `Steady state, batches of ${overlapped.batch} back to back with two in flight (max_ongoing_batches 2: the next batch computes while the previous one encodes its client PNGs, default level 3 filtered): outside ONNX Runtime including the PNG encode`,
        measured: pct(steadyShare(overlapped)), unit: '%', target: '≤ 5 %', pass: steadyShare(overlapped) <= 5,
        note: `${overlapped.batches} batches; one at a time: ${pct(steadyShare(steady!.find((s) => s.inFlight === 1)!))} % (table "Steady state")`,
      });
    }

    const tables: Table[] = [];
    if (steady) {
      tables.push({
        title: `Steady state: ${steady[0]!.batches} batches of ${steady[0]!.batch} back to back, ${TARGET_SIZE}, fp32, client PNGs at the default level`,
        columns: ['batches in flight', 'wall ms per batch', 'images/s', 'inside session.run ms per batch', 'PNG encode ms per batch (summed over its images, which encode concurrently)', 'outside ONNX Runtime %'],
        rows: steady.map((s) => [s.inFlight === 1 ? '1 (max_ongoing_batches 1)' : '2 (max_ongoing_batches 2)', ms(s.wallMs / s.batches), round((s.batches * s.batch * 1000) / s.wallMs), ms(s.ortMs / s.batches), ms(s.pngMs / s.batches), pct(steadyShare(s))]),
        note: 'Each batch holds the replica\'s device (services/worker/device-lock.ts, as the executor thread does) from the start of its run until the stage calls computeDone after the VAE decode; with two in flight the next batch\'s text encoding and denoising run while the previous batch\'s PNGs are encoded on libuv\'s pool. On this 2-core CPU the encode threads compete with ONNX Runtime\'s two intra-op threads, so session.run gets slower while the encode hides; on a GPU the two use different hardware.',
      });
    }
    tables.push({
      title: `Per-stage time and throughput: tiny SDXL bundle on CPU, ${STEPS} steps, guidance ${GUIDANCE} (the median run)`,
      columns: ['config', 'batch', 'wall s (min–max of runs)', 'images/s (median of runs)', 'text encode (img2img: + init image) ms (ORT)', 'UNet per step ms (ORT)', 'VAE decode ms (ORT)', 'PNG encode ms', 'outside ORT %', 'outside ORT excl. PNG %', 'CPU s per image', 'other work, cores (median of runs)'],
      rows: Object.values(results).flatMap(({ config, median: rep, all }) => config.batches.map((b) => {
        const p = rep[b]!;
        const walls = all[b]!.map((r) => r.wallMs / 1000);
        return [
          config.key, b, `${(p.wallMs / 1000).toFixed(2)} (${Math.min(...walls).toFixed(2)}–${Math.max(...walls).toFixed(2)})`, median(all[b]!.map((r) => r.imagesPerSecond)).toFixed(2),
          `${ms(p.textMs)} (${ms(p.textOrtMs)})`, `${ms(p.denoiseMs / p.steps)} (${ms(p.unetOrtMs / p.steps)})`, `${ms(p.vaeMs)} (${ms(p.vaeOrtMs)})`,
          ms(p.pngMs), pct(p.outsidePct), pct(p.outsideNoPngPct), (p.cpuMs / 1000 / b).toFixed(2), median(all[b]!.map((r) => r.otherCores)).toFixed(2),
        ];
      })),
      note: 'Each row is the run with the median share outside ONNX Runtime (PNG excluded) among its runs, so its figures add up; images/s is the median over the runs. Phases from marks outside the stage (bench/sdxl/timeline.ts): text encode = run() start → first UNet run (tokenising, both encoders, initial latents; img2img also decodes the init image and runs the VAE encoder); UNet per step counts the steps actually run (img2img at strength 0.3: 9 of 30); '
        + 'UNet per step = first UNet run → last step\'s progress callback, ÷ steps (UNet run + scaling, batching copies, guidance mix, scheduler step); '
        + 'VAE decode = → first PNG encode (decoder run + conversion to 8-bit RGB); PNG encode = → run() end (all images, concurrently on libuv\'s pool, + the parameters chunk). '
        + '(ORT) = time inside InferenceSession.run for that phase. Other work = the machine\'s busy CPU (/proc/stat) minus this process\'s during the run, in cores (of 2). CPU s = process CPU time (every thread) ÷ images: less sensitive to other load than wall time, though ONNX Runtime\'s intra-op threads spin-wait between parallel sections and that spinning grows under contention.',
    });
    const breakdownRows = Object.values(results).map(({ config, median: rep }) => {
      const b = config.batches.includes(TARGET.batch) ? TARGET.batch : config.batches.at(-1)!;
      const p = rep[b]!;
      const share = (x: number) => `${ms(x)} (${pct((100 * x) / p.wallMs)} %)`;
      return [
        `${config.key} batch ${b}`, ms(p.wallMs), share(p.ortMs), share(p.textMs - p.textOrtMs), share(p.denoiseMs - p.unetOrtMs),
        ms((p.denoiseMs - p.unetOrtMs) / p.steps), share(p.vaeMs - p.vaeOrtMs), share(p.pngMs), share(p.outsideMs), ms(p.float16Ms), ms(p.ortMs - p.nativeMs),
      ];
    });
    tables.push({
      title: 'Where the wall time outside ONNX Runtime goes (median run at batch 4), ms (% of wall)',
      columns: ['run', 'wall ms', 'inside session.run', 'text phase, outside', 'denoise, outside', '… per step', 'VAE phase, outside', 'PNG encode', 'total outside', 'of which float16 conversion ms', 'session.run JS wrapper ms (feeds check, output Tensors)'],
      rows: breakdownRows,
      note: 'Outside = phase time − the phase\'s session.run time. The last column is session.run time not spent in the native backend call — already counted as inside.',
    });
    for (const { config, child, profiled } of Object.values(results)) {
      if (!child.profile || !profiled) continue;
      const rows = child.profile.byFunction
        .filter((f) => !f.name.includes('onnxruntime-node') && !f.name.startsWith('(anonymous) (native/VM)'))
        .slice(0, 14)
        .map((f) => [f.name.replace(/^\(anonymous\) /, '(loop in) '), f.ms]);
      tables.push({
        title: `Main-thread CPU outside ONNX Runtime, by function: one profiled run, ${config.key} batch ${profiled.batch} (V8 sampling profiler, self time)`,
        columns: ['function (file:line in dist/)', 'ms'],
        rows,
        note: `Profiled run: ${ms(profiled.wallMs)} ms wall, ${ms(profiled.ortMs)} ms in session.run, ${ms(profiled.outsideMs)} ms outside of which ${ms(profiled.pngMs)} ms PNG encode (off the main thread: the main thread waits). `
          + 'Busy main-thread total '
          + `${child.profile.totalMs} ms including ONNX Runtime's native run (excluded here). Loops inlined by V8 are charged to the enclosing function.`,
      });
    }
    tables.push({
      title: `The denoising loop's own JS per step (denoise.ts with a stand-in UNet that answers at once), batch 4 with guidance, 1536x640`,
      columns: ['conditioning shapes, dtype', 'ms per step'],
      rows: probe.map((p) => [p.label, ms(p.msPerStep)]),
      note: 'Everything the stage does per step besides the UNet run: scaling each item\'s latents into the reused sample feed, its fp16 conversion, copying the guided half of the rows, the guidance mix, the scheduler step, and the garbage they leave (the stand-in allocates and fills a fresh output per call, as ONNX Runtime does inside session.run: that part is counted here, not in the stage runs). '
        + 'SDXL base shapes: encoder_hidden_states 77 × 2048 and text_embeds 1280 per row (the tiny bundle: 77 × 96 and 48); the latents are the same size either way. Median of 5 loops of 30 steps.',
    });
    const lv = results[TARGET.key]?.child.pngLevels ?? Object.values(results)[0]?.child.pngLevels;
    if (lv) {
      const find = (image: string, level: number, f: boolean) => lv.find((l) => l.image === image && l.level === level && l.adaptiveFiltering === f);
      tables.push({
        title: `PNG encode of one ${TARGET_SIZE} image by sharp, by zlib level and adaptive filtering (one image on one thread; a batch's images are encoded concurrently)`,
        columns: ['compressionLevel', 'adaptive filtering', 'stage output ms', 'stage output KiB', 'smooth image ms', 'smooth image KiB'],
        rows: lv.filter((l) => l.image === 'output').map((l) => {
          const sm = find('smooth', l.level, l.adaptiveFiltering);
          const label = l.level === 3 && l.adaptiveFiltering ? ' (the stage\'s default)' : l.level === 0 && !l.adaptiveFiltering ? ' (intermediate images)' : l.level === 6 && !l.adaptiveFiltering ? ' (sharp\'s default)' : '';
          return [`${l.level}${label}`, l.adaptiveFiltering ? 'yes' : 'no', ms(l.ms), Math.round(l.bytes / 1024), sm ? ms(sm.ms) : '', sm ? Math.round(sm.bytes / 1024) : ''];
        }),
        note: `Median of 3 encodes each. Stage output: one of the tiny bundle's images (noise-like: the worst case for compression). Smooth image: a synthetic colour field with a little texture (the img2img runs' init image), compressible like many real images. The raw pixels are ${Math.round((1536 * 640 * 3) / 1024)} KiB. The option is png_compression_level / png_adaptive_filtering (services/stages/sdxl/sdxl-stage.ts).`,
      });
    }
    tables.push({
      title: `float16 conversion, ${f16.values} values (one step's UNet input at batch ${TARGET.batch} with guidance, 1536x640; the output is the same size)`,
      columns: ['conversion', 'ms'],
      rows: [['float32 → float16 (feeds)', ms(f16.toHalfMs)], ['float16 → float32 (outputs)', ms(f16.toFloatMs)]],
      note: 'services/models/onnx/float16.ts: half → float through a 65,536-entry table, float → half with integer arithmetic on the float\'s bits. Bit-identical to the per-value formulas they replaced (every half; every float32 bit pattern checked once; test/unit/sdxl-float16.test.ts keeps a sample of that check). Median of 5.',
    });

    const t = target;
    const fp32 = results[TARGET.key];
    const unfiltered = (lv ?? []).filter((l) => !l.adaptiveFiltering);
    const level0 = (image: string) => unfiltered.find((l) => l.image === image && l.level === 0)!;
    const compressed = unfiltered.filter((l) => l.level > 0);
    /** How much smaller than level 0 the unfiltered levels get at best, per image. */
    const pngGain = () => ['output', 'smooth'].map((im) => `${pct(100 * (1 - Math.min(...compressed.filter((l) => l.image === im).map((l) => l.bytes)) / level0(im).bytes))} % (${im === 'output' ? 'stage output' : 'smooth image'})`).join(' and ');
    const pngCost = () => {
      const ratios = compressed.map((l) => l.ms / level0(l.image).ms);
      return `${Math.round(Math.min(...ratios))}–${Math.round(Math.max(...ratios))}×`;
    };
    const notes: string[] = [
      (() => {
        const other = Object.values(results).flatMap((r) => Object.values(r.all).flat().map((p) => p.otherCores));
        return `Load average (1, 5, 15 min) at the start ${loadStart.join(', ')} and at the end ${loadEnd.join(', ')}; it counts this benchmark's own threads. The machine (2 cores) is shared with other work: during the measured runs that other work used ${median(other).toFixed(2)} cores at the median and ${Math.max(...other).toFixed(2)} at most (last column of the first table)`
          + (Math.max(...other) < 0.2 ? ', so these figures are close to an unloaded machine\'s.' : '; wall times vary with it, hence the median run with the min–max, and CPU seconds per image.');
      })(),
      'The tiny bundle is the worst case for this share: its UNet costs tens of milliseconds per call while the JS work around it (latent copies, guidance mix, scheduler, RGB conversion, PNG) depends only on the image size, which is the real one. The tiny UNet has ~0.1 M parameters (400 KB of weights) against SDXL base\'s 2.6 B: a real UNet call costs orders of magnitude more at the same latent size, so the same JS overhead is a far smaller share there.',
      'Timing method: InferenceSession.prototype.run is wrapped in the benchmark\'s process (child.ts); onnxruntime-node runs the native call synchronously on the calling thread (inside a setImmediate), so the main thread is blocked for exactly the measured session time and everything else in the stage\'s run() is outside. In a replica the stage runs the same way in its executor thread.',
    ];
    if (t && fp32) {
      notes.push(`Load and the share: other work on the cores stretches ONNX Runtime's two intra-op threads more than the single-threaded JS around them, so a busy machine lowers the measured share. The checks give the median over the runs as measured; the "uncontended estimate" combines the fastest session.run total and the fastest outside time among the runs (batch ${TARGET.batch}: ${pct(quiet(targetRuns, false))} % without PNG, ${pct(quiet(targetRuns, true))} % with) — read the target against both.`);
      const other = (key: string) => {
        const runs = results[key]?.all[TARGET.batch] ?? [];
        return runs.length ? `${pct(median(runs.map((r) => r.outsidePct)))} % (PNG ${ms(median(runs.map((r) => r.pngMs)))} ms, ${Math.round(median(runs.map((r) => r.outputBytes)) / TARGET.batch / 1024)} KiB an image)` : 'not run';
      };
      notes.push(`Target: at batch ${TARGET.batch} the outside share is ${pct(t.outsideNoPngPct)} % without the PNG encode and ${pct(median(targetRuns.map((r) => r.outsidePct)))} % with it (medians; PNG at the stage's default for images sent to the client, level 3 with adaptive filtering, ${Math.round(median(targetRuns.map((r) => r.outputBytes)) / TARGET.batch / 1024)} KiB an image). `
        + `The PNG encode stays counted as outside time. With other PNG settings, same batch, share with PNG: level 0, stored — how every image that feeds the next pipeline stage is encoded — ${other('fp32-1536x640-png0')}; level 6 without filtering (sharp's default, Orrery's before this round) ${other('fp32-1536x640-png6')} — rows fp32-1536x640-png0/-png6 above. `
        + `Why not level 0 for the client too: without filtering, levels 1–9 shrink these images by at most ${pngGain()} for ${pngCost()} the encode time of level 0, but with filtering real images shrink far more (the smooth image in the PNG table), and a client stores and ships millions of them. On the tiny bundle that encode is a large share because its UNet is ~10,000× smaller than SDXL's; the encode's cost depends only on the image size, so with a real UNet (seconds per batch on a GPU) it is a small one, and a deployment that wants the time back sets png_compression_level: 0 (docs/configuration.md).`);
    }
    if (fp16) {
      const m = (runs: readonly Phases[], f: (p: Phases) => number) => median(runs.map(f));
      notes.push(`fp16: ${pct(fp16.outsideNoPngPct)} % outside ONNX Runtime without PNG at batch ${TARGET.batch} (${pct(m(fp16Runs, (p) => p.outsidePct))} % with it). Every float feed and output crosses the session boundary as float16, converted by services/models/onnx/float16.ts: ${ms(f16.toHalfMs + f16.toFloatMs)} ms per step for the sample and the noise prediction at this shape (table above); inside the stage runs at batch ${TARGET.batch} the calls to its array converters took ${ms(m(fp16Runs, (p) => p.float16Ms))} ms per run (median; the guided items' output halves are read through the value table inside the guidance mix, and the VAE decoder's output goes to bytes through a 65,536-entry byte table, neither counted there), CPU seconds per image ${(m(fp16Runs, (p) => p.cpuMs) / 1000 / TARGET.batch).toFixed(2)}.`);
    }
    notes.push('Changes in services/stages/sdxl measured with this benchmark. Outputs are unchanged by all of them except the PNG settings (same raw pixels and parameters chunk for mixed batches — guidance 5, 7.5, 3 and 1, empty and non-empty negatives, single and batched — on fp32 and fp16 bundles with euler, euler_ancestral and ddim, txt2img and img2img, compared before/after; sdxl-stage, pipeline and LoRA integration tests pass). '
      + 'Before this round (the previous results file, commit 8747a13, quiet machine): batch 4 outside share 4.8 % without PNG and 9 % with PNG (level 6, no filtering); fp16 25.1 % without PNG. '
      + '(1) float16.ts: half → float through a 65,536-entry table, float → half with integer arithmetic on the float\'s bits, bit-identical (every half; every float32 bit pattern) — the converters took 918 ms per fp16 run at batch 4 before (the fp16 note gives them now). '
      + '(2) denoise.ts: the sample feed (and for fp16 its half bits and the items\' noise predictions) allocated once per set of active items and refilled in place — latents scaled straight into their row, converted to fp16 once, the guided half one copyWithin — instead of a scaled copy per item, a stacked copy of the doubled batch and a conversion of both halves at every step; for fp16 the guidance mix reads the output\'s halves through the value table instead of converting the whole output first; JS per step with the stand-in UNet (tiny, batch 4) fp32 2.0 → ~1.7 ms, fp16 (after (1)) 4.1 → ~2.2 ms. '
      + '(3) vae.ts decodeLatents: interleaved RGB written pixel by pixel (reading the three planes in step) instead of plane by plane; for fp16 a byte per half from a table — decodeLatents with a stand-in decoder at batch 4: 41 → 27.5 ms (fp32); fp16 VAE phase outside ONNX Runtime 100 → ~30–40 ms (quick A/B runs). '
      + '(4) PNG: images for the next pipeline stage stored at level 0 (they were encoded like final ones, in the client\'s format — a JPEG between stages lost detail); png_compression_level (default 3) and png_adaptive_filtering (default on) for the client\'s images instead of a fixed level 6 without filtering; a batch\'s images were and are encoded concurrently. '
      + 'Earlier round (still in place): the RGB rounding without Math.min/max/round, the conditioning feeds built once per active set, the guidance mix in place, the img2img input through a byte table and without a batch copy for one item.');
    return {
      name: 'sdxl',
      title: 'SDXL stage on onnxruntime-node: per-stage time, throughput and time outside ONNX Runtime (tiny bundle, CPU)',
      checks, tables, notes,
      data: {
        steps: STEPS, guidanceScale: GUIDANCE, loadAverageStart: loadStart, loadAverageEnd: loadEnd, float16: f16, denoiseProbe: probe,
        configs: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, {
          config: r.config, median: r.median, runs: r.all, profiled: r.profiled, profile: r.child.profile,
          pngLevels: r.child.pngLevels, peakRssBytes: r.child.peakRssBytes,
        }])),
      },
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
