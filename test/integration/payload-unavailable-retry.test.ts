/**
 * A batch a replica answers with ORRERY_ERR_PAYLOAD_UNAVAILABLE (it could not read its inputs or
 * store its outputs while nats-server restarted) on a real nats-server and a real in-process
 * Router: the router retries it once, as a lost batch, so the caller gets the image; a second
 * failure answers UNAVAILABLE, never INTERNAL (the chaos soak's INTERNAL `timeout` answers).
 * The replica is a plain NATS subscription that heartbeats and answers as a replica would.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { generate, imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type BatchRequest } from '../../services/common/wire.js';
import { Router } from '../../services/router/router.js';
import { eventually } from './harness.js';

const subjects = makeSubjects('orrery');

describe('a batch answered ORRERY_ERR_PAYLOAD_UNAVAILABLE', () => {
  let nats: NatsServerProcess;
  let router: Router;
  let client: ImageServiceClient;
  let nc: NatsConnection;
  let hbTimer: NodeJS.Timeout;
  /** How many of the next batches the fake replica fails with ORRERY_ERR_PAYLOAD_UNAVAILABLE. */
  let failNext = 0;
  const received: string[] = [];

  before(async () => {
    nats = await NatsServerProcess.start();
    const config = compileConfig({
      nats: { url: nats.url },
      worker: { heartbeat_interval_ms: 100 },
      deployments: { syn: { stage: 'synthetic', models: ['m'], max_batch_size: 1 } },
    });
    router = await Router.start({ config, log: createLogger('router', 'silent'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
    client = imageServiceClient(router.grpcAddress);
    nc = await connect({ servers: nats.url });
    let seq = 0;
    const heartbeat = () => nc.publish(subjects.heartbeat('syn'), wire.heartbeat.encode({
      replicaId: 'syn-1', deployment: 'syn', state: 'running', loadedModels: ['m'], inFlightBatches: [], inFlightItems: 0, inFlightOnlineItems: 0,
      maxOngoingBatches: 2, maxModelsPerReplica: 1, seq: ++seq, intervalMs: 100, loadingModel: '',
      runningSetCapacity: 0, runningSetOccupied: 0, runningSetWaiting: 0,
    }));
    nc.subscribe(subjects.batch('syn-1'), {
      callback: (_err, msg) => {
        const req: BatchRequest = wire.batchRequest.decode(msg.data);
        received.push(req.batchId);
        const fail = failNext > 0;
        if (fail) failNext--;
        msg.respond(wire.batchReply.encode({
          batchId: req.batchId, attempt: req.attempt, replicaId: 'syn-1', runSeconds: 0.01, loadSeconds: 0,
          error: fail ? { code: 'ORRERY_ERR_PAYLOAD_UNAVAILABLE', message: 'the NATS object store is unavailable: storing payload out-x-0 failed (TIMEOUT)' } : null,
          results: fail ? [] : req.items.map((it) => ({
            requestId: it.requestId, imageIndex: it.imageIndex, width: it.width, height: it.height, mimeType: 'image/png',
            image: { inline: new TextEncoder().encode(`image of ${it.requestId}`), size: 0 }, error: null, qcJson: '',
          })),
        }));
      },
    });
    heartbeat();
    hbTimer = setInterval(heartbeat, 100);
    await eventually(async () => (await fetch(router.metricsUrl)).text().then((t) => /orrery_replicas\{deployment="syn",state="running"\} 1/.test(t)), 10_000, 'the router to see the replica');
  });
  after(async () => {
    clearInterval(hbTimer);
    client.close();
    await router.stop(1000);
    await nc.close();
    await nats.close();
  });

  test('is retried once: the caller gets its image from the second attempt', async () => {
    failNext = 1;
    const before = received.length;
    const res = await generate(client, { pipeline: 'syn', model_id: 'm', prompt: 'p', seed: '1', steps: 1, width: 64, height: 64 }, 20_000);
    assert.equal(res.images.length, 1);
    assert.match(new TextDecoder().decode(res.images[0]!.data), /^image of /);
    assert.equal(received.length - before, 2, 'sent twice');
  });

  test('failing twice answers UNAVAILABLE saying why, not INTERNAL', async () => {
    failNext = 2;
    const err = await generate(client, { pipeline: 'syn', model_id: 'm', prompt: 'p', seed: '2', steps: 1, width: 64, height: 64 }, 20_000).then(
      () => assert.fail('expected an error'),
      (e: ServiceError) => e,
    );
    assert.equal(err.code, status.UNAVAILABLE, err.message);
    assert.match(err.details, /object store is unavailable/);
  });
});
