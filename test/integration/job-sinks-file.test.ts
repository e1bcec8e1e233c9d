/**
 * The file:// job sink against the real file system, and copying results out of it: round trip,
 * overwrite, atomicity seen by a reader in another process, unwritable targets, crash leftovers.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SinkUnavailableError } from '../../services/common/errors.js';
import { FileSink } from '../../services/router/jobs/sinks/file-sink.js';
import { openSink } from '../../services/router/jobs/sinks/index.js';
import { assertCopiesJob, assertPutStream, bytes, names, sha } from './job-sinks-support.js';

describe('file:// job sink', () => {
  let root: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-sinks-'));
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  test('put, get and list round-trip, put reporting size and SHA-256', async () => {
    const sink = await openSink(`file://${root}/rt`, { env: {} });
    await sink.check();
    const data = bytes('hello planets');
    assert.deepEqual(await sink.put('a.png', data, 'image/png'), { bytes: data.byteLength, sha256: sha(data) });
    await sink.put('b.webp', new Uint8Array(0), 'image/webp');
    assert.deepEqual(await sink.get('a.png'), data);
    assert.deepEqual(await sink.get('b.webp'), new Uint8Array(0));
    assert.equal(await sink.get('missing.png'), undefined);
    assert.deepEqual(await names(sink), ['a.png', 'b.webp']);
    await sink.close();
  });

  test('putStream writes a large object from chunks (as the finalizer writes manifest.jsonl); a failing source leaves none', async () => {
    const sink = await openSink(`file://${root}/stream`, { env: {} });
    try {
      await assertPutStream(sink, 3, 256 * 1024);
    } finally {
      await sink.close();
    }
  });

  test('writing a name twice leaves one file with the last content and no temp files', async () => {
    const sink = new FileSink(path.join(root, 'ow'));
    await sink.put('x.png', bytes('first, longer content'), 'image/png');
    await sink.put('x.png', bytes('second'), 'image/png');
    assert.deepEqual(await names(sink), ['x.png']);
    assert.deepEqual(fs.readdirSync(sink.dir), ['x.png']);
    assert.equal(Buffer.from((await sink.get('x.png'))!).toString(), 'second');
  });

  for (const fsync of [true, false]) {
    test(`a reader in another process polling during 150 overwrites never sees a partial file (fsync ${fsync ? 'on' : 'off'})`, async () => {
      const sink = (await openSink(`file://${root}/atomic-${fsync}`, { env: fsync ? {} : { ORRERY_FILE_SINK_FSYNC: 'false' } })) as FileSink;
      const size = 512 * 1024;
      await sink.put('big.png', new Uint8Array(size).fill(1), 'image/png');
      const file = path.join(sink.dir, 'big.png');
      // The reader: reads the file in a loop until stdin closes; a read is whole when it has
      // `size` bytes all equal (each version is filled with one byte value).
      const reader = spawn(process.execPath, ['-e', `
        const fs = require('fs'); let reads = 0, torn = 0, stop = false; const versions = new Set();
        process.stdin.on('end', () => { stop = true; }); process.stdin.resume();
        process.stdout.write('polling\\n');
        (function loop() {
          for (let k = 0; k < 20; k++) {
            const b = fs.readFileSync(${JSON.stringify(file)}); reads++;
            if (b.length !== ${size} || b.some((v) => v !== b[0])) torn++; else versions.add(b[0]);
          }
          if (stop) process.stdout.write(JSON.stringify({ reads, torn, versions: versions.size })); else setImmediate(loop);
        })();`], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => reader.once('exit', r));
      while (!out.startsWith('polling\n') && reader.exitCode === null) await new Promise((r) => setTimeout(r, 10)); // the reader is polling
      for (let i = 0; i < 150; i++) await sink.put('big.png', new Uint8Array(size).fill((i % 250) + 2), 'image/png');
      reader.stdin.end();
      await exited;
      const res = JSON.parse(out.slice('polling\n'.length)) as { reads: number; torn: number; versions: number };
      assert.equal(res.torn, 0, `torn reads: ${out}`);
      assert.ok(res.versions >= 2, `the reader saw the file change while polling: ${out}`);
      assert.deepEqual(fs.readdirSync(sink.dir), ['big.png']);
    });
  }

  test('check() and put() on a directory under a regular file fail naming the OS reason', async () => {
    // Tests run as root in CI, where permission bits stop nothing; a path through a file fails for anyone.
    fs.writeFileSync(path.join(root, 'plain-file'), 'x');
    const sink = await openSink(`file://${root}/plain-file/jobs/j1`, { env: {} });
    await assert.rejects(sink.check(), (err: unknown) => {
      assert.ok(err instanceof SinkUnavailableError);
      assert.equal(err.code, 'ORRERY_ERR_SINK_UNAVAILABLE');
      assert.equal(err.uri, `file://${root}/plain-file/jobs/j1`);
      assert.match(err.message, /is not writable: ENOTDIR: not a directory/);
      assert.ok((err.cause as NodeJS.ErrnoException).code === 'ENOTDIR');
      return true;
    });
    await assert.rejects(sink.put('a.png', bytes('x'), 'image/png'), (err: unknown) => err instanceof SinkUnavailableError && /writing a\.png: ENOTDIR/.test(err.message));
  });

  test('check() on a read-only directory names EACCES (skipped as root, where permission bits do not apply)', { skip: process.getuid?.() === 0 }, async () => {
    const dir = path.join(root, 'ro');
    fs.mkdirSync(dir, { mode: 0o555 });
    await assert.rejects(new FileSink(dir).check(), /EACCES: permission denied/);
  });

  test('check() on a read-only mount names EROFS (as root, through a read-only bind mount when mounting is allowed)', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('not root: the EACCES test covers read-only directories');
    const dir = path.join(root, 'ro-mount');
    fs.mkdirSync(dir);
    try {
      execFileSync('mount', ['--bind', '-o', 'ro', dir, dir], { stdio: 'pipe' });
    } catch (err) {
      return t.skip(`cannot bind-mount here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`);
    }
    try {
      await assert.rejects(new FileSink(dir).check(), (err: unknown) => {
        assert.ok(err instanceof SinkUnavailableError);
        assert.match(err.message, /is not writable: EROFS: read-only file system/);
        return true;
      });
      await assert.rejects(new FileSink(dir).put('a.png', bytes('a'), 'image/png'), /writing a\.png: EROFS/);
    } finally {
      execFileSync('umount', [dir]);
    }
  });

  test('check() creates the directory; put() recreates it when it was removed', async () => {
    const sink = new FileSink(path.join(root, 'made', 'deep'));
    await sink.check();
    assert.deepEqual(fs.readdirSync(sink.dir), [], 'the probe file is removed');
    fs.rmSync(path.join(root, 'made'), { recursive: true });
    await sink.put('a.png', bytes('a'), 'image/png');
    assert.deepEqual(await names(sink), ['a.png']);
  });

  test('temp files left by a crashed put are not listed, and a later put removes the stale ones', async () => {
    const dir = path.join(root, 'crash');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, '.orrery-tmp-stale'), 'torn');
    const hourAgo = new Date(Date.now() - 3_600_000);
    fs.utimesSync(path.join(dir, '.orrery-tmp-stale'), hourAgo, hourAgo);
    fs.writeFileSync(path.join(dir, '.orrery-tmp-fresh'), 'another router is writing this now');
    const sink = new FileSink(dir);
    assert.deepEqual(await names(sink), []);
    await sink.put('a.png', bytes('a'), 'image/png');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['.orrery-tmp-fresh', 'a.png']);
  });

  test('opening and writing a file sink loads neither the S3 SDK nor sharp', async () => {
    const index = path.resolve('dist/services/router/jobs/sinks/index.js');
    const child = spawn(process.execPath, ['-e', `
      require(${JSON.stringify(index)}).openSink(${JSON.stringify(`file://${root}/lazy`)}, { env: {} })
        .then((s) => s.put('a.png', new Uint8Array([1]), 'image/png'))
        .then(() => process.stdout.write(JSON.stringify(Object.keys(require.cache).filter((k) => /client-s3|[\\/]sharp[\\/]/.test(k)))));`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.once('exit', r));
    assert.deepEqual(JSON.parse(out), []);
    assert.ok(fs.existsSync(path.join(root, 'lazy', 'a.png')));
  });

  test('copyJobResults copies outputs then metadata, skips identical files on re-run, repairs damaged ones', async () => {
    await assertCopiesJob(new FileSink(path.join(root, 'job')), path.join(root, 'results'));
  });
});
