/**
 * `orrery demo` (what `make demo` runs): the main job as a bulk job, the way a team runs it —
 * start a local cluster (embedded default config), submit deploy/jobs/demo-grid.yaml (2 colours
 * × 2 atmospheres of 21:9 planets through planet-ultrawide), show its progress, print where the
 * images, the manifest and the contact sheet are and the images/s, stop the cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { packageRoot } from '../common/package-root.js';
import { prepareLocalModels } from '../models/local-models.js';
import { JobClient } from './job-client.js';
import { counts, formatRate } from './job-format.js';
import { prepareSubmission, sendSubmission } from './job-submit.js';
import { exitStatusOf, followJob } from './job-watch.js';
import { LocalCluster } from './local-cluster.js';
import { loadConfig, type LoadedConfig } from './load-config.js';

/** The demo's job file. */
export const DEMO_GRID = (): string => path.join(packageRoot(), 'deploy/jobs/demo-grid.yaml');

/** The config with jobs writing under `<out>/jobs/<job id>` unless the config says where. */
function withOutputUnder(loaded: LoadedConfig, out: string): LoadedConfig {
  const jobs = (loaded.raw.jobs ?? {}) as Record<string, unknown>;
  if (jobs.default_output_uri !== undefined) return loaded;
  return { ...loaded, raw: { ...loaded.raw, jobs: { ...jobs, default_output_uri: pathToFileURL(path.resolve(out, 'jobs')).href } } };
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('Start a local cluster (embedded default config), run a small grid job of 21:9 planets through planet-ultrawide, show its progress, report where the outputs are and the images/s, stop.')
    .option('--config <file>', 'cluster config YAML (default: the embedded local config)')
    .option('--grid <file.yaml>', 'the job file to run', DEMO_GRID())
    .option('--seeds <n>', 'seeds per prompt (default: the job file\'s)', (v) => Number(v))
    .option('--out <dir>', 'where the cluster log and the job\'s outputs (<out>/jobs/<job id>) go', './out')
    .option('--plain', 'plain progress lines even on a terminal')
    .addHelpText('after', `
The job goes the way any bulk job does: SubmitJob to the router, items through JetStream, each
image written once to <out>/jobs/<job id>/<custom_id>.png beside manifest.jsonl, job.json and
contact-sheet.png. On the embedded config the SDXL stages run the tiny SDXL-shaped bundle: the
images are smooth noise carried through the real pipeline (upscaled by real ESRGAN weights), not
planets.

Examples:
  make demo
  orrery demo --seeds 2 --out ./out
  orrery demo --grid deploy/jobs/planet-grid.yaml --config my-cluster.yaml`)
    .action(async (o: { config?: string; grid: string; seeds?: number; out: string; plain?: boolean }) => {
      if (o.seeds !== undefined && (!Number.isInteger(o.seeds) || o.seeds < 1)) throw new Error(`--seeds must be a positive integer, not ${o.seeds}`);
      const loaded = withOutputUnder(loadConfig(o.config), o.out);
      // A fresh job every run (the default key would return the previous run's job).
      const submission = await prepareSubmission(o.grid, { jobKey: `demo-${Date.now()}` });
      const grid = submission.grid && o.seeds ? { ...submission.grid, seeds_per_prompt: o.seeds } : submission.grid;
      process.stdout.write(`orrery demo: model repository ${loaded.config.modelRepository}\n`);
      for (const line of await prepareLocalModels(loaded.config)) process.stdout.write(`orrery demo: made ${line}\n`);
      fs.mkdirSync(o.out, { recursive: true });
      const logFile = path.join(o.out, 'cluster.log');
      const logFd = fs.openSync(logFile, 'w');
      process.stdout.write(`orrery demo: starting nats-server, the router and the replicas (logs: ${logFile})\n`);
      const cluster = await LocalCluster.start({ loaded, grpcPort: 0, logs: logFd });
      const client = new JobClient(cluster.grpcAddress);
      try {
        process.stdout.write(`orrery demo: cluster ready at grpc=${cluster.grpcAddress} metrics=${cluster.metricsUrl}\n`);
        const startedMs = performance.now();
        const job = await sendSubmission(client, { ...submission, ...(grid ? { grid } : {}) });
        process.stdout.write(`orrery demo: submitted job ${job.job_id} from ${path.relative(process.cwd(), o.grid) || o.grid}: ${job.total} items (${submission.description.replace(/ = \d+ items$/, '')})\n`);
        const final = await followJob(client, job.job_id, { tty: o.plain ? false : undefined, plainIntervalMs: 2000, detachOnInterrupt: false });
        const seconds = (performance.now() - startedMs) / 1000;
        const done = counts(final).done;
        process.stdout.write(`orrery demo: ${done} images through ${final.pipeline || 'the default pipeline'} in ${seconds.toFixed(2)} s = ${formatRate(done / seconds)} images/s (submit to the job's end)\n`);
        process.exitCode = exitStatusOf(final);
      } finally {
        client.close();
        await cluster.stop();
        fs.closeSync(logFd);
      }
    });
}
