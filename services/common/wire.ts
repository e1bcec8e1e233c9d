/**
 * Codecs for the internal NATS messages (proto/orrery/v1/worker.proto), loaded at run time with
 * protobufjs so no generated code is checked in.
 */
import path from 'node:path';
import protobuf from 'protobufjs';
import { packageRoot } from './package-root.js';

export interface Payload { inline?: Uint8Array; objectName?: string; size?: number }
export interface WorkItem {
  requestId: string; imageIndex: number; /** uint64 as a decimal string (seeds use all 64 bits). */
  seed: string; prompt: string; negativePrompt: string;
  steps: number; guidanceScale: number; width: number; height: number; strength: number;
  initImage?: Payload | null; outputFormat: string; stageParamsJson: string;
  /** The output feeds the next pipeline stage (see worker.proto). */
  intermediate: boolean;
  pipeline: string;
  /** online | bulk */
  priority: string;
  /** JSON of work-item.ts QcRequest; '' when the stage does not check its output. */
  qcJson?: string;
}
export interface BatchRequest {
  batchId: string; attempt: number; modelId: string;
  items: WorkItem[]; deadlineUnixMs: number; progressSubject: string;
}
export interface ErrorInfo { code: string; message: string }
export interface ItemResult {
  requestId: string; imageIndex: number; image?: Payload | null; width: number; height: number;
  mimeType: string; error?: ErrorInfo | null;
  /** qc-verdict.ts encodeQcVerdict; '' when the item was not checked. */
  qcJson?: string;
}
export interface BatchReply {
  batchId: string; attempt: number; replicaId: string; results: ItemResult[];
  error?: ErrorInfo | null; runSeconds: number; loadSeconds: number;
}
export interface Progress { batchId: string; requestId: string; imageIndex: number; step: number; totalSteps: number }
export interface Cancel { batchId: string; requestIds: string[] }
export interface Heartbeat {
  replicaId: string; deployment: string; state: string; loadedModels: string[]; inFlightBatches: string[];
  inFlightItems: number; maxOngoingBatches: number; maxModelsPerReplica: number; seq: number;
  intervalMs: number; loadingModel: string;
  /** Continuous batching (issue 12): images a step can hold (max_batch_size; 0 = request-level batching). */
  runningSetCapacity: number;
  /** Images stepping now, summed over the replica's running sets. */
  runningSetOccupied: number;
  /** Images the replica holds that wait to join (or to resume). */
  runningSetWaiting: number;
  /** Online images among `inFlightItems` (continuous batching: the room online images have, room-policy.ts). */
  inFlightOnlineItems: number;
}

export interface Codec<T> {
  encode(msg: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

let root: protobuf.Root | undefined;
function workerRoot(): protobuf.Root {
  root ??= protobuf.loadSync(path.join(protoDir(), 'orrery/v1/worker.proto'));
  return root;
}

function codec<T>(name: string): Codec<T> {
  let type: protobuf.Type | undefined;
  const t = () => (type ??= workerRoot().lookupType(`orrery.v1.internal.${name}`));
  return {
    encode: (msg) => t().encode(t().fromObject(msg as object)).finish(),
    decode: (bytes) =>
      t().toObject(t().decode(bytes), { longs: String, defaults: true, arrays: true, oneofs: false }) as T,
  };
}

export const wire = {
  batchRequest: codec<BatchRequest>('BatchRequest'),
  batchReply: codec<BatchReply>('BatchReply'),
  progress: codec<Progress>('Progress'),
  cancel: codec<Cancel>('Cancel'),
  heartbeat: codec<Heartbeat>('Heartbeat'),
};

/** Directory holding the .proto files (for the gRPC server's proto-loader). */
export function protoDir(): string {
  return path.join(packageRoot(), 'proto');
}
