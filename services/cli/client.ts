/**
 * A typed-enough gRPC client for orrery.v1.ImageService and grpc.health.v1.Health, built from
 * the same .proto files at run time. Used by `orrery generate`, the tests and the benchmarks.
 */
import * as grpc from '@grpc/grpc-js';
import { healthServiceDefinition, imageServiceDefinition } from '../common/grpc-protos.js';
import { grpcTarget } from './retry-policy.js';

export interface ImageServiceClient extends grpc.Client {
  Generate(req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: GenerateResponse) => void): grpc.ClientUnaryCall;
  GenerateStream(req: object, meta?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<GenerateEvent>;
  ListModels(req: object, cb: (err: grpc.ServiceError | null, res: ListModelsResponse) => void): grpc.ClientUnaryCall;
  SubmitJob(req: object, cb: (err: grpc.ServiceError | null, res: unknown) => void): grpc.ClientUnaryCall;
}

export interface ImageMessage {
  seed: string; width: number; height: number; mime_type: string; data: Buffer; prompt: string; model_id: string; replica_id: string;
  /** null when the pipeline has no quality gate. */
  qc?: QcResultMessage | null;
}
export interface QcBoxMessage { left: number; top: number; right: number; bottom: number }
export interface QcResultMessage {
  passed: boolean; attempts: number; seed: string; box: QcBoxMessage | null; area_fraction: number; reasons: string[];
  checked_width: number; checked_height: number;
}
export interface QcRejectedMessage {
  image_index: number; attempt: number; seed: string; reasons: string[]; box: QcBoxMessage | null; area_fraction: number;
  rerolled: boolean; next_attempt: number; next_seed: string;
}
export interface GenerateResponse {
  request_id: string;
  images: ImageMessage[];
  timings: Array<{ stage: string; deployment: string; queue_seconds: number; run_seconds: number }>;
}
export interface GenerateEvent {
  request_id: string;
  event: 'queued' | 'stage_started' | 'progress' | 'image_chunk' | 'done' | 'qc_rejected';
  queued?: { deployment: string; queue_depth: number };
  stage_started?: { stage: string; deployment: string; replica_id: string; batch_size: number };
  progress?: { stage: string; image_index: number; step: number; total_steps: number };
  image_chunk?: { image_index: number; offset: string; data: Buffer; last: boolean; meta: ImageMessage | null };
  done?: { timings: GenerateResponse['timings']; num_images: number };
  qc_rejected?: QcRejectedMessage;
}
export interface ListModelsResponse {
  models: Array<{ model_id: string; deployment: string; loaded_on: string[]; base: string; adapter: string; variant: string }>;
  pipelines: Array<{ name: string; stages: string[]; default_model_id: string }>;
  deployments: Array<{ name: string; ready_replicas: number; queued_requests: number }>;
}

const CHANNEL_OPTIONS = { 'grpc.max_receive_message_length': 256 * 1024 * 1024, 'grpc.max_send_message_length': 80 * 1024 * 1024 };

/**
 * An ImageService client of `address`: one `host:port`, or several comma-separated (retry-policy.ts
 * `grpcTarget`). `options` are added to the channel's (grpc-js shares one connection between
 * clients with equal options: a distinct option keeps a client on its own connection); pass
 * RETRYING_CHANNEL_OPTIONS to retry UNAVAILABLE calls. `credentials`: TLS and a bearer token for a
 * secured router (grpc-credentials.ts); default plaintext.
 */
export function imageServiceClient(address: string, options: grpc.ChannelOptions = {}, credentials = grpc.credentials.createInsecure()): ImageServiceClient {
  const ImageService = imageServiceDefinition();
  return new ImageService(grpcTarget(address), credentials, { ...CHANNEL_OPTIONS, ...options }) as unknown as ImageServiceClient;
}

export interface HealthClient extends grpc.Client {
  Check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
}

export function healthClient(address: string, credentials = grpc.credentials.createInsecure()): HealthClient {
  const Health = healthServiceDefinition();
  return new Health(address, credentials) as unknown as HealthClient;
}

/** Generate as a promise. `deadlineMs` is relative. */
export function generate(client: ImageServiceClient, req: object, deadlineMs = 120_000, meta = new grpc.Metadata()): Promise<GenerateResponse> {
  return new Promise((resolve, reject) =>
    client.Generate(req, meta, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

/** The health status of `service` ('' = the server as a whole), or the error's message. */
export function checkHealth(client: HealthClient, service: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) =>
    client.Check({ service }, { deadline: Date.now() + timeoutMs }, (err, res) => resolve(err ? `error: ${err.details || err.message}` : res.status)),
  );
}
