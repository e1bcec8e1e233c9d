/**
 * Bulk jobs across processes and restarts: two routers share one job through the JetStream work
 * consumer (each runs some items, none runs one twice); a nats-server restart mid-job (same store
 * on disk) loses nothing; a 10^7-item grid is accepted at once and costs the router no memory to
 * hold (lazy expansion).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { loadConfig } from '../../services/cli/load-config.js';
import { createLogger } from '../../services/common/logger.js';
import { Router } from '../../services/router/router.js';
import { metricSum, sleep, startCluster, type TestCluster } from './harness.js';
import { grid, isFinal, jobsTestConfig, rpc, sinkContents, slowSynthetic, submitJob, waitJob } from './jobs-harness.js';

const SLOW = slowSynthetic(10);

describe('bulk jobs: durability', () => {
  let c: TestCluster;
  let out: string;
  let second: Router;
  let client2: ImageServiceClient;
  before(async () => {
    c = await startCluster(jobsTestConfig({}, SLOW));
    out = path.join(c.dir, 'out');
    const loaded = loadConfig(path.join(c.dir, 'config.yaml'), { natsUrl: c.cluster.natsUrl }, {});
    second = await Router.start({ config: loaded.config, log: createLogger('second-router', 'warn'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
    client2 = imageServiceClient(second.grpcAddress);
  });
  after(async () => {
    client2?.close();
    await second?.stop(1000);
    await c?.stop();
  });

  const submit = (client: ImageServiceClient, req: object) => submitJob(client, req);

  test('two routers run one job together: both run items, every item once', async () => {
    const dir = path.join(out, 'two-routers');
    const before1 = await metricSum(c.cluster.metricsUrl, 'orrery_job_items_total', { outcome: 'succeeded' });
    const before2 = await metricSum(second.metricsUrl, 'orrery_job_items_total', { outcome: 'succeeded' });
    const job = await submit(c.client, { grid: grid(6, 10), output_uri: pathToFileURL(dir).href });
    const seenBySecond = await rpc(client2, 'GetJob', { job_id: job.job_id });
    assert.equal(seenBySecond.total, '60');
    const done = await waitJob(client2, job.job_id, isFinal, 60_000);
    assert.equal(done.succeeded, '60');
    const ran1 = (await metricSum(c.cluster.metricsUrl, 'orrery_job_items_total', { outcome: 'succeeded' })) - before1;
    const ran2 = (await metricSum(second.metricsUrl, 'orrery_job_items_total', { outcome: 'succeeded' })) - before2;
    assert.equal(ran1 + ran2, 60, `router 1 committed ${ran1}, router 2 ${ran2}`);
    assert.ok(ran1 > 0 && ran2 > 0, `both routers ran items (${ran1}, ${ran2})`);
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 60);
    assert.equal(s.manifest.length, 60);
  });

  test('a nats-server restart mid-job (same store) loses no item and writes none twice', async () => {
    const dir = path.join(out, 'nats-restart');
    const job = await submit(c.client, { grid: grid(6, 10), output_uri: pathToFileURL(dir).href });
    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 10, 30_000, '10 items done');
    await c.cluster.nats!.restart();
    const done = await waitJob(c.client, job.job_id, isFinal, 90_000);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.equal(done.succeeded, '60');
    const s = sinkContents(dir);
    assert.equal(s.outputs.length, 60);
    assert.equal(s.manifest.length, 60);
    assert.equal(new Set(s.manifest.map((l) => l.custom_id)).size, 60);
  });

  test('a 10^7-item grid is accepted at once and the router holds it without growing', async () => {
    const rss = () => metricSum(c.cluster.metricsUrl, 'orrery_router_process_resident_memory_bytes');
    const base = await rss();
    const axis = (n: number, p: string) => Array.from({ length: n }, (_, i) => `${p} ${i}`);
    const started = Date.now();
    const job = await submit(c.client, { grid: { colors: axis(100, 'c'), atmospheres: axis(100, 'a'), moons: axis(100, 'm'), seeds_per_prompt: 10 }, output_uri: pathToFileURL(path.join(out, 'huge')).href });
    const submitMs = Date.now() - started;
    assert.equal(job.total, '10000000');
    assert.ok(submitMs < 5000, `submit took ${submitMs} ms`);
    await waitJob(c.client, job.job_id, (j) => Number(j.succeeded) >= 50, 30_000, 'items of the huge job running');
    await sleep(1000);
    const grown = (await rss()) - base;
    // Generous: materializing 10^7 items would cost gigabytes; lazy expansion costs nothing like it.
    assert.ok(grown < 150 * 1024 * 1024, `router RSS grew by ${Math.round(grown / 1048576)} MiB`);
    await rpc(c.client, 'CancelJob', { job_id: job.job_id });
    const cancelled = await waitJob(c.client, job.job_id, isFinal, 30_000);
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(Number(cancelled.succeeded) + Number(cancelled.cancelled) + Number(cancelled.failed), 10_000_000);
  });
});
