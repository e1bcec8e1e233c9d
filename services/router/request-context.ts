/**
 * The edge of a request's lifetime: the gRPC deadline and `timeout_ms` become one absolute
 * deadline (converted once, here), and client cancellation and that deadline become one
 * AbortSignal passed down through scheduler, batch, NATS and replica (CONVENTIONS §3).
 */
import type { ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { clampTimerMs, earliestDeadline } from '../common/deadline.js';
import { CancelledError, DeadlineExceededError } from '../common/errors.js';

export interface RequestContext {
  readonly signal: AbortSignal;
  /** Absolute, ms since the epoch; 0 = none. */
  readonly deadlineMs: number;
  dispose(): void;
}

/** A unary or server-streaming server call (both carry a deadline and a 'cancelled' event). */
export type ServerCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

export function requestContext(call: ServerCall, timeoutMs: number, nowMs: number): RequestContext {
  const ac = new AbortController();
  const grpcDeadline = call.getDeadline();
  const grpcMs = grpcDeadline instanceof Date ? grpcDeadline.getTime() : Number.isFinite(grpcDeadline) ? Number(grpcDeadline) : 0;
  const deadlineMs = earliestDeadline(grpcMs, timeoutMs > 0 ? nowMs + timeoutMs : 0);
  const timer = deadlineMs ? setTimeout(() => ac.abort(new DeadlineExceededError(`after ${deadlineMs - nowMs} ms`)), clampTimerMs(deadlineMs - nowMs)) : undefined;
  const onCancel = () => ac.abort(new CancelledError('by the client'));
  call.on('cancelled', onCancel);
  return {
    signal: ac.signal,
    deadlineMs,
    dispose: () => {
      clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}
