/**
 * What the quality gate adds to the stage that checks (issue 13): a stage holding raw RGB (sdxl,
 * texture: encodeRgb) checks it in place; a stage holding a sharp pipeline (the upscaler's resize:
 * encodeOutput) renders it once as raw pixels, checks them and encodes those same pixels
 * (services/stages/qc/qc-step.ts, output-encoder.ts). Measured per image on a rendered planet
 * scene at 1536x640 (the SDXL 21:9 bucket, where `after_stage: 0` checks) and 2520x1080, in one
 * thread as in a replica's executor: the encode alone, the encode with the gate both ways, and the
 * gate's parts (raw pixel copy; the check). Runs are interleaved so machine load hits all alike.
 * `BENCH_QC_STEP_RUNS` sets the runs per variant (default 40).
 */
import os from 'node:os';
import { DEFAULT_QC_OPTIONS } from '../services/common/qc-config.js';
import { encodeOutput, encodeRgb, INTERMEDIATE_PNG, rawRgb, type EncodeTarget } from '../services/stages/output-encoder.js';
import { checkPlanet } from '../services/stages/qc/qc-check.js';
import { makeCase, renderCase } from '../test/support/planet-scenes.js';
import { round, summarize, type Summary } from './lib/stats.js';
import type { BenchResult, Check } from './lib/types.js';

const SIZES: ReadonlyArray<readonly [number, number]> = [[1536, 640], [2520, 1080]];
const TEXT = 'a planet\nSteps: 30, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 1536x640, Model: m, Pipeline: planet-ultrawide';

async function time(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface SizeResult {
  readonly size: string;
  readonly encode: Summary;
  readonly encodeWithGate: Summary;
  readonly pipelineWithGate: Summary;
  readonly rawCopy: Summary;
  readonly check: Summary;
}

async function measure(width: number, height: number, runs: number): Promise<SizeResult> {
  const pixels = renderCase(makeCase('disc', width, height, 11)).data;
  const plain: EncodeTarget = { format: 'png', png: INTERMEDIATE_PNG, parameters: TEXT };
  const gated: EncodeTarget = { ...plain, qc: { options: DEFAULT_QC_OPTIONS, attempt: 1 } };
  const samples = { encode: [] as number[], encodeWithGate: [] as number[], pipelineWithGate: [] as number[], rawCopy: [] as number[], check: [] as number[] };
  for (let i = 0; i < runs + 3; i++) {
    const e = await time(() => encodeRgb(pixels, width, height, plain));
    const g = await time(() => encodeRgb(pixels, width, height, gated));
    const p = await time(() => encodeOutput(rawRgb(pixels, width, height), gated));
    const r = await time(() => rawRgb(pixels, width, height).raw().toBuffer());
    const c = await time(() => checkPlanet({ data: pixels, width, height, channels: 3 }, DEFAULT_QC_OPTIONS));
    // The first three rounds warm up sharp and the JIT.
    if (i < 3) continue;
    samples.encode.push(e);
    samples.encodeWithGate.push(g);
    samples.pipelineWithGate.push(p);
    samples.rawCopy.push(r);
    samples.check.push(c);
  }
  return {
    size: `${width}x${height}`, encode: summarize(samples.encode), encodeWithGate: summarize(samples.encodeWithGate), pipelineWithGate: summarize(samples.pipelineWithGate),
    rawCopy: summarize(samples.rawCopy), check: summarize(samples.check),
  };
}

export async function run(): Promise<BenchResult> {
  const runs = Number(process.env.BENCH_QC_STEP_RUNS ?? 40);
  const loadAtStart = os.loadavg()[0]!;
  const results: SizeResult[] = [];
  for (const [w, h] of SIZES) results.push(await measure(w, h, runs));
  const at1536 = results[0]!;
  const added = at1536.encodeWithGate.p50 - at1536.encode.p50;
  const checks: Check[] = [
    {
      name: 'Time the gate adds to a 1536x640 sdxl/texture output (p50 of encodeRgb with gate − without)', measured: round(added), unit: 'ms', target: '≤ 5 ms ("a few")', pass: added <= 5,
      note: `the check itself p50 ${round(at1536.check.p50)} ms; through a sharp pipeline (upscaler) + raw copy p50 ${round(at1536.rawCopy.p50)} ms; load average ${round(loadAtStart)} on ${os.cpus().length} cores at start`,
    },
  ];
  const row = (label: string, s: Summary) => [label, round(s.p50), round(s.p90), round(s.p99), round(s.mean)];
  return {
    name: 'qc-step',
    title: 'Quality gate: what the check adds to the stage it checks',
    checks,
    tables: results.map((r) => ({
      title: `${r.size}, ${runs} runs each (ms)`,
      columns: ['step', 'p50', 'p90', 'p99', 'mean'],
      rows: [
        row('encode alone (intermediate PNG, level 0)', r.encode), row('encodeRgb with the gate (sdxl, texture)', r.encodeWithGate),
        row('encodeOutput with the gate (sharp pipeline: upscaler)', r.pipelineWithGate), row('raw pixel copy (sharp)', r.rawCopy), row('checkPlanet alone', r.check),
      ],
    })),
    notes: [
      'One thread, as in a replica\'s executor thread; sharp\'s own thread pool is the default. The scene is a rendered disc (test/support/planet-scenes.ts, disc, seed 11).',
      'The gate adds the check (and, for a sharp pipeline, one raw pixel copy); the encode itself is unchanged (the same pixels are encoded). The check\'s own cost, by phase, and its accuracy are in bench/results/qc.md.',
      'The machine is shared with other work during the run: read p50 against the load average noted with each check.',
    ],
    data: { runs, loadAtStart, results },
  };
}
