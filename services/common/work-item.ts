/**
 * The work item: one image of one pipeline stage, the same type from the router's queue to the
 * stage that runs it (services/stages/stage.ts StageItem), and its one codec to and from the
 * internal wire message (proto/orrery/v1/worker.proto WorkItem). Nothing re-shapes it on the way:
 * the router builds it once (pipeline-runner.ts), the dispatcher encodes it, the replica decodes it.
 */
import type { QcOptions } from './qc-config.js';
import type { Payload, WorkItem as WireWorkItem } from './wire.js';

export type OutputFormat = 'png' | 'webp' | 'jpeg';

/**
 * Who is waiting for the image: `online` (a Generate/GenerateStream caller) or `bulk` (an item of a
 * bulk job). Online work is batched and run first (docs/architecture.md, "Priority").
 */
export type Priority = 'online' | 'bulk';

export interface WorkItemData {
  readonly requestId: string;
  readonly imageIndex: number;
  /** Full 64-bit seed. */
  readonly seed: bigint;
  readonly prompt: string;
  readonly negativePrompt: string;
  readonly steps: number;
  readonly guidanceScale: number;
  readonly width: number;
  readonly height: number;
  readonly strength: number;
  /** Encoded input image (img2img, upscaler, or the previous pipeline stage's output). */
  readonly initImage?: Uint8Array;
  readonly outputFormat: OutputFormat;
  /** Parameters from the pipeline definition (e.g. an upscale factor); frozen config objects. */
  readonly params: Readonly<Record<string, unknown>>;
  /**
   * The output feeds the next pipeline stage, not the client (outputFormat is then png): encode
   * it losslessly and fast — PNG level 0 — whatever the deployment's PNG options say.
   */
  readonly intermediate?: boolean;
  /** The request's pipeline (for the parameters every final image carries); '' when unknown. */
  readonly pipeline?: string;
  /** Default `online`. */
  readonly priority?: Priority;
  /**
   * Set on the items of the stage a pipeline's quality gate checks (`qc.after_stage`): the stage
   * checks its output before encoding it and returns the verdict (StageOutput.qc).
   */
  readonly qc?: QcRequest;
}

/** What the checking stage needs: the pipeline's gate, and which attempt this image is (1, 2, …). */
export interface QcRequest {
  readonly options: QcOptions;
  readonly attempt: number;
}

const OUTPUT_FORMATS: readonly OutputFormat[] = ['png', 'webp', 'jpeg'];

/** Stage parameters are frozen config objects: each is serialized once, not once per image. */
const paramsJsonCache = new WeakMap<object, string>();

/** `params` as the JSON the wire carries (cached per params object). */
export function paramsJson(params: Readonly<Record<string, unknown>>): string {
  let json = paramsJsonCache.get(params);
  if (json === undefined) paramsJsonCache.set(params, (json = JSON.stringify(params)));
  return json;
}

/** The wire form of `item`; its input image travels as `initImage` (inline or stored, see payload-store.ts). */
export function encodeWorkItem(item: WorkItemData, initImage: Payload | null): WireWorkItem {
  return {
    requestId: item.requestId, imageIndex: item.imageIndex, seed: item.seed.toString(), prompt: item.prompt,
    negativePrompt: item.negativePrompt, steps: item.steps, guidanceScale: item.guidanceScale, width: item.width,
    height: item.height, strength: item.strength, initImage, outputFormat: item.outputFormat,
    stageParamsJson: paramsJson(item.params), intermediate: item.intermediate ?? false,
    pipeline: item.pipeline ?? '', priority: item.priority ?? 'online', qcJson: item.qc ? JSON.stringify(item.qc) : '',
  };
}

/**
 * The item a wire message describes, with its input image already read (`initImage`, empty or
 * absent for none). Throws a plain Error for a message no router of this version writes.
 */
export function decodeWorkItem(w: WireWorkItem, initImage: Uint8Array | undefined): WorkItemData {
  const outputFormat = (w.outputFormat || 'png') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(outputFormat)) throw new Error(`work item ${w.requestId}/${w.imageIndex}: unknown output format ${JSON.stringify(w.outputFormat)}`);
  const params = w.stageParamsJson ? (JSON.parse(w.stageParamsJson) as Record<string, unknown>) : {};
  return {
    requestId: w.requestId, imageIndex: w.imageIndex, seed: BigInt(w.seed), prompt: w.prompt, negativePrompt: w.negativePrompt,
    steps: w.steps, guidanceScale: w.guidanceScale, width: w.width, height: w.height, strength: w.strength,
    ...(initImage && initImage.byteLength > 0 ? { initImage } : {}),
    outputFormat, params, intermediate: w.intermediate, pipeline: w.pipeline,
    priority: w.priority === 'bulk' ? 'bulk' : 'online',
    ...(w.qcJson ? { qc: JSON.parse(w.qcJson) as QcRequest } : {}),
  };
}
