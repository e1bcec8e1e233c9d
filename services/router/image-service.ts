/**
 * The public API's handlers (orrery.v1.ImageService). Each RPC validates at the edge, runs the
 * pipeline and maps any error to its gRPC status once (errors.ts). The job RPCs are in
 * jobs/job-service.ts (UNIMPLEMENTED when jobs.enabled is false).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Metadata, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { asOrreryError, OrreryError, RequestBytesInFlightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { jobHandlers } from './jobs/job-service.js';
import type { JobManager } from './jobs/job-manager.js';
import type { PipelineResult, PipelineRunner } from './pipeline-runner.js';
import { qcRejectedMessage, qcResultMessage } from './qc-messages.js';
import { normalizeRequest, type GenerateRequestWire, type NormalizedRequest } from './request-validation.js';
import { RequestBytesBudget } from './request-bytes-budget.js';
import { requestContext, type ServerCall } from './request-context.js';
import type { RouterMetrics } from './router-metrics.js';

/** Images are streamed in chunks of this size (gRPC's default max message is 4 MB). */
export const IMAGE_CHUNK_BYTES = 1024 * 1024;

export interface ImageServiceDeps {
  readonly runner: PipelineRunner;
  readonly metrics: RouterMetrics;
  readonly log: Logger;
  readonly listModels: () => unknown;
  readonly defaultPipeline: string;
  /** router.max_request_bytes_in_flight: cap on the request bytes the calls in flight hold. */
  readonly maxRequestBytesInFlight: number;
  /** The bulk-job machinery; absent (jobs.enabled: false): the job RPCs answer UNIMPLEMENTED. */
  readonly jobs?: JobManager;
}

function toServiceError(err: OrreryError): Partial<ServiceError> {
  const metadata = new Metadata();
  metadata.set('orrery-error-code', err.code);
  return { code: err.grpcStatus, details: err.message, metadata };
}

const randomSeed = (): bigint => randomBytes(8).readBigUInt64BE();

function imageMessage(req: NormalizedRequest, img: PipelineResult['images'][number], withData: boolean) {
  return {
    seed: img.seed.toString(), width: img.width, height: img.height, mime_type: img.mimeType,
    data: withData ? img.data : Buffer.alloc(0), prompt: req.prompt, model_id: img.modelId, replica_id: img.replicaId,
    ...(img.qcResult ? { qc: qcResultMessage(img.qcResult, img.seed) } : {}),
  };
}

/** Records the per-stage timings in the metrics and turns them into StageTiming messages. */
function timingMessages(res: PipelineResult, pipeline: string, metrics: RouterMetrics) {
  for (const t of res.timings) metrics.stageTiming(pipeline, t.deployment, t.queueSeconds + t.runSeconds);
  return res.timings.map((t) => ({ stage: t.stage, deployment: t.deployment, queue_seconds: t.queueSeconds, run_seconds: t.runSeconds }));
}

