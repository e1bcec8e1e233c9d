/**
 * Runs a request through its pipeline: each stage on its own deployment, every image of the
 * request as one work unit per stage, the output of a stage handed to the next as its input
 * image. Owns model resolution (NOT_FOUND for unknown models or pipelines).
 */
import type { ClusterConfig, PipelineConfig, PipelineStageConfig } from '../common/config.js';
import type { Priority, WorkItemData } from '../common/work-item.js';
import { CancelledError, ModelNotFoundError, OrreryError, PipelineNotFoundError } from '../common/errors.js';
import type { DeploymentScheduler } from './deployment-scheduler.js';
import { nearestBucket, type Size } from './geometry.js';
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
  readonly seed: bigint;
  readonly modelId: string;
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
   */
  async run(req: NormalizedRequest, signal: AbortSignal, deadlineMs: number, observer: PipelineObserver = {}, options: { readonly priority?: Priority } = {}): Promise<PipelineResult> {
    const priority = options.priority ?? 'online';
    const { pipeline, stages } = planPipeline(this.config, req);
    const target = targetSize(pipeline, req);
    const timings: StageTiming[] = [];
    let inputs: Array<{ data?: Uint8Array; width: number; height: number }> = Array.from({ length: req.numImages }, () => ({
      data: req.initImage, width: target.width, height: target.height,
    }));
    let results: UnitResult[] = [];
    for (const [stageIndex, stage] of stages.entries()) {
      // Every stage but the last hands its images to the next: lossless PNG whatever the client
      // asked for (a JPEG between stages would lose detail twice).
      const intermediate = stageIndex < stages.length - 1;
      if (signal.aborted) throw signal.reason instanceof OrreryError ? signal.reason : new CancelledError('by the client');
      const scheduler = this.schedulers.get(stage.deployment)!;
      const dep = scheduler.config;
      const units = inputs.map((inp, i) => {
        const out = stageSize(stage, target, inp);
        const input: WorkItemData = {
          requestId: req.requestId, imageIndex: i, seed: imageSeed(req.seed, i), prompt: req.prompt,
          negativePrompt: req.negativePrompt, steps: req.steps || dep.defaultSteps,
          guidanceScale: req.guidanceScale ?? dep.defaultGuidanceScale, width: out.width, height: out.height,
          strength: stage.strength ?? req.strength, ...(inp.data ? { initImage: inp.data } : {}), outputFormat: intermediate ? 'png' : req.outputFormat,
          params: stage.params, intermediate, pipeline: pipeline.name, priority,
        };
        const { stageStarted, progress } = observer;
        // Progress only when the caller listens: a batch that wants it costs its replica a NATS
        // message per step.
        return new WorkUnit(stage.deployment, stage.modelId, batchKey(stage.modelId, input), input, deadlineMs, signal, this.now(), {
          ...(stageStarted ? { started: (replicaId: string, n: number) => stageStarted(stage.name, stage.deployment, replicaId, n) } : {}),
          ...(progress ? { progress: (step: number, total: number) => progress(stage.name, i, step, total) } : {}),
        });
      });
      scheduler.submit(units);
      observer.queued?.(stage.deployment, scheduler.queueDepth);
      results = await Promise.all(units.map((u) => u.result));
      timings.push({
        stage: stage.name, deployment: stage.deployment,
        queueSeconds: Math.max(...results.map((r) => r.queueSeconds)), runSeconds: Math.max(...results.map((r) => r.runSeconds)),
      });
      inputs = results;
    }
    const last = stages[stages.length - 1]!;
    return {
      images: results.map((r, i) => ({ ...r, index: i, seed: imageSeed(req.seed, i), modelId: last.modelId })),
      timings,
    };
  }
}
