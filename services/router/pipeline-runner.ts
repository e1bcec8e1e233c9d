/**
 * Runs a request through its pipeline: each stage on its own deployment, every image of the
 * request as one work unit per stage, the output of a stage handed to the next as its input
 * image. Owns model resolution (NOT_FOUND for unknown models or pipelines).
 */
import type { ClusterConfig, PipelineConfig, PipelineStageConfig } from '../common/config.js';
import type { Priority, WorkItemData } from '../common/work-item.js';
import { CancelledError, ModelNotFoundError, OrreryError, PipelineNotFoundError } from '../common/errors.js';
import type { QcOptions } from '../common/qc-config.js';
import type { QcVerdictData } from '../common/qc-verdict.js';
import type { DeploymentScheduler } from './deployment-scheduler.js';
import { nearestBucket, type Size } from './geometry.js';
import { decideQc } from './qc-rerolls.js';
import { imageSeed, type NormalizedRequest } from './request-validation.js';
import { WorkUnit, batchKey, type UnitResult } from './work-unit.js';

export interface StageTiming {
  readonly stage: string;
  readonly deployment: string;
  readonly queueSeconds: number;
  readonly runSeconds: number;
}

export interface PipelineImage extends UnitResult {
  readonly index: number;
  /** The seed that made the image: the request's seed + index, or a re-roll's (qc-rerolls.ts). */
  readonly seed: bigint;
  readonly modelId: string;
  /** The quality gate's result, when the pipeline has one. */
  readonly qcResult?: ImageQc;
}

/** An image's quality gate outcome: the verdict on its last attempt and how many attempts it took. */
export interface ImageQc {
  readonly verdict: QcVerdictData;
  readonly attempts: number;
  /** Size of the image checked (stage after_stage's output): the box is in its pixels. */
  readonly checkedWidth: number;
  readonly checkedHeight: number;
}

/** A failed quality check, as a streaming caller sees it (GenerateEvent.qc_rejected). */
export interface QcRejection {
  readonly imageIndex: number;
  readonly attempt: number;
  readonly seed: bigint;
  readonly verdict: QcVerdictData;
  /** The re-roll that follows; absent: this was the image's last attempt. */
  readonly next?: { readonly attempt: number; readonly seed: bigint };
}

/** Where the runner counts quality checks and re-rolls (RouterMetrics). */
export interface QcMetrics {
  qcChecked(pipeline: string, passed: boolean): void;
  qcRerolled(pipeline: string): void;
}

export interface PipelineResult {
  readonly images: PipelineImage[];
  readonly timings: StageTiming[];
}

/** What a streaming caller sees while the pipeline runs. */
export interface PipelineObserver {
  readonly queued?: (deployment: string, queueDepth: number) => void;
  readonly stageStarted?: (stage: string, deployment: string, replicaId: string, batchSize: number) => void;
  readonly progress?: (stage: string, imageIndex: number, step: number, totalSteps: number) => void;
  /** An image failed its quality check (re-rolled, or for good). */
  readonly qcRejected?: (rejection: QcRejection) => void;
}

