/**
 * Orrery's error catalogue. Every failure a client or another process can see has a stable
 * `ORRERY_ERR_*` code, mapped once here to a gRPC status. Codes are never reused.
 * Over NATS an error travels as {code, message} and is rebuilt with {@link fromWire}.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

export const ERROR_CODES = {
  ORRERY_ERR_INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  ORRERY_ERR_MODEL_NOT_FOUND: GrpcStatus.NOT_FOUND,
  ORRERY_ERR_PIPELINE_NOT_FOUND: GrpcStatus.NOT_FOUND,
  ORRERY_ERR_QUEUE_FULL: GrpcStatus.RESOURCE_EXHAUSTED,
  ORRERY_ERR_REQUEST_BYTES_IN_FLIGHT: GrpcStatus.RESOURCE_EXHAUSTED,
  ORRERY_ERR_DEADLINE_EXCEEDED: GrpcStatus.DEADLINE_EXCEEDED,
  ORRERY_ERR_CANCELLED: GrpcStatus.CANCELLED,
  ORRERY_ERR_NO_REPLICA: GrpcStatus.UNAVAILABLE,
  ORRERY_ERR_REPLICA_DRAINING: GrpcStatus.UNAVAILABLE,
  ORRERY_ERR_REPLICA_LOST: GrpcStatus.UNAVAILABLE,
  /** A replica refused a batch unrun: its max_ongoing_batches slots were taken (by other routers' batches). Routers requeue it. */
  ORRERY_ERR_REPLICA_FULL: GrpcStatus.UNAVAILABLE,
  ORRERY_ERR_MODEL_LOAD_FAILED: GrpcStatus.INTERNAL,
  ORRERY_ERR_STAGE_FAILED: GrpcStatus.INTERNAL,
  ORRERY_ERR_CONFIG: GrpcStatus.FAILED_PRECONDITION,
  ORRERY_ERR_SINK_UNAVAILABLE: GrpcStatus.FAILED_PRECONDITION,
  ORRERY_ERR_JOB_NOT_FOUND: GrpcStatus.NOT_FOUND,
  ORRERY_ERR_JOB_STATE: GrpcStatus.FAILED_PRECONDITION,
  /** An item stopped because its job's completion window passed (recorded on the item; never a call's status in practice). */
  ORRERY_ERR_JOB_EXPIRED: GrpcStatus.DEADLINE_EXCEEDED,
  ORRERY_ERR_UNIMPLEMENTED: GrpcStatus.UNIMPLEMENTED,
  ORRERY_ERR_QC_FAILED: GrpcStatus.FAILED_PRECONDITION,
  ORRERY_ERR_NATS_AUTH: GrpcStatus.UNAVAILABLE,
  ORRERY_ERR_UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  ORRERY_ERR_PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  ORRERY_ERR_INTERNAL: GrpcStatus.INTERNAL,
  /** The NATS object store could not store or read an image (NATS restarting): retryable. Routers retry the batch once. */
  ORRERY_ERR_PAYLOAD_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Base class: a coded error with an optional chained cause. */
export class OrreryError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  /** The gRPC status this error maps to. */
  get grpcStatus(): GrpcStatus {
    return ERROR_CODES[this.code];
  }
}

/** A request field failed validation. `field` is the proto field name (e.g. `width`). */
export class InvalidArgumentError extends OrreryError {
  readonly field: string;
  constructor(field: string, why: string) {
    super('ORRERY_ERR_INVALID_ARGUMENT', `${field}: ${why}`);
    this.field = field;
  }
}

export class ModelNotFoundError extends OrreryError {
  constructor(modelId: string, detail: string) {
    super('ORRERY_ERR_MODEL_NOT_FOUND', `model_id: unknown model "${modelId}" (${detail})`);
  }
}

export class PipelineNotFoundError extends OrreryError {
  constructor(pipeline: string, known: readonly string[]) {
    super('ORRERY_ERR_PIPELINE_NOT_FOUND', `pipeline: unknown pipeline "${pipeline}" (known: ${known.join(', ')})`);
  }
}

export class QueueFullError extends OrreryError {
  constructor(deployment: string, limit: number) {
    super('ORRERY_ERR_QUEUE_FULL', `deployment ${deployment}: queue is full (max_queued_requests=${limit}); retry later`);
  }
}

/** The router holds its cap of request bytes (router.max_request_bytes_in_flight); names the limit and the figures. */
export class RequestBytesInFlightError extends OrreryError {
  constructor(requestBytes: number, inFlightBytes: number, limitBytes: number) {
    super('ORRERY_ERR_REQUEST_BYTES_IN_FLIGHT', `init_image: this request (${requestBytes} bytes) would take the router's requests in flight from ${inFlightBytes} bytes past router.max_request_bytes_in_flight=${limitBytes}; retry later`);
  }
}

export class DeadlineExceededError extends OrreryError {
  constructor(where: string) {
    super('ORRERY_ERR_DEADLINE_EXCEEDED', `deadline exceeded ${where}`);
  }
}

