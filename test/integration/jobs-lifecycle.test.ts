/**
 * Bulk jobs end to end on a real cluster (nats-server with file storage, router and synthetic
 * replicas as processes): a grid job runs to completed with one output and one manifest line per
 * item, job.json and a contact sheet; a job_key makes SubmitJob idempotent; explicit items arrive
 * in chunks; bad input gets a status naming the field.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { status } from '@grpc/grpc-js';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { openSink } from '../../services/router/jobs/sinks/index.js';
import { eventually, grpcError, metricSum, startCluster, type TestCluster } from './harness.js';
import { grid, isFinal, type JobMsg, jobsTestConfig, rpc, sinkContents, submitJob, waitJob, watchAll } from './jobs-harness.js';

describe('bulk jobs: lifecycle', () => {
  let c: TestCluster;
  let out: string;
  before(async () => {
    c = await startCluster(jobsTestConfig());
    out = path.join(c.dir, 'out');
  });
  after(() => c?.stop());

  const submit = (req: object) => submitJob(c.client, req);

  test('a grid job runs to completed: one output and one manifest line per item, job.json and a contact sheet', async () => {
    const dir = path.join(out, 'grid');
    const job = await submit({ grid: grid(3, 2, 2), output_uri: pathToFileURL(dir).href, name: 'small grid' });
    assert.equal(job.state, 'in_progress');
    assert.equal(job.total, '12');
    const updates = await watchAll(c.client, job.job_id);
    const last = updates[updates.length - 1]!;
    assert.equal(last.state, 'completed', JSON.stringify(last));
    assert.equal(last.succeeded, '12');
    assert.equal(last.done, '12');
    assert.equal(last.failed, '0');
    assert.equal(last.queued, '0');
    assert.ok(updates.length >= 2, 'WatchJob sent progress before the final state');
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 12);
    assert.ok(s.outputs.includes('c00-a00-m00-s00-k0.png') && s.outputs.includes('c02-a01-m00-s00-k1.png'), s.outputs.join(','));
    assert.equal(s.manifest.length, 12);
    assert.deepEqual(new Set(s.manifest.map((l) => `${l.custom_id as string}.png`)), new Set(s.outputs));
    assert.ok(s.manifest.every((l) => l.status === 'succeeded' && (l.bytes as number) > 0 && /^[0-9a-f]{64}$/.test(l.sha256 as string)));
    assert.match(s.manifest.find((l) => l.custom_id === 'c00-a00-m00-s00-k0')!.prompt as string, /^color 0 planet with atmosphere 0/);
    assert.equal((s.jobJson!.counts as { succeeded: number }).succeeded, 12);
    assert.ok(s.contactSheet, 'contact-sheet.png written');
    const png = fs.readFileSync(path.join(dir, 'contact-sheet.png'));
    assert.equal(png.subarray(1, 4).toString(), 'PNG');

    const items = await rpc<{ items: Array<{ custom_id: string; state: string; index: string }>; next_page_token: string }>(c.client, 'ListJobItems', { job_id: job.job_id, page_size: 5 });
    assert.equal(items.items.length, 5);
    assert.equal(items.next_page_token, '5');
    assert.ok(items.items.every((i) => i.state === 'succeeded'));
    const listed = await rpc<{ jobs: JobMsg[] }>(c.client, 'ListJobs', { state: 'completed' });
    assert.ok(listed.jobs.some((j) => j.job_id === job.job_id));
    assert.ok((await metricSum(c.cluster.metricsUrl, 'orrery_job_items_total', { outcome: 'succeeded' })) >= 12);
    await eventually(async () => (await metricSum(c.cluster.metricsUrl, 'orrery_jobs', { state: 'completed' })) >= 1, 5000, 'orrery_jobs{state="completed"}');
  });

  test('a job writes into a nats-object:// sink: outputs, manifest and job.json are objects in the bucket', async () => {
    const job = await submit({ grid: grid(2, 2), output_uri: 'nats-object://jobs_test/run1' });
    assert.equal(job.output_uri, 'nats-object://jobs_test/run1');
    const done = await waitJob(c.client, job.job_id, isFinal);
    assert.equal(done.succeeded, '4');
    const nc = await connect({ servers: c.cluster.natsUrl });
    try {
      const sink = await openSink(job.output_uri, { nc, env: {} });
      const names: string[] = [];
      for await (const n of sink.list()) names.push(n);
      assert.deepEqual(names.filter((n) => n.endsWith('.png') && n !== 'contact-sheet.png').sort(), ['c00-a00-m00-s00-k0.png', 'c00-a01-m00-s00-k0.png', 'c01-a00-m00-s00-k0.png', 'c01-a01-m00-s00-k0.png']);
      const manifest = new TextDecoder().decode(await sink.get('manifest.jsonl'));
      assert.equal(manifest.trim().split('\n').length, 4);
      assert.ok(await sink.get('job.json'));
      await sink.close();
    } finally {
      await nc.close();
    }
  });

  test('submitting the same job_key twice returns the same job and runs its items once', async () => {
    const dir = path.join(out, 'keyed');
    const req = { grid: grid(2, 2), output_uri: pathToFileURL(dir).href, job_key: 'nightly-2026-12-07' };
    const [a, b] = await Promise.all([submit(req), submit(req)]);
    assert.equal(a.job_id, b.job_id);
    const again = await submit(req);
    assert.equal(again.job_id, a.job_id);
    const done = await waitJob(c.client, a.job_id, isFinal);
    assert.equal(done.succeeded, '4');
    assert.equal(sinkContents(dir).manifest.length, 4);
  });

  test('explicit items arrive in chunks; a retried chunk is not added twice; a duplicate custom_id is refused naming both', async () => {
    const dir = path.join(out, 'chunks');
    const item = (i: number) => ({ custom_id: `planet-${i}`, prompt: `planet number ${i}` });
    const job = await submit({ items: { items: [item(0), item(1)] }, items_follow: true, output_uri: pathToFileURL(dir).href });
    assert.equal(job.state, 'validating');
    const chunk = { job_id: job.job_id, offset: 2, items: [item(2), item(3), { custom_id: 'planet-4', planet: { color: 'red', sky: 'many stars' }, seed: '42' }] };
    const first = await rpc(c.client, 'AddJobItems', chunk);
    assert.equal(first.total, '5');
    const retried = await rpc(c.client, 'AddJobItems', chunk);
    assert.equal(retried.total, '5');
    const dup = await grpcError(rpc(c.client, 'AddJobItems', { job_id: job.job_id, offset: 5, items: [item(5), item(1)] }));
    assert.equal(dup.code, status.INVALID_ARGUMENT);
    assert.match(dup.details, /items\[6\]\.custom_id: "planet-1" duplicates items\[1\]\.custom_id/);
    const inChunk = await grpcError(rpc(c.client, 'AddJobItems', { job_id: job.job_id, offset: 5, items: [item(5), item(5)] }));
    assert.match(inChunk.details, /items\[6\]\.custom_id: "planet-5" duplicates items\[5\]\.custom_id/);
    const gap = await grpcError(rpc(c.client, 'AddJobItems', { job_id: job.job_id, offset: 9, items: [item(9)] }));
    assert.equal(gap.code, status.INVALID_ARGUMENT);
    assert.match(gap.details, /^offset: /);
    const closed = await rpc(c.client, 'AddJobItems', { job_id: job.job_id, offset: 5, items: [item(5)], last: true });
    assert.equal(closed.total, '6');
    const done = await waitJob(c.client, job.job_id, isFinal);
    assert.equal(done.state, 'completed');
    assert.equal(done.succeeded, '6');
    const s = sinkContents(dir);
    assert.deepEqual(s.outputs.sort(), [0, 1, 2, 3, 4, 5].map((i) => `planet-${i}.png`).sort());
    // One line per item, in the order the items finished.
    assert.deepEqual(s.manifest.map((l) => l.custom_id).sort(), [0, 1, 2, 3, 4, 5].map((i) => `planet-${i}`));
    const fourth = s.manifest.find((l) => l.custom_id === 'planet-4')!;
    assert.equal(fourth.seed, '42');
    assert.match(fourth.prompt as string, /^red planet, many stars/);
  });

  test('bad input gets a status naming the field', async () => {
    const cases: Array<[object, number, RegExp]> = [
      [{ template: { pipeline: 'synthetic', width: 63, height: 64 }, grid: grid(1, 1) }, status.INVALID_ARGUMENT, /^template\.width: 63 is not a multiple of 8/],
      [{ template: { pipeline: 'synthetic', model_id: 'syn-a' }, items: { items: [{ custom_id: 'a', prompt: 'x' }, { custom_id: 'b', prompt: 'x', negative_prompt: 'y'.repeat(3000) }] } }, status.INVALID_ARGUMENT, /^items\[1\]\.negative_prompt: /],
      [{ template: { pipeline: 'synthetic', model_id: 'syn-a' }, items: { items: [{ custom_id: 'a', prompt: 'x' }, { custom_id: 'a', prompt: 'y' }] } }, status.INVALID_ARGUMENT, /items\[1\]\.custom_id: "a" duplicates items\[0\]\.custom_id/],
      [{ template: { pipeline: 'synthetic', model_id: 'syn-a' }, grid: { colors: Array(1000).fill('c'), atmospheres: Array(1000).fill('a'), moons: Array(1000).fill('m'), skies: Array(1000).fill('s') } }, status.INVALID_ARGUMENT, /^grid: 1000 colors × 1000 atmospheres × 1000 moons × 1000 skies × 1 seeds_per_prompt = 1000000000000 items; more than jobs.max_job_items \(50000000\)/],
      [{ template: { pipeline: 'nope' }, grid: grid(1, 1) }, status.NOT_FOUND, /^pipeline: unknown pipeline "nope"/],
      [{ template: { pipeline: 'synthetic', model_id: 'other' }, grid: grid(1, 1) }, status.NOT_FOUND, /^model_id: unknown model "other"/],
      [{ template: { pipeline: 'synthetic' }, grid: grid(1, 1), output_uri: 'ftp://x/y' }, status.FAILED_PRECONDITION, /^sink ftp:\/\/x\/y: /],
      [{ template: { pipeline: 'synthetic' }, grid: grid(1, 1), output_uri: 'file:///etc/hostname/x' }, status.FAILED_PRECONDITION, /^sink file:\/\/\/etc\/hostname\/x: .*not writable/],
    ];
    for (const [req, code, re] of cases) {
      const err = await grpcError(rpc(c.client, 'SubmitJob', req));
      assert.equal(err.code, code, `${JSON.stringify(req).slice(0, 120)} → ${err.details}`);
      assert.match(err.details, re);
    }
    const missing = await grpcError(rpc(c.client, 'GetJob', { job_id: 'jdoesnotexist' }));
    assert.equal(missing.code, status.NOT_FOUND);
    assert.match(missing.details, /jdoesnotexist/);
  });
});
