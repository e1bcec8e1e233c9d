/**
 * Two models on one continuous-batching replica share its device (issue 12): each loaded model
 * has its own running set, and the sets take turns on the executor thread's device lock call by
 * call. A real replica on a real nats-server, with two synthetic models whose step calls the
 * stage records (`call_log`): no two calls ever overlap, two busy models alternate, and an online
 * image of model B steps at every turn while model A's bulk images fill A's set.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type BatchReply } from '../../services/common/wire.js';
import { encodeWorkItem } from '../../services/common/work-item.js';
import type { SyntheticCall } from '../../services/stages/synthetic-steps.js';
import { startReplicaOnNats, type ReplicaOnNats } from '../support/replica-on-nats.js';
import { workItem } from '../support/work-items.js';
import { eventually } from './harness.js';

const subjects = makeSubjects('orrery');
type Call = SyntheticCall & { modelId: string };

describe('two models on one continuous-batching replica', () => {
  let r: ReplicaOnNats;
  let nc: NatsConnection;
  let callLog: string;
  let batches = 0;

  before(async () => {
    r = await startReplicaOnNats({
      replicaId: 'syn-1', deployment: 'syn',
      deployments: (dir) => {
        callLog = path.join(dir, 'calls.jsonl');
        return {
          syn: {
            stage: 'synthetic', models: ['a', 'b'], preload_models: ['a', 'b'], max_models_per_replica: 2, batching: 'continuous',
            max_batch_size: 2, max_waiting_images: 4,
            // 15 ms a step whatever the rows.
            options: { step_cost_ms: [[1, 15], [16, 15]], call_log: callLog },
          },
        };
      },
    });
    nc = r.nc;
  });
  after(() => r?.stop());

  const send = (modelId: string, priority: 'online' | 'bulk', steps: number, images = 1): Promise<BatchReply> => {
    const id = `b${++batches}`;
    return nc.request(subjects.batch('syn-1'), wire.batchRequest.encode({
      batchId: id, attempt: 1, modelId, deadlineUnixMs: Date.now() + 60_000, progressSubject: '',
      items: Array.from({ length: images }, (_, i) => encodeWorkItem(workItem({ requestId: `${id}-r`, imageIndex: i, steps, priority }), null)),
    }), { timeout: 60_000 }).then((m) => wire.batchReply.decode(m.data));
  };

  /** The step calls logged so far, in the order they started. */
  const calls = (): Call[] => (fs.existsSync(callLog) ? fs.readFileSync(callLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Call) : [])
    .sort((x, y) => x.startMs - y.startMs);

  function assertNoOverlap(log: readonly Call[]): void {
    for (let i = 1; i < log.length; i++) {
      const [prev, cur] = [log[i - 1]!, log[i]!];
      assert.ok(cur.startMs >= prev.endMs, `call ${i} of ${cur.modelId} started at ${cur.startMs} before call ${i - 1} of ${prev.modelId} ended at ${prev.endMs}`);
    }
  }

  const ok = (r: BatchReply) => assert.equal(r.error?.code ?? r.results.find((x) => x.error)?.error?.code ?? '', '', r.error?.message);

  test('two busy models never step at once and alternate call by call', async () => {
    fs.rmSync(callLog, { force: true });
    const replies = await Promise.all([send('a', 'bulk', 20, 2), send('b', 'bulk', 20, 2)]);
    replies.forEach(ok);
    const log = calls();
    assert.equal(log.length, 40, 'each model stepped its 2 images together, 20 times');
    assertNoOverlap(log);
    const order = log.map((c) => c.modelId);
    // From the first call of the later model to the last call of the earlier one to finish, they take turns.
    const from = Math.max(order.indexOf('a'), order.indexOf('b'));
    const to = Math.min(order.lastIndexOf('a'), order.lastIndexOf('b'));
    for (let i = from + 1; i <= to; i++) assert.notEqual(order[i], order[i - 1], `calls ${i - 1} and ${i} are both of model ${order[i]} (${order.join('')})`);
    // Both batches are sent at once; on a loaded machine one may still arrive a few steps late.
    assert.ok(to - from >= 10, `the models overlapped in time for ${to - from} calls only (${order.join('')})`);
  });

  test("an online image of model B steps at every turn while model A's bulk images fill A's set", async () => {
    fs.rmSync(callLog, { force: true });
    const order: string[] = [];
    const bulk = send('a', 'bulk', 40, 2).then((r) => { order.push('bulk-a'); return r; });
    await eventually(() => calls().length >= 3, 10_000, 'model A to step');
    const online = await send('b', 'online', 6);
    order.push('online-b');
    ok(online);
    ok(await bulk);
    assert.deepEqual(order, ['online-b', 'bulk-a']);
    const log = calls();
    assertNoOverlap(log);
    const first = log.findIndex((c) => c.modelId === 'b');
    const last = log.map((c) => c.modelId).lastIndexOf('b');
    assert.equal(last - first, 5, `B's 6 steps ran back to back, no A step between them (${log.map((c) => c.modelId).join('')})`);
    assert.ok(log.slice(first, last + 1).every((c) => c.online === 1));
  });
});
