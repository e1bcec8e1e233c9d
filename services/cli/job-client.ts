/**
 * The job RPCs of orrery.v1.ImageService as promises, for `orrery jobs` and `orrery demo`. Calls
 * that are safe to repeat (SubmitJob with a job_key, AddJobItems placed by offset, the reads) are
 * retried while the router is unreachable, so a router restart mid-submit costs a pause, not a job.
 */
import * as grpc from '@grpc/grpc-js';
import { imageServiceClient } from './client.js';
import type { JobMessage } from './job-format.js';

export interface JobItemResultMessage {
  custom_id: string; index: string; state: string; seed: string; prompt: string; model_id: string; width: number; height: number;
  file: string; bytes: string; sha256: string; attempts: number; error: string; error_code: string;
}

type Unary<Req, Res> = (req: Req, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall;

/** The job methods proto-loader puts on the ImageService client (client.ts types the others). */
interface JobMethods extends grpc.Client {
  SubmitJob: Unary<object, JobMessage>;
  AddJobItems: Unary<object, JobMessage>;
  GetJob: Unary<object, JobMessage>;
  CancelJob: Unary<object, JobMessage>;
  RetryJob: Unary<object, JobMessage>;
  DeleteJob: Unary<object, { job_id: string }>;
  ListJobs: Unary<object, { jobs: JobMessage[]; next_page_token: string }>;
  ListJobItems: Unary<object, { items: JobItemResultMessage[]; next_page_token: string }>;
  WatchJob(req: object, meta?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<JobMessage>;
}

/** Status codes after which repeating an idempotent call can succeed: the router was away. */
const RETRYABLE: readonly grpc.status[] = [grpc.status.UNAVAILABLE];

/**
 * Delay before retry number `attempt` (1-based): 250 ms doubling to at most 5 s. Pure. The total
 * over the default 12 attempts is about 40 s, longer than a router takes to restart.
 */
export function retryDelayMs(attempt: number): number {
  return Math.min(5000, 250 * 2 ** Math.max(0, attempt - 1));
}

export interface RetryOptions {
  /** Attempts in all, the first included; default 12. */
  readonly attempts?: number;
  /** Told about each retry (for a "router unreachable, retrying" line). */
  readonly onRetry?: (err: grpc.ServiceError, attempt: number, delayMs: number) => void;
  /** Waits; injectable so tests need no timers. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Runs `call` until it succeeds, fails with a non-retryable status, or runs out of attempts. */
export async function withRetry<T>(call: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? 12;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const code = (err as grpc.ServiceError).code;
      if (attempt >= attempts || !RETRYABLE.includes(code)) throw err;
      const delay = retryDelayMs(attempt);
      options.onRetry?.(err as grpc.ServiceError, attempt, delay);
      await sleep(delay);
    }
  }
}

/** A connection to a router for job calls. Close it when done. */
export class JobClient {
  private readonly c: JobMethods;

  /** `credentials`: TLS and a bearer token for a secured router (grpc-credentials.ts); default plaintext. */
  constructor(readonly address: string, private readonly retry: RetryOptions = {}, credentials = grpc.credentials.createInsecure()) {
    this.c = imageServiceClient(address, {}, credentials) as unknown as JobMethods;
  }

  private unary<Res>(method: Unary<object, Res>, req: object, timeoutMs = 60_000): Promise<Res> {
    return new Promise((resolve, reject) =>
      method.call(this.c, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  /** SubmitJob; retried only when the request has a job_key (otherwise a retry could make a second job). */
  submit(req: Readonly<Record<string, unknown>> & { readonly job_key?: string }): Promise<JobMessage> {
    const once = () => this.unary(this.c.SubmitJob, req);
    return req.job_key ? withRetry(once, this.retry) : once();
  }

  /** AddJobItems; always retried: the offset makes a repeated chunk a no-op on the server. */
  addItems(jobId: string, offset: number, items: readonly object[], last: boolean): Promise<JobMessage> {
    return withRetry(() => this.unary(this.c.AddJobItems, { job_id: jobId, offset, items, last }), this.retry);
  }

  get(jobId: string): Promise<JobMessage> {
    return withRetry(() => this.unary(this.c.GetJob, { job_id: jobId }), this.retry);
  }

  cancel(jobId: string): Promise<JobMessage> {
    return withRetry(() => this.unary(this.c.CancelJob, { job_id: jobId }), this.retry);
  }

  retryJob(jobId: string): Promise<JobMessage> {
    return withRetry(() => this.unary(this.c.RetryJob, { job_id: jobId }), this.retry);
  }

  /** DeleteJob; retried: a job already being deleted answers OK again. */
  deleteJob(jobId: string): Promise<{ job_id: string }> {
    return withRetry(() => this.unary(this.c.DeleteJob, { job_id: jobId }), this.retry);
  }

  list(req: { page_size?: number; page_token?: string; state?: string }): Promise<{ jobs: JobMessage[]; next_page_token: string }> {
    return withRetry(() => this.unary(this.c.ListJobs, req), this.retry);
  }

  items(req: { job_id: string; page_size?: number; page_token?: string; state?: string }): Promise<{ items: JobItemResultMessage[]; next_page_token: string }> {
    return withRetry(() => this.unary(this.c.ListJobItems, req), this.retry);
  }

  /**
   * Follows a job until it reaches a final state, calling `onJob` with each update, and resolves
   * with the final Job. A dropped stream (the router restarted, the connection broke) is opened
   * again after a pause; the job lives in JetStream, so nothing is missed but intermediate counts.
   */
  async watch(jobId: string, onJob: (job: JobMessage) => void, options: { intervalMs?: number; signal?: AbortSignal } = {}): Promise<JobMessage> {
    let failures = 0;
    for (;;) {
      let last: JobMessage | undefined;
      try {
        last = await new Promise<JobMessage | undefined>((resolve, reject) => {
          let latest: JobMessage | undefined;
          const call = this.c.WatchJob({ job_id: jobId, watch_interval_ms: options.intervalMs ?? 1000 });
          const abort = () => call.cancel();
          options.signal?.addEventListener('abort', abort, { once: true });
          call.on('data', (job: JobMessage) => {
            latest = job;
            failures = 0;
            onJob(job);
          });
          call.on('error', (err: grpc.ServiceError) => {
            options.signal?.removeEventListener('abort', abort);
            reject(err);
          });
          call.on('end', () => {
            options.signal?.removeEventListener('abort', abort);
            resolve(latest);
          });
        });
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        if (options.signal?.aborted) throw err;
        if (!RETRYABLE.includes(code) && code !== grpc.status.INTERNAL) throw err;
        failures++;
        if (failures >= (this.retry.attempts ?? 12)) throw err;
        const delay = retryDelayMs(failures);
        this.retry.onRetry?.(err as grpc.ServiceError, failures, delay);
        await (this.retry.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))))(delay);
        continue;
      }
      // The stream ends after a final state; a stream that ended early (a router shutting down
      // cleanly) is followed again.
      if (last && ['completed', 'cancelled'].includes(last.state)) return last;
      await (this.retry.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))))(500);
    }
  }

  close(): void {
    this.c.close();
  }
}
