/**
 * A replica's output images that go through the object store, on a real nats-server: a reply
 * whose router has died (nobody subscribes to its inbox: kill -9 of a router in the chaos soak)
 * has its images deleted at once, while a live router's reply keeps them for the router to read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type BatchReply } from '../../services/common/wire.js';
import { encodeWorkItem } from '../../services/common/work-item.js';
import { startReplicaOnNats, type ReplicaOnNats } from '../support/replica-on-nats.js';
import { workItem } from '../support/work-items.js';
import { eventually, sleep } from './harness.js';

const subjects = makeSubjects('orrery');

describe('a replica\'s stored output images on a real nats-server', () => {
  let r: ReplicaOnNats;
  let nc: NatsConnection;
  let opened: ObjectStore | undefined;
  // The bucket exists once the replica stored its first image.
  const bucket = async () => (opened ??= await new Objm(nc).open(subjects.payloadBucket));

  before(async () => {
    r = await startReplicaOnNats({
      replicaId: 'big-1', deployment: 'big',
      config: { max_inline_payload_bytes: 10_000 },
      deployments: () => ({ big: { stage: 'synthetic', models: ['m'], options: { fixed_ms: 10, per_item_ms: 0, image_bytes: 50_000 } } }),
    });
    nc = r.nc;
  });
  after(async () => {
    await r?.stop();
  });

  const batch = (batchId: string) => wire.batchRequest.encode({
    batchId, attempt: 1, modelId: 'm', deadlineUnixMs: Date.now() + 30_000, progressSubject: '',
    items: [encodeWorkItem(workItem({ requestId: `r-${batchId}`, steps: 1 }), null)],
  });
  const stored = async () => (await (await bucket()).list()).filter((o) => !o.deleted).map((o) => o.name);

  test('a live router gets the image by reference, and it stays stored until the router reads it', async () => {
    const inbox = subjects.batchReply('live-router', 'b-live');
    const replies: BatchReply[] = [];
    const sub = nc.subscribe(inbox, { callback: (_err, msg) => {
      replies.push(wire.batchReply.decode(msg.data));
      msg.respond(); // the router's acknowledgement
    } });
    await nc.flush();
    nc.publish(subjects.batch('big-1'), batch('b-live'), { reply: inbox });
    await eventually(() => replies.length === 1, 20_000, 'the reply');
    sub.unsubscribe();
    const name = replies[0]!.results[0]!.image?.objectName;
    assert.equal(name, 'out-b-live-0');
    await sleep(300);
    assert.deepEqual(await stored(), ['out-b-live-0']);
    await (await bucket()).delete(name);
  });

  test('a reply to a router that died (no one subscribed to its inbox) has its stored image deleted', async () => {
    nc.publish(subjects.batch('big-1'), batch('b-dead'), { reply: subjects.batchReply('dead-router', 'b-dead') });
    // The image is stored before the reply goes out: wait to see it, then see it go.
    await eventually(async () => (await (await bucket()).info('out-b-dead-0')) !== null, 20_000, 'the output image stored');
    await eventually(async () => (await stored()).length === 0, 10_000, 'the dead router\'s image deleted');
  });
});
