/**
 * serve-local autoscaling for real: the router's autoscaler (scale target `local`) asks the
 * LocalCluster over NATS for replicas, and it starts and stops real replica processes. Under
 * load a deployment goes from 1 to 3 replicas; when the load falls to a trickle it returns to 1
 * after downscale_delay_s, draining the replicas it stops, and no request is lost.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { generate } from '../../services/cli/client.js';
import type { ReplicaProcess } from '../../services/cli/local-cluster.js';
import { parseSyntheticPayload } from '../../services/stages/synthetic.js';
import { eventually, metricSum, startCluster, testConfig, type TestCluster } from './harness.js';

describe('local-mode autoscaling (serve-local starts and stops replica processes)', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig({
      auto: {
        stage: 'synthetic', models: ['a'], max_batch_size: 1, max_ongoing_batches: 1, batch_wait_timeout_ms: 0, options: { fixed_ms: 150 },
        autoscaling: { min_replicas: 1, max_replicas: 3, target_ongoing_requests: 1, upscale_delay_s: 0.3, downscale_delay_s: 1.5 },
      },
    }, { autoscaler: { interval_ms: 100 } }));
  });
  after(() => c?.stop());

  const replicasOf = () => c.cluster.replicas.filter((r) => r.deployment === 'auto');
  const metric = (name: string, labels: Record<string, string>) => metricSum(c.cluster.metricsUrl, name, labels);

  /** `clients` loops of Generate until `stop()`; every outcome is kept. */
  function load(clients: number) {
    let running = true;
    const outcomes: Array<{ ok: true; requestId: string; seed: string; header: ReturnType<typeof parseSyntheticPayload> } | { ok: false; err: ServiceError }> = [];
    let seq = 0;
    const loops = Array.from({ length: clients }, async (_, k) => {
      while (running) {
        const seed = String(1000 * (k + 1) + seq++);
        try {
          const r = await generate(c.client, { pipeline: 'auto', prompt: `load ${seed}`, seed }, 30_000);
          outcomes.push({ ok: true, requestId: r.request_id, seed, header: parseSyntheticPayload(r.images[0]!.data) });
        } catch (err) {
          outcomes.push({ ok: false, err: err as ServiceError });
        }
      }
    });
    return {
      outcomes,
      async stop() {
        running = false;
        await Promise.all(loops);
        return outcomes;
      },
    };
  }

  function assertNoneLost(outcomes: ReturnType<typeof load>['outcomes'], what: string): void {
    const failed = outcomes.filter((o) => !o.ok);
    assert.deepEqual(failed.map((o) => (o.ok ? '' : `${o.err.code} ${o.err.details}`)), [], `${what}: every request answered`);
    for (const o of outcomes) {
      if (!o.ok) continue;
      assert.equal(o.header.requestId, o.requestId, 'each answer is its own request\'s image');
      assert.equal(o.header.seed, o.seed);
    }
  }

  test('scales 1 → 3 under load, then back to 1 after downscale_delay_s while a trickle runs, draining and losing nothing', async () => {
    assert.equal(replicasOf().length, 1, 'starts at initial_replicas = min_replicas');
    assert.equal(await metric('orrery_replicas_desired', { deployment: 'auto' }), 1);

    // Six clients on one replica that runs one 150 ms image at a time: ~6 ongoing for a target of 1.
    const heavy = load(6);
    const t0 = Date.now();
    await eventually(async () => (await metric('orrery_replicas', { deployment: 'auto', state: 'running' })) === 3, 20_000, '3 running replicas');
    const upSeconds = (Date.now() - t0) / 1000;
    assert.equal(await metric('orrery_replicas_desired', { deployment: 'auto' }), 3);
    assert.equal(c.cluster.desiredReplicas('auto'), 3);
    assert.equal(replicasOf().length, 3, 'clamped to max_replicas');
    const atThree: ReplicaProcess[] = [...replicasOf()];
    const exits = new Map(atThree.map((r) => [r.id, new Promise<number | null>((resolve) => r.child.once('exit', (code) => resolve(code)))]));

    // The load falls to two clients (1–2 ongoing on 3 replicas): after 1.5 s the autoscaler asks
    // for fewer, and serve-local SIGTERMs the newest replicas while requests are still running.
    const heavyOutcomes = await heavy.stop();
    const trickle = load(2);
    const tDown = Date.now();
    await eventually(() => replicasOf().length < 3 ? true : undefined, 15_000, 'a replica to be stopped');
    const downSeconds = (Date.now() - tDown) / 1000;
    assert.ok(downSeconds >= 1.4, `scaled down after ${downSeconds} s, not before downscale_delay_s`);
    assert.ok((await metric('orrery_replicas_desired', { deployment: 'auto' })) < 3);
    // Keep the trickle going while the stopped replicas drain.
    await new Promise((r) => setTimeout(r, 1000));
    const trickleOutcomes = await trickle.stop();

    // Idle now: back to min_replicas after the delay again.
    await eventually(() => replicasOf().length === 1 ? true : undefined, 15_000, 'back to 1 replica');
    assert.equal(await metric('orrery_replicas_desired', { deployment: 'auto' }), 1);
    await eventually(async () => (await metric('orrery_replicas', { deployment: 'auto', state: 'running' })) === 1, 5000, 'the router to see one replica');

    const stopped = atThree.filter((r) => !replicasOf().includes(r));
    assert.equal(stopped.length, 2);
    for (const r of stopped) assert.equal(await exits.get(r.id), 0, `replica ${r.id} drained and exited cleanly (not killed)`);
    assertNoneLost(heavyOutcomes, 'under load');
    assertNoneLost(trickleOutcomes, 'during scale-down');
    assert.ok(heavyOutcomes.length >= 6 && trickleOutcomes.length >= 10, `${heavyOutcomes.length} + ${trickleOutcomes.length} requests`);
    assert.equal(await metric('orrery_batch_retries_total', { deployment: 'auto', reason: 'replica_lost' }), 0, 'no batch was lost with a replica');
    assert.ok(upSeconds < 20);
  });
});
