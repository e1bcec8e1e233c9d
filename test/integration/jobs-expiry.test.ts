/**
 * The end of a job's life on a real cluster (nats-server with file storage, router and a slow
 * synthetic replica as processes): a job not finished within its completion window ends expired
 * with what succeeded kept, also when the router was down as the window passed; RetryJob runs only
 * the expired items into the same outputs; DeleteJob and retention remove a finished job's
 * records from JetStream while its files stay in the sink.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { status } from '@grpc/grpc-js';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { JobStore, type JobRecord } from '../../services/router/jobs/job-store.js';
import { eventually, grpcError, metricSum, sleep, startCluster, type TestCluster } from './harness.js';
import { grid, isFinal, type JobMsg, jobsTestConfig, rpc, sinkContents, slowSynthetic, submitJob, waitJob, watchAll } from './jobs-harness.js';

/** About 13 items/s on the one replica (batches of 4 at 150 ms an item, 2 at once): a 2-second window ends a 60-item job early. */
const SLOW = slowSynthetic(150);

const seconds = (t: { seconds: string; nanos: number } | null): number => (t ? Number(t.seconds) + t.nanos / 1e9 : 0);

/** Every key the job has left in either bucket, and the messages its subjects still hold in their streams. */
async function jobTraces(nc: NatsConnection, jobId: string): Promise<{ itemKeys: number; jobRecord: boolean; itemMsgs: number; recordMsgs: number }> {
  const kvm = new Kvm(nc);
  const items = await kvm.open('orrery_job_items');
  const jobs = await kvm.open('orrery_jobs');
  let itemKeys = 0;
  for await (const _ of await items.keys(`${jobId}.>`)) itemKeys++;
  const jsm = await jetstreamManager(nc);
  const msgs = async (stream: string, filter: string) => {
    const info = await jsm.streams.info(stream, { subjects_filter: filter });
    return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  };
  return {
    itemKeys, jobRecord: !!(await jobs.get(`job.${jobId}`)), itemMsgs: await msgs('KV_orrery_job_items', `$KV.orrery_job_items.${jobId}.>`),
    recordMsgs: await msgs('KV_orrery_jobs', `$KV.orrery_jobs.job.${jobId}`),
  };
}