interface StageInput {
  readonly data?: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** One image of a running request. */
interface ImageRun {
  readonly firstSeed: bigint;
  seed: bigint;
  attempt: number;
  input: StageInput;
  result?: UnitResult;
  qc?: ImageQc;
}

interface RunState {
  readonly req: NormalizedRequest;
  readonly signal: AbortSignal;
  readonly deadlineMs: number;
  readonly observer: PipelineObserver;
  readonly priority: Priority;
  readonly pipeline: PipelineConfig;
  readonly stages: readonly PlannedStage[];
  readonly target: Size;
  /** The first stage's input: the request's init image, if any, at the target size. */
  readonly first: StageInput;
  readonly images: ImageRun[];
  readonly timings: StageTiming[];
}

export interface PlannedStage {
  readonly name: string;
  readonly deployment: string;
  readonly modelId: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly size: PipelineStageConfig['size'];
  readonly scale: number;
  /** img2img strength fixed by the pipeline (e.g. the detail pass); else the request's. */
  readonly strength?: number;
}

const round8 = (x: number): number => Math.max(8, Math.round(x / 8) * 8);

/**
 * The request's final size in this pipeline: explicit width/height as given; otherwise the
 * pipeline's default size (an `aspect` keeps its width and sets the height), else the request's
 * size (its aspect's SDXL bucket or the default).
 */
export function targetSize(pipeline: PipelineConfig, req: NormalizedRequest): Size {
  if (req.sizeFrom === 'explicit' || !pipeline.defaultSize) return req.size;
  if (req.sizeFrom === 'aspect') return { width: pipeline.defaultSize.width, height: round8(pipeline.defaultSize.width / req.aspectRatio!) };
  return pipeline.defaultSize;
}

/** The size stage `stage` is asked to produce from an input of `input` (DESIGN §3, 21:9 geometry). */
export function stageSize(stage: Pick<PlannedStage, 'size' | 'scale'>, target: Size, input: Size): Size {
  switch (stage.size) {
    case 'target': return target;
    case 'bucket': return nearestBucket(target.width / target.height);
    case 'scaled': return { width: Math.round(input.width * stage.scale), height: Math.round(input.height * stage.scale) };
  }
}

/** Resolves the pipeline and each stage's model; throws NOT_FOUND errors naming what is unknown. */
export function planPipeline(config: ClusterConfig, req: NormalizedRequest): { pipeline: PipelineConfig; stages: PlannedStage[] } {
  const name = req.pipeline || config.defaultPipeline;
  const pipeline = config.pipelines[name];
  if (!pipeline) throw new PipelineNotFoundError(name, Object.keys(config.pipelines));
  const stages = pipeline.stages.map((s, i) => {
    const dep = config.deployments[s.deployment]!;
    // A stage with a fixed model ignores the request's model_id; otherwise the request's model
    // must be one the deployment serves.
    const modelId = s.model || req.modelId || dep.models[0]!;
    if (!dep.models.includes(modelId)) throw new ModelNotFoundError(modelId, `deployment ${dep.name} serves ${dep.models.join(', ')}`);
    const scale = typeof s.params.scale === 'number' && s.params.scale > 0 ? s.params.scale : 1;
    const strength = typeof s.params.strength === 'number' ? s.params.strength : undefined;
    return { name: `${i}:${s.deployment}`, deployment: s.deployment, modelId, params: s.params, size: s.size, scale, ...(strength !== undefined ? { strength } : {}) };
  });
  return { pipeline, stages };
}

export class PipelineRunner {
  constructor(
    private readonly config: ClusterConfig,
    private readonly schedulers: ReadonlyMap<string, DeploymentScheduler>,
    private readonly now: () => number,
    private readonly metrics?: QcMetrics,
  ) {}

  /**
   * Images of bulk work worth having in flight for `pipeline` now: enough to fill every slot of
   * every serving replica of its deployments with full batches (Σ replicas × max_batch_size ×
   * max_ongoing_batches), so bulk work batches fully on an idle cluster while the queues stay
   * short enough for online work to go first. 0 when a stage's deployment has no serving replica
   * or the pipeline is unknown.
   */
  bulkCapacity(pipeline: string): number {
    const p = this.config.pipelines[pipeline];
    if (!p) return 0;
    let total = 0;
    for (const deployment of new Set(p.stages.map((s) => s.deployment))) {
      const scheduler = this.schedulers.get(deployment);
      const replicas = scheduler?.servingReplicas ?? 0;
      if (!scheduler || replicas === 0) return 0;
      total += replicas * scheduler.config.maxBatchSize * scheduler.config.maxOngoingBatches;
    }
    return total;
  }

  /**
   * Runs the request; rejects with the first stage error (the other images' work is cancelled by
   * the caller's signal). `deadlineMs` is absolute (0: none). `options.priority` (default
   * `online`): bulk-job items pass `bulk`, and queue and run behind online work.
   *
   * With a quality gate (`pipeline.qc`), stages 0..after_stage run first; an image whose check
   * fails runs them again with its next attempt's seed (qc-rerolls.ts), alone — the images that
   * passed wait — until it passes or its attempts are used up; then `on_fail` flags it or fails the
   * request with QcFailedError. The later stages then run for every image.
   */
  async run(req: NormalizedRequest, signal: AbortSignal, deadlineMs: number, observer: PipelineObserver = {}, options: { readonly priority?: Priority } = {}): Promise<PipelineResult> {
    const { pipeline, stages } = planPipeline(this.config, req);
    const target = targetSize(pipeline, req);
    const first: StageInput = { ...(req.initImage ? { data: req.initImage } : {}), width: target.width, height: target.height };
    const images: ImageRun[] = Array.from({ length: req.numImages }, (_, i) => ({ firstSeed: imageSeed(req.seed, i), seed: imageSeed(req.seed, i), attempt: 1, input: first }));
    const run: RunState = { req, signal, deadlineMs, observer, priority: options.priority ?? 'online', pipeline, stages, target, first, images, timings: [] };
    const all = images.map((_, i) => i);
    const gate = pipeline.qc;
    if (gate) {
      for (let todo = all; todo.length > 0;) {
        await this.runStages(run, 0, gate.afterStage, todo);
        todo = todo.filter((i) => this.judge(run, gate, i));
      }
    }
    await this.runStages(run, gate ? gate.afterStage + 1 : 0, stages.length - 1, all);
    const last = stages[stages.length - 1]!;
    return {
      images: images.map((img, i) => ({ ...img.result!, index: i, seed: img.seed, modelId: last.modelId, ...(img.qc ? { qcResult: img.qc } : {}) })),
      timings: run.timings,
    };
  }

