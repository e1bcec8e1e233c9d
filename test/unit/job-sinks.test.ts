/**
 * Job output sinks, the pure parts: the manifest line, object names, URI parsing, S3 settings from
 * the environment, and the contact sheet (real sharp: layout, PNG output, placeholder tiles).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { OrreryError, SinkUnavailableError } from '../../services/common/errors.js';
import { status } from '@grpc/grpc-js';
import { contactSheet, escapeXml, sheetLayout, tileOrigin } from '../../services/router/jobs/sinks/contact-sheet.js';
import type { FileSink } from '../../services/router/jobs/sinks/file-sink.js';
import { openSink } from '../../services/router/jobs/sinks/index.js';
import { manifestLine, parseManifest, type ManifestEntry } from '../../services/router/jobs/sinks/manifest.js';
import { checkObjectName, splitBucketPath } from '../../services/router/jobs/sinks/object-name.js';
import { s3SettingsFromEnv } from '../../services/router/jobs/sinks/s3-sink.js';

const entry: ManifestEntry = {
  custom_id: 'c03-a01-m00-s02-k4',
  status: 'succeeded',
  seed: '18446744073709551615',
  prompt: 'a deep blue planet, "frosted" cloudy zones',
  model: 'tiny-sdxl',
  size: '2520x1080',
  file: 'c03-a01-m00-s02-k4.png',
  bytes: 1234,
  sha256: 'ab'.repeat(32),
  attempts: 1,
  error: '',
};

/** The SinkUnavailableError a promise or function must throw. */
async function sinkError(fn: () => unknown): Promise<SinkUnavailableError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof SinkUnavailableError, `expected SinkUnavailableError, got ${String(err)}`);
    assert.equal(err.code, 'ORRERY_ERR_SINK_UNAVAILABLE');
    assert.equal(err.grpcStatus, status.FAILED_PRECONDITION);
    return err;
  }
  assert.fail('expected a SinkUnavailableError');
}

describe('manifest lines', () => {
  test('a line is one JSON object with the keys in manifest order, ending in a newline', () => {
    const shuffled = Object.fromEntries(Object.entries(entry).reverse()) as unknown as ManifestEntry;
    const line = manifestLine(shuffled);
    assert.ok(line.endsWith('}\n'));
    assert.equal(line.split('\n').length, 2, 'exactly one line');
    assert.deepEqual(Object.keys(JSON.parse(line) as object), ['custom_id', 'status', 'seed', 'prompt', 'model', 'size', 'file', 'bytes', 'sha256', 'attempts', 'error']);
    assert.deepEqual(JSON.parse(line) as unknown, entry);
  });

  test('a prompt with newlines and quotes stays on one line', () => {
    const line = manifestLine({ ...entry, prompt: 'line one\nline "two"' });
    assert.equal(line.indexOf('\n'), line.length - 1);
    assert.equal((JSON.parse(line) as ManifestEntry).prompt, 'line one\nline "two"');
  });

  test('parsing keeps the last line per custom_id and skips a torn last line', () => {
    const text = manifestLine({ ...entry, status: 'failed', error: 'boom', attempts: 3 }) + manifestLine({ ...entry, attempts: 4 }) + manifestLine({ ...entry, custom_id: 'x' }) + '{"custom_id":"torn","sta';
    const m = parseManifest(text);
    assert.deepEqual([...m.keys()], [entry.custom_id, 'x']);
    assert.equal(m.get(entry.custom_id)!.attempts, 4);
    assert.equal(m.get(entry.custom_id)!.status, 'succeeded');
  });
});

