/**
 * `orrery jobs …` as a person runs it: the real CLI (node bin/orrery.js) against a local cluster of
 * real processes (nats-server with JetStream on disk, the router, synthetic replicas). Output is a
 * pipe, so the progress view prints plain lines.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify as toYaml } from 'yaml';
import { packageRoot } from '../../services/common/package-root.js';
import { eventually, startCluster, type TestCluster } from './harness.js';
import { jobsTestConfig, rpc, sinkContents, SYNTHETIC } from './jobs-harness.js';

const CLI = path.join(packageRoot(), 'bin/orrery.js');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `orrery <args>` without blocking this process (its LocalCluster must keep supervising). */
function orrery(args: string[], onStdout?: (text: string) => void, onSpawn?: (child: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Rejects when a CLI run ends: for racing a run that should still be going. */
const submitEnded = (run: Promise<Run>): Promise<never> =>
  run.then((r) => Promise.reject(new Error(`orrery exited ${r.status} early:\n${r.stdout}\n${r.stderr}`)));

const jobIdOf = (text: string): string => {
  const m = /job (j[a-z0-9]+)/.exec(text);
  assert.ok(m, `a job id in: ${text}`);
  return m[1]!;
};

describe('orrery jobs against a local cluster', () => {
  let c: TestCluster;
  let addr: string;
  let outRoot: string;
  let files: string;
  before(async () => {
    // Slower items than the jobs tests' default, so a job is still running when the router dies.
    c = await startCluster(jobsTestConfig({}, { ...SYNTHETIC, options: { ...SYNTHETIC.options, fixed_ms: 20, per_item_ms: 5 } }));
    addr = c.cluster.grpcAddress;
    outRoot = path.join(c.dir, 'out');
    files = path.join(c.dir, 'files');
    fs.mkdirSync(files);
  });
  after(() => c?.stop());

  const gridFile = (name: string, colors: number, atmospheres: number, seeds: number, extra: Record<string, unknown> = {}): string => {
    const file = path.join(files, `${name}.yaml`);
    fs.writeFileSync(file, toYaml({
      name,
      template: { pipeline: 'synthetic', model_id: 'syn-a', width: 64, height: 64, seed: 11 },
      grid: { colors: Array.from({ length: colors }, (_, i) => `color ${i}`), atmospheres: Array.from({ length: atmospheres }, (_, i) => `atmosphere ${i}`), seeds_per_prompt: seeds },
      output_uri: `file://${path.join(outRoot, name)}`,
      ...extra,
    }));
    return file;
  };

  test('submit --watch runs a grid job to completion: plain progress lines, a summary, every image and a manifest line each', async () => {
    const file = gridFile('grid-a', 3, 2, 2);
    const r = await orrery(['jobs', 'submit', file, '--addr', addr, '--watch']);
    assert.equal(r.status, 0, r.stderr);
    const jobId = jobIdOf(r.stdout);
    assert.match(r.stdout, /^submitted job j[a-z0-9]+: a grid of 3 colors × 2 atmospheres × 2 seeds = 12 items$/m);
    assert.match(r.stdout, new RegExp(`^job ${jobId} (in_progress|finalizing|completed): \\d+/12 done`, 'm'));
    assert.match(r.stdout, new RegExp(`^job ${jobId} completed: 12 of 12 succeeded, 0 failed, 0 cancelled`, 'm'));
    const dir = path.join(outRoot, 'grid-a');
    assert.match(r.stdout, new RegExp(`manifest: +${dir}/manifest\\.jsonl`));
    assert.match(r.stdout, new RegExp(`contact sheet: +${dir}/contact-sheet\\.png`));
    // eslint-disable-next-line no-control-regex -- ESC is the character this looks for
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no terminal control characters in a pipe');
    const sink = sinkContents(dir);
    assert.equal(sink.outputs.length, 12);
    assert.equal(sink.manifest.length, 12);
    assert.ok(sink.contactSheet);
    assert.ok(sink.outputs.some((n) => /^c02-a01.*k1\.png$/.test(n)), `ids from the axis indices: ${sink.outputs.join(' ')}`);
  });

  test('submitting the same file again returns the same job (the default job key), a new --job-key makes a new one', async () => {
    const file = gridFile('grid-b', 2, 1, 1);
    const first = await orrery(['jobs', 'submit', file, '--addr', addr]);
    assert.equal(first.status, 0, first.stderr);
    const id = jobIdOf(first.stdout);
    assert.match(first.stdout, /job_key: sha256-[0-9a-f]{64}/);
    await new Promise((r) => setTimeout(r, 2100));
    const again = await orrery(['jobs', 'submit', file, '--addr', addr]);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(jobIdOf(again.stdout), id);
    assert.match(again.stdout, /was already submitted with this job_key at .*; this is the same job/);
    const other = await orrery(['jobs', 'submit', file, '--addr', addr, '--job-key', 'another-run', '--out-uri', `file://${path.join(outRoot, 'grid-b2')}`]);
    assert.equal(other.status, 0, other.stderr);
    assert.notEqual(jobIdOf(other.stdout), id);
  });

  test('a JSONL file goes in chunks with offsets, rides out a kill -9 of the router mid-upload, and every item runs once', async () => {
    const items = path.join(files, 'upload.jsonl');
    const n = 4000;
    fs.writeFileSync(items, Array.from({ length: n }, (_, i) => JSON.stringify({ custom_id: `u-${String(i).padStart(5, '0')}`, prompt: `planet ${i}`, seed: i })).join('\n') + '\n');
    const template = path.join(files, 'template.yaml');
    fs.writeFileSync(template, toYaml({ name: 'from-jsonl', template: { pipeline: 'synthetic', model_id: 'syn-a', width: 64, height: 64 }, output_uri: `file://${path.join(outRoot, 'upload')}` }));
    let created!: (id: string) => void;
    const jobCreated = new Promise<string>((resolve) => (created = resolve));
    const submit = orrery(['jobs', 'submit', items, '--template', template, '--addr', addr, '--job-key', 'upload-1'], (text) => {
      const m = /^job (j[a-z0-9]+): sending the items/m.exec(text);
      if (m) created(m[1]!);
    });
    // Kill the router once the job exists and holds some items, but not all.
    const id = await Promise.race([jobCreated, submitEnded(submit)]);
    await eventually(async () => Number((await rpc(c.client, 'GetJob', { job_id: id }).catch(() => ({ total: '0' }))).total) >= 1000, 60_000, 'the first chunk');
    c.cluster.router!.kill('SIGKILL');
    const r = await submit;
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /router at .* unreachable .*; retry 1 in/, 'it said it was retrying');
    assert.equal(jobIdOf(r.stdout), id);
    assert.match(r.stdout, new RegExp(`the job has ${n}$`, 'm'));
    const watch = await orrery(['jobs', 'watch', id, '--addr', addr]);
    assert.equal(watch.status, 0, watch.stderr);
    assert.match(watch.stdout, new RegExp(`completed: ${n} of ${n} succeeded`));
    const sink = sinkContents(path.join(outRoot, 'upload'));
    assert.equal(sink.outputs.length, n);
    assert.equal(new Set(sink.manifest.map((l) => l.custom_id)).size, n);
    assert.equal(sink.manifest.length, n, 'no item twice');
    assert.equal(sink.manifest.find((l) => l.custom_id === 'u-01234')?.seed?.toString(), '1234', 'each item keeps its own seed');
  });

  test('re-running a JSONL submit killed mid-upload returns the same job and sends only the items it lacks', async () => {
    const items = path.join(files, 'resume.jsonl');
    const n = 3000;
    fs.writeFileSync(items, Array.from({ length: n }, (_, i) => JSON.stringify({ custom_id: `r-${i}`, prompt: `planet ${i}` })).join('\n') + '\n');
    const args = ['jobs', 'submit', items, '--addr', addr, '--pipeline', 'synthetic', '--model', 'syn-a', '--width', '64', '--height', '64', '--out-uri', `file://${path.join(outRoot, 'resume')}`];
    let cli: ChildProcess | undefined;
    let created!: (id: string) => void;
    const jobCreated = new Promise<string>((resolve) => (created = resolve));
    const first = orrery(args, (text) => {
      const m = /^job (j[a-z0-9]+): sending the items/m.exec(text);
      if (m) created(m[1]!);
    }, (child) => (cli = child));
    const id = await Promise.race([jobCreated, submitEnded(first)]);
    await eventually(async () => Number((await rpc(c.client, 'GetJob', { job_id: id }).catch(() => ({ total: '0' }))).total) >= 1000, 60_000, 'the first chunk');
    cli!.kill('SIGKILL');
    assert.equal((await first).status, null, 'the first submit was killed');
    const { total: before } = await rpc(c.client, 'GetJob', { job_id: id });
    const again = await orrery(args);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(jobIdOf(again.stdout), id, 'the same job');
    const sent = Number(/sent (\d+) items/.exec(again.stdout)![1]);
    assert.ok(sent <= n - Number(before) + 1000, `sent ${sent} items; the job had ${before} of ${n}`);
    assert.match(again.stdout, new RegExp(`the job has ${n}$`, 'm'));
    const job = await rpc(c.client, 'GetJob', { job_id: id });
    assert.notEqual(job.state, 'validating', 'the item list is closed');
    await orrery(['jobs', 'cancel', id, '--addr', addr]); // the rest of this job is not this test's business
  });

  test('jobs watch rides out a kill -9 of the router (serve-local restarts it) and exits 0 when the job completes', async () => {
    const file = gridFile('grid-kill', 6, 5, 10); // 300 items, several seconds of work
    const sub = await orrery(['jobs', 'submit', file, '--addr', addr]);
    assert.equal(sub.status, 0, sub.stderr);
    const id = jobIdOf(sub.stdout);
    let killed = false;
    const watch = orrery(['jobs', 'watch', id, '--addr', addr, '--interval', '0.5'], (text) => {
      if (!killed && /\b([1-9]\d*)\/300 done/.test(text)) {
        killed = true;
        c.cluster.router!.kill('SIGKILL');
      }
    });
    const r = await watch;
    assert.ok(killed, 'the router was killed while the job ran');
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`job ${id} completed: 300 of 300 succeeded`));
    assert.ok(c.cluster.routerRestarts >= 1);
    const sink = sinkContents(path.join(outRoot, 'grid-kill'));
    assert.equal(sink.outputs.length, 300);
    assert.equal(sink.manifest.length, 300, 'one manifest line per item, none twice');
  });

  test('cancel stops a running job; watch then exits 2; retry --watch runs the cancelled items and exits 0', async () => {
    const file = gridFile('grid-cancel', 6, 5, 6); // 180 items
    const sub = await orrery(['jobs', 'submit', file, '--addr', addr]);
    const id = jobIdOf(sub.stdout);
    const cancel = await orrery(['jobs', 'cancel', id, '--addr', addr]);
    assert.equal(cancel.status, 0, cancel.stderr);
    assert.match(cancel.stdout, new RegExp(`^job ${id} (cancelling|cancelled):`));
    const watch = await orrery(['jobs', 'watch', id, '--addr', addr]);
    assert.equal(watch.status, 2, watch.stderr);
    assert.match(watch.stdout, new RegExp(`job ${id} cancelled: \\d+ of 180 succeeded, 0 failed, [1-9]\\d* cancelled`));
    assert.match(watch.stdout, new RegExp(`orrery jobs retry ${id}`));
    const items = await orrery(['jobs', 'items', id, '--addr', addr, '--state', 'cancelled', '--limit', '3']);
    assert.equal(items.status, 0, items.stderr);
    assert.equal(items.stdout.trim().split('\n').length, 3);
    assert.match(items.stdout, /\tcancelled\t/);
    const retry = await orrery(['jobs', 'retry', id, '--addr', addr, '--watch']);
    assert.equal(retry.status, 0, `${retry.stdout}\n${retry.stderr}`);
    assert.match(retry.stdout, /completed: 180 of 180 succeeded, 0 failed, 0 cancelled/);
  });

  test('list, get and results: a table, a summary, and the outputs copied with manifest, job.json and contact sheet', async () => {
    const list = await orrery(['jobs', 'list', '--addr', addr]);
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /^JOB\s+STATE\s+DONE\/TOTAL/);
    assert.match(list.stdout, /grid-a/);
    const listed = (await orrery(['jobs', 'list', '--addr', addr, '--json'])).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { job_id: string; name: string });
    const id = listed.find((j) => j.name === 'grid-a')!.job_id;
    const get = await orrery(['jobs', 'get', id, '--addr', addr]);
    assert.equal(get.status, 0, get.stderr);
    assert.match(get.stdout, /^state: +completed$/m);
    assert.match(get.stdout, /^items: +12 total: 12 succeeded, 0 failed/m);
    const json = JSON.parse((await orrery(['jobs', 'get', id, '--addr', addr, '--json'])).stdout) as Record<string, unknown>;
    assert.equal(json.job_id, id);
    assert.equal(json.total, '12');
    const out = path.join(c.dir, 'copied');
    const res = await orrery(['jobs', 'results', id, '--addr', addr, '--out', out]);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /copied job .* 15 files/);
    const names = fs.readdirSync(out);
    for (const f of ['manifest.jsonl', 'job.json', 'contact-sheet.png']) assert.ok(names.includes(f), f);
    assert.equal(names.filter((n) => n.endsWith('.png') && n !== 'contact-sheet.png').length, 12);
    const again = await orrery(['jobs', 'results', id, '--addr', addr, '--out', out]);
    assert.match(again.stdout, /0 files, 0\.0 MB written, 15 already there/);
  });

  test('errors are one readable line with the status, no stack: an unknown job, a wrong key in a file, an unknown pipeline', async () => {
    const missing = await orrery(['jobs', 'get', 'jdoesnotexist', '--addr', addr]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^orrery: NOT_FOUND: .*jdoesnotexist/m);
    assert.doesNotMatch(missing.stderr, /\n\s+at /);
    const bad = path.join(files, 'bad.yaml');
    fs.writeFileSync(bad, 'template: { pipeline: synthetic }\ngrid: { colors: red }\n');
    const badRun = await orrery(['jobs', 'submit', bad, '--addr', addr]);
    assert.equal(badRun.status, 1);
    assert.equal(badRun.stderr, `orrery: ${bad}: grid.colors: must be a list of strings\n`);
    const server = path.join(files, 'server-bad.yaml');
    fs.writeFileSync(server, toYaml({ template: { pipeline: 'no-such-pipeline' }, grid: { colors: ['red'] } }));
    const serverRun = await orrery(['jobs', 'submit', server, '--addr', addr]);
    assert.equal(serverRun.status, 1);
    assert.match(serverRun.stderr, /^orrery: NOT_FOUND: .*pipeline.*no-such-pipeline/m);
  });

  test('--help of jobs and of each subcommand explains it with examples', async () => {
    const top = await orrery(['jobs', '--help']);
    for (const cmd of ['submit', 'watch', 'list', 'get', 'items', 'cancel', 'retry', 'results']) assert.match(top.stdout, new RegExp(`\\b${cmd}\\b`));
    assert.match(top.stdout, /Examples:/);
    const submit = await orrery(['jobs', 'submit', '--help']);
    assert.match(submit.stdout, /SHA-256 of the\s+file's contents/);
    assert.match(submit.stdout, /chunks of up to 1000 items/);
    for (const cmd of ['watch', 'list', 'get', 'items', 'cancel', 'retry', 'results']) {
      const r = await orrery(['jobs', cmd, '--help']);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /Examples:/, `jobs ${cmd} --help`);
    }
  });
});
