/**
 * The autoscaler's Kubernetes Lease decision (services/router/leadership/lease-policy.ts), pure
 * with an injected clock. The API calls around it (kubernetes-lease-lock.ts) are exercised
 * against a local HTTP server speaking the Lease API in test/integration/autoscaler-kubernetes.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideLease, type LeaseRecord } from '../../services/router/leadership/lease-policy.js';

const lease = (holder: string, version: string, durationMs = 15_000): LeaseRecord => ({ holder, durationMs, version });

describe('decideLease', () => {
  test('creates the Lease when there is none', () => {
    assert.deepEqual(decideLease(undefined, undefined, 'me', 0).decision, { kind: 'create' });
  });

  test('renews a Lease this router holds', () => {
    assert.deepEqual(decideLease(lease('me', '7'), undefined, 'me', 0).decision, { kind: 'renew' });
  });

  test('takes over a Lease nobody holds (released)', () => {
    assert.deepEqual(decideLease(lease('', '7'), undefined, 'me', 0).decision, { kind: 'take-over' });
  });

  test("waits a whole lease from when it first saw the holder's latest renewal, then takes over", () => {
    let r = decideLease(lease('other', '7'), undefined, 'me', 1000);
    assert.deepEqual(r.decision, { kind: 'wait', untilMs: 16_000 });
    r = decideLease(lease('other', '7'), r.seen, 'me', 15_999);
    assert.deepEqual(r.decision, { kind: 'wait', untilMs: 16_000 });
    r = decideLease(lease('other', '7'), r.seen, 'me', 16_000);
    assert.deepEqual(r.decision, { kind: 'take-over' });
  });

  test('a renewal (a new version) starts the wait again, whatever time the holder wrote in it', () => {
    let r = decideLease(lease('other', '7'), undefined, 'me', 0);
    r = decideLease(lease('other', '8'), r.seen, 'me', 14_000);
    assert.deepEqual(r.decision, { kind: 'wait', untilMs: 29_000 });
    assert.deepEqual(r.seen, { version: '8', atMs: 14_000 });
  });
});
