/**
 * TLS on the router's gRPC port against real TLS handshakes (certificates made by openssl):
 * TLS clients get through, plaintext and wrongly trusting ones do not; mTLS required refuses
 * clients without a certificate or with one from another CA, optional lets them in; replaced
 * certificate files are taken by new connections without a restart, and a broken replacement
 * is refused while the previous certificate keeps serving.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { imageServiceClient } from '../../services/cli/client.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { ConfigError } from '../../services/common/errors.js';
import type { Router } from '../../services/router/router.js';
import { makeCa, makeCert, type PemPair } from '../support/tls-certs.js';
import { eventually, grpcError, metricSum } from './harness.js';
import { securedClient, startSecureRouter, unary } from './grpc-security-harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-tls-'));
let nats: NatsServerProcess;
let ca: PemPair;
let otherCa: PemPair;
let server: PemPair;
let client: PemPair;
let strangerClient: PemPair;

before(async () => {
  ca = makeCa(dir, 'ca');
  otherCa = makeCa(dir, 'other-ca');
  server = makeCert(dir, 'server', ca, { cn: 'router', use: 'server' });
  client = makeCert(dir, 'client', ca, { cn: 'batch-team', use: 'client' });
  strangerClient = makeCert(dir, 'stranger', otherCa, { cn: 'stranger', use: 'client' });
  nats = await NatsServerProcess.start();
});
after(async () => {
  await nats?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const fingerprint = (file: string): string => new X509Certificate(fs.readFileSync(file)).fingerprint256;

describe('gRPC TLS (router.tls, client_auth none)', () => {
  let router: Router;
  before(async () => {
    router = await startSecureRouter(nats, { tls: { cert_file: server.cert, key_file: server.key } });
  });
  after(() => router?.stop(1000));

  test('a client trusting the CA calls ListModels over TLS and sees the configured certificate', async () => {
    let seen = '';
    const c = securedClient(router.grpcAddress, { tlsCa: ca.cert }, (fp) => (seen = fp));
    try {
      const res = await unary<{ deployments: Array<{ name: string }> }>(c, 'ListModels');
      assert.deepEqual(res.deployments.map((d) => d.name), ['synthetic']);
      assert.equal(seen, fingerprint(server.cert));
    } finally {
      c.close();
    }
  });

  test('a plaintext client gets UNAVAILABLE, not an answer', async () => {
    const c = imageServiceClient(router.grpcAddress, { 'orrery.test.channel': 'plain' });
    try {
      const err = await grpcError(unary(c, 'ListModels'));
      assert.equal(err.code, grpc.status.UNAVAILABLE);
    } finally {
      c.close();
    }
  });

  test('a client trusting another CA refuses the certificate (UNAVAILABLE)', async () => {
    const c = securedClient(router.grpcAddress, { tlsCa: otherCa.cert });
    try {
      const err = await grpcError(unary(c, 'ListModels'));
      assert.equal(err.code, grpc.status.UNAVAILABLE);
      assert.match(err.details, /certificate|self[- ]signed|verify/i);
    } finally {
      c.close();
    }
  });

  test('the certificate expiry is exported as a metric', async () => {
    const notAfter = Date.parse(new X509Certificate(fs.readFileSync(server.cert)).validTo) / 1000;
    assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_tls_certificate_expiry_timestamp_seconds'), notAfter);
  });
});

describe('gRPC TLS files that cannot serve', () => {
  const refusedWith = async (tls: Record<string, unknown>, key: string, why: RegExp) => {
    await assert.rejects(startSecureRouter(nats, { tls }), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.key, key);
      assert.match(err.message, why);
      return true;
    });
  };

  test('a missing certificate file stops the router at start, naming the key and the file', async () => {
    await refusedWith({ cert_file: path.join(dir, 'absent.crt'), key_file: server.key }, 'router.tls.cert_file', /cannot read .*absent\.crt/);
  });

  test('a key that does not match the certificate stops the router at start', async () => {
    await refusedWith({ cert_file: server.cert, key_file: client.key }, 'router.tls', /do not make a TLS context: .*key values mismatch/);
  });
});

describe('gRPC mTLS (client_auth required)', () => {
  let router: Router;
  before(async () => {
    router = await startSecureRouter(nats, { tls: { cert_file: server.cert, key_file: server.key, client_ca_file: ca.cert, client_auth: 'required' } });
  });
  after(() => router?.stop(1000));

  test('a client without a certificate is refused', async () => {
    const c = securedClient(router.grpcAddress, { tlsCa: ca.cert });
    try {
      const err = await grpcError(unary(c, 'ListModels'));
      assert.equal(err.code, grpc.status.UNAVAILABLE);
    } finally {
      c.close();
    }
  });

  test('a client certificate from another CA is refused', async () => {
    const c = securedClient(router.grpcAddress, { tlsCa: ca.cert, tlsCert: strangerClient.cert, tlsKey: strangerClient.key });
    try {
      const err = await grpcError(unary(c, 'ListModels'));
      assert.equal(err.code, grpc.status.UNAVAILABLE);
    } finally {
      c.close();
    }
  });

  test('a client certificate from the CA gets through, and its common name labels the calls', async () => {
    const c = securedClient(router.grpcAddress, { tlsCa: ca.cert, tlsCert: client.cert, tlsKey: client.key });
    try {
      await unary(c, 'ListModels');
      await unary(c, 'ListModels');
      assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'batch-team', method: 'ListModels', code: 'OK' }), 2);
    } finally {
      c.close();
    }
  });
});

describe('gRPC mTLS (client_auth optional)', () => {
  let router: Router;
  before(async () => {
    router = await startSecureRouter(nats, { tls: { cert_file: server.cert, key_file: server.key, client_ca_file: ca.cert, client_auth: 'optional' } });
  });
  after(() => router?.stop(1000));

  test('a client without a certificate gets through as anonymous, one from another CA too (unverified counts as none), one from the CA under its name', async () => {
    const anonymous = securedClient(router.grpcAddress, { tlsCa: ca.cert });
    const stranger = securedClient(router.grpcAddress, { tlsCa: ca.cert, tlsCert: strangerClient.cert, tlsKey: strangerClient.key });
    const named = securedClient(router.grpcAddress, { tlsCa: ca.cert, tlsCert: client.cert, tlsKey: client.key });
    try {
      await unary(anonymous, 'ListModels');
      await unary(stranger, 'ListModels');
      await unary(named, 'ListModels');
      assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'anonymous', method: 'ListModels', code: 'OK' }), 2);
      assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'stranger', method: 'ListModels' }), 0);
      assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'batch-team', method: 'ListModels', code: 'OK' }), 1);
    } finally {
      anonymous.close();
      stranger.close();
      named.close();
    }
  });
});

describe('gRPC certificate rotation (files replaced, no restart)', () => {
  let router: Router;
  const live: PemPair = { cert: path.join(dir, 'live.crt'), key: path.join(dir, 'live.key') };
  before(async () => {
    fs.copyFileSync(server.cert, live.cert);
    fs.copyFileSync(server.key, live.key);
    router = await startSecureRouter(nats, { tls: { cert_file: live.cert, key_file: live.key, reload_interval_s: 0.1 } });
  });
  after(() => router?.stop(1000));

  test('new connections get the new certificate; an open connection keeps working', async () => {
    const before = securedClient(router.grpcAddress, { tlsCa: ca.cert });
    try {
      await unary(before, 'ListModels');
      const renewed = makeCert(dir, 'renewed', ca, { cn: 'router-renewed', use: 'server' });
      // The order cert-manager and a careful operator use: the key first, then the certificate.
      fs.copyFileSync(renewed.key, live.key);
      fs.copyFileSync(renewed.cert, live.cert);
      await eventually(async () => {
        let seen = '';
        const c = securedClient(router.grpcAddress, { tlsCa: ca.cert }, (fp) => (seen = fp));
        try {
          await unary(c, 'ListModels');
        } finally {
          c.close();
        }
        return seen === fingerprint(renewed.cert);
      }, 30_000, 'a new connection to present the renewed certificate');
      await unary(before, 'ListModels');
      assert.ok(await metricSum(router.metricsUrl, 'orrery_grpc_tls_reloads_total', { result: 'loaded' }) >= 2, 'the first load and the rotation');
    } finally {
      before.close();
    }
  });

  test('a certificate that does not match its key is refused; the previous one keeps serving', async () => {
    const current = fingerprint(live.cert);
    const rejectedBefore = await metricSum(router.metricsUrl, 'orrery_grpc_tls_reloads_total', { result: 'rejected' });
    const mismatched = makeCert(dir, 'mismatched', ca, { cn: 'router-mismatched', use: 'server' });
    fs.copyFileSync(mismatched.cert, live.cert);
    await eventually(async () => (await metricSum(router.metricsUrl, 'orrery_grpc_tls_reloads_total', { result: 'rejected' })) > rejectedBefore, 30_000, 'the mismatched pair to be refused');
    let seen = '';
    const c = securedClient(router.grpcAddress, { tlsCa: ca.cert }, (fp) => (seen = fp));
    try {
      await unary(c, 'ListModels');
      assert.equal(seen, current, 'the previous certificate is still presented');
    } finally {
      c.close();
    }
  });

  test('a CA that does not sign the new certificate loses it: clients must trust the new CA', async () => {
    const newCa = makeCa(dir, 'new-ca');
    const fromNewCa = makeCert(dir, 'from-new-ca', newCa, { cn: 'router-new-ca', use: 'server' });
    fs.copyFileSync(fromNewCa.key, live.key);
    fs.copyFileSync(fromNewCa.cert, live.cert);
    await eventually(async () => {
      const c = securedClient(router.grpcAddress, { tlsCa: newCa.cert });
      try {
        await unary(c, 'ListModels');
        return true;
      } catch {
        return false;
      } finally {
        c.close();
      }
    }, 30_000, 'a client trusting the new CA to get through');
    const old = securedClient(router.grpcAddress, { tlsCa: ca.cert });
    try {
      assert.equal((await grpcError(unary(old, 'ListModels'))).code, grpc.status.UNAVAILABLE);
    } finally {
      old.close();
    }
  });
});
