/**
 * One planet-ultrawide request through GenerateStream, with the client-side time of each event:
 * the stages' start (the router dispatching the stage's batch, with its batch size and replica),
 * the final image's chunks, and `done` with the router's per-stage queue and run seconds.
 */
import type { ImageServiceClient, GenerateEvent } from '../../services/cli/client.js';

export interface StageRecord {
  readonly index: number;
  readonly deployment: string;
  /** Client time (ms since the request was sent) of the stage_started event. */
  readonly startedMs: number;
  readonly batchSize: number;
  readonly replicaId: string;
  /** From done.timings: waiting in the router's queue, and the replica's model run. */
  readonly queueSeconds: number;
  readonly runSeconds: number;
}

export interface RequestRecord {
  readonly seed: number;
  /** Client-side latency, request sent → stream end. */
  readonly latencyMs: number;
  /** First image chunk received, ms since the request was sent. */
  readonly firstChunkMs: number;
  readonly stages: StageRecord[];
  readonly width: number;
  readonly height: number;
  readonly mimeType: string;
  readonly bytes: number;
}

export const PLANET = { color: 'deep blue', atmosphere: 'frosted cloudy zones', moons: 'two small moons', sky: 'distant stars dark sky', extras: [] as string[] };

/** Sends `req` (a GenerateRequest) and records its events. Rejects on a gRPC error. */
export function streamRequest(client: ImageServiceClient, req: Record<string, unknown> & { seed: string }, deadlineMs: number): Promise<RequestRecord> {
  const t0 = performance.now();
  const started: Array<{ deployment: string; at: number; batchSize: number; replicaId: string }> = [];
  let firstChunkMs = Number.NaN;
  let bytes = 0;
  let meta: { width: number; height: number; mime_type: string } | undefined;
  let done: GenerateEvent['done'];
  return new Promise((resolve, reject) => {
    const call = client.GenerateStream(req, undefined, { deadline: Date.now() + deadlineMs });
    call.on('data', (e: GenerateEvent) => {
      const at = performance.now() - t0;
      if (e.stage_started) started.push({ deployment: e.stage_started.deployment, at, batchSize: e.stage_started.batch_size, replicaId: e.stage_started.replica_id });
      if (e.image_chunk) {
        if (Number.isNaN(firstChunkMs)) firstChunkMs = at;
        bytes += e.image_chunk.data.length;
        if (e.image_chunk.meta) meta = e.image_chunk.meta;
      }
      if (e.done) done = e.done;
    });
    call.on('error', reject);
    call.on('end', () => {
      const latencyMs = performance.now() - t0;
      if (!done || !meta) return reject(new Error(`request ${req.seed}: stream ended without ${done ? 'an image' : 'done'}`));
      const timings = done.timings;
      resolve({
        seed: Number(req.seed), latencyMs, firstChunkMs, width: meta.width, height: meta.height, mimeType: meta.mime_type, bytes,
        stages: timings.map((t, i) => ({
          index: i, deployment: t.deployment, startedMs: started[i]?.at ?? Number.NaN, batchSize: started[i]?.batchSize ?? 0,
          replicaId: started[i]?.replicaId ?? '', queueSeconds: t.queue_seconds, runSeconds: t.run_seconds,
        })),
      });
    });
  });
}
