/**
 * The autoscaler's leader elector (services/router/leadership/leader-elector.ts) over a lock
 * whose answers the test scripts (the NATS KV and Kubernetes locks are tested against a real
 * nats-server and the Lease API in test/integration): it leads while the lock says so, steps down
 * at the first refused or failed renewal, reports each change once, and releases on stop.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../../services/common/logger.js';
import { LeaderElector, type LeaderLock } from '../../services/router/leadership/leader-elector.js';
import { eventually } from '../integration/harness.js';

/** A lock whose next answers are `answers` (then the last one again); counts calls and releases. */
class ScriptedLock implements LeaderLock {
  readonly kind = 'scripted';
  calls = 0;
  releases = 0;
  constructor(private readonly answers: Array<boolean | Error>) {}
  acquireOrRenew(): Promise<boolean> {
    const a = this.answers[Math.min(this.calls++, this.answers.length - 1)]!;
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  }
  release(): Promise<void> {
    this.releases++;
    return Promise.resolve();
  }
}

const log = createLogger('test', 'silent');

describe('LeaderElector', () => {
  test('leads while the lock is held and steps down at the first failed renewal, reporting each change once', async () => {
    const lock = new ScriptedLock([false, true, true, new Error('nats unreachable'), false, true]);
    const changes: boolean[] = [];
    const e = new LeaderElector({ lock, leaseMs: 30, log, onChange: (l) => changes.push(l) });
    e.start();
    await eventually(() => lock.calls >= 7, 5000, 'seven attempts');
    await e.stop();
    assert.deepEqual(changes.slice(0, 3), [true, false, true], 'led, stepped down at the failure, led again');
    assert.equal(changes.at(-1), false, 'stopping steps down');
    assert.equal(lock.releases, 1, 'a leader releases the lock when it stops');
  });

  test('a router that never led does not release the lock when it stops', async () => {
    const lock = new ScriptedLock([false]);
    const changes: boolean[] = [];
    const e = new LeaderElector({ lock, leaseMs: 30, log, onChange: (l) => changes.push(l) });
    e.start();
    await eventually(() => lock.calls >= 2, 5000, 'two attempts');
    await e.stop();
    assert.deepEqual(changes, []);
    assert.equal(lock.releases, 0);
  });
});
