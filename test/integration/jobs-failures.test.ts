/**
 * Bulk jobs when things go wrong, on a real cluster: cancel keeps what was written and RetryJob
 * runs only what did not succeed; an item that always fails ends failed after max_attempts without
 * stalling its job; kill -9 of the router mid-job loses nothing and writes nothing twice.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { startCluster, type TestCluster } from './harness.js';
import { grid, isFinal, type JobMsg, jobsTestConfig, rpc, sinkContents, slowSynthetic, submitJob, waitJob } from './jobs-harness.js';

/** Slower items, so a cancel or a kill lands mid-job: ~64 items/s on the one replica. */
const SLOW = slowSynthetic(12);

describe('bulk jobs: failures', () => {
  let c: TestCluster;
  let out: string;
  before(async () => {
    c = await startCluster(jobsTestConfig({ max_attempts: 2 }, SLOW));
    out = path.join(c.dir, 'out');
  });
  after(() => c?.stop());

  const submit = (req: object, model?: string) => submitJob(c.client, req, model);

  test('cancel keeps the results already written; RetryJob then runs only the cancelled items, into the same outputs', async () => {
    const dir = path.join(out, 'cancel');
    const job = await submit({ grid: grid(10, 12), output_uri: pathToFileURL(dir).href });
    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 10, 30_000, '10 items done');
    await rpc(c.client, 'CancelJob', { job_id: job.job_id });
    const cancelled = await waitJob(c.client, job.job_id, isFinal);
    assert.equal(cancelled.state, 'cancelled');
    const succeeded = Number(cancelled.succeeded);
    assert.ok(succeeded >= 10 && succeeded < 120, `succeeded ${succeeded}`);
    assert.equal(Number(cancelled.cancelled) + succeeded + Number(cancelled.failed), 120);
    const first = sinkContents(dir);
    assert.equal(first.outputs.length, succeeded, 'every success has its file and nothing else was written');
    assert.equal(first.manifest.filter((l) => l.status === 'succeeded').length, succeeded);
    assert.equal(new Set(first.manifest.map((l) => l.custom_id)).size, first.manifest.length);
    assert.equal((first.jobJson!.counts as { cancelled: number }).cancelled, Number(cancelled.cancelled));
    const mtimes = new Map(first.outputs.map((n) => [n, fs.statSync(path.join(dir, n)).mtimeMs]));

    const retried = await rpc<JobMsg>(c.client, 'RetryJob', { job_id: job.job_id });
    assert.equal(retried.state, 'in_progress');
    // The reply shows the retry in effect: what succeeded stays, what was cancelled is queued again.
    assert.equal(Number(retried.succeeded), succeeded);
    assert.equal(Number(retried.queued), 120 - succeeded);
    assert.equal(Number(retried.cancelled), 0);
    assert.equal(Number(retried.failed), 0);
    const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.equal(done.succeeded, '120');
    const second = sinkContents(dir);
    assert.equal(second.outputs.length, 120);
    assert.equal(second.manifest.length, 120);
    assert.equal(new Set(second.manifest.map((l) => l.custom_id)).size, 120);
    for (const [name, mtime] of mtimes) assert.equal(fs.statSync(path.join(dir, name)).mtimeMs, mtime, `${name} was not written again`);
  });

  test('an item that fails every attempt ends failed with its reason after max_attempts, and the job completes', async () => {
    const bad = await submit({ grid: grid(2, 2), output_uri: pathToFileURL(path.join(out, 'poison')).href }, 'fail-m');
    const good = await submit({ grid: grid(3, 2), output_uri: pathToFileURL(path.join(out, 'beside-poison')).href });
    const badDone = await waitJob(c.client, bad.job_id, isFinal, 60_000);
    assert.equal(badDone.state, 'completed');
    assert.equal(badDone.failed, '4');
    assert.equal(badDone.succeeded, '0');
    assert.equal(badDone.done, '0', 'a failure is never counted as done');
    assert.equal(badDone.attempts, '8', 'two attempts per item (max_attempts: 2)');
    assert.match(badDone.message, /4 of 4 items failed/);
    const items = await rpc<{ items: Array<{ state: string; error: string; error_code: string; attempts: number }> }>(c.client, 'ListJobItems', { job_id: bad.job_id, state: 'failed' });
    assert.equal(items.items.length, 4);
    assert.ok(items.items.every((i) => i.error_code === 'ORRERY_ERR_MODEL_LOAD_FAILED' && i.error.length > 0 && i.attempts === 2), JSON.stringify(items.items[0]));
    const manifest = sinkContents(path.join(out, 'poison')).manifest;
    assert.equal(manifest.length, 4);
    assert.ok(manifest.every((l) => l.status === 'failed' && l.file === '' && (l.error as string).length > 0));
    assert.equal((await waitJob(c.client, good.job_id, isFinal)).succeeded, '6');
  });

  test('a job whose sink becomes unwritable pauses saying why, and resumes by itself when it is writable again, using no attempts', async () => {
    const dir = path.join(out, 'pause');
    const job = await submit({ grid: grid(6, 10), output_uri: pathToFileURL(dir).href });
    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 5, 30_000, '5 items done');
    fs.renameSync(dir, `${dir}.away`);
    fs.writeFileSync(dir, 'not a directory');
    const paused = await waitJob(c.client, job.job_id, (j) => j.state === 'paused', 30_000, 'the job paused');
    assert.match(paused.message, /^paused: sink file:\/\/.*pause/);
    await waitJob(c.client, job.job_id, (j) => j.running === '0', 10_000, 'running items given back');
    const held = (await rpc(c.client, 'GetJob', { job_id: job.job_id })).succeeded;
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await rpc(c.client, 'GetJob', { job_id: job.job_id })).succeeded, held, 'nothing finishes while paused');
    fs.rmSync(dir);
    fs.renameSync(`${dir}.away`, dir);
    const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.equal(done.succeeded, '60');
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 60);
    assert.equal(s.manifest.length, 60);
    assert.ok(s.manifest.every((l) => l.attempts === 1), 'a paused sink costs no attempts');
  });

  test('kill -9 of the router mid-job: the restarted router finishes it with 0 items lost and 0 written twice', async () => {
    const dir = path.join(out, 'router-kill');
    const job = await submit({ grid: grid(8, 10), output_uri: pathToFileURL(dir).href });
    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 15, 30_000, '15 items done');
    const router = c.cluster.router!;
    const exited = new Promise((r) => router.once('exit', r));
    router.kill('SIGKILL');
    await exited;
    const done = await waitJob(c.client, job.job_id, isFinal, 90_000);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.equal(done.succeeded, '80');
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 80);
    assert.equal(s.manifest.length, 80);
    assert.equal(new Set(s.manifest.map((l) => l.custom_id)).size, 80);
    for (const l of s.manifest) {
      const data = fs.readFileSync(path.join(dir, l.file as string));
      assert.equal(data.byteLength, l.bytes, `${l.file as string} is the bytes the manifest records`);
    }
    assert.ok(c.cluster.routerRestarts >= 1);
  });
});
