import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { SDXL_BUCKETS, nearestBucket, parseAspect } from '../../services/router/geometry.js';

/** The bucket for an aspect string, failing the test if the string does not parse. */
function bucketFor(aspect: string) {
  const ratio = parseAspect(aspect);
  assert.notEqual(ratio, undefined, `"${aspect}" should parse`);
  return nearestBucket(ratio!);
}

describe('nearestBucket', () => {
  test('maps 21:9 to 1536x640', () => assert.deepEqual(bucketFor('21:9'), { width: 1536, height: 640 }));
  test('maps 1:1 to 1024x1024', () => assert.deepEqual(bucketFor('1:1'), { width: 1024, height: 1024 }));
  test('maps 9:21 to 640x1536', () => assert.deepEqual(bucketFor('9:21'), { width: 640, height: 1536 }));
  test('maps 16:9 to 1344x768', () => assert.deepEqual(bucketFor('16:9'), { width: 1344, height: 768 }));
  test('maps 9:16 to 768x1344', () => assert.deepEqual(bucketFor('9:16'), { width: 768, height: 1344 }));
  test('maps 4:3 to 1152x896', () => assert.deepEqual(bucketFor('4:3'), { width: 1152, height: 896 }));
  test('maps 3:2 to 1216x832', () => assert.deepEqual(bucketFor('3:2'), { width: 1216, height: 832 }));
  test('maps extreme ratios to the most extreme bucket on their side', () => {
    assert.deepEqual(nearestBucket(8), { width: 1536, height: 640 });
    assert.deepEqual(nearestBucket(1 / 8), { width: 640, height: 1536 });
  });

  test('maps every bucket\'s own ratio to that bucket', () => {
    for (const b of SDXL_BUCKETS) assert.deepEqual(nearestBucket(b.width / b.height), b, `${b.width}x${b.height}`);
  });

  test('is symmetric: a ratio and its inverse map to transposed buckets', () => {
    for (const r of [1.1, 1.3, 1.5, 1.9, 2.2, 3]) {
      const a = nearestBucket(r);
      const b = nearestBucket(1 / r);
      assert.deepEqual(b, { width: a.height, height: a.width }, `ratio ${r}`);
    }
  });
});

describe('SDXL_BUCKETS', () => {
  test('holds the nine SDXL buckets: five landscape and four portrait transposes', () => {
    assert.equal(SDXL_BUCKETS.length, 9);
    const names = new Set(SDXL_BUCKETS.map((b) => `${b.width}x${b.height}`));
    assert.equal(names.size, 9);
    for (const n of ['1024x1024', '1152x896', '896x1152', '1216x832', '832x1216', '1344x768', '768x1344', '1536x640', '640x1536']) {
      assert.ok(names.has(n), n);
    }
  });

  test('has every side a multiple of 64', () => {
    for (const b of SDXL_BUCKETS) {
      assert.equal(b.width % 64, 0, `${b.width}x${b.height}`);
      assert.equal(b.height % 64, 0, `${b.width}x${b.height}`);
    }
  });

  test('keeps every bucket near one megapixel', () => {
    for (const b of SDXL_BUCKETS) {
      const px = b.width * b.height;
      assert.ok(px >= 0.9 * 1024 * 1024 && px <= 1.05 * 1024 * 1024, `${b.width}x${b.height} = ${px}`);
    }
  });
});

describe('parseAspect', () => {
  test('parses W:H into W/H', () => {
    assert.equal(parseAspect('21:9'), 21 / 9);
    assert.equal(parseAspect('1:1'), 1);
    assert.equal(parseAspect('9:16'), 9 / 16);
  });

  test('tolerates spaces around the numbers', () => assert.equal(parseAspect(' 16 : 9 '), 16 / 9));

  for (const aspect of ['', '21', '21:', ':9', '21x9', '21/9', '21:9:1', '0:1', '1:0', '-1:1', '1.5:1', 'a:b', '123456:1', '16:9px']) {
    test(`rejects the malformed aspect "${aspect}"`, () => assert.equal(parseAspect(aspect), undefined));
  }
});
