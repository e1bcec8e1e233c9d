/**
 * Runs a request through its pipeline: each stage on its own deployment, every image of the
 * request as one work unit per stage, the output of a stage handed to the next as its input
 * image. Owns model resolution (NOT_FOUND for unknown models or pipelines).
 */
import type { ClusterConfig, PipelineConfig } from '../common/config.js';
import { CancelledError, ModelNotFoundError, OrreryError, PipelineNotFoundError } from '../common/errors.js';
import type { DeploymentScheduler } from './deployment-scheduler.js';
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
  queued?(deployment: string, queueDepth: number): void;
  stageStarted?(stage: string, deployment: string, replicaId: string, batchSize: number): void;
  progress?(stage: string, imageIndex: number, step: number, totalSteps: number): void;
}

export interface PlannedStage {
  readonly name: string;
  readonly deployment: string;
  readonly modelId: string;
  readonly params: string;
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
    return { name: `${i}:${s.deployment}`, deployment: s.deployment, modelId, params: JSON.stringify(s.params) };
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
   * Runs the request; rejects with the first stage error (the other images' work is cancelled by
   * the caller's signal). `deadlineMs` is absolute (0: none).
   */
  async run(req: NormalizedRequest, signal: AbortSignal, deadlineMs: number, observer: PipelineObserver = {}): Promise<PipelineResult> {
    const { stages } = planPipeline(this.config, req);
    const timings: StageTiming[] = [];
    let inputs: Array<{ data?: Uint8Array; width: number; height: number }> = Array.from({ length: req.numImages }, () => ({
      data: req.initImage, width: req.size.width, height: req.size.height,
    }));
    let results: UnitResult[] = [];
    for (const stage of stages) {
      if (signal.aborted) throw signal.reason instanceof OrreryError ? signal.reason : new CancelledError('by the client');
      const scheduler = this.schedulers.get(stage.deployment)!;
      const dep = scheduler.config;
      const units = inputs.map((inp, i) => {
        const input = {
          requestId: req.requestId, imageIndex: i, seed: imageSeed(req.seed, i), prompt: req.prompt,
          negativePrompt: req.negativePrompt, steps: req.steps || dep.defaultSteps,
          guidanceScale: req.guidanceScale ?? dep.defaultGuidanceScale, width: inp.width, height: inp.height,
          strength: req.strength, initImage: inp.data, outputFormat: req.outputFormat, stageParamsJson: stage.params,
        };
        return new WorkUnit(stage.deployment, stage.modelId, batchKey(stage.modelId, input), input, deadlineMs, signal, this.now(), {
          started: (replicaId, n) => observer.stageStarted?.(stage.name, stage.deployment, replicaId, n),
          progress: (step, total) => observer.progress?.(stage.name, i, step, total),
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
