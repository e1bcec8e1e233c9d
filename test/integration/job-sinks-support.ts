/**
 * Shared checks for the job sink tests (file, nats-object, s3): the contract every sink keeps
 * (round trip under a prefix, overwrite, putStream), a job's files and copying them out. Each
 * sink's test opens its sinks and runs these; what only one sink does stays in its own file.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { copyJobResults, type CopyProgress } from '../../services/router/jobs/sinks/copy-results.js';
import { manifestLine } from '../../services/router/jobs/sinks/manifest.js';
import type { JobSink } from '../../services/router/jobs/sinks/sink.js';

export const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
export const bytes = (text: string) => new TextEncoder().encode(text);

/** The sink's listed names, sorted. */
export async function names(sink: JobSink): Promise<string[]> {
  const out: string[] = [];
  for await (const n of sink.list()) out.push(n);
  return out.sort();
}

/**
 * put, get and list round-trip under `jobs/j1/` (given with a trailing slash: the URI drops it),
 * put reporting size and SHA-256; the check() probe leaves nothing; another job's prefix in the
 * same bucket is separate. `open(prefix)` opens the sink of a prefix; `base` is the URI before it.
 */
export async function assertRoundTrip(open: (prefix: string) => Promise<JobSink>, base: string): Promise<void> {
  const sink = await open('jobs/j1/');
  assert.equal(sink.uri, `${base}/jobs/j1`);
  await sink.check();
  const data = new Uint8Array(300_000).map((_, i) => i % 251); // three 128 KiB NATS chunks; more than one S3 read
  assert.deepEqual(await sink.put('a.png', data, 'image/png'), { bytes: data.byteLength, sha256: sha(data) });
  await sink.put('empty.webp', new Uint8Array(0), 'image/webp');
  assert.equal(sha((await sink.get('a.png'))!), sha(data));
  assert.deepEqual(await sink.get('empty.webp'), new Uint8Array(0));
  assert.equal(await sink.get('missing.png'), undefined);
  assert.deepEqual(await names(sink), ['a.png', 'empty.webp'], 'the check probe is gone');

  const other = await open('jobs/j2');
  await other.put('a.png', bytes('other'), 'image/png');
  assert.deepEqual(await names(other), ['a.png']);
  assert.deepEqual(await names(sink), ['a.png', 'empty.webp']);
  assert.equal(sha((await sink.get('a.png'))!), sha(data), 'the same name under another prefix is another object');
  await other.close();
  await sink.close();
}

/** Writing a name twice leaves one object with the last content. */
export async function assertOverwrite(sink: JobSink): Promise<void> {
  await sink.put('x.png', new Uint8Array(200_000).fill(1), 'image/png');
  await sink.put('x.png', bytes('second'), 'image/png');
  assert.deepEqual(await names(sink), ['x.png']);
  assert.equal(Buffer.from((await sink.get('x.png'))!).toString(), 'second');
}

/** Fills a job's worth of objects into a sink: outputs, manifest.jsonl, job.json, contact-sheet.png. */
export async function fillJob(sink: JobSink, count: number): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  let manifest = '';
  for (let i = 0; i < count; i++) {
    const name = `item-${i}.png`;
    const data = new Uint8Array(1000 + i).fill(i + 1);
    const r = await sink.put(name, data, 'image/png');
    files.set(name, data);
    manifest += manifestLine({ custom_id: `item-${i}`, status: 'succeeded', seed: String(i), prompt: 'p', model: 'm', size: '8x8', file: name, bytes: r.bytes, sha256: r.sha256, attempts: 1, error: '' });
  }
  for (const [name, data] of [['manifest.jsonl', bytes(manifest)], ['job.json', bytes('{"id":"j1"}')], ['contact-sheet.png', new Uint8Array([9, 9, 9])]] as const) {
    await sink.put(name, data, 'application/octet-stream');
    files.set(name, data);
  }
  return files;
}

/** Copies out of `sink` twice and checks the copy, the skip on re-run and the repair of a damaged file. */
export async function assertCopiesResults(sink: JobSink, files: Map<string, Uint8Array>, outDir: string): Promise<void> {
  const seen: CopyProgress[] = [];
  const first = await copyJobResults(sink, outDir, (p) => seen.push(p));
  const total = [...files.values()].reduce((n, d) => n + d.byteLength, 0);
  assert.deepEqual(first, { files: files.size, bytes: total, skipped: 0 });
  assert.equal(seen.length, files.size);
  assert.deepEqual(seen.slice(-3).map((p) => p.name), ['manifest.jsonl', 'job.json', 'contact-sheet.png'], 'metadata is copied after the outputs');
  assert.deepEqual(fs.readdirSync(outDir).sort(), [...files.keys()].sort(), 'exactly the sink files, no temp files');
  for (const [name, data] of files) assert.equal(sha(fs.readFileSync(path.join(outDir, name))), sha(data), name);

  const again = await copyJobResults(sink, outDir);
  assert.deepEqual(again, { files: 0, bytes: 0, skipped: files.size });

  fs.writeFileSync(path.join(outDir, 'item-1.png'), new Uint8Array(1001)); // same size, other bytes
  fs.rmSync(path.join(outDir, 'job.json'));
  const repaired = await copyJobResults(sink, outDir);
  assert.deepEqual([repaired.files, repaired.skipped], [2, files.size - 2]);
  assert.equal(sha(fs.readFileSync(path.join(outDir, 'item-1.png'))), sha(files.get('item-1.png')!));
}

/** A job of 5 outputs put into `sink`, then copied out into `outDir` (assertCopiesResults). */
export async function assertCopiesJob(sink: JobSink, outDir: string): Promise<void> {
  await assertCopiesResults(sink, await fillJob(sink, 5), outDir);
}

/** `n` chunks of `size` bytes, each a different byte pattern, made as they are read. */
async function* chunks(n: number, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < n; i++) yield new Uint8Array(size).map((_, k) => (k * 31 + i * 7) & 0xff);
}

/**
 * putStream writes an object of `n` × `size` bytes from chunks (size and SHA-256 reported, read
 * back whole); a failing source rejects with its own error, not the sink's, and leaves no object.
 */
export async function assertPutStream(sink: JobSink, n: number, size: number): Promise<void> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks(n, size)) parts.push(c);
  const whole = Buffer.concat(parts);
  const put = await sink.putStream('manifest.jsonl', chunks(n, size), 'application/x-ndjson');
  assert.deepEqual(put, { bytes: n * size, sha256: sha(whole) });
  const back = await sink.get('manifest.jsonl');
  assert.equal(back?.byteLength, n * size);
  assert.equal(sha(back), sha(whole));

  const stop = new Error('the source stopped');
  async function* failing(): AsyncGenerator<Uint8Array> {
    yield* chunks(2, size);
    throw stop;
  }
  await assert.rejects(sink.putStream('partial.jsonl', failing(), 'application/x-ndjson'), (err) => err === stop);
  assert.equal(await sink.get('partial.jsonl'), undefined, 'an abandoned stream leaves no object');
}
