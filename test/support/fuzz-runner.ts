/**
 * Sends fuzz cases (generate-request-fuzz.ts) as raw bytes to a router's Generate with a grpc-js
 * client whose serializer passes bytes through, so malformed protobuf really reaches the server,
 * and judges every answer: OK, or a non-INTERNAL status whose message starts with a field name;
 * INTERNAL only for bytes the server's own deserializer cannot decode (grpc-js answers those
 * "INTERNAL: Error deserializing request" before any Orrery code runs).
 */
import * as grpc from '@grpc/grpc-js';
import { imageServiceDefinition } from '../../services/common/grpc-protos.js';
import { FIELD_NAME, type FuzzCase } from './generate-request-fuzz.js';

/** The answer to one case and the verdict on it. */
export interface FuzzOutcome {
  readonly index: number;
  readonly mutation: string;
  /** Whether the server's deserializer (proto-loader over protobufjs) decodes the bytes. */
  readonly decodable: boolean;
  readonly code: grpc.status;
  readonly details: string;
  readonly pass: boolean;
  /** Why the verdict is a failure (empty when it passed). */
  readonly why: string;
}

interface RawClient extends grpc.Client {
  Generate(req: Buffer, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): void;
  GenerateStream(req: Buffer, opts: grpc.CallOptions): grpc.ClientReadableStream<Buffer>;
}

/** The RPC a run sends its cases to (both validate through the same edge, image-service.ts handle()). */
export type FuzzMethod = 'Generate' | 'GenerateStream';

const passthrough = (b: Buffer): Buffer => b;

/** A Generate / GenerateStream client that sends the given bytes as the request message, unchanged. */
export function rawImageServiceClient(address: string): RawClient {
  const codec = { requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough };
  const Raw = grpc.makeGenericClientConstructor({
    Generate: { path: '/orrery.v1.ImageService/Generate', requestStream: false, responseStream: false, ...codec },
    GenerateStream: { path: '/orrery.v1.ImageService/GenerateStream', requestStream: false, responseStream: true, ...codec },
  }, 'RawImageService');
  return new Raw(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 }) as unknown as RawClient;
}

/** What the router's deserializer makes of `bytes`, or undefined when it throws. */
function serverDecode(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    return imageServiceDefinition().service.Generate!.requestDeserialize(bytes) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Judges one answer (see the file comment). */
export function judge(c: FuzzCase, code: grpc.status, details: string, clientDeadlineMs: number): Omit<FuzzOutcome, 'index' | 'mutation'> {
  const decoded = serverDecode(c.bytes);
  const decodable = decoded !== undefined;
  const verdict = (pass: boolean, why = '') => ({ decodable, code, details, pass, why: pass ? '' : why });
  if (!decodable) return verdict(code === grpc.status.INTERNAL, 'undecodable bytes should be INTERNAL (Error deserializing request)');
  if (code === grpc.status.OK) return verdict(true);
  if (code === grpc.status.INTERNAL) return verdict(false, 'INTERNAL for a decodable request');
  if (code === grpc.status.DEADLINE_EXCEEDED) {
    // A request's own timeout_ms may legitimately expire; the client's deadline must not.
    const t = Number(decoded.timeout_ms ?? 0);
    return verdict(t > 0 && t < clientDeadlineMs, 'DEADLINE_EXCEEDED without a short timeout_ms: the server did not answer in time');
  }
  return verdict(FIELD_NAME.test(details), 'the message does not start with a field name');
}

/** Sends every case (at most `concurrency` at once) and returns the outcomes in case order. */
export async function runFuzz(address: string, cases: readonly FuzzCase[], options: { concurrency: number; deadlineMs: number; method?: FuzzMethod }): Promise<FuzzOutcome[]> {
  const client = rawImageServiceClient(address);
  const outcomes = new Array<FuzzOutcome>(cases.length);
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const at = next++;
      const c = cases[at]!;
      const deadline = Date.now() + options.deadlineMs;
      const { code, details } = await new Promise<{ code: grpc.status; details: string }>((resolve) => {
        if (options.method === 'GenerateStream') {
          // Events are read and dropped; the call's final status is the answer.
          const call = client.GenerateStream(c.bytes, { deadline });
          call.on('data', () => undefined);
          call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
          call.on('end', () => resolve({ code: grpc.status.OK, details: '' }));
        } else {
          client.Generate(c.bytes, { deadline }, (err) => resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }));
        }
      });
      outcomes[at] = { index: c.index, mutation: c.mutation, ...judge(c, code, details, options.deadlineMs) };
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  } finally {
    client.close();
  }
  return outcomes;
}

/** Log lines that mean a process let an error escape (unhandled rejection, uncaught exception, crash). */
export const ESCAPED_ERROR = /unhandled ?(promise )?rejection|uncaught ?exception|exited unexpectedly|FATAL ERROR|Error \[ERR_UNHANDLED/i;
