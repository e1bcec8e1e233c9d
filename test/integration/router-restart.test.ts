/**
 * serve-local's supervisor restarts a dead router as it restarts replicas: `kill -9` of the router
 * process, and the same gRPC address serves Generate again within seconds (the client reconnects
 * by itself), the metrics port answers again, and stop() never races a restart into a leftover
 * router.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generate } from '../../services/cli/client.js';
import { eventually, startCluster, testConfig, type TestCluster } from './harness.js';

const SYNTHETIC = { stage: 'synthetic', models: ['syn-a'], max_batch_size: 4, batch_wait_timeout_ms: 5, options: { fixed_ms: 5, per_item_ms: 1 } };

const alive = (pid: number | undefined): boolean => {
  if (pid === undefined || !fs.existsSync(`/proc/${pid}`)) return false;
  return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
};

const request = (seed: number) => ({ prompt: 'a ringed planet', seed: String(seed), num_images: 1, pipeline: 'synthetic' });

describe('serve-local restarts a dead router', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({ synthetic: SYNTHETIC }));
  });
  after(() => c?.stop());

  test('after kill -9 of the router, Generate is served again on the same address within seconds', async () => {
    const first = await generate(c.client, request(1));
    assert.equal(first.images.length, 1);
    const address = c.cluster.grpcAddress;
    const metrics = c.cluster.metricsUrl;
    const old = c.cluster.router!;
    const exited = new Promise((resolve) => old.once('exit', resolve));
    old.kill('SIGKILL');
    await exited;

    const killedAt = Date.now();
    // The same client object: grpc-js reconnects to the address once something listens there.
    const res = (await eventually(() => generate(c.client, request(2), 2000).catch(() => undefined), 20_000, 'Generate on the restarted router'))!;
    const seconds = (Date.now() - killedAt) / 1000;
    assert.equal(res.images.length, 1);
    assert.equal(res.images[0]!.seed, '2');
    assert.ok(seconds < 15, `served again ${seconds.toFixed(1)} s after the kill`);
    assert.equal(c.cluster.grpcAddress, address, 'the same gRPC address');
    assert.equal(c.cluster.metricsUrl, metrics, 'the same metrics URL');
    assert.notEqual(c.cluster.router!.pid, old.pid, 'a new router process');
    assert.equal(c.cluster.routerRestarts, 1);
    assert.equal((await fetch(metrics)).status, 200, 'the metrics port answers again');
  });

  test('stop() right after a kill -9 waits for the restart and leaves no router running', async () => {
    const old = c.cluster.router!;
    const exited = new Promise((resolve) => old.once('exit', resolve));
    old.kill('SIGKILL');
    await exited;
    // The restart is under way (or about to be) when stop() begins.
    await new Promise((r) => setTimeout(r, 300));
    await c.cluster.stop();
    const router = c.cluster.router!;
    assert.equal(alive(router.pid), false, `router ${router.pid} is not running after stop()`);
    assert.equal(alive(old.pid), false);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(alive(c.cluster.router!.pid), false, 'no router was started after stop() returned');
  });
});