export class CancelledError extends OrreryError {
  constructor(where: string) {
    super('ORRERY_ERR_CANCELLED', `cancelled ${where}`);
  }
}

export class NoReplicaError extends OrreryError {
  constructor(deployment: string) {
    super('ORRERY_ERR_NO_REPLICA', `deployment ${deployment} has no ready replica`);
  }
}

/** An image could not go through the NATS object store (e.g. nats-server was restarting). */
export class PayloadUnavailableError extends OrreryError {
  constructor(what: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? options.cause.message : 'unknown cause';
    super('ORRERY_ERR_PAYLOAD_UNAVAILABLE', `the NATS object store is unavailable: ${what} failed (${why})`, options);
  }
}

export class ConfigError extends OrreryError {
  readonly key: string;
  constructor(key: string, why: string) {
    super('ORRERY_ERR_CONFIG', `config ${key}: ${why}`);
    this.key = key;
  }
}

/**
 * nats-server refused this process's credentials (or TLS could not be set up): a process
 * exits with it at start instead of retrying forever. Names the identity and the config keys,
 * never a secret.
 */
export class NatsAuthError extends OrreryError {
  constructor(identity: string, why: string, options?: { cause?: unknown }) {
    super('ORRERY_ERR_NATS_AUTH', `NATS authorization failed for ${identity}: ${why} (check nats.auth and nats.tls, or ORRERY_NATS_USER, ORRERY_NATS_PASSWORD_FILE, ...)`, options);
  }
}

/** A gRPC call without valid credentials (no bearer token, an unknown one, a malformed header). */
export class UnauthenticatedError extends OrreryError {
  constructor(why: string) {
    super('ORRERY_ERR_UNAUTHENTICATED', why);
  }
}

/** An authenticated gRPC client whose rights do not include the one a method needs; names both. */
export class PermissionDeniedError extends OrreryError {
  readonly client: string;
  readonly right: string;
  constructor(client: string, right: string, method: string, has: readonly string[]) {
    super('ORRERY_ERR_PERMISSION_DENIED', `client "${client}" lacks the right "${right}" that ${method} needs (it has: ${has.join(', ') || 'none'})`);
    this.client = client;
    this.right = right;
  }
}

/** A job output sink (file://, nats-object://, s3://) cannot be opened or written; names the URI and why. */
export class SinkUnavailableError extends OrreryError {
  readonly uri: string;
  constructor(uri: string, why: string, options?: { cause?: unknown }) {
    super('ORRERY_ERR_SINK_UNAVAILABLE', `sink ${uri}: ${why}`, options);
    this.uri = uri;
  }
}

/** No bulk job has this id (GetJob, WatchJob, CancelJob, RetryJob, AddJobItems, ListJobItems). */
export class JobNotFoundError extends OrreryError {
  constructor(jobId: string) {
    super('ORRERY_ERR_JOB_NOT_FOUND', `job_id: no job "${jobId.slice(0, 80)}"`);
  }
}

/** An image failed its pipeline's quality gate on every attempt and the gate says `on_fail: error` (issue 13). */
export class QcFailedError extends OrreryError {
  constructor(pipeline: string, imageIndex: number, attempts: number, reasons: readonly string[]) {
    super('ORRERY_ERR_QC_FAILED', `pipeline ${pipeline}: image ${imageIndex} failed the quality check on all ${attempts} attempts (qc.on_fail: error): ${reasons.join('; ')}`);
  }
}

/** The job's state does not allow the call (e.g. AddJobItems after the last chunk, or on a cancelled job). */
export class JobStateError extends OrreryError {
  constructor(jobId: string, why: string) {
    super('ORRERY_ERR_JOB_STATE', `job ${jobId}: ${why}`);
  }
}

/** A job's completion window passed before the item finished: the item ends `expired` (docs/jobs.md). */
export class JobExpiredError extends OrreryError {
  constructor(jobId: string) {
    super('ORRERY_ERR_JOB_EXPIRED', `job ${jobId}: its completion window passed before the item finished`);
  }
}

/** The wire form of an error (worker.proto ErrorInfo). */
export interface WireError {
  code: string;
  message: string;
}

export function toWire(err: unknown): WireError {
  if (err instanceof OrreryError) return { code: err.code, message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'ORRERY_ERR_INTERNAL', message };
}

/** Rebuilds a coded error received from another process; unknown codes become INTERNAL. */
export function fromWire(wire: WireError): OrreryError {
  const code = (wire.code in ERROR_CODES ? wire.code : 'ORRERY_ERR_INTERNAL') as ErrorCode;
  return new OrreryError(code, wire.message);
}

/** Any thrown value as an OrreryError (unexpected errors become ORRERY_ERR_INTERNAL with cause). */
export function asOrreryError(err: unknown): OrreryError {
  if (err instanceof OrreryError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new OrreryError('ORRERY_ERR_INTERNAL', message, { cause: err });
}