  /**
   * Applies the gate's verdict on image `i` (its checking stage's result). Returns true when the
   * image is to be generated again (its seed and attempt are advanced, its input reset); throws
   * QcFailedError when it failed for good under `on_fail: error`.
   */
  private judge(run: RunState, gate: QcOptions, i: number): boolean {
    const img = run.images[i]!;
    const verdict = img.result?.qc;
    if (!verdict) throw new OrreryError('ORRERY_ERR_STAGE_FAILED', `stage ${run.stages[gate.afterStage]!.name} returned no quality verdict for image ${i} (its stage does not run the check)`);
    this.metrics?.qcChecked(run.pipeline.name, verdict.passed);
    const d = decideQc(verdict, img.attempt, img.firstSeed, i, gate, run.pipeline.name);
    if (d.kind === 'reroll') {
      run.observer.qcRejected?.({ imageIndex: i, attempt: img.attempt, seed: img.seed, verdict, next: { attempt: d.attempt, seed: d.seed } });
      this.metrics?.qcRerolled(run.pipeline.name);
      img.attempt = d.attempt;
      img.seed = d.seed;
      img.input = run.first;
      return true;
    }
    if (d.kind !== 'accept') run.observer.qcRejected?.({ imageIndex: i, attempt: img.attempt, seed: img.seed, verdict });
    if (d.kind === 'fail') throw d.error;
    img.qc = { verdict, attempts: img.attempt, checkedWidth: img.result!.width, checkedHeight: img.result!.height };
    return false;
  }

  /** Runs stages `from`..`to` (inclusive) for the images `indices`, each stage's outputs the next one's inputs. */
  private async runStages(run: RunState, from: number, to: number, indices: readonly number[]): Promise<void> {
    const { req, signal, stages, target, images, observer, pipeline } = run;
    const gate = pipeline.qc;
    for (let stageIndex = from; stageIndex <= to; stageIndex++) {
      const stage = stages[stageIndex]!;
      // Every stage but the last hands its images to the next: lossless PNG whatever the client
      // asked for (a JPEG between stages would lose detail twice).
      const intermediate = stageIndex < stages.length - 1;
      if (signal.aborted) throw signal.reason instanceof OrreryError ? signal.reason : new CancelledError('by the client');
      const scheduler = this.schedulers.get(stage.deployment)!;
      const dep = scheduler.config;
      const units = indices.map((i) => {
        const img = images[i]!;
        const out = stageSize(stage, target, img.input);
        const input: WorkItemData = {
          requestId: req.requestId, imageIndex: i, seed: img.seed, prompt: req.prompt,
          negativePrompt: req.negativePrompt, steps: req.steps || dep.defaultSteps,
          guidanceScale: req.guidanceScale ?? dep.defaultGuidanceScale, width: out.width, height: out.height,
          strength: stage.strength ?? req.strength, ...(img.input.data ? { initImage: img.input.data } : {}), outputFormat: intermediate ? 'png' : req.outputFormat,
          params: stage.params, intermediate, pipeline: pipeline.name, priority: run.priority,
          ...(gate && gate.afterStage === stageIndex ? { qc: { options: gate, attempt: img.attempt } } : {}),
        };
        const { stageStarted, progress } = observer;
        // Progress only when the caller listens: a batch that wants it costs its replica a NATS
        // message per step.
        return new WorkUnit(stage.deployment, stage.modelId, batchKey(stage.modelId, input), input, run.deadlineMs, signal, this.now(), {
          ...(stageStarted ? { started: (replicaId: string, n: number) => stageStarted(stage.name, stage.deployment, replicaId, n) } : {}),
          ...(progress ? { progress: (step: number, total: number) => progress(stage.name, i, step, total) } : {}),
        });
      });
      scheduler.submit(units);
      observer.queued?.(stage.deployment, scheduler.queueDepth);
      const results = await Promise.all(units.map((u) => u.result));
      run.timings.push({
        stage: stage.name, deployment: stage.deployment,
        queueSeconds: Math.max(...results.map((r) => r.queueSeconds)), runSeconds: Math.max(...results.map((r) => r.runSeconds)),
      });
      indices.forEach((i, k) => {
        images[i]!.result = results[k]!;
        images[i]!.input = results[k]!;
      });
    }
  }
}
