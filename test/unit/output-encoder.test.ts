/**
 * The one output encoder: every format carries the parameters text where image tools read it, and
 * decodes to the pixels it was given (PNG exactly, JPEG/WebP closely); same input, same bytes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { ConfigError } from '../../services/common/errors.js';
import { readExifUserComment, readXmpDescription, xmpWithDescription } from '../../services/stages/metadata-text.js';
import {
  INTERMEDIATE_PNG, JPEG_QUALITY, WEBP_QUALITY, compilePngOptions, encodeOutput, rawRgb, readParameters,
} from '../../services/stages/output-encoder.js';
import { readTextChunk } from '../../services/stages/png-parameters.js';

const W = 96;
const H = 40;
/** A smooth gradient with a bright disc: lossy codecs stay close to it. */
const PIXELS = (() => {
  const px = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const disc = (x - 48) ** 2 + (y - 20) ** 2 < 144;
      px.set(disc ? [230, 200, 120] : [Math.round((x / W) * 60), 20, Math.round((y / H) * 90)], (y * W + x) * 3);
    }
  }
  return px;
})();

const TEXT = 'a ringed planet, "gold" & <blue>\nNegative prompt: blurry\nSteps: 30, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 96x40, Model: tiny-sdxl, Pipeline: planet-ultrawide';
const UNICODE_TEXT = 'planète glacée 星\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 96x40, Model: m';
const PNG = compilePngOptions({});

const encode = (format: 'png' | 'webp' | 'jpeg', parameters = TEXT, intermediate = false) =>
  encodeOutput(rawRgb(PIXELS, W, H), { format, intermediate, png: PNG, parameters });

async function meanAbsDiff(data: Uint8Array): Promise<number> {
  const { data: px, info } = await sharp(data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [W, H, 3]);
  let sum = 0;
  for (let i = 0; i < px.length; i++) sum += Math.abs(px[i]! - PIXELS[i]!);
  return sum / px.length;
}

describe('output encoder', () => {
  test('writes PNG with the parameters text in a tEXt chunk and the exact pixels', async () => {
    const out = await encode('png');
    assert.deepEqual([out.mimeType, out.width, out.height], ['image/png', W, H]);
    assert.equal(readTextChunk(out.data, 'parameters'), TEXT);
    assert.equal(await readParameters(out.data), TEXT);
    assert.equal(await meanAbsDiff(out.data), 0);
  });

  test('writes text outside Latin-1 into a PNG iTXt chunk that reads back exactly', async () => {
    const out = await encode('png', UNICODE_TEXT);
    assert.equal(Buffer.from(out.data).includes('iTXt'), true);
    assert.equal(await readParameters(out.data), UNICODE_TEXT);
  });

  for (const format of ['jpeg', 'webp'] as const) {
    test(`writes ${format} with the text in EXIF UserComment and XMP, decoding close to the pixels`, async () => {
      const out = await encode(format);
      const meta = await sharp(out.data).metadata();
      assert.deepEqual([meta.format, out.mimeType, out.width, out.height], [format, `image/${format}`, W, H]);
      assert.equal(readExifUserComment(meta.exif!), TEXT, 'EXIF UserComment, what AUTOMATIC1111 reads');
      assert.equal(readXmpDescription(meta.xmpAsString ?? meta.xmp!.toString('utf8')), TEXT);
      assert.equal(await readParameters(out.data), TEXT);
      assert.ok(await meanAbsDiff(out.data) < 3, 'decodes close to the input at quality 92');
    });

    test(`keeps non-ASCII text exact in ${format} XMP while EXIF gets libvips' ASCII transliteration`, async () => {
      const out = await encode(format, UNICODE_TEXT);
      const meta = await sharp(out.data).metadata();
      assert.equal(await readParameters(out.data), UNICODE_TEXT);
      assert.match(readExifUserComment(meta.exif!)!, /^plan.te glac.e \?\nSteps: 4/);
    });
  }

  test('gives the same bytes for the same pixels and text in every format', async () => {
    for (const format of ['png', 'webp', 'jpeg'] as const) {
      const [a, b] = await Promise.all([encode(format), encode(format)]);
      assert.ok(Buffer.from(a.data).equals(Buffer.from(b.data)), format);
    }
  });

  test('stores an intermediate image as an unfiltered level-0 PNG with its text, whatever format the client asked for', async () => {
    const out = await encode('jpeg', TEXT, true);
    assert.equal(out.mimeType, 'image/png');
    assert.equal(readTextChunk(out.data, 'parameters'), TEXT);
    const stored = await sharp(PIXELS, { raw: { width: W, height: H, channels: 3 } }).png({ compressionLevel: INTERMEDIATE_PNG.compressionLevel, adaptiveFiltering: false }).toBuffer();
    assert.equal(out.data.byteLength, stored.byteLength + 12 + 'parameters'.length + 1 + TEXT.length);
  });

  test('writes no metadata when the parameters text is empty', async () => {
    for (const format of ['png', 'webp', 'jpeg'] as const) assert.equal(await readParameters((await encode(format, '')).data), undefined, format);
  });

  test('uses one set of lossy qualities: 92 for JPEG (mozjpeg) and WebP', () => {
    assert.deepEqual([JPEG_QUALITY, WEBP_QUALITY], [92, 92]);
  });

  test('reads no parameters from bytes that are not an image or carry none', async () => {
    assert.equal(await readParameters(Buffer.from('hello, not an image')), undefined);
    assert.equal(await readParameters(undefined), undefined);
    assert.equal(await readParameters(await sharp(PIXELS, { raw: { width: W, height: H, channels: 3 } }).jpeg().toBuffer()), undefined);
  });

  test('escapes XML in the XMP packet and reads it back', () => {
    const text = 'a & b < c > d "e"\r\nf';
    assert.equal(readXmpDescription(xmpWithDescription(text)), text);
  });

  test('compiles the PNG options with defaults and refuses bad values naming the key', () => {
    assert.deepEqual({ ...compilePngOptions({}) }, { compressionLevel: 3, adaptiveFiltering: true });
    assert.deepEqual({ ...compilePngOptions({ png_compression_level: 9, png_adaptive_filtering: false }) }, { compressionLevel: 9, adaptiveFiltering: false });
    for (const [options, key] of [[{ png_compression_level: 10 }, 'png_compression_level'], [{ png_compression_level: 1.5 }, 'png_compression_level'], [{ png_adaptive_filtering: 'yes' }, 'png_adaptive_filtering']] as const) {
      assert.throws(() => compilePngOptions(options), (err: unknown) => err instanceof ConfigError && err.key === `options.${key}` && err.code === 'ORRERY_ERR_CONFIG');
    }
  });
});
