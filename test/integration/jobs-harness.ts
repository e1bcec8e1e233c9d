/**
 * Helpers shared by the bulk-job integration tests: a cluster config with fast job timings, the job
 * RPCs as promises, and counts of what a job left in its file sink.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Metadata, status, type CallOptions, type ServiceError } from '@grpc/grpc-js';
import type { ImageServiceClient } from '../../services/cli/client.js';
import { eventually, testConfig } from './harness.js';

/** A synthetic deployment with a few ms per item; `crash-m` crashes its replica on load, `fail-m` fails to load. */
export const SYNTHETIC = {
  stage: 'synthetic', models: ['syn-a', 'crash-m', 'fail-m'], max_batch_size: 4, batch_wait_timeout_ms: 5, max_ongoing_batches: 2,
  max_models_per_replica: 3, options: { fixed_ms: 3, per_item_ms: 2, crash_models: ['crash-m'], fail_models: ['fail-m'] },
};

/** Job timings short enough for tests: a dead router's items run elsewhere after ~2 s. */
export const FAST_JOBS = { ack_wait_s: 2, min_ack_wait_s: 2, max_ack_wait_s: 10, retry_backoff_ms: 50, sink_check_interval_s: 0.3, queued_window: 20 };

/** SYNTHETIC with `perItemMs` per item (so a cancel or a kill lands mid-job) and `over` (e.g. replicas). */
export function slowSynthetic(perItemMs: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...SYNTHETIC, ...over, options: { ...SYNTHETIC.options, per_item_ms: perItemMs } };
}

export function jobsTestConfig(jobs: Record<string, unknown> = {}, deployment: Record<string, unknown> = SYNTHETIC): Record<string, unknown> {
  return testConfig({ synthetic: deployment }, { jobs: { ...FAST_JOBS, ...jobs } });
}

export interface JobMsg {
  job_id: string; state: string; total: string; done: string; failed: string; succeeded: string; queued: string; running: string; cancelled: string;
  attempts: string; items_per_second: number; eta_seconds: number; output_uri: string; job_key: string; message: string; max_attempts: number;
  expired: string; expires_at: { seconds: string; nanos: number } | null; finished_at: { seconds: string; nanos: number } | null;
}

/** SubmitJob with the tests' template (64×64 synthetic images of `model`) and `req`. */
export function submitJob(client: ImageServiceClient, req: object, model = 'syn-a'): Promise<JobMsg> {
  return rpc(client, 'SubmitJob', { template: { pipeline: 'synthetic', model_id: model, width: 64, height: 64 }, ...req });
}

/** Calls a unary job RPC. */
export function rpc<T = JobMsg>(client: ImageServiceClient, method: string, req: object): Promise<T> {
  const fn = (client as unknown as Record<string, (r: object, meta: Metadata, opts: CallOptions, cb: (err: ServiceError | null, res: T) => void) => void>)[method]!.bind(client);
  return new Promise((resolve, reject) => fn(req, new Metadata(), { deadline: Date.now() + 20_000 }, (err, res) => (err ? reject(err) : resolve(res))));
}

/** Every Job message WatchJob sends until the stream ends. */
export function watchAll(client: ImageServiceClient, jobId: string, intervalMs = 100): Promise<JobMsg[]> {
  const stream = (client as unknown as { WatchJob(r: object): NodeJS.EventEmitter }).WatchJob({ job_id: jobId, watch_interval_ms: intervalMs });
  const seen: JobMsg[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (j: JobMsg) => seen.push(j));
    stream.on('error', reject);
    stream.on('end', () => resolve(seen));
  });
}

/** Polls GetJob until `pred` holds. */
export async function waitJob(client: ImageServiceClient, jobId: string, pred: (j: JobMsg) => boolean, timeoutMs = 30_000, what = 'the job'): Promise<JobMsg> {
  let last: JobMsg | undefined;
  try {
    const found = await eventually(async () => {
      let j: JobMsg;
      try {
        j = await rpc(client, 'GetJob', { job_id: jobId });
      } catch (err) {
        // A router restarting (kill -9 tests) is unavailable for a moment.
        if ((err as ServiceError).code === status.UNAVAILABLE) return undefined;
        throw err;
      }
      last = j;
      return pred(j) ? j : undefined;
    }, timeoutMs, what);
    return found!;
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`, { cause: err });
  }
}

export const isFinal = (j: JobMsg): boolean => j.state === 'completed' || j.state === 'cancelled' || j.state === 'expired';

/** What a job left in its file sink directory. */
export function sinkContents(dir: string): { outputs: string[]; manifest: Array<Record<string, unknown>>; jobJson: Record<string, unknown> | undefined; contactSheet: boolean } {
  const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  const outputs = names.filter((n) => !['manifest.jsonl', 'job.json', 'contact-sheet.png'].includes(n) && !n.startsWith('.'));
  const manifestFile = path.join(dir, 'manifest.jsonl');
  const manifest = fs.existsSync(manifestFile) ? fs.readFileSync(manifestFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : [];
  const jobFile = path.join(dir, 'job.json');
  const jobJson = fs.existsSync(jobFile) ? (JSON.parse(fs.readFileSync(jobFile, 'utf8')) as Record<string, unknown>) : undefined;
  return { outputs, manifest, jobJson, contactSheet: names.includes('contact-sheet.png') };
}

/** A small planet grid: colors × atmospheres × seeds. */
export function grid(colors: number, atmospheres: number, seeds = 1): Record<string, unknown> {
  return {
    colors: Array.from({ length: colors }, (_, i) => `color ${i}`),
    atmospheres: Array.from({ length: atmospheres }, (_, i) => `atmosphere ${i}`),
    seeds_per_prompt: seeds,
  };
}
