/** The leader's view of the other routers' queues (services/router/leadership/queue-reports.ts), pure. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeQueueReport, QueueBoard } from '../../services/router/leadership/queue-reports.js';

describe('QueueBoard', () => {
  test('adds the latest fresh report of every other router, ignoring its own and stale ones', () => {
    const board = new QueueBoard('me', 1000);
    board.record({ routerId: 'me', queued: { a: 100 }, wake: [] }, 0);
    board.record({ routerId: 'r2', queued: { a: 3, b: 1 }, wake: [] }, 0);
    board.record({ routerId: 'r3', queued: { a: 4 }, wake: [] }, 500);
    board.record({ routerId: 'r2', queued: { a: 5 }, wake: [] }, 600);
    assert.equal(board.queuedElsewhere('a', 700), 9);
    assert.equal(board.queuedElsewhere('b', 700), 0, 'r2\'s latest report has nothing queued for b');
    assert.equal(board.queuedElsewhere('a', 1550), 5, 'r3\'s report is older than 1 s');
    assert.equal(board.queuedElsewhere('a', 5000), 0);
  });

  test('decodes reports and refuses messages that are not one', () => {
    assert.deepEqual(decodeQueueReport(Buffer.from(JSON.stringify({ routerId: 'r', queued: { a: 1 }, wake: ['a', 3] }))), { routerId: 'r', queued: { a: 1 }, wake: ['a'] });
    assert.equal(decodeQueueReport(Buffer.from('not json')), undefined);
    assert.equal(decodeQueueReport(Buffer.from(JSON.stringify({ routerId: 'r', queued: null, wake: [] }))), undefined);
  });
});
