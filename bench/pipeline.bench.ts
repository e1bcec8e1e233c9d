/**
 * The real-upscaler issue's pipeline benchmark: the product's planet-ultrawide workflow, exactly
 * as deploy/config/local.yaml defines it (tiny SDXL text-to-image at the 1536x640 bucket, 30 steps
 * → ESRGAN slim 2x → resize to 2520x1080 → img2img at strength 0.3 (9 steps) → ESRGAN slim 2x →
 * resize), through a real local cluster: nats-server, the router and one replica per deployment as
 * separate processes, images between stages in the NATS object store, gRPC from this process.
 *
 * Measured: per-stage queue and run seconds (the GenerateResponse timings), the rest of each
 * stage's span (moving images through NATS, decoding them on the replica, the router), end-to-end
 * latency, and images/s one request at a time and with 4 concurrent requests (which the router
 * batches across requests). `PIPELINE_BENCH_SEQUENTIAL=<n>` and `PIPELINE_BENCH_ROUNDS=<n>` (rounds of
 * 4 concurrent requests) change the counts; the defaults keep the run under ~4 minutes on 2 cores.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { imageServiceClient } from '../services/cli/client.js';
import { loadConfig } from '../services/cli/load-config.js';
import { packageRoot } from '../services/common/package-root.js';
import { prepareLocalModels } from '../services/models/local-models.js';
import { benchConfig, startBenchCluster } from './lib/bench-cluster.js';
import { CpuMeter, cpuSeconds } from './lib/proc-cpu.js';
import { round } from './lib/stats.js';
import type { BenchResult, Check, Table } from './lib/types.js';
import { PLANET, streamRequest, type RequestRecord } from './pipeline/requests.js';

const PIPELINE = 'planet-ultrawide';
const CONCURRENCY = 4;
const DEADLINE_MS = 200_000;
/** Concurrent ÷ one-at-a-time throughput in earlier runs of this benchmark (2026-11-27, machine shared with other work). */
const EARLIER_RATIOS = [1.55, 1.07, 0.96, 0.96, 0.64, 0.91];

interface LocalYaml {
  deployments: Record<string, Record<string, unknown>>;
  pipelines: Record<string, { default_size?: string; stages: Array<{ deployment: string }> }>;
}

