/**
 * Whether an ArrayBuffer may go in a postMessage transfer list. Node ≥ 21 marks the buffers it
 * cannot detach as untransferable (Buffer's shared pool, native addons' external memory such as
 * sharp's encoded output) and postMessage throws DataCloneError ("Cannot transfer object of
 * unsupported type") when one is listed; Node 20 copied those silently and has no
 * `isMarkedAsUntransferable`, so there every buffer counts as transferable. An untransferable
 * buffer left out of the list is copied once by the structured clone, as Node 20 did.
 */
import * as workerThreads from 'node:worker_threads';

// Looked up, not imported by name: Node 20 (and its @types/node) lack it.
const isMarkedAsUntransferable = (workerThreads as { isMarkedAsUntransferable?: (value: object) => boolean }).isMarkedAsUntransferable;

/** True when `buffer` can be transferred (detached here, moved to the other thread). */
export function canTransfer(buffer: ArrayBufferLike): buffer is ArrayBuffer {
  return buffer instanceof ArrayBuffer && !(isMarkedAsUntransferable?.(buffer) ?? false);
}