describe('bulk jobs: completion window and DeleteJob', () => {
  let c: TestCluster;
  let out: string;
  let nc: NatsConnection;
  before(async () => {
    c = await startCluster(jobsTestConfig({ retention_h: 0 }, SLOW));
    out = path.join(c.dir, 'out');
    nc = await connect({ servers: c.cluster.natsUrl });
    // The replica loads its model once, so the windows below measure running items only.
    await waitJob(c.client, (await submitJob(c.client, { grid: grid(1, 1) })).job_id, isFinal, 60_000, 'the warm-up job');
  });
  after(async () => {
    await nc?.close();
    await c?.stop();
  });

  test('a job not finished within its 2-second window ends expired: succeeded outputs stay in the manifest, the rest are expired and never done', async () => {
    const dir = path.join(out, 'expire');
    const job = await submitJob(c.client, { grid: grid(6, 10), output_uri: pathToFileURL(dir).href, completion_window_s: 2 });
    assert.ok(Math.abs(seconds(job.expires_at) - (Date.now() / 1000 + 2)) < 2, `expires_at ${JSON.stringify(job.expires_at)}`);
    const updates = await watchAll(c.client, job.job_id);
    const last = updates[updates.length - 1]!;
    assert.equal(last.state, 'expired', JSON.stringify(last));
    const succeeded = Number(last.succeeded);
    const expired = Number(last.expired);
    assert.ok(succeeded > 0 && expired > 0, `succeeded ${succeeded}, expired ${expired}`);
    assert.equal(succeeded + expired + Number(last.failed) + Number(last.cancelled), 60);
    assert.equal(Number(last.done), succeeded, 'an expired item is never done');
    assert.equal(last.queued, '0');
    assert.equal(last.running, '0');
    assert.match(last.message, /^expired: its completion window \(2 s\) passed before it finished: \d+ of 60 items expired/);

    const s = sinkContents(dir);
    assert.equal(s.outputs.length, succeeded, 'every success has its file and nothing else was written');
    assert.equal(s.manifest.filter((l) => l.status === 'succeeded').length, succeeded);
    assert.ok(s.manifest.every((l) => l.status === 'succeeded' || l.status === 'expired'), JSON.stringify(s.manifest.find((l) => l.status !== 'succeeded')));
    assert.equal(new Set(s.manifest.map((l) => l.custom_id)).size, s.manifest.length);
    assert.equal((s.jobJson!.counts as { expired: number }).expired, expired);

    const listed = await rpc<{ items: Array<{ state: string; error_code: string }> }>(c.client, 'ListJobItems', { job_id: job.job_id, state: 'expired', page_size: 1000 });
    assert.equal(listed.items.length, expired);
    assert.ok(listed.items.every((i) => i.error_code === '' || i.error_code === 'ORRERY_ERR_JOB_EXPIRED'), JSON.stringify(listed.items[0]));
    assert.ok((await metricSum(c.cluster.metricsUrl, 'orrery_jobs_finished_total', { state: 'expired' })) >= 1);
    await eventually(async () => (await metricSum(c.cluster.metricsUrl, 'orrery_jobs', { state: 'expired' })) >= 1, 5000, 'orrery_jobs{state="expired"}');

    // RetryJob runs the expired items (only those) with a new 2-second window; a run that expires
    // again is retried again, each into the same outputs, until the job completes.
    const mtimes = new Map(s.outputs.map((n) => [n, fs.statSync(path.join(dir, n)).mtimeMs]));
    let before = succeeded;
    let rounds = 0;
    for (let state = 'expired'; state !== 'completed'; rounds++) {
      assert.ok(rounds < 20, `still not completed after ${rounds} retries`);
      const retried = await rpc(c.client, 'RetryJob', { job_id: job.job_id });
      assert.equal(retried.state, 'in_progress');
      assert.equal(Number(retried.succeeded), before);
      assert.equal(Number(retried.queued), 60 - before);
      assert.equal(retried.expired, '0');
      assert.ok(seconds(retried.expires_at) > Date.now() / 1000, 'a new window');
      const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
      assert.ok(['expired', 'completed'].includes(done.state), JSON.stringify(done));
      assert.ok(Number(done.succeeded) > before, `round ${rounds} made progress (${before} → ${done.succeeded}): ${JSON.stringify(done)}`);
      before = Number(done.succeeded);
      state = done.state;
    }
    const final = sinkContents(dir);
    assert.equal(final.outputs.length, 60);
    assert.equal(final.manifest.length, 60);
    assert.ok(final.manifest.every((l) => l.status === 'succeeded'));
    for (const [name, mtime] of mtimes) assert.equal(fs.statSync(path.join(dir, name)).mtimeMs, mtime, `${name} was not written again`);
  });

  test('a router that was down while the window passed expires the job once it is back', async () => {
    const dir = path.join(out, 'expire-after-restart');
    const job = await submitJob(c.client, { grid: grid(6, 10), output_uri: pathToFileURL(dir).href, completion_window_s: 4 });
    const seen = await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 1, 30_000, 'an item done');
    assert.equal(seen.state, 'in_progress');
    const router = c.cluster.router!;
    router.kill('SIGSTOP'); // frozen: no router runs while the window passes
    await sleep(Math.max(0, seconds(job.expires_at) * 1000 - Date.now()) + 1000);
    const killedAt = Date.now();
    const exited = new Promise((r) => router.once('exit', r));
    router.kill('SIGKILL');
    await exited;
    const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
    assert.equal(done.state, 'expired', JSON.stringify(done));
    assert.ok(seconds(done.finished_at) * 1000 >= killedAt, 'expired by the restarted router');
    assert.ok(Number(done.expired) > 0);
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, Number(done.succeeded));
    assert.equal(s.manifest.filter((l) => l.status === 'succeeded').length, Number(done.succeeded));
  });

  test('DeleteJob refuses a running job naming its state and an unknown id; a finished job\'s records go, its files stay', async () => {
    const dir = path.join(out, 'delete');
    const job = await submitJob(c.client, { grid: grid(6, 10), output_uri: pathToFileURL(dir).href, job_key: 'delete-me' });
    const running = await grpcError(rpc(c.client, 'DeleteJob', { job_id: job.job_id }));
    assert.equal(running.code, status.FAILED_PRECONDITION);
    assert.match(running.details, /is (in_progress|validating); only a finished job \(completed, cancelled, expired\) can be deleted/);
    const unknown = await grpcError(rpc(c.client, 'DeleteJob', { job_id: 'jdoesnotexist' }));
    assert.equal(unknown.code, status.NOT_FOUND);

    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 3, 30_000, '3 items done');
    await rpc(c.client, 'CancelJob', { job_id: job.job_id });
    const cancelled = await waitJob(c.client, job.job_id, isFinal, 60_000);
    const before = await jobTraces(nc, job.job_id);
    assert.ok(before.itemKeys > 0 && before.jobRecord, JSON.stringify(before));
    const filesBefore = sinkContents(dir);

    assert.deepEqual(await rpc(c.client, 'DeleteJob', { job_id: job.job_id }), { job_id: job.job_id });
    const gone = await grpcError(rpc(c.client, 'GetJob', { job_id: job.job_id }));
    assert.equal(gone.code, status.NOT_FOUND);
    const listed = await rpc<{ jobs: JobMsg[] }>(c.client, 'ListJobs', { page_size: 1000 });
    assert.ok(!listed.jobs.some((j) => j.job_id === job.job_id), 'ListJobs does not show it');
    await eventually(async () => {
      const t = await jobTraces(nc, job.job_id);
      return t.itemKeys === 0 && !t.jobRecord && t.itemMsgs === 0 && t.recordMsgs === 0;
    }, 20_000, 'the job\'s keys gone from both buckets');
    const filesAfter = sinkContents(dir);
    assert.equal(filesAfter.outputs.length, Number(cancelled.succeeded));
    assert.deepEqual(filesAfter.outputs.sort(), filesBefore.outputs.sort());
    assert.equal(filesAfter.manifest.length, filesBefore.manifest.length);
    assert.ok(filesAfter.jobJson, 'job.json stays');

    const again = await submitJob(c.client, { grid: grid(1, 2), output_uri: pathToFileURL(path.join(out, 'delete-again')).href, job_key: 'delete-me' });
    assert.notEqual(again.job_id, job.job_id, 'the job_key of a deleted job names a new job');
    assert.equal(again.total, '2');
  });

  test('a deletion left half-done by a router that died is finished by another, from the step it was on', async () => {
    const dir = path.join(out, 'resume-delete');
    const job = await submitJob(c.client, { grid: grid(3, 4), output_uri: pathToFileURL(dir).href, job_key: 'resume-me' });
    assert.equal((await waitJob(c.client, job.job_id, isFinal, 60_000)).state, 'completed');
    // What a deleter leaves when it dies inside the item pages: the key freed, the items below
    // `mid` purged, progress recorded up to there, its lease a minute old.
    const store = await JobStore.open(nc, 'orrery');
    await store.releaseJobKey('resume-me', job.job_id);
    const { lastSeq } = await store.itemSeqBounds();
    const seqs: number[] = [];
    for await (const r of store.itemRecords(job.job_id)) seqs.push(r.revision);
    const mid = seqs.sort((a, b) => a - b)[6]!;
    await store.purgeItemsBelow(job.job_id, mid);
    const left = await jobTraces(nc, job.job_id);
    assert.equal(left.itemKeys, 6, 'half of its records are gone, half are left');
    await store.updateJob(job.job_id, (j): JobRecord => ({
      ...j, state: 'deleting', deletion: { progress: { step: 'items', fromSeq: mid, untilSeq: lastSeq }, router: 'a-dead-router', atMs: Date.now() - 60_000, reason: 'DeleteJob' },
    }));
    await eventually(async () => {
      const t = await jobTraces(nc, job.job_id);
      return t.itemKeys === 0 && !t.jobRecord && t.itemMsgs === 0 && t.recordMsgs === 0;
    }, 20_000, `the rest of the job's keys gone (${left.itemKeys} were left)`);
    assert.equal(sinkContents(dir).outputs.length, 12, 'its files stay');
    const again = await submitJob(c.client, { grid: grid(1, 1), job_key: 'resume-me' });
    assert.notEqual(again.job_id, job.job_id);
  });
});

