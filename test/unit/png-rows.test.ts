/**
 * The contact sheet's streaming PNG encoder: bands of rows in, a PNG that real sharp (libvips,
 * libpng) decodes to exactly those pixels out; wrong band sizes and row counts are refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { PngRows } from '../../services/router/jobs/sinks/png-rows.js';
import { lcg } from '../support/rng.js';

describe('PngRows', () => {
  test('bands of different heights decode to the same RGB pixels', async () => {
    const width = 37;
    const height = 23;
    const rand = lcg(7);
    const pixels = Buffer.from(Array.from({ length: width * height * 3 }, () => Math.floor(rand() * 256)));
    const png = new PngRows(width, height);
    let row = 0;
    for (const rows of [1, 5, 10, 7]) {
      await png.write(pixels.subarray(row * width * 3, (row + rows) * width * 3));
      row += rows;
    }
    const out = await png.end();
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels, info.format], [width, height, 3, 'raw']);
    assert.ok(data.equals(pixels), 'decoded pixels equal the written ones');
  });

  test('a band that is not whole rows, more rows than the height, or too few rows are errors', async () => {
    const png = new PngRows(4, 2);
    await assert.rejects(png.write(new Uint8Array(4 * 3 + 1)), /not whole rows of 12/);
    await png.write(new Uint8Array(12));
    await assert.rejects(png.write(new Uint8Array(24)), /3 rows written to a PNG 2 rows high/);
    await assert.rejects(png.end(), /1 of 2 rows written/);
  });
});
