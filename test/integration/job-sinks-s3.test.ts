/**
 * The s3:// job sink. No S3 service can run on the build machines, so `s3rver` (an S3-protocol
 * server from npm) stands in, started as its own process on a free port with a temp directory;
 * the sink's code path is the production one (@aws-sdk/client-s3 against an endpoint from the
 * environment, path-style, static credentials), only the endpoint differs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SinkUnavailableError } from '../../services/common/errors.js';
import { openSink } from '../../services/router/jobs/sinks/index.js';
import { S3Sink } from '../../services/router/jobs/sinks/s3-sink.js';
import { startS3rver, stopProcess, type S3rver } from '../support/s3rver.js';
import { assertCopiesJob, assertOverwrite, assertPutStream, assertRoundTrip, bytes, names } from './job-sinks-support.js';

const BUCKET = 'orrery-jobs';

describe('s3:// job sink (against s3rver standing in for S3)', () => {
  let tmp: string;
  let s3: S3rver;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-sinks-s3-'));
    s3 = await startS3rver(path.join(tmp, 'data'), BUCKET);
    // What a Kubernetes Secret would provide; s3rver accepts its documented fixed key pair.
    env = { ORRERY_S3_ENDPOINT: s3.endpoint, ORRERY_S3_FORCE_PATH_STYLE: 'true', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  });
  after(async () => {
    if (s3) await stopProcess(s3.child);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('put, get and list round-trip under the prefix, put reporting size and SHA-256', async () => {
    await assertRoundTrip((prefix) => openSink(`s3://${BUCKET}/${prefix}`, { env }), `s3://${BUCKET}`);
  });

  test('putStream writes a large object from chunks (as the finalizer writes manifest.jsonl); a failing source leaves none', async () => {
    const sink = await openSink(`s3://${BUCKET}/jobs/stream`, { env });
    try {
      await assertPutStream(sink, 18, 1024 * 1024);
    } finally {
      await sink.close();
    }
  });

  test('writing a name twice leaves one object with the last content', async () => {
    const sink = await openSink(`s3://${BUCKET}/ow`, { env });
    await assertOverwrite(sink);
    await sink.close();
  });

  test('a reader polling during 40 overwrites never gets a torn object', async () => {
    // S3 replaces an object atomically. s3rver does not (it rewrites the file in place, then the
    // metadata), so here a read racing a put can fail; the sink must still never *return* torn
    // bytes: it checks each read against its length and the SHA-256 stored by put, and retries.
    // A read that meets the rewrite can also stall for seconds: the sink's per-read timeout
    // (readTimeoutMs, short here) aborts it and retries, so reads keep overlapping the writes.
    const sink = await S3Sink.fromUri(`s3://${BUCKET}/atomic`, `${BUCKET}/atomic`, { env }, { readTimeoutMs: 500 });
    const size = 300_000;
    await sink.put('big.png', new Uint8Array(size).fill(1), 'image/png');
    let writing = true;
    const seen = new Set<number>();
    let failed = 0;
    let reads = 0;
    const reader = (async () => {
      while (writing) {
        let b: Uint8Array | undefined;
        try {
          b = await sink.get('big.png');
        } catch (err) {
          assert.ok(err instanceof SinkUnavailableError, String(err));
          failed++;
          continue;
        } finally {
          if (writing) reads++;
        }
        assert.equal(b!.length, size);
        assert.ok(b!.every((v) => v === b![0]), 'one version per read');
        seen.add(b![0]!);
      }
    })();
    // At least 40 overwrites, and on until the reader has finished a few reads among them (a slow
    // machine may take longer for one read than for many writes).
    let last = 1;
    for (let i = 0; i < 40 || (reads < 4 && i < 400); i++) {
      last = (i % 200) + 2;
      await sink.put('big.png', new Uint8Array(size).fill(last), 'image/png');
    }
    writing = false;
    await reader;
    assert.ok(reads >= 4, `reads overlapped the writes: ${reads} reads ended during them (${seen.size} versions seen, ${failed} failed)`);
    assert.equal((await sink.get('big.png'))![0], last);
    await sink.close();
  });

  test('listing pages through every object (pages of 10 here; S3 pages at 1,000)', async () => {
    const sink = await S3Sink.fromUri(`s3://${BUCKET}/many`, `${BUCKET}/many`, { env }, { listPageSize: 10 });
    const all = Array.from({ length: 35 }, (_, i) => `item-${String(i).padStart(2, '0')}.png`);
    await Promise.all(all.map((n) => sink.put(n, bytes(n), 'image/png')));
    assert.deepEqual(await names(sink), all);
    await sink.close();
  });

  test('copyJobResults copies outputs then metadata, skips identical files on re-run, repairs damaged ones', async () => {
    const sink = await openSink(`s3://${BUCKET}/copy`, { env });
    await assertCopiesJob(sink, path.join(tmp, 'results'));
    await sink.close();
  });

  test('check() on a missing bucket says the bucket does not exist', async () => {
    const sink = await openSink('s3://no-such-bucket/jobs/j1', { env });
    await assert.rejects(sink.check(), (err: unknown) => {
      assert.ok(err instanceof SinkUnavailableError, String(err));
      assert.equal(err.code, 'ORRERY_ERR_SINK_UNAVAILABLE');
      assert.equal(err.message, 'sink s3://no-such-bucket/jobs/j1: bucket no-such-bucket does not exist: S3 NotFound (HTTP 404)');
      return true;
    });
    await assert.rejects(sink.put('a.png', bytes('a'), 'image/png'), /sink s3:\/\/no-such-bucket\/jobs\/j1: writing a\.png: S3 NoSuchBucket/);
    await sink.close();
  });

  test('check() and put() with the S3 server stopped name the connection failure', async () => {
    const sink = await openSink(`s3://${BUCKET}/down`, { env });
    await sink.check();
    await stopProcess(s3.child);
    await assert.rejects(sink.check(), (err: unknown) => {
      assert.ok(err instanceof SinkUnavailableError, String(err));
      assert.match(err.message, /^sink s3:\/\/orrery-jobs\/down: bucket orrery-jobs is not reachable: S3 .*ECONNREFUSED/);
      return true;
    });
    await assert.rejects(sink.put('a.png', bytes('a'), 'image/png'), /writing a\.png: S3 .*ECONNREFUSED/);
    await sink.close();
  });
});
