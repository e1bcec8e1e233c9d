/**
 * Runs the planet check over the labelled evaluation set (test/support/planet-scenes.ts) and
 * measures its cost: box IoU against the labels, verdict accuracy with false accepts and false
 * rejects apart, and milliseconds per image (single thread, after warm-up).
 */
import { judgeBox } from '../../services/stages/qc/qc-check.js';
import { DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';
import { DETECT_PHASES, detectPlanetDetailed, type DetectPhase, type PixelBox } from '../../services/stages/qc/planet-detect.js';
import { evaluationSet, iou, renderCase, SCENE_CATEGORIES, type EvalCase } from '../../test/support/planet-scenes.js';
import { summarize, type Summary } from '../lib/stats.js';

export interface CaseResult {
  readonly id: string;
  readonly category: string;
  readonly size: string;
  readonly labelBox?: PixelBox;
  readonly foundBox?: PixelBox;
  readonly iou: number;
  readonly expectedPass: boolean;
  readonly gotPass: boolean;
  readonly expectedReasons: readonly string[];
  readonly gotReasons: readonly string[];
  readonly crispness: number;
  readonly threshold: number;
}

export interface Evaluation {
  readonly cases: CaseResult[];
  /** Detection time per image (ms, wall clock), by size label. */
  readonly timing: Record<string, Summary>;
  /** Detection CPU time per image (ms, user + system of this process), by size label. */
  readonly cpu: Record<string, Summary>;
  /** The fastest CPU time per image (ms), by size label: the figure least disturbed by other work on the machine. */
  readonly cpuMin: Record<string, number>;
  /** Wall-clock time per image in each detector phase (ms, summed when a phase runs twice), by size label. */
  readonly phases: Record<string, Record<DetectPhase, Summary>>;
}

function runCase(c: EvalCase): CaseResult {
  const img = renderCase(c);
  const d = detectPlanetDetailed(img);
  const got = judgeBox(d.found ? d.box : undefined, img.width, img.height, DEFAULT_QC_OPTIONS);
  return {
    id: c.id, category: c.category, size: `${c.spec.width}x${c.spec.height}`,
    ...(c.box ? { labelBox: c.box } : {}), ...(d.box ? { foundBox: d.box } : {}),
    iou: iou(c.box, d.box), expectedPass: c.expected.passed, gotPass: got.passed,
    expectedReasons: c.expected.reasons, gotReasons: got.reasons, crispness: Number(d.crispness.toFixed(3)), threshold: Number(d.threshold.toFixed(1)),
  };
}

/**
 * Times the detector on `perSize` cases of each size: 3 warm-up runs, then `reps` timed runs
 * each, in wall-clock and in CPU time (the latter barely moves when other processes share the
 * cores), and each phase's wall-clock time (through detectPlanetDetailed's phase callback).
 */
function timeDetection(cases: readonly EvalCase[], perSize: number, reps: number): Pick<Evaluation, 'timing' | 'cpu' | 'cpuMin' | 'phases'> {
  const out: Record<string, Summary> = {};
  const cpu: Record<string, Summary> = {};
  const cpuMin: Record<string, number> = {};
  const phases: Record<string, Record<DetectPhase, Summary>> = {};
  for (const size of [...new Set(cases.map((c) => `${c.spec.width}x${c.spec.height}`))]) {
    // Spread the timed cases over the categories (hazy scenes try more thresholds).
    const picked = cases.filter((c) => `${c.spec.width}x${c.spec.height}` === size).filter((_, i) => i % Math.max(1, Math.floor(160 / perSize)) === 0).slice(0, perSize);
    const images = picked.map(renderCase);
    for (const img of images) for (let i = 0; i < 3; i++) detectPlanetDetailed(img);
    const samples: number[] = [];
    const cpuSamples: number[] = [];
    const phaseSamples = Object.fromEntries(DETECT_PHASES.map((p) => [p, [] as number[]])) as Record<DetectPhase, number[]>;
    const inCall = Object.fromEntries(DETECT_PHASES.map((p) => [p, 0])) as Record<DetectPhase, number>;
    let last = 0;
    const phaseDone = (phase: DetectPhase): void => {
      const now = performance.now();
      inCall[phase] += now - last;
      last = now;
    };
    for (let r = 0; r < reps; r++) {
      for (const img of images) {
        for (const p of DETECT_PHASES) inCall[p] = 0;
        const c = process.cpuUsage();
        const t = performance.now();
        last = t;
        detectPlanetDetailed(img, phaseDone);
        samples.push(performance.now() - t);
        const used = process.cpuUsage(c);
        cpuSamples.push((used.user + used.system) / 1000);
        for (const p of DETECT_PHASES) phaseSamples[p].push(inCall[p]);
      }
    }
    out[size] = summarize(samples);
    cpu[size] = summarize(cpuSamples);
    cpuMin[size] = Math.min(...cpuSamples);
    phases[size] = Object.fromEntries(DETECT_PHASES.map((p) => [p, summarize(phaseSamples[p])])) as Record<DetectPhase, Summary>;
  }
  return { timing: out, cpu, cpuMin, phases };
}

/** Timed runs of each of the 20 timed images per size. */
export const TIMED_RUNS = 10;

/** Evaluates `perCell` cases per category and size from seed index `first` (evaluationSet). */
export function evaluate(perCell = 16, onProgress?: (done: number, total: number) => void, first = 0): Evaluation {
  const set = evaluationSet(perCell, first);
  const cases: CaseResult[] = [];
  for (const c of set) {
    cases.push(runCase(c));
    onProgress?.(cases.length, set.length);
  }
  return { cases, ...timeDetection(set, 20, TIMED_RUNS) };
}

export interface Tally {
  readonly n: number;
  readonly correct: number;
  readonly falseAccepts: number;
  readonly falseRejects: number;
  readonly medianIou: number;
  readonly minIou: number;
  readonly labelled: number;
}

/** Verdict and IoU figures over some cases (IoU over the cases that have a planet label). */
export function tally(cases: readonly CaseResult[]): Tally {
  const ious = cases.filter((c) => c.labelBox).map((c) => c.iou).sort((a, b) => a - b);
  return {
    n: cases.length,
    correct: cases.filter((c) => c.expectedPass === c.gotPass).length,
    falseAccepts: cases.filter((c) => !c.expectedPass && c.gotPass).length,
    falseRejects: cases.filter((c) => c.expectedPass && !c.gotPass).length,
    medianIou: ious.length ? ious[Math.floor((ious.length - 1) / 2)]! : Number.NaN,
    minIou: ious.length ? ious[0]! : Number.NaN,
    labelled: ious.length,
  };
}

export const CATEGORY_ORDER = SCENE_CATEGORIES;
