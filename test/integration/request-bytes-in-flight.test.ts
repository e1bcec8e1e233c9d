/**
 * Many concurrent large requests against a real router with a small cap on request bytes in
 * flight (router.max_request_bytes_in_flight): the router holds at most the cap and answers the
 * rest RESOURCE_EXHAUSTED naming the limit, then serves normally once the calls end.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { generate } from '../../services/cli/client.js';
import { REQUEST_OVERHEAD_BYTES } from '../../services/router/request-bytes-budget.js';
import { startCluster, testConfig, type TestCluster } from './harness.js';

const MiB = 1024 * 1024;
const CAP_BYTES = 24 * MiB;
const IMAGE_BYTES = 8 * MiB;
const CONCURRENT = 12;

/** A request body the router's validation accepts: PNG magic bytes, then padding up to `bytes`. */
function largeInitImage(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b);
  return b;
}

describe('cap on request bytes in flight', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig(
      // Each batch takes 3 s, so every concurrent request is still held when the last one arrives.
      { synthetic: { stage: 'synthetic', models: ['syn-a'], max_batch_size: 1, max_ongoing_batches: 1, options: { fixed_ms: 3000 } } },
      { router: { replica_timeout_intervals: 10, max_request_bytes_in_flight: CAP_BYTES } },
    ));
  });
  after(() => c?.stop());

  test('refuses with RESOURCE_EXHAUSTED, naming the limit, the requests that would take the router past its cap', async () => {
    const image = largeInitImage(IMAGE_BYTES);
    const results = await Promise.allSettled(
      Array.from({ length: CONCURRENT }, (_, i) => generate(c.client, { prompt: 'a planet', model_id: 'syn-a', seed: String(i), init_image: image }, 120_000)),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as ServiceError] : []));
    for (const err of refused) {
      assert.equal(err.code, status.RESOURCE_EXHAUSTED, err.details);
      assert.match(err.details, new RegExp(`^init_image: .*router\\.max_request_bytes_in_flight=${CAP_BYTES}`));
      assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_REQUEST_BYTES_IN_FLIGHT');
    }
    const fit = Math.floor(CAP_BYTES / (IMAGE_BYTES + REQUEST_OVERHEAD_BYTES));
    assert.ok(ok >= 1 && ok <= fit + 1, `${ok} requests answered OK; the cap holds ${fit} at once`);
    assert.ok(refused.length >= CONCURRENT - fit - 1, `${refused.length} of ${CONCURRENT} refused`);
  });

  test('serves large requests again once the earlier calls have ended (the bytes are released)', async () => {
    const image = largeInitImage(IMAGE_BYTES);
    const res = await Promise.all([0, 1].map((i) => generate(c.client, { prompt: 'a planet', model_id: 'syn-a', seed: String(100 + i), init_image: image }, 120_000)));
    assert.deepEqual(res.map((r) => r.images.length), [1, 1]);
  });

  test('small requests without an init image are charged only the fixed overhead and keep flowing', async () => {
    const res = await Promise.all(Array.from({ length: 4 }, (_, i) => generate(c.client, { prompt: 'a planet', model_id: 'syn-a', seed: String(200 + i) }, 120_000)));
    assert.equal(res.length, 4);
  });
});
