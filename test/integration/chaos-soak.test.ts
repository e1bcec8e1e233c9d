/**
 * The chaos soak for 60 s (test/support/chaos-soak.ts; 10 minutes in `make bench`, soak): mixed
 * load on two routers and four replicas while replicas are killed every 5 s, nats-server restarts
 * every 30 s, one router is killed and one replica paused past its heartbeat timeout. Every call
 * ends (lost = 0), none is answered twice or with another request's image, none INTERNAL, and no
 * payload is left in the object store. RSS slopes are reported (the 10-minute run records them in
 * bench/results/soak.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runChaosSoak } from '../support/chaos-soak.js';

describe('chaos soak (60 s)', () => {
  test('under mixed load and many faults at once, every call ends once, with its own image or a status', async () => {
    const r = await runChaosSoak({ durationMs: 60_000, progress: (line) => process.stderr.write(`soak: ${line}\n`) });
    process.stderr.write(`soak: ${JSON.stringify(r)}\n`);
    assert.ok(r.sent > 0.5 * r.arrivalsPerS * r.durationS, `sent ${r.sent} calls`);
    assert.equal(r.lost, 0, 'calls without an outcome by their deadline');
    assert.equal(r.answeredTwice, 0, 'calls answered twice');
    assert.equal(r.wrongAnswers, 0, 'answers with another request\'s image');
    // Every failure is a deliberate status: a replica or NATS lost is UNAVAILABLE, never INTERNAL.
    assert.equal(r.failedByCode.INTERNAL, undefined, `INTERNAL answers: ${JSON.stringify(r.failureMessages.INTERNAL)}`);
    assert.deepEqual(r.payloadsLeftDetails, [], 'payloads left in the object store');
    const failed = Object.values(r.failedByCode).reduce((a, b) => a + b, 0);
    assert.equal(r.ok + r.cancelledByCaller + failed, r.sent, 'every call ended one way');
    assert.ok(r.ok > r.sent / 2, `most calls answered OK (${r.ok} of ${r.sent}; failed ${JSON.stringify(r.failedByCode)})`);
    assert.deepEqual(r.faults, { replicaKills: r.faults.replicaKills, natsRestarts: r.faults.natsRestarts, natsRestartFailures: 0, routerKills: 1, replicaPauses: 1 });
    assert.ok(r.faults.replicaKills >= 8, `${r.faults.replicaKills} replica kills`);
    assert.ok(r.faults.natsRestarts >= 1, `${r.faults.natsRestarts} nats-server restarts`);
  });
});