/** Per-stage spans of one request from its event times (see the table note). */
function spans(r: RequestRecord): Array<{ deployment: string; batchSize: number; queue: number; run: number; other: number; span: number }> {
  const s = r.stages;
  return s.map((st, k) => {
    const end = k + 1 < s.length ? s[k + 1]!.startedMs - s[k + 1]!.queueSeconds * 1000 : r.firstChunkMs;
    const span = (end - st.startedMs) / 1000;
    return { deployment: st.deployment, batchSize: st.batchSize, queue: st.queueSeconds, run: st.runSeconds, other: span - st.runSeconds, span: span + st.queueSeconds };
  });
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const sec = (x: number) => round(x);
const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

export async function run(): Promise<BenchResult> {
  const benchStart = performance.now();
  const loadStart = load();
  const sequentialN = Number(process.env.PIPELINE_BENCH_SEQUENTIAL) || 3;
  const rounds = Number(process.env.PIPELINE_BENCH_ROUNDS) || 1;

  // The pipeline and its deployments exactly as the local default declares them.
  const local = parseYaml(fs.readFileSync(path.join(packageRoot(), 'deploy', 'config', 'local.yaml'), 'utf8')) as LocalYaml;
  const pipeline = local.pipelines[PIPELINE]!;
  const deployments = Object.fromEntries([...new Set(pipeline.stages.map((s) => s.deployment))].map((d) => [d, local.deployments[d]!]));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-pipeline-'));
  const config = { ...benchConfig(deployments), model_repository: path.join(tmp, 'models'), pipelines: { [PIPELINE]: pipeline }, default_pipeline: PIPELINE };
  const file = path.join(tmp, 'config.yaml');
  fs.writeFileSync(file, toYaml(config));
  let t = performance.now();
  const made = await prepareLocalModels(loadConfig(file, {}, {}).config);
  const prepareSeconds = (performance.now() - t) / 1000;
  process.stdout.write(`  models made in ${prepareSeconds.toFixed(1)} s: ${made.map((m) => m.split(':')[0]).join(', ')}\n`);

  t = performance.now();
  const bench = await startBenchCluster(config);
  const startSeconds = (performance.now() - t) / 1000;
  const client = imageServiceClient(bench.cluster.grpcAddress);
  let ok = false;
  try {
    let seed = 100;
    const req = () => ({ planet: PLANET, pipeline: PIPELINE, seed: String(seed++) });
    const cpuByDeployment = () => Object.fromEntries(bench.cluster.replicas.map((r) => [r.deployment, cpuSeconds(r.child.pid)]));

    process.stdout.write('  warm-up request (replicas preload their first model; the first request warms the rest of each stage)\n');
    const warm = await streamRequest(client, req(), DEADLINE_MS);

    process.stdout.write(`  ${sequentialN} requests one at a time\n`);
    const seq: RequestRecord[] = [];
    const seqCpu0 = cpuByDeployment();
    const meter = new CpuMeter(bench.pids);
    meter.begin();
    t = performance.now();
    for (let i = 0; i < sequentialN; i++) seq.push(await streamRequest(client, req(), DEADLINE_MS));
    const seqWall = (performance.now() - t) / 1000;
    const seqCpu1 = cpuByDeployment();
    const seqMeter = meter.end();

    process.stdout.write(`  ${rounds} round(s) of ${CONCURRENCY} concurrent requests\n`);
    const conc: RequestRecord[] = [];
    const concWalls: number[] = [];
    const concCpu0 = cpuByDeployment();
    meter.begin();
    for (let k = 0; k < rounds; k++) {
      t = performance.now();
      conc.push(...await Promise.all(Array.from({ length: CONCURRENCY }, () => streamRequest(client, req(), DEADLINE_MS))));
      concWalls.push((performance.now() - t) / 1000);
    }
    const concCpu1 = cpuByDeployment();
    const concMeter = meter.end();
    const loadEnd = load();

    const all = [warm, ...seq, ...conc];
    const [w, h] = (pipeline.default_size ?? '2520x1080').split('x').map(Number);
    const right = all.filter((r) => r.width === w && r.height === h && r.mimeType === 'image/png').length;
    const seqRate = sequentialN / seqWall;
    const concRate = conc.length / concWalls.reduce((a, b) => a + b, 0);
    const checks: Check[] = [
      { name: `Every request returned a ${w}x${h} PNG (warm-up, one at a time, concurrent)`, measured: right, unit: `of ${all.length}`, target: `${all.length} of ${all.length}`, pass: right === all.length },
    ];

    const stageRows = (label: string, reqs: readonly RequestRecord[]) => {
      const per = reqs.map(spans);
      return pipeline.stages.map((st, k) => {
        const col = per.map((p) => p[k]!);
        const batches = [...new Set(col.map((c) => c.batchSize))].sort().join('/');
        return [
          label, `${k}: ${st.deployment}`, batches, sec(median(col.map((c) => c.queue))), sec(median(col.map((c) => c.run))),
          sec(median(col.map((c) => c.other))), sec(median(col.map((c) => c.span))),
        ];
      });
    };
    const latency = (reqs: readonly RequestRecord[]) => reqs.map((r) => r.latencyMs / 1000);
    const tables: Table[] = [
      {
        title: `Per-stage seconds, ${PIPELINE} at ${w}x${h} (median over requests)`,
        columns: ['requests', 'stage', 'batch size', 'queue s', 'run s', 'transfer + other s', 'stage total s'],
        rows: [...stageRows(`one at a time (${seq.length})`, seq), ...stageRows(`${CONCURRENCY} concurrent (${conc.length})`, conc), ...stageRows('warm-up (first request)', [warm])],
        note: 'queue and run: the router\'s GenerateResponse timings — waiting in the deployment\'s queue (including the batch wait), and the replica\'s model run for the whole batch (stage run(): decode input, inference, encode PNG). '
          + 'transfer + other: the rest of the stage\'s span, from the router dispatching the batch to the next stage\'s work being queued (the last stage: to the first image chunk at the client) — request/reply over NATS, '
          + 'the images through the NATS object store, the replica fetching and storing them. Stage total = queue + run + transfer. Batch size: as the stage_started events report it.',
      },
      {
        title: 'End-to-end latency and throughput',
        columns: ['requests', 'latency median s', 'latency min–max s', 'images/s', 'wall s', 'sum of stage totals (median) s', 'outside the stages (median) s'],
        rows: [
          ['warm-up (first request)', sec(warm.latencyMs / 1000), '', '', sec(warm.latencyMs / 1000), sec(spans(warm).reduce((a, s) => a + s.span, 0)), ''],
          [`one at a time (${seq.length})`, sec(median(latency(seq))), `${sec(Math.min(...latency(seq)))}–${sec(Math.max(...latency(seq)))}`, seqRate.toFixed(3), sec(seqWall),
            sec(median(seq.map((r) => spans(r).reduce((a, s) => a + s.span, 0)))), sec(median(seq.map((r) => r.latencyMs / 1000 - spans(r).reduce((a, s) => a + s.span, 0))))],
          [`${CONCURRENCY} concurrent (${conc.length})`, sec(median(latency(conc))), `${sec(Math.min(...latency(conc)))}–${sec(Math.max(...latency(conc)))}`, concRate.toFixed(3), sec(concWalls.reduce((a, b) => a + b, 0)),
            sec(median(conc.map((r) => spans(r).reduce((a, s) => a + s.span, 0)))), sec(median(conc.map((r) => r.latencyMs / 1000 - spans(r).reduce((a, s) => a + s.span, 0))))],
        ],
        note: 'Outside the stages: request sent → the first stage queued, plus streaming the final image to the client (PNG, '
          + `${Math.round(median(all.map((r) => r.bytes)) / 1024)} KiB median: the tiny bundle's noise compresses badly).`,
      },
      {
        title: 'Replica CPU seconds per image, by deployment (process CPU time, every thread)',
        columns: ['deployment', 'one at a time', `${CONCURRENCY} concurrent`],
        rows: Object.keys(seqCpu0).map((d) => [d, sec((seqCpu1[d]! - seqCpu0[d]!) / seq.length), sec((concCpu1[d]! - concCpu0[d]!) / conc.length)]),
        note: 'From /proc/<pid>/stat of each replica process. It includes ONNX Runtime\'s intra-op threads spin-waiting between parallel sections, which grows when other processes compete for the 2 cores — so it is not free of load either.',
      },
    ];
    // Where a request's time goes, one at a time: each stage's median total against the median latency.
    const seqSpans = seq.map(spans);
    const stageShare = pipeline.stages.map((st, k) => ({ k, deployment: st.deployment, total: median(seqSpans.map((p) => p[k]!.span)) }));
    const seqLatency = median(latency(seq));
    const biggest = [...stageShare].sort((a, b) => b.total - a.total)[0]!;
    const tile = Number((deployments.upscaler?.options as Record<string, unknown> | undefined)?.tile_size ?? 0);
    tables.push({
      title: 'CPU use during each phase, in cores (of 2): the cluster, this process, and other work on the machine',
      columns: ['phase', ...Object.keys(seqMeter)],
      rows: [['one at a time', ...Object.values(seqMeter).map((v) => v.cores)], [`${CONCURRENCY} concurrent`, ...Object.values(concMeter).map((v) => v.cores)]],
      note: 'From /proc (bench/lib/proc-cpu.ts CpuMeter): machine = all busy CPU; other = machine − the cluster\'s processes − this one. Other work above ~0.2 cores means the figures above were taken on a shared, busy machine.',
    });
    const benchSeconds = (performance.now() - benchStart) / 1000;
    const notes = [
      `Load average (1, 5, 15 min) at the start ${loadStart.join(', ')} and at the end ${loadEnd.join(', ')}; it counts the cluster's own threads. The machine (2 cores) is shared with other work: during the measured phases that other work used ${seqMeter.other!.cores} and ${concMeter.other!.cores} cores (CPU table), `
        + (Math.max(seqMeter.other!.cores, concMeter.other!.cores) < 0.2 ? 'so these figures are close to an unloaded machine\'s.' : 'which stretches the wall times above.'),
      `The pipeline, its deployments and their options are read from deploy/config/local.yaml (${pipeline.stages.map((s) => s.deployment).join(' → ')}; default size ${pipeline.default_size}); one replica per deployment, ONNX Runtime's default threads in each. `
        + `Models made first by prepareLocalModels (${sec(prepareSeconds)} s: tiny-sdxl written, esrgan-slim-x2 converted from @upscalerjs/esrgan-slim); the cluster started in ${sec(startSeconds)} s. The whole benchmark took ${Math.round(benchSeconds)} s.`,
      `Where one request's ${sec(seqLatency)} s go (one at a time, median stage totals): ${stageShare.map((x) => `${x.k}: ${x.deployment} ${sec(x.total)} s (${Math.round((100 * x.total) / seqLatency)} %)`).join(', ')}. `
        + (biggest.k === pipeline.stages.length - 1 && tile
          ? `The last ESRGAN pass dominates: it upscales the ${w}x${h} img2img output to ${2 * w!}x${2 * h!} (${Math.ceil(w! / tile) * Math.ceil(h! / tile)} tiles of ${tile} px) and the pipeline then resizes that back to ${w}x${h}, so 3/4 of its output pixels are discarded; `
            + `the first pass upscales only the ${1536}x${640} bucket (${Math.ceil(1536 / tile) * Math.ceil(640 / tile)} tiles). Running img2img at about half the target (on the 8-pixel grid), so that the last 2x lands near it, would cut that pass about 4× (and the img2img UNet work as well) — a change to the workflow's output, so the product's call, not made here.`
          : ''),
      `Throughput with ${CONCURRENCY} concurrent requests against one at a time: ${(concRate / seqRate).toFixed(2)}× (${concRate.toFixed(3)} vs ${seqRate.toFixed(3)} images/s). Across this and ${EARLIER_RATIOS.length} earlier runs on this shared machine (2026-11-27: ${[...EARLIER_RATIOS, concRate / seqRate].map((x) => x.toFixed(2)).join(', ')}) it followed the load, so it is reported, not checked.`,
      (() => {
        const perImage = Object.keys(seqCpu0).reduce((a, d) => a + (seqCpu1[d]! - seqCpu0[d]!), 0) / seq.length;
        const cores = os.cpus().length;
        return `CPU-bound: the replicas burn ${sec(perImage)} CPU-seconds per image (one at a time; the router and nats-server not counted), so ${cores} cores cap the cluster at about ${(cores / perImage).toFixed(3)} images/s however requests are batched; `
          + `with ${CONCURRENCY} concurrent requests it reached ${concRate.toFixed(3)}.`
          + (conc.every((r) => r.stages.every((st) => st.batchSize === CONCURRENCY))
            ? ` The ${CONCURRENCY} concurrent requests were batched together at every stage, so they moved through the pipeline in lockstep and the deployments did not overlap: the ratio to one at a time is what batching changes per image on CPU, which is little here.`
            : '');
      })(),
      'Each request is a planet prompt without a size, so the pipeline\'s default 2520x1080 applies; seeds differ. Requests go through GenerateStream to timestamp stage starts; the timings are the same as Generate\'s.',
    ];
    ok = true;
    return {
      name: 'pipeline',
      title: `Pipeline ${PIPELINE}: per-stage time, latency and throughput through a local cluster (tiny SDXL + ESRGAN slim x2, CPU)`,
      checks, tables, notes,
      data: {
        loadAverageStart: loadStart, loadAverageEnd: loadEnd, prepareSeconds, clusterStartSeconds: startSeconds, benchSeconds,
        config, warmup: warm, sequential: seq, sequentialWallSeconds: seqWall, concurrent: conc, concurrentWallSeconds: concWalls,
        imagesPerSecond: { sequential: seqRate, concurrent: concRate },
        cpuSeconds: { sequential: { before: seqCpu0, after: seqCpu1 }, concurrent: { before: concCpu0, after: concCpu1 } },
        cpuMeter: { sequential: seqMeter, concurrent: concMeter },
      },
    };
  } finally {
    client.close();
    await bench.stop(!ok);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
