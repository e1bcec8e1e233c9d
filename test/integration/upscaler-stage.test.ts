/**
 * The upscaler stage through its public interface (loadStage('upscaler')), on models converted
 * from the real UpscalerJS weights into a temporary model repository, with real photographs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { ConfigError, InvalidArgumentError, ModelNotFoundError, OrreryError } from '../../services/common/errors.js';
import { GraphBuilder } from '../../services/models/onnx/onnx-model.js';
import { convertUpscaler } from '../../services/models/upscaler/convert-upscaler.js';
import { loadStage } from '../../services/stages/registry.js';
import type { RunContext, StageItem, StageOutput } from '../../services/stages/stage.js';
import type { UpscalerModel } from '../../services/stages/upscaler.js';
import { photoPath, upscalerPackageDir } from './upscaler-reference.js';
import { runContext, workItem } from '../support/work-items.js';

const stage = loadStage('upscaler');
let repo: string;

before(async () => {
  repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-upstage-'));
  // x2 / x3: the slim RDN (fast); medium-x2: a receptive field (~18 px) wider than the padding used below.
  await convertUpscaler({ from: upscalerPackageDir('esrgan-slim'), scale: 2, out: path.join(repo, 'x2', 'model.onnx') });
  await convertUpscaler({ from: upscalerPackageDir('esrgan-slim'), scale: 3, out: path.join(repo, 'x3', 'model.onnx') });
  await convertUpscaler({ from: upscalerPackageDir('esrgan-medium'), scale: 2, out: path.join(repo, 'medium-x2', 'model.onnx') });
});
after(() => fs.rmSync(repo, { recursive: true, force: true }));

async function load(modelId: string, options: Record<string, unknown> = {}): Promise<UpscalerModel> {
  return await stage.load(modelId, { options, modelRepository: repo }) as UpscalerModel;
}

function item(initImage: Uint8Array | undefined, extra: Partial<StageItem> = {}): StageItem {
  return workItem({ requestId: 'r', seed: 0n, prompt: '', guidanceScale: 1, width: 0, height: 0, strength: 0, ...(initImage ? { initImage } : {}), ...extra });
}

function context(opts: { progress?: (i: number, step: number, total: number) => void; batch?: AbortController; items?: AbortController[] } = {}): RunContext {
  return runContext(opts);
}

const photo = (name: string): Buffer => fs.readFileSync(photoPath(name));

async function raw(out: StageOutput | Error | undefined): Promise<{ data: Buffer; width: number; height: number }> {
  if (out === undefined) assert.fail('the stage returned no result for the item');
  if (out instanceof Error) throw out;
  const { data, info } = await sharp(out.data).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** A PNG whose IHDR (valid CRC) declares width × height, followed by a few bytes of IDAT. */
