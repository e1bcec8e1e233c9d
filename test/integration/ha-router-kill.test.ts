/**
 * kill -9 of one of two routers mid-load: the other keeps serving; calls in flight on the dead
 * one end with UNAVAILABLE, and a client given both addresses with the documented retry policy
 * (services/cli/retry-policy.ts, README "Several routers") gets every answer, except a call whose
 * answer the dead router had begun to send (gRPC never retries those). Real processes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { generate, imageServiceClient, type GenerateResponse, type ImageServiceClient } from '../../services/cli/client.js';
import { grpcTarget, RETRYING_CHANNEL_OPTIONS } from '../../services/cli/retry-policy.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { startSecondRouter, type SecondRouter } from '../support/second-router.js';
import { startCluster, testConfig, type TestCluster } from './harness.js';

const SYNTHETIC = {
  stage: 'synthetic', models: ['syn-a'], replicas: 2, max_batch_size: 2, batch_wait_timeout_ms: 5,
  max_queued_requests: 1000, options: { fixed_ms: 150, per_item_ms: 10 },
};

const request = (tag: string, i: number) => ({ prompt: `planet ${tag}-${i}`, seed: String(i), num_images: 1, pipeline: 'synthetic' });

type Outcome = { ok: GenerateResponse } | { err: ServiceError; committed?: boolean };
const settle = (p: Promise<GenerateResponse>): Promise<Outcome> => p.then((ok) => ({ ok }), (err: ServiceError) => ({ err }));

/**
 * Generate, noting whether the response had begun (its headers arrived) before a failure: gRPC
 * retries a call only until then (the call is "committed"), whatever the retry policy says.
 */
function generateNotingCommit(client: ImageServiceClient, req: object): Promise<Outcome> {
  return new Promise((resolve) => {
    let committed = false;
    const call = client.Generate(req, new Metadata(), { deadline: Date.now() + 60_000 }, (err, res) => resolve(err ? { err, committed } : { ok: res }));
    call.on('metadata', () => {
      committed = true;
    });
  });
}

function assertOwnImage(res: GenerateResponse, tag: string, i: number): void {
  assert.equal(res.images.length, 1);
  assert.equal(parseSyntheticPayload(res.images[0]!.data).prompt, `planet ${tag}-${i}`);
}

describe('kill -9 of one of two routers', () => {
  let c: TestCluster;
  let second: SecondRouter;
  let both: ImageServiceClient;
  before(async () => {
    c = await startCluster(testConfig({ synthetic: SYNTHETIC }));
    second = await startSecondRouter(c);
    // The router to be killed first: without the service config's round robin, grpc-js would send
    // every call to the first address (pick_first), and without its retry policy they would fail.
    both = imageServiceClient(`${second.grpcAddress},${c.cluster.grpcAddress}`, RETRYING_CHANNEL_OPTIONS);
  });
  after(async () => {
    both?.close();
    await second?.stop();
    await c?.stop();
  });

  test('the other router keeps serving, the dead one\'s callers get UNAVAILABLE, and retries over both addresses succeed', async () => {
    // Callers of the second router alone, without retries, and callers of both with the retry policy.
    const direct = Array.from({ length: 20 }, (_, i) => settle(generate(second.client, request('direct', i), 60_000)));
    const retried = Array.from({ length: 40 }, (_, i) => generateNotingCommit(both, request('retried', i)));
    // Kill at the second router's first answer: the queues still hold most of the calls.
    await Promise.race(direct);
    const exited = new Promise((resolve) => second.cluster.router!.once('exit', resolve));
    second.cluster.router!.kill('SIGKILL');
    await exited;

    const directOutcomes = await Promise.all(direct);
    const failed = directOutcomes.filter((o): o is { err: ServiceError } => 'err' in o);
    assert.ok(failed.length > 0, 'calls were in flight on the killed router');
    for (const o of failed) assert.equal(o.err.code, status.UNAVAILABLE, `a call in flight on the killed router ended with ${o.err.code} ${o.err.details}`);
    directOutcomes.forEach((o, i) => 'ok' in o && assertOwnImage(o.ok, 'direct', i));

    const retriedOutcomes = await Promise.all(retried);
    let answered = 0;
    retriedOutcomes.forEach((o, i) => {
      if ('ok' in o) {
        assertOwnImage(o.ok, 'retried', i);
        answered++;
        return;
      }
      // The one case gRPC does not retry: the dead router had begun sending this call's answer.
      assert.ok(o.committed, `retried call ${i} failed before its answer began: ${o.err.code} ${o.err.details}`);
      assert.equal(o.err.code, status.UNAVAILABLE);
    });
    assert.ok(answered >= retriedOutcomes.length - 2, `${answered} of ${retriedOutcomes.length} calls with the retry policy answered`);

    // The surviving router serves new calls.
    assertOwnImage(await generate(c.client, request('after', 0), 30_000), 'after', 0);
  });
});

describe('grpcTarget', () => {
  test('keeps one address as is and turns an IPv4 list into a static ipv4: target', () => {
    assert.equal(grpcTarget('router.orrery:50051'), 'router.orrery:50051');
    assert.equal(grpcTarget('127.0.0.1:1,127.0.0.1:2'), 'ipv4:127.0.0.1:1,127.0.0.1:2');
  });

  test('refuses a list holding a host name, naming --addr', () => {
    assert.throws(() => grpcTarget('127.0.0.1:1,router:2'), (err: Error & { code?: string }) => err.code === 'ORRERY_ERR_CONFIG' && /--addr/.test(err.message) && /router:2/.test(err.message));
  });
});
