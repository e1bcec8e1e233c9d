/**
 * The payload store on a real nats-server: reading a payload leaves no JetStream consumer on the
 * bucket (the object store client's `get` left one per read for 5 minutes, kept across restarts:
 * hundreds in the chaos soak), through nats-server restarts under load; a payload whose read or
 * deletion fails while NATS is down is deleted once it is back; nothing is left stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { OrreryError } from '../../services/common/errors.js';
import { createLogger } from '../../services/common/logger.js';
import { connectNats } from '../../services/common/nats-connection.js';
import { outputPayloadName, PayloadStore } from '../../services/common/payload-store.js';
import { sleep } from './harness.js';

const BUCKET = 'test_payloads';
const log = createLogger('test', 'silent');

/** 300 kB of bytes that differ per `seed`: three 128 KiB chunks. */
function image(seed: number): Uint8Array {
  return Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31 + seed) & 255);
}

describe('payload store on a real nats-server', () => {
  let nats: NatsServerProcess;
  let writerNc: NatsConnection;
  let readerNc: NatsConnection;
  let writer: PayloadStore;
  let reader: PayloadStore;

  before(async () => {
    nats = await NatsServerProcess.start();
    writerNc = await connectNats(nats.url, 'writer', log);
    readerNc = await connectNats(nats.url, 'reader', log);
    writer = new PayloadStore(writerNc, { bucket: BUCKET, maxInlineBytes: 1000, deleteRetryMs: 100 });
    reader = new PayloadStore(readerNc, { bucket: BUCKET, maxInlineBytes: 1000, deleteRetryMs: 100 });
  });
  after(async () => {
    await writerNc.close();
    await readerNc.close();
    await nats.close();
  });

  async function bucketState(): Promise<{ consumers: number; objects: number }> {
    const jsm = await jetstreamManager(readerNc);
    const info = await jsm.streams.info(`OBJ_${BUCKET}`);
    const objects = (await (await new Objm(readerNc).open(BUCKET)).list()).filter((o) => !o.deleted).length;
    // list() above reads through a watcher consumer of its own: count before it.
    return { consumers: info.state.consumer_count, objects };
  }

  /** Puts and takes payloads until `untilMs`, checking each one's bytes; returns how many made the round trip. */
  async function load(untilMs: number, seed: number): Promise<{ ok: number; failed: number }> {
    let ok = 0;
    let failed = 0;
    for (let i = 0; Date.now() < untilMs; i++) {
      try {
        const bytes = image(seed + i);
        const p = await writer.put(bytes, 'out', outputPayloadName(`b${seed}`, i));
        assert.deepEqual(await reader.take(p), bytes);
        ok++;
      } catch (err) {
        // NATS is restarting: a retryable error, never a wrong image.
        assert.ok(err instanceof OrreryError, String(err));
        assert.equal(err.code, 'ORRERY_ERR_PAYLOAD_UNAVAILABLE');
        failed++;
        await sleep(50);
      }
    }
    return { ok, failed };
  }

  test('reads leave no consumer on the bucket and nothing stored, through three nats-server restarts under load', async () => {
    let ok = 0;
    for (let round = 0; round < 3; round++) {
      const loading = load(Date.now() + 2500, round * 1000);
      await sleep(1000);
      await nats.restart();
      ok += (await loading).ok;
    }
    assert.ok(ok > 20, `${ok} payloads made the round trip`);
    // Deletions that failed during the restarts are retried until they succeed.
    for (let i = 0; i < 100 && reader.pendingDeleteCount + writer.pendingDeleteCount > 0; i++) await sleep(100);
    const state = await bucketState();
    assert.equal(state.consumers, 0, 'JetStream consumers on the payload bucket');
    assert.equal(state.objects, 0, 'payloads left stored');
  });

  test('a payload that cannot be read while nats-server is down fails as UNAVAILABLE and is deleted once it is back', async () => {
    const p = await writer.put(image(7), 'in');
    await nats.stop();
    try {
      await assert.rejects(reader.take(p), (err: unknown) => err instanceof OrreryError && err.code === 'ORRERY_ERR_PAYLOAD_UNAVAILABLE' && err.grpcStatus === status.UNAVAILABLE);
      assert.equal(reader.pendingDeleteCount, 1);
    } finally {
      await nats.restart();
    }
    for (let i = 0; i < 100 && reader.pendingDeleteCount > 0; i++) await sleep(100);
    assert.equal(reader.pendingDeleteCount, 0);
    assert.equal((await bucketState()).objects, 0, 'payloads left stored');
  });

  test('a stored payload a router will not read is deleted by its name', async () => {
    const p = await writer.put(image(9), 'out', outputPayloadName('lost-batch', 0));
    assert.equal(p.objectName, 'out-lost-batch-0');
    await reader.discardName(outputPayloadName('lost-batch', 0));
    await assert.rejects(reader.take(p), /missing from the object store/);
  });
});