function pngDeclaring(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(4096))), chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('upscaler stage', () => {
  test('upscales each item by the model scale and encodes it in the item\'s format', async () => {
    const x2 = await load('x2');
    const x3 = await load('x3');
    try {
      const crop = await sharp(photo('chelsea')).extract({ left: 10, top: 20, width: 48, height: 40 }).jpeg().toBuffer();
      const [a, b] = await x2.run([item(photo('coffee')), item(crop, { outputFormat: 'webp' })], context());
      assert.ok(a !== undefined && !(a instanceof Error) && b !== undefined && !(b instanceof Error));
      assert.deepEqual([a.width, a.height, a.mimeType], [256, 256, 'image/png']);
      assert.deepEqual([b.width, b.height, b.mimeType], [96, 80, 'image/webp']);
      assert.deepEqual((await sharp(b.data).metadata()).format, 'webp');
      const [c] = await x3.run([item(crop, { outputFormat: 'jpeg', params: { scale: 3 } })], context());
      assert.ok(c !== undefined && !(c instanceof Error));
      assert.deepEqual([c.width, c.height, c.mimeType], [144, 120, 'image/jpeg']);
    } finally {
      await x2.dispose();
      await x3.dispose();
    }
  });

  test('a tiled result equals the whole-image result within 2/255 at every pixel', async (t) => {
    const whole = await load('medium-x2', { tile_size: 1024 });
    try {
      for (const [name, tileSize, padding] of [['rocket', 40, 8], ['astronaut-face', 32, 8], ['coffee', 64, 16]] as const) {
        const tiled = await load('medium-x2', { tile_size: tileSize, tile_padding: padding, max_tiles_per_run: 32 });
        const [w] = await whole.run([item(photo(name))], context());
        const [tl] = await tiled.run([item(photo(name))], context());
        assert.equal(whole.stats.tilesRun, 1);
        assert.ok(tiled.stats.tilesRun >= 4, `${tiled.stats.tilesRun} tiles`);
        const a = await raw(w);
        const b = await raw(tl);
        let maxDiff = 0;
        let equal = 0;
        for (let i = 0; i < a.data.length; i++) {
          maxDiff = Math.max(maxDiff, Math.abs(a.data[i]! - b.data[i]!));
          if (a.data[i] === b.data[i]) equal++;
        }
        t.diagnostic(`${name}, tile ${tileSize} padding ${padding}: ${tiled.stats.tilesRun} tiles, max |tiled - whole| ${maxDiff}/255, ${(100 * equal / a.data.length).toFixed(2)}% of values equal`);
        assert.ok(maxDiff <= 2, `${name}, tile ${tileSize} padding ${padding}: max difference ${maxDiff}/255`);
        whole.stats.tilesRun = 0;
        await tiled.dispose();
      }
    } finally {
      await whole.dispose();
    }
  });

  test('batches the tiles of several requests into one session run and reports progress per tile', async () => {
    // 128x128 with tile 64 + padding 16: 2x2 tiles of 96x96 per image.
    const model = await load('x2', { tile_size: 64, tile_padding: 16, max_tiles_per_run: 16 });
    const alone = await load('x2', { tile_size: 64, tile_padding: 16, max_tiles_per_run: 1 });
    try {
      const items = ['coffee', 'rocket', 'chelsea'].map((n) => item(photo(n)));
      const progress: string[] = [];
      const batched = await model.run(items, context({ progress: (i, s, n) => progress.push(`${i}:${s}/${n}`) }));
      assert.deepEqual(model.stats, { sessionRuns: 1, tilesRun: 12 });
      assert.deepEqual(progress.filter((p) => p.startsWith('1:')), ['1:1/4', '1:2/4', '1:3/4', '1:4/4']);
      assert.equal(progress.length, 12);

      const separate = await alone.run(items, context());
      assert.deepEqual(alone.stats, { sessionRuns: 12, tilesRun: 12 });
      for (let i = 0; i < items.length; i++) {
        const a = await raw(batched[i]);
        const b = await raw(separate[i]);
        const maxDiff = a.data.reduce((m, v, k) => Math.max(m, Math.abs(v - b.data[k]!)), 0);
        assert.ok(maxDiff <= 1, `item ${i}: batch composition changed pixels by ${maxDiff}`);
      }

      // Tiles of a different window size cannot share a tensor: a second run, still one per size.
      model.stats.sessionRuns = 0;
      const small = await sharp(photo('coffee')).extract({ left: 0, top: 0, width: 40, height: 30 }).png().toBuffer();
      await model.run([...items, item(small)], context());
      assert.equal(model.stats.sessionRuns, 2);
    } finally {
      await model.dispose();
      await alone.dispose();
    }
  });

  test('resizes after upscaling to the pipeline\'s size or the request\'s, and rejects a scale the model lacks', async () => {
    const model = await load('x2');
    try {
      const [a, b, c, d] = await model.run([
        item(photo('rocket'), { params: { scale: 2, resize: { width: 300, height: 120 } } }),
        item(photo('rocket'), { params: { resize: { width: 300, height: 120, fit: 'fill' } } }),
        item(photo('rocket'), { width: 210, height: 90, params: { resize: 'request' } }),
        item(photo('rocket'), { params: { scale: 4 } }),
      ], context());
      for (const [out, w, h] of [[a, 300, 120], [b, 300, 120], [c, 210, 90]] as const) {
        assert.ok(out !== undefined && !(out instanceof Error));
        assert.deepEqual([out.width, out.height], [w, h]);
        assert.deepEqual([(await sharp(out.data).metadata()).width, (await sharp(out.data).metadata()).height], [w, h]);
      }
      assert.ok(d instanceof ConfigError);
      assert.equal(d.code, 'ORRERY_ERR_CONFIG');
      assert.match(d.message, /params\.scale: the pipeline asks for 4x, model x2 upscales 2x/);
    } finally {
      await model.dispose();
    }
  });

  test('bad images fail alone with INVALID_ARGUMENT saying what is wrong, quickly and without allocating their pixels', async (t) => {
    const model = await load('x2');
    try {
      const png = photo('coffee');
      const rssBefore = process.memoryUsage().rss;
      const peakBefore = process.resourceUsage().maxRSS * 1024;
      const started = Date.now();
      const results = await model.run([
        item(Buffer.from('this is not an image, just text')),
        item(png.subarray(0, Math.floor(png.length / 2))),
        item(pngDeclaring(50000, 50000)),
        item(undefined),
        item(png),
      ], context());
      const elapsedMs = Date.now() - started;
      const expected = [/init_image: not an image/, /init_image: truncated or corrupt png data \(128x128 declared/, /init_image: too large: png declares 50000x50000 = 2500000000 pixels/, /init_image: required/];
      expected.forEach((re, i) => {
        const err = results[i];
        assert.ok(err instanceof InvalidArgumentError, `item ${i}: ${err instanceof Error ? err.message : 'not an error'}`);
        assert.equal(err.code, 'ORRERY_ERR_INVALID_ARGUMENT');
        assert.equal(err.field, 'init_image');
        assert.match(err.message, re);
      });
      assert.ok(!(results[4] instanceof Error), 'the good image in the same batch still succeeds');
      assert.ok(elapsedMs < 3000, `took ${elapsedMs} ms`);
      // 50000x50000 RGB would need 7.5 GB; the process grew by far less than one such plane.
      const grewBy = process.memoryUsage().rss - rssBefore;
      const peakGrewBy = process.resourceUsage().maxRSS * 1024 - peakBefore;
      t.diagnostic(`bad images: ${elapsedMs} ms, RSS +${(grewBy / 1e6).toFixed(0)} MB, peak RSS +${(peakGrewBy / 1e6).toFixed(0)} MB`);
      assert.ok(grewBy < 200e6 && peakGrewBy < 200e6, `RSS grew by ${(grewBy / 1e6).toFixed(0)} MB, peak by ${(peakGrewBy / 1e6).toFixed(0)} MB`);
    } finally {
      await model.dispose();
    }
  });

  test('cancellation: a cancelled item is dropped, a cancelled batch stops between tile runs', async () => {
    const model = await load('x2', { tile_size: 64, tile_padding: 16, max_tiles_per_run: 2 });
    try {
      const batch = new AbortController();
      await assert.rejects(
        model.run([item(photo('coffee'))], context({ batch, progress: () => batch.abort() })),
        (err: unknown) => err instanceof OrreryError && err.code === 'ORRERY_ERR_CANCELLED',
      );
      const runsBefore = model.stats.sessionRuns;
      const cancelled = new AbortController();
      cancelled.abort();
      const again = await model.run([item(photo('coffee')), item(photo('rocket'))], context({ items: [cancelled, new AbortController()] }));
      assert.ok(again[0] instanceof OrreryError && again[0].code === 'ORRERY_ERR_CANCELLED');
      assert.ok(!(again[1] instanceof Error));
      assert.equal(model.stats.sessionRuns - runsBefore, 2, 'only the live item\'s 4 tiles ran');
    } finally {
      await model.dispose();
    }
  });

  test('load validates the model id first, and refuses options and models that do not fit', async () => {
    await assert.rejects(stage.load('../x2', { options: {}, modelRepository: repo }), ModelNotFoundError);
    await assert.rejects(stage.load('nope', { options: {}, modelRepository: repo }), /no model file at .*nope\/model\.onnx/);
    await assert.rejects(load('x2', { tile_size: 32, tile_padding: 17 }), (err: unknown) => err instanceof ConfigError && /options\.tile_padding/.test(err.message));
    const plain = new GraphBuilder().addInput('input', 'FLOAT', [1]).addNode('Identity', ['input'], ['output']).addOutput('output', 'FLOAT', [1]);
    fs.mkdirSync(path.join(repo, 'plain'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'plain', 'model.onnx'), plain.toBytes(17));
    await assert.rejects(load('plain'), (err: unknown) => err instanceof OrreryError && err.code === 'ORRERY_ERR_MODEL_LOAD_FAILED' && /is not an upscaler model: metadata orrery\.kind/.test(err.message));
  });
});
