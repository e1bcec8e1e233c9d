import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { CancelledError, DeadlineExceededError, OrreryError } from '../../services/common/errors.js';
import type { WorkItemData } from '../../services/common/work-item.js';
import { WorkUnit, batchKey, type UnitResult } from '../../services/router/work-unit.js';
import { workItem } from '../support/work-items.js';

function input(over: Partial<WorkItemData> = {}): WorkItemData {
  return workItem({ prompt: 'red planet', steps: 30, width: 1024, height: 1024, ...over });
}

function result(replicaId: string): UnitResult {
  return { data: new Uint8Array([1, 2, 3]), width: 1024, height: 1024, mimeType: 'image/png', replicaId, queueSeconds: 0.1, runSeconds: 0.2 };
}

function unit(signal: AbortSignal = new AbortController().signal): WorkUnit {
  const inp = input();
  return new WorkUnit('synthetic', 'syn-a', batchKey('syn-a', inp), inp, 0, signal, 1000);
}

describe('WorkUnit settles once', () => {
  test('delivers the first result and drops a second succeed', async () => {
    const u = unit();
    assert.equal(u.settled, false);
    assert.equal(u.succeed(result('r1')), true);
    assert.equal(u.settled, true);
    assert.equal(u.succeed(result('r2')), false);
    assert.equal((await u.result).replicaId, 'r1');
  });

  test('drops a fail after a succeed', async () => {
    const u = unit();
    u.succeed(result('r1'));
    assert.equal(u.fail(new OrreryError('ORRERY_ERR_REPLICA_LOST', 'lost')), false);
    assert.equal((await u.result).replicaId, 'r1');
  });

  test('keeps the first failure and drops a later succeed or fail', async () => {
    const u = unit();
    const first = new OrreryError('ORRERY_ERR_STAGE_FAILED', 'boom');
    assert.equal(u.fail(first), true);
    assert.equal(u.succeed(result('r1')), false);
    assert.equal(u.fail(new OrreryError('ORRERY_ERR_INTERNAL', 'later')), false);
    await assert.rejects(u.result, (err: unknown) => err === first);
  });

  test('records its creation time as its first enqueue time', () => {
    const u = unit();
    assert.equal(u.createdAtMs, 1000);
    assert.equal(u.enqueuedAtMs, 1000);
    assert.equal(u.lostAttempts, 0);
  });

  test('does not report an unawaited failure as an unhandled rejection', async () => {
    let unhandled = 0;
    const onUnhandled = () => unhandled++;
    process.on('unhandledRejection', onUnhandled);
    try {
      unit().fail(new OrreryError('ORRERY_ERR_INTERNAL', 'nobody listens'));
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.equal(unhandled, 0);
  });
});

describe('WorkUnit cancellation', () => {
  test('fails with the signal\'s OrreryError reason when the signal aborts', async () => {
    const ac = new AbortController();
    const u = unit(ac.signal);
    const reason = new DeadlineExceededError('while queued');
    ac.abort(reason);
    assert.equal(u.settled, true);
    await assert.rejects(u.result, (err: unknown) => {
      assert.equal(err, reason);
      assert.ok(err instanceof DeadlineExceededError);
      assert.equal(err.code, 'ORRERY_ERR_DEADLINE_EXCEEDED');
      return true;
    });
  });

  test('fails with CancelledError when the abort reason is not an OrreryError', async () => {
    const ac = new AbortController();
    const u = unit(ac.signal);
    ac.abort();
    await assert.rejects(u.result, (err: unknown) => {
      assert.ok(err instanceof CancelledError);
      assert.equal(err.code, 'ORRERY_ERR_CANCELLED');
      assert.match(err.message, /cancelled/);
      return true;
    });
  });

  test('fails at once when built with an already-aborted signal', async () => {
    const reason = new CancelledError('before queueing');
    const u = unit(AbortSignal.abort(reason));
    assert.equal(u.settled, true);
    assert.equal(u.succeed(result('r1')), false);
    await assert.rejects(u.result, (err: unknown) => err === reason);
  });

  test('ignores an abort after the unit has succeeded', async () => {
    const ac = new AbortController();
    const u = unit(ac.signal);
    u.succeed(result('r1'));
    ac.abort(new CancelledError('too late'));
    assert.equal((await u.result).replicaId, 'r1');
  });
});

describe('batchKey', () => {
  const base = batchKey('syn-a', input());

  test('is equal for images that differ only in per-image inputs (request, seed, prompt, format)', () => {
    assert.equal(batchKey('syn-a', input({ requestId: 'req-2', imageIndex: 3, seed: 99n, prompt: 'blue', negativePrompt: 'x', outputFormat: 'webp' })), base);
  });

  test('differs by model', () => assert.notEqual(batchKey('syn-b', input()), base));
  test('differs by width', () => assert.notEqual(batchKey('syn-a', input({ width: 1536, height: 1024 })), base));
  test('differs by height', () => assert.notEqual(batchKey('syn-a', input({ height: 640 })), base));
  test('tells transposed sizes apart', () =>
    assert.notEqual(batchKey('syn-a', input({ width: 1536, height: 640 })), batchKey('syn-a', input({ width: 640, height: 1536 }))));
  test('differs by steps', () => assert.notEqual(batchKey('syn-a', input({ steps: 31 })), base));
  test('differs by stage params', () => assert.notEqual(batchKey('syn-a', input({ params: { scale: 2 } })), base));
  test('differs by whether there is an init image', () => assert.notEqual(batchKey('syn-a', input({ initImage: new Uint8Array([1]) })), base));
  test('differs by strength when there is an init image (strength sets the steps that run)', () =>
    assert.notEqual(batchKey('syn-a', input({ initImage: new Uint8Array([1]), strength: 0.5 })), batchKey('syn-a', input({ initImage: new Uint8Array([1]), strength: 0.3 }))));
  test('ignores strength without an init image', () => assert.equal(batchKey('syn-a', input({ strength: 0.9 })), base));
  test('is a deterministic string', () => assert.equal(base, 'syn-a|1024x1024|30|noinit|{}'));
});