export function imageService(deps: ImageServiceDeps): UntypedServiceImplementation {
  const { runner, metrics, log } = deps;
  const requestBytes = new RequestBytesBudget(deps.maxRequestBytesInFlight);

  /**
   * Validates, runs and accounts one request; `body` turns the result into the reply. `pipeline`
   * is the request's pipeline name with the cluster's default filled in.
   */
  async function handle(method: string, call: ServerCall, body: (req: NormalizedRequest, pipeline: string, signal: AbortSignal, deadlineMs: number) => Promise<void>): Promise<OrreryError | undefined> {
    const started = performance.now();
    let pipeline = 'unknown';
    let ctx: ReturnType<typeof requestContext> | undefined;
    // Charged before anything else holds the request; released in `finally` when the call ends.
    const lease = requestBytes.tryAcquire(RequestBytesBudget.chargeFor((call.request as GenerateRequestWire | undefined)?.init_image?.byteLength ?? 0));
    try {
      if (lease.kind === 'reject') throw new RequestBytesInFlightError(lease.requestBytes, lease.inFlightBytes, lease.limitBytes);
      const req = normalizeRequest(call.request as GenerateRequestWire, randomUUID, randomSeed);
      pipeline = req.pipeline || deps.defaultPipeline;
      ctx = requestContext(call, req.timeoutMs, Date.now());
      await body(req, pipeline, ctx.signal, ctx.deadlineMs);
      metrics.request(method, 'OK', pipeline, (performance.now() - started) / 1000);
      return undefined;
    } catch (raw) {
      const err = ctx?.signal.aborted && ctx.signal.reason instanceof OrreryError ? ctx.signal.reason : asOrreryError(raw);
      if (err.code === 'ORRERY_ERR_INTERNAL') log.error({ err: raw }, 'request failed');
      metrics.request(method, GrpcStatus[err.grpcStatus] ?? String(err.grpcStatus), pipeline, (performance.now() - started) / 1000);
      metrics.error(err.code);
      return err;
    } finally {
      ctx?.dispose();
      if (lease.kind === 'admit') lease.release();
    }
  }

  /** Runs one job RPC and maps its error to a status once, with the request metrics. */
  function jobUnary(method: string, callback: sendUnaryData<unknown>, fn: () => Promise<unknown>): void {
    const started = performance.now();
    fn().then(
      (reply) => {
        metrics.request(method, 'OK', 'jobs', (performance.now() - started) / 1000);
        callback(null, reply);
      },
      (raw: unknown) => callback(toServiceError(jobError(method, raw, started))),
    );
  }

  function jobStream(method: string, call: ServerWritableStream<unknown, unknown>, fn: () => Promise<void>): void {
    const started = performance.now();
    fn().then(
      () => {
        metrics.request(method, 'OK', 'jobs', (performance.now() - started) / 1000);
        call.end();
      },
      // emit('error'), not destroy(err): grpc-js sends a server stream's status from its 'error' listener.
      (raw: unknown) => call.emit('error', toServiceError(jobError(method, raw, started))),
    );
  }

  function jobError(method: string, raw: unknown, started: number): OrreryError {
    const err = asOrreryError(raw);
    if (err.code === 'ORRERY_ERR_INTERNAL') log.error({ err: raw, method }, 'job call failed');
    metrics.request(method, GrpcStatus[err.grpcStatus] ?? String(err.grpcStatus), 'jobs', (performance.now() - started) / 1000);
    metrics.error(err.code);
    return err;
  }

  /** jobs.enabled: false — every job RPC answers UNIMPLEMENTED. */
  function jobsDisabled(): UntypedServiceImplementation {
    return Object.fromEntries(
      ['SubmitJob', 'AddJobItems', 'GetJob', 'WatchJob', 'CancelJob', 'ListJobs', 'ListJobItems', 'RetryJob', 'DeleteJob'].map((name) => [
        name,
        (call: ServerCall, callback?: sendUnaryData<unknown>) => {
          const err = { code: GrpcStatus.UNIMPLEMENTED, details: `${name}: bulk jobs are disabled in this cluster (jobs.enabled: false)` };
          if (callback) callback(err);
          else (call as ServerWritableStream<unknown, unknown>).emit('error', err);
        },
      ]),
    );
  }

  return {
    Generate: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      let reply: unknown;
      void handle('Generate', call, async (req, pipeline, signal, deadlineMs) => {
        const res = await runner.run(req, signal, deadlineMs);
        metrics.pipelineImagesDone(pipeline, res.images.length);
        reply = { request_id: req.requestId, images: res.images.map((img) => imageMessage(req, img, true)), timings: timingMessages(res, pipeline, metrics) };
      }).then((err) => (err ? callback(toServiceError(err)) : callback(null, reply)));
    },

    GenerateStream: (call: ServerWritableStream<unknown, unknown>) => {
      void handle('GenerateStream', call, async (req, pipeline, signal, deadlineMs) => {
        const id = req.requestId;
        const send = (event: object) => {
          if (!call.cancelled) call.write({ request_id: id, ...event });
        };
        const res = await runner.run(req, signal, deadlineMs, {
          queued: (deployment, depth) => send({ queued: { deployment, queue_depth: depth } }),
          stageStarted: (stage, deployment, replicaId, n) => send({ stage_started: { stage, deployment, replica_id: replicaId, batch_size: n } }),
          progress: (stage, imageIndex, step, total) => send({ progress: { stage, image_index: imageIndex, step, total_steps: total } }),
          qcRejected: (rejection) => send({ qc_rejected: qcRejectedMessage(rejection) }),
        });
        for (const img of res.images) {
          const data = img.data;
          for (let offset = 0; offset === 0 || offset < data.byteLength; offset += IMAGE_CHUNK_BYTES) {
            const end = Math.min(data.byteLength, offset + IMAGE_CHUNK_BYTES);
            send({
              image_chunk: {
                image_index: img.index, offset, data: data.subarray(offset, end), last: end >= data.byteLength,
                meta: offset === 0 ? imageMessage(req, img, false) : undefined,
              },
            });
          }
        }
        metrics.pipelineImagesDone(pipeline, res.images.length);
        send({ done: { timings: timingMessages(res, pipeline, metrics), num_images: res.images.length } });
      }).then((err) => {
        // grpc-js sends a server stream's status from its 'error' listener (then end()); destroy(err)
        // would skip that, and the caller would wait for its deadline (found by fuzzing).
        if (err) call.emit('error', toServiceError(err));
        else call.end();
      });
    },

    ListModels: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      callback(null, deps.listModels());
    },

    ...(deps.jobs ? jobHandlers(deps.jobs, jobUnary, jobStream) : jobsDisabled()),
  };
}
