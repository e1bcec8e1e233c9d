/**
 * The synthetic stage's per-step cost model and its step model for continuous batching
 * (running-set.ts): one "UNet call" of r rows takes `step_cost_ms(r) × step_time_scale` of timer
 * time, rows = images, doubled when any image of the call uses guidance (> 1), as in the SDXL
 * stage. `step_cost_ms` is a list of [rows, ms] points, linear between them and along the first
 * and last segment beyond them. The default is the calibration of issue 12 (an SDXL UNet call at
 * 1536x640 on an H200: 79 ms + 7.6 ms per row up to 8 rows, 270 ms at 16 rows).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../common/errors.js';
import type { Priority } from '../common/work-item.js';
import type { StepMember, StepModel } from './running-set.js';
import type { StageItem } from './stage.js';

export const DEFAULT_STEP_COST_MS: ReadonlyArray<readonly [number, number]> = [[1, 86.6], [8, 139.8], [16, 270]];

export interface StepCost {
  /** Milliseconds of one model call over `rows` rows (scale applied). */
  ms(rows: number): number;
}

/** `step_cost_ms` and `step_time_scale` of a synthetic deployment's options; undefined when neither is set. */
export function compileStepCost(options: Readonly<Record<string, unknown>>): StepCost | undefined {
  const raw = options['step_cost_ms'];
  const scale = options['step_time_scale'] ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale < 0) throw new ConfigError('options.step_time_scale', `must be a number ≥ 0, got ${JSON.stringify(scale)}`);
  if (raw === undefined && options['step_time_scale'] === undefined) return undefined;
  const points = raw ?? DEFAULT_STEP_COST_MS;
  const ok = Array.isArray(points) && points.length >= 2 && points.every((p, i) => Array.isArray(p) && p.length === 2
    && p.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0)
    && (i === 0 || (p[0] as number) > (points[i - 1] as number[])[0]!));
  if (!ok) throw new ConfigError('options.step_cost_ms', `must be a list of at least two [rows, ms] pairs with rows increasing, got ${JSON.stringify(raw)}`);
  const pts = (points as Array<[number, number]>).map(([r, ms]) => [r, ms] as const);
  return { ms: (rows) => stepCostAt(pts, rows) * scale };
}

/** Milliseconds of one call over `rows` rows on the curve `points`: linear between them, and beyond the last two. */
export function stepCostAt(points: ReadonlyArray<readonly [number, number]>, rows: number): number {
  let i = 1;
  while (i < points.length - 1 && rows > points[i]![0]) i++;
  const [r0, m0] = points[i - 1]!;
  const [r1, m1] = points[i]!;
  return Math.max(0, m0 + ((m1 - m0) * (rows - r0)) / (r1 - r0));
}

/** Rows of one call over these images: doubled under guidance, as the SDXL stage does. */
export function stepRows(items: readonly Pick<StageItem, 'guidanceScale'>[]): number {
  return items.length * (items.some((it) => it.guidanceScale > 1) ? 2 : 1);
}

/** One image in a synthetic running set. */
export class SyntheticImage implements StepMember {
  readonly key: string;
  /** Steps done. */
  step = 0;

  constructor(
    readonly item: StageItem,
    readonly priority: Priority,
    readonly signal: AbortSignal,
    readonly onStep: (step: number, total: number) => void,
  ) {
    this.key = `${item.width}x${item.height}`;
  }

  get finished(): boolean {
    return this.step >= this.item.steps;
  }
}

/** One step call of a synthetic running set (option `call_log` records them, with the model id). */
export interface SyntheticCall {
  /** Wall-clock ms (performance.timeOrigin + performance.now()) when the call began and ended. */
  readonly startMs: number;
  readonly endMs: number;
  readonly rows: number;
  /** Images in the call, and the online ones among them. */
  readonly images: number;
  readonly online: number;
}

/** Timer time per call from the cost model; nothing to ready or finish. */
export class SyntheticStepModel implements StepModel<SyntheticImage> {
  constructor(
    private readonly cost: StepCost,
    private readonly progress: boolean,
    /** Told of every step call once it ends (option `call_log`). */
    private readonly onCall?: (call: SyntheticCall) => void,
  ) {}

  async start(): Promise<void> {}

  async step(images: readonly SyntheticImage[]): Promise<void> {
    const startMs = performance.timeOrigin + performance.now();
    const rows = stepRows(images.map((m) => m.item));
    const ms = this.cost.ms(rows);
    if (ms > 0) await sleep(ms);
    this.onCall?.({
      startMs, endMs: performance.timeOrigin + performance.now(), rows,
      images: images.length, online: images.filter((m) => m.priority === 'online').length,
    });
    for (const m of images) {
      m.step++;
      if (this.progress) m.onStep(m.step, m.item.steps);
    }
  }

  async finish(): Promise<void> {}
}