describe('object names and sink URIs', () => {
  test('plain file names are accepted', () => {
    for (const name of ['c03-a01-m00-s02-k4.png', 'manifest.jsonl', 'weird name (1).webp', '.hidden']) checkObjectName('file:///x', name);
  });

  test('paths, dot names, control characters and the reserved prefix are rejected with the reason', async () => {
    for (const [name, why] of [['a/b.png', 'path separator'], ['..', 'directory reference'], ['', 'empty'], ['a\nb', 'control character'], ['.orrery-tmp-1', 'reserved prefix'], ['x'.repeat(256), '255 bytes']] as const) {
      const err = await sinkError(() => checkObjectName('file:///x', name));
      assert.match(err.message, new RegExp(why));
      assert.match(err.message, /^sink file:\/\/\/x: /);
    }
  });

  test('an unknown scheme names the schemes that exist', async () => {
    const err = await sinkError(() => openSink('gs://bucket/p', { env: {} }));
    assert.match(err.message, /unknown scheme "gs:\/\/"/);
    assert.match(err.message, /file:\/\/DIR, nats-object:\/\/BUCKET\[\/PREFIX\], s3:\/\/BUCKET\[\/PREFIX\]/);
    assert.equal(err.uri, 'gs://bucket/p');
  });

  test('a bare path is not a sink URI', async () => {
    const err = await sinkError(() => openSink('./out/jobs/j1', { env: {} }));
    assert.match(err.message, /not a sink URI; use one of file:\/\/DIR/);
  });

  test('file URIs: absolute (percent-decoded), localhost, and relative to the working directory', async () => {
    const abs = (await openSink('file:///tmp/jobs/a%20b', { env: {} })) as FileSink;
    assert.equal(abs.dir, '/tmp/jobs/a b');
    assert.equal(abs.uri, 'file:///tmp/jobs/a%20b');
    assert.equal(((await openSink('file://localhost/tmp/j', { env: {} })) as FileSink).dir, '/tmp/j');
    const rel = (await openSink('file://out/jobs/j1', { env: {} })) as FileSink;
    assert.equal(rel.dir, path.resolve('out/jobs/j1'));
    assert.equal(rel.uri, `file://${path.resolve('out/jobs/j1')}`);
    assert.equal(((await openSink('file://./out/jobs/j1', { env: {} })) as FileSink).dir, path.resolve('out/jobs/j1'));
    await sinkError(() => openSink('file://', { env: {} }));
  });

  test('nats-object needs a NATS connection and a valid bucket name', async () => {
    assert.match((await sinkError(() => openSink('nats-object://jobs/j1', { env: {} }))).message, /no NATS connection/);
    assert.match((await sinkError(() => openSink('nats-object://bad.bucket/j1', { env: {} }))).message, /bucket "bad.bucket" may contain only/);
    assert.match((await sinkError(() => openSink('nats-object://', { env: {} }))).message, /names no bucket/);
  });

  test('s3 bucket names are checked before the SDK is used', async () => {
    assert.match((await sinkError(() => openSink('s3://Bad_Bucket/p', { env: {} }))).message, /not a valid S3 bucket name/);
    assert.match((await sinkError(() => openSink('s3://bucket/a//b', { env: {} }))).message, /empty, "\." or "\.\." segment/);
  });

  test('bucket and prefix are split, trailing slashes dropped', () => {
    assert.deepEqual(splitBucketPath('u', 'b'), { bucket: 'b', prefix: '' });
    assert.deepEqual(splitBucketPath('u', 'b/jobs/j1/'), { bucket: 'b', prefix: 'jobs/j1' });
  });

  test('S3 settings come from the environment with us-east-1 and virtual-host style by default', () => {
    assert.deepEqual(s3SettingsFromEnv({}), { endpoint: undefined, region: 'us-east-1', forcePathStyle: false, credentials: undefined });
    const s = s3SettingsFromEnv({ ORRERY_S3_ENDPOINT: 'http://minio:9000', AWS_ENDPOINT_URL: 'http://other', AWS_REGION: 'eu-west-1', ORRERY_S3_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: 'AK', AWS_SECRET_ACCESS_KEY: 'SK' });
    assert.deepEqual(s, { endpoint: 'http://minio:9000', region: 'eu-west-1', forcePathStyle: true, credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' } });
    assert.equal(s3SettingsFromEnv({ AWS_ENDPOINT_URL: 'http://other' }).endpoint, 'http://other');
  });

  test('every sink error is an OrreryError mapped to FAILED_PRECONDITION', () => {
    const err = new SinkUnavailableError('s3://b/p', 'bucket b does not exist');
    assert.ok(err instanceof OrreryError);
    assert.equal(err.message, 'sink s3://b/p: bucket b does not exist');
    assert.equal(err.grpcStatus, status.FAILED_PRECONDITION);
  });
});

describe('contact sheet', () => {
  const image = (w: number, h: number, format: 'png' | 'webp' | 'jpeg', colour: string) => sharp({ create: { width: w, height: h, channels: 3, background: colour } })[format]().toBuffer();

  test('the layout fits N tiles in rows of at most `columns`, with a title band when titled', () => {
    const l = sheetLayout(10, { columns: 4, tileWidth: 100, tileHeight: 50, title: true });
    assert.deepEqual([l.columns, l.rows], [4, 3]);
    assert.equal(l.width, 8 + 4 * 108);
    assert.equal(l.height, 36 + 8 + 3 * (50 + 20 + 8));
    assert.deepEqual(tileOrigin(l, 5), { left: 8 + 108, top: 36 + 8 + 78 });
    const small = sheetLayout(2, { columns: 8, tileWidth: 100, tileHeight: 50, title: false });
    assert.deepEqual([small.columns, small.rows, small.width, small.height], [2, 1, 8 + 2 * 108, 8 + 78]);
  });

  test('a sheet of png, webp and jpeg tiles is a PNG of the layout size, tiles at the first image aspect', async () => {
    const tiles = [
      { label: 'a', image: await image(210, 90, 'png', '#ff0000') },
      { label: 'b', image: await image(210, 90, 'webp', '#00ff00') },
      { label: 'c', image: await image(210, 90, 'jpeg', '#0000ff') },
      { label: 'd', image: async () => image(210, 90, 'png', '#ffff00') },
      { label: 'e', image: await image(100, 100, 'png', '#ffffff') },
    ];
    const png = await contactSheet(tiles, { columns: 2, tileWidth: 105 });
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    const l = sheetLayout(5, { columns: 2, tileWidth: 105, tileHeight: 45, title: false });
    assert.deepEqual([meta.width, meta.height], [l.width, l.height]);
    // Each tile's centre has its image's colour (a loader tile too).
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const px = (i: number) => {
      const { left, top } = tileOrigin(l, i);
      const o = ((top + 22) * info.width + left + 52) * info.channels;
      return [data[o], data[o + 1], data[o + 2]];
    };
    assert.deepEqual(px(0), [255, 0, 0]);
    const near = (got: Array<number | undefined>, want: number[]) => assert.ok(got.every((v, k) => Math.abs(v! - want[k]!) <= 24), `${got.join()} ≈ ${want.join()}`);
    near(px(1), [0, 255, 0]); // webp and jpeg are lossy
    near(px(2), [0, 0, 255]);
    assert.deepEqual(px(3), [255, 255, 0]);
  });

  test('labels are drawn under each tile (visible light text on the dark background)', async () => {
    const tiles = [{ label: 'c03-a01-m00-s02-k4', image: await image(200, 100, 'png', '#000000') }];
    const withLabel = await contactSheet(tiles, { tileWidth: 200 });
    const noLabel = await contactSheet([{ label: '', image: tiles[0]!.image }], { tileWidth: 200 });
    const l = sheetLayout(1, { columns: 8, tileWidth: 200, tileHeight: 100, title: false });
    const band = async (png: Uint8Array) => {
      const { data } = await sharp(png).extract({ left: 8, top: 8 + 100, width: 200, height: 20 }).greyscale().raw().toBuffer({ resolveWithObject: true });
      return data.filter((v) => v > 128).length;
    };
    assert.equal((await sharp(withLabel).metadata()).height, l.height);
    assert.equal(await band(noLabel), 0);
    assert.ok((await band(withLabel)) > 40, 'the label band has light text pixels');
  });

  test('a tile that fails to decode or load becomes a grey placeholder, not an error', async () => {
    const tiles = [
      { label: 'good', image: await image(100, 50, 'png', '#ff0000') },
      { label: 'garbage', image: new Uint8Array([1, 2, 3, 4]) },
      { label: 'truncated', image: (await image(100, 50, 'png', '#00ff00')).subarray(0, 60) },
      { label: 'throws', image: async () => { throw new Error('gone'); } },
      { label: 'missing', image: async () => undefined },
    ];
    const png = await contactSheet(tiles, { columns: 5, tileWidth: 100 });
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const l = sheetLayout(5, { columns: 5, tileWidth: 100, tileHeight: 50, title: false });
    assert.deepEqual([info.width, info.height], [l.width, l.height]);
    for (let i = 1; i < 5; i++) {
      const { left, top } = tileOrigin(l, i);
      const o = ((top + 5) * info.width + left + 5) * info.channels;
      assert.deepEqual([data[o], data[o + 1], data[o + 2]], [96, 96, 96], `tile ${i} is a placeholder`);
    }
  });

  test('only the first maxTiles tiles are drawn; with nothing decodable tiles are 21:9', async () => {
    const tiles = Array.from({ length: 30 }, (_, i) => ({ label: `t${i}`, image: new Uint8Array([i]) }));
    const png = await contactSheet(tiles, { columns: 5, tileWidth: 210, maxTiles: 12, title: 'job j1' });
    const l = sheetLayout(12, { columns: 5, tileWidth: 210, tileHeight: 90, title: true });
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.width, meta.height], [l.width, l.height]);
  });

  test('drawn band by band: the title and the labels of every row are on the sheet', async () => {
    const tiles = await Promise.all(Array.from({ length: 7 }, async (_, i) => ({ label: `row-${Math.floor(i / 3)}-tile-${i}`, image: await image(200, 100, 'png', '#000000') })));
    const png = await contactSheet(tiles, { columns: 3, tileWidth: 200, title: 'job j2: 7 succeeded' });
    const l = sheetLayout(7, { columns: 3, tileWidth: 200, tileHeight: 100, title: true });
    const lightPixels = async (left: number, top: number, width: number, height: number) => {
      const { data } = await sharp(png).extract({ left, top, width, height }).greyscale().raw().toBuffer({ resolveWithObject: true });
      return data.filter((v) => v > 128).length;
    };
    assert.ok((await lightPixels(0, 0, l.width, l.titleHeight)) > 40, 'the title band has light text pixels');
    for (let i = 0; i < 7; i++) {
      const { left, top } = tileOrigin(l, i);
      assert.ok((await lightPixels(left, top + 100, 200, 20)) > 40, `tile ${i} has its label`);
      assert.equal(await lightPixels(left, top, 200, 100), 0, `tile ${i}'s black thumbnail has no text over it`);
    }
  });

  test('label text is XML-escaped and stripped of control characters', () => {
    assert.equal(escapeXml(`a<b>&"c'\u0001`), 'a&lt;b&gt;&amp;&quot;c&apos;');
  });
});
