/** Which buffers may go in a postMessage transfer list (services/worker/transferable.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as workerThreads from 'node:worker_threads';
import { markAsUntransferable, MessageChannel } from 'node:worker_threads';
import sharp from 'sharp';
import { canTransfer } from '../../services/worker/transferable.js';

/** Posts `bytes` through a real MessageChannel, transferring its buffer when canTransfer says so. */
async function send(bytes: Uint8Array): Promise<Uint8Array> {
  const { port1, port2 } = new MessageChannel();
  try {
    const received = new Promise<Uint8Array>((resolve) => port2.once('message', (m: { bytes: Uint8Array }) => resolve(m.bytes)));
    port1.postMessage({ bytes }, canTransfer(bytes.buffer) ? [bytes.buffer] : []);
    return await received;
  } finally {
    port1.close();
    port2.close();
  }
}

describe('canTransfer', () => {
  test('transfers a plain ArrayBuffer, which detaches on the sending side', async () => {
    const bytes = Uint8Array.of(1, 2, 3);
    assert.equal(canTransfer(bytes.buffer), true);
    assert.deepEqual([...await send(bytes)], [1, 2, 3]);
    assert.equal(bytes.byteLength, 0);
  });

  test('keeps a buffer marked untransferable and sharp\'s encoded output off the list, and they arrive as copies', async () => {
    const marked = Uint8Array.of(4, 5);
    markAsUntransferable(marked.buffer);
    const png = await sharp({ create: { width: 4, height: 2, channels: 3, background: '#204080' } }).png().toBuffer();
    for (const bytes of [marked, new Uint8Array(png.buffer, png.byteOffset, png.byteLength)]) {
      const copy = await send(bytes);
      assert.deepEqual(copy, new Uint8Array(bytes));
      assert.notEqual(bytes.byteLength, 0, 'the sender keeps its bytes');
    }
    // Where the runtime tells (Node ≥ 21), these are exactly the buffers it refuses to transfer.
    if ('isMarkedAsUntransferable' in workerThreads) assert.equal(canTransfer(marked.buffer), false);
  });

  test('never transfers shared memory', () => {
    assert.equal(canTransfer(new SharedArrayBuffer(8)), false);
  });
});
