/**
 * The nats-object:// job sink against a real nats-server with JetStream file storage: round trip,
 * overwrite, prefixes, atomic reads during overwrites, NATS down and back, copying results out.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { SinkUnavailableError } from '../../services/common/errors.js';
import { openSink } from '../../services/router/jobs/sinks/index.js';
import { assertCopiesJob, assertOverwrite, assertPutStream, assertRoundTrip, bytes, names } from './job-sinks-support.js';

describe('nats-object:// job sink', () => {
  let nats: NatsServerProcess;
  let nc: NatsConnection;
  let tmp: string;
  before(async () => {
    nats = await NatsServerProcess.start();
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-sinks-nats-'));
  });
  after(async () => {
    await nc?.close();
    await nats?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('put, get and list round-trip under the prefix, put reporting size and SHA-256', async () => {
    await assertRoundTrip((prefix) => openSink(`nats-object://orrery_jobs/${prefix}`, { nc, env: {} }), 'nats-object://orrery_jobs');
    assert.equal(nc.isClosed(), false, 'close() leaves the shared connection open');
  });

  test('putStream writes a large object from chunks (as the finalizer writes manifest.jsonl); a failing source leaves none', async () => {
    const sink = await openSink('nats-object://orrery_jobs/jobs/stream', { nc, env: {} });
    try {
      await assertPutStream(sink, 5, 256 * 1024);
    } finally {
      await sink.close();
    }
  });

  test('writing a name twice leaves one object with the last content', async () => {
    await assertOverwrite(await openSink('nats-object://orrery_jobs/ow', { nc, env: {} }));
  });

  test('readers during 40 overwrites of a multi-chunk object get whole versions only', async () => {
    const sink = await openSink('nats-object://orrery_jobs/atomic', { nc, env: {} });
    const size = 300_000;
    await sink.put('big.png', new Uint8Array(size).fill(1), 'image/png');
    let writing = true;
    const seen = new Set<number>();
    let reads = 0;
    const reader = (async () => {
      while (writing) {
        const b = (await sink.get('big.png'))!;
        reads++;
        assert.equal(b.length, size);
        assert.ok(b.every((v) => v === b[0]), 'one version per read');
        seen.add(b[0]!);
      }
    })();
    for (let i = 0; i < 40; i++) await sink.put('big.png', new Uint8Array(size).fill(i + 2), 'image/png');
    writing = false;
    await reader;
    assert.ok(reads > 0 && seen.size >= 2, `reads=${reads} versions=${seen.size}`);
  });

  test('check() fails naming NATS while the server is down, and passes again once it is back', async () => {
    const sink = await openSink('nats-object://orrery_jobs/down', { nc, env: {} });
    await sink.check();
    await nats.stop();
    try {
      await assert.rejects(sink.check(), (err: unknown) => {
        assert.ok(err instanceof SinkUnavailableError, String(err));
        assert.equal(err.code, 'ORRERY_ERR_SINK_UNAVAILABLE');
        assert.match(err.message, /^sink nats-object:\/\/orrery_jobs\/down: bucket orrery_jobs is not writable: NATS timeout: no answer from JetStream/);
        return true;
      });
      await assert.rejects(sink.put('a.png', bytes('a'), 'image/png'), SinkUnavailableError);
      await assert.rejects(sink.get('a.png'), /sink nats-object:\/\/orrery_jobs\/down: reading a\.png: NATS timeout/);
    } finally {
      await nats.restart();
    }
    // The same sink object recovers (a paused job resumes with it).
    for (let i = 0; ; i++) {
      try {
        await sink.check();
        break;
      } catch (err) {
        if (i > 50) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    await sink.put('a.png', bytes('a'), 'image/png');
    assert.deepEqual(await names(sink), ['a.png']);
  });

  test('a closed connection is named as the reason', async () => {
    const nc2 = await connect({ servers: nats.url });
    const sink = await openSink('nats-object://orrery_jobs/closed', { nc: nc2, env: {} });
    await nc2.close();
    await assert.rejects(sink.check(), /sink nats-object:\/\/orrery_jobs\/closed: bucket orrery_jobs is not writable: NATS the NATS connection is closed/);
  });

  test('copyJobResults copies outputs then metadata, skips identical files on re-run, repairs damaged ones', async () => {
    await assertCopiesJob(await openSink('nats-object://orrery_jobs/copy', { nc, env: {} }), path.join(tmp, 'results'));
  });
});
