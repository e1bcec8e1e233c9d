/**
 * Bulk jobs when replicas die: SIGKILL of a replica mid-batch loses no item and writes none twice
 * (its batch is retried elsewhere); a job whose items crash their replica every time ends with
 * every item failed after max_attempts instead of stalling, while serve-local restarts the replicas.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { startCluster, type TestCluster } from './harness.js';
import { grid, isFinal, jobsTestConfig, rpc, sinkContents, slowSynthetic, submitJob, waitJob } from './jobs-harness.js';

const TWO = slowSynthetic(15, { replicas: 2 });

describe('bulk jobs: replicas dying', () => {
  let c: TestCluster;
  let out: string;
  before(async () => {
    c = await startCluster(jobsTestConfig({ max_attempts: 2 }, TWO), { restartReplicas: true });
    out = path.join(c.dir, 'out');
  });
  after(() => c?.stop());

  const submit = (req: object, model?: string) => submitJob(c.client, req, model);

  test('SIGKILL of a replica mid-batch: the job completes with every item once', async () => {
    const dir = path.join(out, 'replica-kill');
    const job = await submit({ grid: grid(6, 10), output_uri: pathToFileURL(dir).href });
    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 10 && Number(j.running) > 0, 30_000, 'items running');
    const victim = c.cluster.replicas.find((r) => r.child.exitCode === null)!;
    victim.child.kill('SIGKILL');
    const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.equal(done.succeeded, '60');
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 60);
    assert.equal(s.manifest.length, 60);
    assert.equal(new Set(s.manifest.map((l) => l.custom_id)).size, 60);
  });

  test('items that crash their replica every time end failed after max_attempts; the job does not stall', async () => {
    const job = await submit({ grid: grid(1, 2), output_uri: pathToFileURL(path.join(out, 'crashing')).href }, 'crash-m');
    const done = await waitJob(c.client, job.job_id, isFinal, 90_000);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.equal(done.failed, '2');
    const items = await rpc<{ items: Array<{ error_code: string; attempts: number }> }>(c.client, 'ListJobItems', { job_id: job.job_id });
    assert.ok(items.items.every((i) => i.error_code !== '' && i.attempts === 2), JSON.stringify(items.items));
  });
});
