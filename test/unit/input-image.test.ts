/**
 * Hostile and unusual input images through both decoders that take client bytes: img2img's
 * imageToPixels (sdxl/vae.ts) and the upscaler's decodeImage (upscaler-image.ts), both on
 * input-image.ts's rules. Every image is made in code (test/support/hostile-images.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { InvalidArgumentError } from '../../services/common/errors.js';
import { imageToPixels } from '../../services/stages/sdxl/vae.js';
import { decodeImage } from '../../services/stages/upscaler-image.js';
import { animatedWebp, exifRotatedJpeg, hugeDeclaredJpeg, hugeDeclaredPng, solid, truncated, unusualImages, zlibBombPng } from '../support/hostile-images.js';

const UPSCALER_MAX_PIXELS = 4096 * 4096;

/** Both decoders, reduced to "RGB bytes of a w×h image" (imageToPixels' [−1, 1] floats mapped back to 0..255). */
const DECODERS = {
  imageToPixels: async (bytes: Uint8Array, w: number, h: number) => {
    const px = await imageToPixels(bytes, w, h);
    const plane = w * h;
    const rgb = new Uint8Array(3 * plane);
    for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) rgb[3 * p + c] = Math.round(((px[c * plane + p]! + 1) / 2) * 255);
    return { data: rgb, width: w, height: h };
  },
  decodeImage: async (bytes: Uint8Array) => decodeImage(bytes, UPSCALER_MAX_PIXELS),
};

async function rejects(p: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `${String(err)}`);
    assert.equal(err.field, 'init_image');
    assert.equal(err.code, 'ORRERY_ERR_INVALID_ARGUMENT');
    assert.match(err.message, why);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  });
}

const pixel = (img: { data: Uint8Array; width: number }, x: number, y: number): number[] => Array.from(img.data.subarray(3 * (y * img.width + x), 3 * (y * img.width + x) + 3));
const near = (got: number[], want: number[], tol: number) => got.every((v, i) => Math.abs(v - want[i]!) <= tol);

for (const [name, decode] of Object.entries(DECODERS)) {
  describe(`${name}: hostile input images`, () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      test(`refuses a truncated ${format} with INVALID_ARGUMENT on init_image saying it is truncated or corrupt`, async () => {
        const whole = await solid(64, 48, '#ff8000')[format]().toBuffer();
        await rejects(decode(truncated(whole, 0.6), 32, 32), /^init_image: truncated or corrupt/);
      });
    }

    test('refuses a PNG declaring 100,000 × 100,000 pixels from its header, naming the size and the limit', async () => {
      await rejects(decode(hugeDeclaredPng(), 32, 32), /too large: png declares 100000x100000 = 10000000000 pixels, above this stage's limit/);
    });

    test('refuses a JPEG declaring 60,000 × 60,000 pixels from its header', async () => {
      await rejects(decode(await hugeDeclaredJpeg(), 32, 32), /too large: jpeg declares 60000x60000/);
    });

    test('decodes a 64×64 PNG whose zlib stream inflates to 64 MB to its declared size only, without holding the stream', async () => {
      const bomb = await zlibBombPng(64 * 1024 * 1024);
      const img = await decode(bomb, 64, 64);
      assert.equal(img.data.length, 64 * 64 * 3);
      // Zero filter bytes and zero samples: black; what matters is that nothing past 64×64 was decoded.
      assert.deepEqual(pixel(img, 10, 10), [0, 0, 0]);
    });

    test('refuses formats other than PNG, JPEG and WebP (a GIF and an SVG) by name', async () => {
      await rejects(decode(await solid(8, 8, '#ff0000').gif().toBuffer(), 8, 8), /gif images are not accepted \(use png, jpeg, webp\)/);
      await rejects(decode(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'), 8, 8), /svg images are not accepted/);
    });

    test('refuses bytes that are no image at all, saying so', async () => {
      await rejects(decode(Buffer.from('definitely not an image'), 8, 8), /not an image: 23 bytes/);
    });
  });

  describe(`${name}: unusual but valid input images become 8-bit sRGB`, () => {
    const cases: Array<[string, number[], number]> = [
      ['png 16-bit', [255, 128, 0], 1],
      ['jpeg CMYK', [255, 128, 0], 12],
      ['png greyscale', [128, 128, 128], 1],
      // Fully transparent orange: composited onto white, never the hidden colour.
      ['png alpha', [255, 255, 255], 0],
    ];
    for (const [kind, want, tol] of cases) {
      test(`decodes a ${kind} image to ${JSON.stringify(want)} (±${tol})`, async () => {
        const bytes = (await unusualImages())[kind]!;
        const img = await decode(bytes, 32, 24);
        assert.equal(img.data.length, 32 * 24 * 3);
        for (const [x, y] of [[0, 0], [31, 23], [16, 12]] as const) assert.ok(near(pixel(img, x, y), want, tol), `${kind} at ${x},${y}: ${pixel(img, x, y).join(',')}`);
      });
    }

    test('decodes half-transparent pixels as their colour over white', async () => {
      const bytes = await solid(8, 8, 'rgba(0, 0, 255, 0.5)', 4).png().toBuffer();
      const img = await decode(bytes, 8, 8);
      assert.ok(near(pixel(img, 4, 4), [127, 127, 255], 2), `${pixel(img, 4, 4).join(',')}`);
    });

    test('decodes the first frame of an animated WebP (red), not the second (blue)', async () => {
      const img = await decode(await animatedWebp(), 16, 16);
      assert.equal(img.height, 16);
      assert.ok(near(pixel(img, 8, 8), [255, 0, 0], 2), `${pixel(img, 8, 8).join(',')}`);
    });

    test('applies EXIF orientation 6: the stored left (red) half ends on top', async () => {
      const bytes = await exifRotatedJpeg();
      assert.equal((await sharp(bytes).metadata()).orientation, 6);
      const img = await decode(bytes, 16, 32);
      assert.deepEqual([img.width, img.height], [16, 32]);
      assert.ok(near(pixel(img, 14, 2), [255, 0, 0], 24), `top right ${pixel(img, 14, 2).join(',')} is red`);
      assert.ok(near(pixel(img, 1, 29), [0, 0, 255], 24), `bottom left ${pixel(img, 1, 29).join(',')} is blue`);
    });
  });
}
