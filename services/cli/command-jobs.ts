/**
 * `orrery jobs …`: bulk jobs on a running cluster — submit a grid or a list of items, watch the
 * progress, list, inspect, cancel, retry the failures, copy the results out of any sink, and
 * delete a finished job's records.
 */
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { InvalidArgumentError as BadOption, type Command } from 'commander';
import { InvalidArgumentError, OrreryError } from '../common/errors.js';
import { natsAuthOptions } from '../common/nats-auth-options.js';
import { inboxPrefix } from '../common/nats-permissions.js';
import { natsSecurityFromEnv } from '../common/nats-security-config.js';
import { copyJobResults } from '../router/jobs/sinks/copy-results.js';
import { openSink } from '../router/jobs/sinks/index.js';
import { CLIENT_SECURITY_HELP, addClientSecurityOptions, channelCredentials, type ClientSecurityFlags } from './grpc-credentials.js';
import { JobClient } from './job-client.js';
import { jobDetails, jobsTable, outputLines, progressLine, timestampMs, type JobMessage } from './job-format.js';
import { prepareSubmission, sendSubmission, type SubmitFlags } from './job-submit.js';
import { exitStatusOf, followJob } from './job-watch.js';

const DEFAULT_ADDR = '127.0.0.1:50051';
const ITEM_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'];

const int = (min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new BadOption(`not an integer ≥ ${min}: ${v}`);
  return n;
};

const num = (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new BadOption(`not a number: ${v}`);
  return n;
};

/** The router address and the TLS and token flags every jobs subcommand has. */
type RouterFlags = ClientSecurityFlags & { addr: string };

const client = (o: RouterFlags): JobClient =>
  new JobClient(o.addr, {
    onRetry: (err, attempt, delayMs) => process.stderr.write(`orrery: router at ${o.addr} unreachable (${err.details || err.message}); retry ${attempt} in ${(delayMs / 1000).toFixed(1)} s\n`),
  }, channelCredentials(o));

