import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CancelledError } from '../../services/common/errors.js';
import { DeviceLock } from '../../services/worker/device-lock.js';

const never = new AbortController().signal;

describe('DeviceLock', () => {
  test('grants the device to one holder at a time, in arrival order', async () => {
    const lock = new DeviceLock();
    const order: string[] = [];
    const releaseA = await lock.acquire(never);
    const b = lock.acquire(never).then((r) => { order.push('b'); return r; });
    const c = lock.acquire(never).then((r) => { order.push('c'); return r; });
    assert.equal(lock.queued, 2);
    await Promise.resolve();
    assert.deepEqual(order, [], 'nobody else holds it while a does');
    releaseA();
    const releaseB = await b;
    assert.deepEqual(order, ['b']);
    releaseB();
    (await c)();
    assert.deepEqual(order, ['b', 'c']);
    assert.equal(lock.queued, 0);
    // Free again: granted at once.
    (await lock.acquire(never))();
  });

  test('a release called twice frees the device once', async () => {
    const lock = new DeviceLock();
    const release = await lock.acquire(never);
    const b = lock.acquire(never);
    const c = lock.acquire(never);
    release();
    release();
    await b;
    let cGranted = false;
    void c.then(() => { cGranted = true; });
    await new Promise((r) => setImmediate(r));
    assert.equal(cGranted, false, 'the second release() must not hand the device to c while b holds it');
  });

  test('a waiter whose signal aborts leaves the queue with a CancelledError; the rest keep their turn', async () => {
    const lock = new DeviceLock();
    const release = await lock.acquire(never);
    const ac = new AbortController();
    const cancelled = lock.acquire(ac.signal);
    const next = lock.acquire(never);
    ac.abort();
    await assert.rejects(cancelled, (err: unknown) => err instanceof CancelledError);
    assert.equal(lock.queued, 1);
    release();
    (await next)();
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(lock.acquire(aborted.signal), (err: unknown) => err instanceof CancelledError);
  });

  test('an online batch waiting for the device goes ahead of waiting bulk batches, and after waiting online ones', async () => {
    const lock = new DeviceLock();
    const order: string[] = [];
    const wait = (name: string, priority: 'online' | 'bulk') => lock.acquire(never, priority).then((release) => { order.push(name); release(); });
    const release = await lock.acquire(never, 'bulk');
    const all = [wait('bulk-1', 'bulk'), wait('bulk-2', 'bulk'), wait('online-1', 'online'), wait('online-2', 'online')];
    release();
    await Promise.all(all);
    assert.deepEqual(order, ['online-1', 'online-2', 'bulk-1', 'bulk-2']);
  });

  test('tells the priority of the caller that gets the device next', async () => {
    const lock = new DeviceLock();
    const never = new AbortController().signal;
    const release = await lock.acquire(never, 'bulk');
    assert.equal(lock.nextPriority, undefined);
    const bulk = lock.acquire(never, 'bulk');
    assert.equal(lock.nextPriority, 'bulk');
    const online = lock.acquire(never, 'online');
    assert.equal(lock.nextPriority, 'online');
    release();
    (await online)();
    (await bulk)();
    assert.equal(lock.nextPriority, undefined);
  });
});
