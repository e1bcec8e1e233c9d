/** The router's cap on request bytes in flight: pure accounting, and its config key. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, ERROR_CODES, RequestBytesInFlightError } from '../../services/common/errors.js';
import { compileConfig } from '../../services/common/config.js';
import { REQUEST_OVERHEAD_BYTES, RequestBytesBudget, type BudgetDecision } from '../../services/router/request-bytes-budget.js';
import { status } from '@grpc/grpc-js';

function admitted(d: BudgetDecision): () => void {
  assert.equal(d.kind, 'admit');
  return d.release;
}

describe('RequestBytesBudget', () => {
  test('admits requests while their bytes fit and refuses the one that would go past the limit', () => {
    const b = new RequestBytesBudget(100);
    admitted(b.tryAcquire(40));
    admitted(b.tryAcquire(60));
    const d = b.tryAcquire(1);
    assert.deepEqual(d, { kind: 'reject', requestBytes: 1, inFlightBytes: 100, limitBytes: 100 });
    assert.equal(b.inFlightBytes, 100);
    assert.equal(b.inFlightRequests, 2);
  });

  test('gives the bytes back on release, so the next request fits again', () => {
    const b = new RequestBytesBudget(100);
    const release = admitted(b.tryAcquire(80));
    assert.equal(b.tryAcquire(30).kind, 'reject');
    release();
    assert.equal(b.inFlightBytes, 0);
    admitted(b.tryAcquire(30));
    assert.equal(b.inFlightBytes, 30);
  });

  test('a second release of the same lease changes nothing', () => {
    const b = new RequestBytesBudget(100);
    const first = admitted(b.tryAcquire(50));
    admitted(b.tryAcquire(20));
    first();
    first();
    assert.equal(b.inFlightBytes, 20);
    assert.equal(b.inFlightRequests, 1);
  });

  test('admits one request larger than the whole budget when nothing else is in flight, and nothing beside it', () => {
    const b = new RequestBytesBudget(100);
    const release = admitted(b.tryAcquire(500));
    assert.equal(b.tryAcquire(1).kind, 'reject');
    release();
    assert.equal(b.tryAcquire(500).kind, 'admit');
  });

  test('charges a request its init_image bytes plus the fixed overhead', () => {
    assert.equal(RequestBytesBudget.chargeFor(0), REQUEST_OVERHEAD_BYTES);
    assert.equal(RequestBytesBudget.chargeFor(1_000_000), 1_000_000 + REQUEST_OVERHEAD_BYTES);
  });

  test('refuses a limit that is not a positive integer', () => {
    assert.throws(() => new RequestBytesBudget(0), RangeError);
    assert.throws(() => new RequestBytesBudget(Number.NaN), RangeError);
  });

  test('its refusal is RESOURCE_EXHAUSTED with a stable code, naming init_image and the config key with the limit', () => {
    const err = new RequestBytesInFlightError(10, 95, 100);
    assert.equal(err.code, 'ORRERY_ERR_REQUEST_BYTES_IN_FLIGHT');
    assert.equal(err.grpcStatus, status.RESOURCE_EXHAUSTED);
    assert.equal(ERROR_CODES.ORRERY_ERR_REQUEST_BYTES_IN_FLIGHT, status.RESOURCE_EXHAUSTED);
    assert.match(err.message, /^init_image: .*router\.max_request_bytes_in_flight=100/);
  });
});

describe('config router.max_request_bytes_in_flight', () => {
  const base = { deployments: { synthetic: { stage: 'synthetic', models: ['m'] } } };

  test('defaults to 512 MiB', () => {
    assert.equal(compileConfig(base).router.maxRequestBytesInFlight, 512 * 1024 * 1024);
  });

  test('reads a value in bytes', () => {
    assert.equal(compileConfig({ ...base, router: { max_request_bytes_in_flight: 64 * 1024 * 1024 } }).router.maxRequestBytesInFlight, 64 * 1024 * 1024);
  });

  test('rejects a value below 1 MiB or not an integer, naming the key', () => {
    for (const bad of [1000, -1, 2_000_000.5, '512MiB']) {
      assert.throws(() => compileConfig({ ...base, router: { max_request_bytes_in_flight: bad } }), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.key, 'router.max_request_bytes_in_flight');
        return true;
      });
    }
  });
});