/** Runs `fn` with a client for the router of `o`, closing it afterwards. */
async function withClient<T>(o: RouterFlags, fn: (c: JobClient) => Promise<T>): Promise<T> {
  const c = client(o);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

/** Follows the job and sets the exit status from its final state. */
async function watchAndExit(c: JobClient, jobId: string, plainIntervalMs?: number): Promise<void> {
  const final = await followJob(c, jobId, { plainIntervalMs });
  process.exitCode = exitStatusOf(final);
}

/** --addr and the TLS and token flags (grpc-credentials.ts). */
const addrOption = (cmd: Command): Command => addClientSecurityOptions(cmd.option('--addr <host:port>', 'router gRPC address', DEFAULT_ADDR));

export function registerJobsCommand(program: Command): void {
  const jobs = program
    .command('jobs')
    .description('Bulk jobs: a template request × a grid over planet attributes or a list of items, run durably by the cluster into a sink.')
    .addHelpText('after', `
A job survives restarts of the router, NATS and replicas; each item is written once as
<custom_id>.<ext> beside manifest.jsonl, job.json and contact-sheet.png at the job's output_uri.

Examples:
  orrery jobs submit deploy/jobs/demo-grid.yaml --watch
  orrery jobs submit items.jsonl --template batch-template.yaml --out-uri s3://renders/planets
  orrery jobs list
  orrery jobs watch j-0123abcd
  orrery jobs retry j-0123abcd --watch
  orrery jobs results j-0123abcd --out ./planets
${CLIENT_SECURITY_HELP}`);

  addrOption(jobs.command('submit <file>'))
    .description('Submit a job from a YAML job file (template + grid or items) or a JSONL item file (one item a line).')
    .option('--watch', 'follow the job until it ends (like jobs watch)')
    .option('--job-key <key>', 'the job\'s key (default: the SHA-256 of the file and the template; see below)')
    .option('--out-uri <uri>', 'where outputs go: file://DIR, nats-object://BUCKET[/PREFIX], s3://BUCKET/PREFIX (default: the file\'s output_uri, else the cluster\'s)')
    .option('--name <text>', 'a name for people (default: the file\'s name:, else its file name)')
    .option('--max-attempts <n>', 'attempts per item (default: the file\'s, else the cluster\'s, 3)', int(1))
    .option('--template <file.yaml>', 'for a JSONL file: a YAML file (a job file without grid: or items:) whose template:, name:, output_uri:, max_attempts: apply')
    .option('--pipeline <name>', 'template: pipeline')
    .option('--model <id>', 'template: model id')
    .option('--aspect <w:h>', 'template: aspect ratio, e.g. 21:9')
    .option('--width <n>', 'template: width (with --height)', int(1))
    .option('--height <n>', 'template: height (with --width)', int(1))
    .option('--steps <n>', 'template: denoising steps', int(1))
    .option('--guidance <x>', 'template: guidance scale', num)
    .option('--negative <text>', 'template: negative prompt')
    .option('--format <fmt>', 'template: png, webp or jpeg')
    .option('--seed <n>', 'template: the job\'s base seed (items without a seed derive theirs from it)')
    .option('--dry-run', 'check the file and print what would be submitted, without contacting the cluster')
    .addHelpText('after', `
YAML job file (keys are the API's field names; deploy/jobs/planet-grid.yaml is a full example):
  name: planets-21x9
  template: { pipeline: planet-ultrawide, aspect: "21:9", steps: 30, output_format: png, seed: 1000 }
  grid:                        # every combination × seeds_per_prompt; or items: [{custom_id, prompt|planet, seed}]
    colors: [deep blue, burnt orange]
    atmospheres: [frosted cloudy zones, swirling auroras]
    moons: [no moons]
    skies: [distant stars dark sky]
    fixed_extras: [realistic, ethereal]
    seeds_per_prompt: 2
  output_uri: file:///data/jobs/planets   # optional
  max_attempts: 3                          # optional

JSONL item file: one item a line, {"custom_id": "p-000001", "prompt": "…", "seed": 7} (or "planet":
{"color": …}), with the template from --template and/or the template flags. It is read as a stream
and sent in chunks of up to 1000 items; a chunk that fails because the router is unreachable is
sent again (its offset makes that safe).

The job key: unless --job-key (or job_key: in the file) is given, the key is the SHA-256 of the
file's contents and the request's template, name, output_uri and max_attempts. Running the same
submit again — after a crash or a lost connection — returns the job it created and sends only
the items the job lacks. To run the same file again as a new job, give a new --job-key.

Examples:
  orrery jobs submit deploy/jobs/planet-grid.yaml --watch
  orrery jobs submit items.jsonl --pipeline planet-ultrawide --aspect 21:9 --steps 30 --name batch-7
  orrery jobs submit deploy/jobs/demo-grid.yaml --dry-run`)
    .action(async (file: string, o: SubmitFlags & RouterFlags & { watch?: boolean; dryRun?: boolean }) => {
      const s = await prepareSubmission(file, o);
      if (o.dryRun) {
        process.stdout.write(`${file}: ${s.description}\njob_key: ${s.header.job_key}\n${JSON.stringify({ ...s.header, ...(s.grid ? { grid: s.grid } : {}) }, null, 2)}\n`);
        return;
      }
      const startedMs = Date.now();
      await withClient(o, async (c) => {
        let sent = 0;
        const job = await sendSubmission(c, s, {
          onCreated: (j) => process.stdout.write(`job ${j.job_id}: sending ${s.jsonl ? `the items of ${file}` : 'the items'} in chunks of up to 1000 (the job holds ${j.total} so far)\n`),
          onChunk: ({ count, skipped }) => {
            if (!skipped) sent += count;
          },
        });
        const created = timestampMs(job.created_at);
        const earlier = created !== undefined && created < startedMs - 2000;
        process.stdout.write(earlier
          ? `job ${job.job_id} was already submitted with this job_key at ${new Date(created).toISOString()} (${job.state}); this is the same job\n`
          : `submitted job ${job.job_id}: ${s.description}\n`);
        if (s.jsonl || (s.items && s.items.length > 1000)) process.stdout.write(`  sent ${sent} items in chunks; the job has ${job.total}\n`);
        process.stdout.write(`  job_key: ${job.job_key || '-'}\n`);
        // With --watch the summary at the end says where the outputs are.
        if (o.watch) await watchAndExit(c, job.job_id);
        else for (const line of [...outputLines(job), `follow it: orrery jobs watch ${job.job_id}${o.addr === DEFAULT_ADDR ? '' : ` --addr ${o.addr}`}`]) process.stdout.write(`${line}\n`);
      });
    });

  addrOption(jobs.command('watch <job-id>'))
    .description('Follow a job until it ends: a progress bar on a terminal, plain lines otherwise.')
    .option('--interval <seconds>', 'least time between plain lines when the output is not a terminal', num, 5)
    .addHelpText('after', `
Shows done/total (failures are never counted as done), items/s over the last minute, ETA, failures
and the state. When the job ends it prints a summary and where the images, manifest.jsonl and
contact-sheet.png are. Exit status: 0 when the job completed, 2 when it was cancelled or expired,
1 on errors.
Ctrl-C stops watching; the job keeps running. A router restart is ridden out (the watch reconnects).

Examples:
  orrery jobs watch j-0123abcd
  orrery jobs watch j-0123abcd --addr router.orrery:50051 | tee job.log`)
    .action(async (jobId: string, o: RouterFlags & { interval: number }) => {
      await withClient(o, (c) => watchAndExit(c, jobId, o.interval * 1000));
    });

  addrOption(jobs.command('list'))
    .description('List jobs, newest first.')
    .option('--state <state>', 'only jobs in this state (validating, in_progress, paused, finalizing, completed, expiring, expired, cancelling, cancelled)')
    .option('--limit <n>', 'at most this many jobs', int(1), 50)
    .option('--json', 'one Job message a line, as JSON')
    .addHelpText('after', '\nExamples:\n  orrery jobs list\n  orrery jobs list --state in_progress --limit 10')
    .action(async (o: RouterFlags & { state?: string; limit: number; json?: boolean }) => {
      const found: JobMessage[] = [];
      await withClient(o, async (c) => {
        let token = '';
        do {
          const page = await c.list({ page_size: Math.min(1000, o.limit - found.length), page_token: token, state: o.state ?? '' });
          found.push(...page.jobs);
          token = page.next_page_token;
        } while (token && found.length < o.limit);
      });
      if (o.json) for (const job of found) process.stdout.write(`${JSON.stringify(job)}\n`);
      else if (found.length === 0) process.stdout.write(`no jobs${o.state ? ` in state ${o.state}` : ''}\n`);
      else for (const line of jobsTable(found.slice(0, o.limit))) process.stdout.write(`${line}\n`);
    });

  addrOption(jobs.command('get <job-id>'))
    .description('Show one job: state, counts, rate, times, where its outputs are.')
    .option('--json', 'the Job message as JSON (uint64 counts as strings)')
    .addHelpText('after', '\nExamples:\n  orrery jobs get j-0123abcd\n  orrery jobs get j-0123abcd --json | jq .state')
    .action(async (jobId: string, o: RouterFlags & { json?: boolean }) => {
      const job = await withClient(o, (c) => c.get(jobId));
      if (o.json) process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
      else for (const line of [...jobDetails(job), ...outputLines(job)]) process.stdout.write(`${line}\n`);
    });

  addrOption(jobs.command('items <job-id>'))
    .description('List a job\'s items and their results (state, seed, file, attempts, error), in item order.')
    .option('--state <state>', `only items in this state (${ITEM_STATES.join(', ')})`)
    .option('--limit <n>', 'at most this many items', int(1), 100)
    .option('--json', 'one JobItemResult a line, as JSON')
    .addHelpText('after', '\nExamples:\n  orrery jobs items j-0123abcd --state failed\n  orrery jobs items j-0123abcd --limit 1000000 --json > items.jsonl')
    .action(async (jobId: string, o: RouterFlags & { state?: string; limit: number; json?: boolean }) => {
      if (o.state && !ITEM_STATES.includes(o.state)) throw new InvalidArgumentError('--state', `must be one of ${ITEM_STATES.join(', ')}, not ${o.state}`);
      await withClient(o, async (c) => {
        let token = '';
        let shown = 0;
        do {
          const page = await c.items({ job_id: jobId, page_size: Math.min(10_000, o.limit - shown), page_token: token, state: o.state ?? '' });
          for (const it of page.items.slice(0, o.limit - shown)) {
            shown++;
            if (o.json) process.stdout.write(`${JSON.stringify(it)}\n`);
            else {
              const what = it.state === 'succeeded' ? `${it.file} (${it.bytes} bytes)` : it.error ? `${it.error_code ? `${it.error_code}: ` : ''}${it.error}` : '';
              process.stdout.write(`${it.index}\t${it.custom_id}\t${it.state}\tseed ${it.seed}\t${it.attempts} attempt${it.attempts === 1 ? '' : 's'}\t${what}\n`);
            }
          }
          token = page.next_page_token;
        } while (token && shown < o.limit);
        if (shown === 0 && !o.json) process.stdout.write(`no items${o.state ? ` in state ${o.state}` : ''}\n`);
      });
    });

  addrOption(jobs.command('cancel <job-id>'))
    .description('Cancel a job: queued items end cancelled; results already written stay, with the manifest.')
    .addHelpText('after', '\nExamples:\n  orrery jobs cancel j-0123abcd\n  orrery jobs retry j-0123abcd     runs the cancelled and failed items later')
    .action(async (jobId: string, o: RouterFlags) => {
      const job = await withClient(o, (c) => c.cancel(jobId));
      process.stdout.write(`${progressLine(job)}\n`);
    });

  addrOption(jobs.command('retry <job-id>'))
    .description('Run a job\'s failed, cancelled and expired items again (only those), into the same outputs, with a new completion window.')
    .option('--watch', 'follow the job until it ends')
    .addHelpText('after', '\nExamples:\n  orrery jobs items j-0123abcd --state failed     why they failed\n  orrery jobs retry j-0123abcd --watch')
    .action(async (jobId: string, o: RouterFlags & { watch?: boolean }) => {
      await withClient(o, async (c) => {
        const job = await c.retryJob(jobId);
        process.stdout.write(`${progressLine(job)}\n`);
        if (o.watch) await watchAndExit(c, job.job_id);
      });
    });

  addrOption(jobs.command('delete <job-id>'))
    .description('Delete a finished job\'s records from the cluster (spec, state, item records); its outputs in the sink stay.')
    .addHelpText('after', `
Only a finished job (completed, cancelled or expired) can be deleted; cancel a running one first.
The records go in the background; from now on no command shows the job, and its job_key may name
a new job. Finished jobs are also deleted by themselves after the cluster's jobs.retention_h.

Examples:
  orrery jobs results j-0123abcd --out ./planets && orrery jobs delete j-0123abcd`)
    .action(async (jobId: string, o: RouterFlags) => {
      await withClient(o, (c) => c.deleteJob(jobId));
      process.stdout.write(`job ${jobId}: deleting its records (outputs in the sink stay)\n`);
    });

  addrOption(jobs.command('results <job-id>'))
    .description('Copy a job\'s outputs, manifest.jsonl, job.json and contact-sheet.png from its sink (file, NATS object store or S3) into a folder.')
    .requiredOption('--out <dir>', 'the folder to copy into (created if missing)')
    .option('--nats-url <url>', 'NATS of the cluster, for nats-object:// sinks', 'nats://127.0.0.1:4222')
    .option('--nats-prefix <prefix>', 'the cluster\'s nats.prefix (its NATS users\' inboxes are under it)', 'orrery')
    .addHelpText('after', `
Files already in the folder with the same size and SHA-256 are skipped, so an interrupted copy
continues where it stopped. s3:// sinks take their endpoint, region and credentials from the
environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); a NATS with
authorization takes the router user's credentials and TLS from ORRERY_NATS_USER,
ORRERY_NATS_PASSWORD_FILE (or ORRERY_NATS_TOKEN_FILE, ORRERY_NATS_NKEY_SEED_FILE,
ORRERY_NATS_CREDS_FILE), ORRERY_NATS_TLS_CA_FILE, ORRERY_NATS_TLS_CERT_FILE, ORRERY_NATS_TLS_KEY_FILE.

Examples:
  orrery jobs results j-0123abcd --out ./planets
  orrery jobs results j-0123abcd --out ./planets --nats-url nats://nats.orrery:4222`)
    .action(async (jobId: string, o: RouterFlags & { out: string; natsUrl: string; natsPrefix: string }) => {
      const job = await withClient(o, (c) => c.get(jobId));
      if (!job.output_uri) throw new OrreryError('ORRERY_ERR_INTERNAL', `job ${jobId} has no output_uri`);
      let nc: NatsConnection | undefined;
      if (job.output_uri.startsWith('nats-object://')) nc = await connect({ servers: o.natsUrl, name: 'orrery-jobs-results', ...natsAuthOptions(natsSecurityFromEnv(process.env)), inboxPrefix: inboxPrefix(o.natsPrefix, 'router') });
      const sink = await openSink(job.output_uri, { nc, env: process.env });
      const tty = Boolean(process.stdout.isTTY);
      let lastLineMs = 0;
      try {
        const r = await copyJobResults(sink, o.out, (p) => {
          const line = `copying ${job.output_uri}: ${p.files} files (${(p.bytes / 1e6).toFixed(1)} MB) written, ${p.skipped} already there — ${p.name}`;
          if (tty) process.stdout.write(`\r\x1b[K${line.slice(0, (process.stdout.columns || 120) - 1)}`);
          else if (Date.now() - lastLineMs >= 5000) {
            lastLineMs = Date.now();
            process.stdout.write(`${line}\n`);
          }
        });
        if (tty) process.stdout.write('\r\x1b[K');
        process.stdout.write(`copied job ${jobId} (${job.state}) from ${job.output_uri} to ${path.resolve(o.out)}: ${r.files} files, ${(r.bytes / 1e6).toFixed(1)} MB written, ${r.skipped} already there\n`);
      } finally {
        await sink.close();
        await nc?.close();
      }
    });
}