describe('bulk jobs: retention', () => {
  let c: TestCluster;
  let nc: NatsConnection;
  before(async () => {
    // 0.001 h: a finished job's records go 3.6 s after it finished.
    c = await startCluster(jobsTestConfig({ retention_h: 0.001 }));
    nc = await connect({ servers: c.cluster.natsUrl });
  });
  after(async () => {
    await nc?.close();
    await c?.stop();
  });

  test('a finished job\'s records are deleted after jobs.retention_h: its KV keys are gone, its sink files stay', async () => {
    const dir = path.join(c.dir, 'out', 'retained');
    const job = await submitJob(c.client, { grid: grid(2, 3), output_uri: pathToFileURL(dir).href });
    const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
    assert.equal(done.state, 'completed');
    assert.equal((await rpc(c.client, 'GetJob', { job_id: job.job_id })).state, 'completed', 'kept until retention passes');
    await eventually(async () => (await rpc(c.client, 'GetJob', { job_id: job.job_id }).then(() => undefined, (err: { code: number }) => err.code)) === status.NOT_FOUND, 30_000, 'GetJob NOT_FOUND');
    await eventually(async () => {
      const t = await jobTraces(nc, job.job_id);
      return t.itemKeys === 0 && !t.jobRecord && t.itemMsgs === 0 && t.recordMsgs === 0;
    }, 20_000, 'the job\'s keys gone');
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 6);
    assert.equal(s.manifest.length, 6);
    assert.ok(s.jobJson && s.contactSheet);
  });
});
