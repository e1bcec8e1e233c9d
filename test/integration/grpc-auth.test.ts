/**
 * Bearer tokens on the router's gRPC port (over real TLS): no token or a wrong one gets
 * UNAUTHENTICATED, a token without the right gets PERMISSION_DENIED naming it, the right one gets
 * through; health answers without a token; reflection needs its right, or is gone when turned
 * off; a token removed from the file stops working without a restart; calls are counted under
 * the token's name.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { stringify as toYaml } from 'yaml';
import { healthClient, checkHealth } from '../../services/cli/client.js';
import { channelCredentials } from '../../services/cli/grpc-credentials.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import type { Router } from '../../services/router/router.js';
import { hashToken, newToken } from '../../services/router/token-file.js';
import { makeCa, makeCert, type PemPair } from '../support/tls-certs.js';
import { eventually, grpcError, metricSum } from './harness.js';
import { securedClient, startSecureRouter, tokenFile, unary } from './grpc-security-harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-auth-'));
const tokens = { generator: newToken(), jobsRead: newToken(), operator: newToken(), revoked: newToken() };
const tokensFile = path.join(dir, 'tokens.yaml');
let nats: NatsServerProcess;
let ca: PemPair;
let server: PemPair;

function writeTokens(entries: Array<{ name: string; token: string; rights: string[] }>): void {
  fs.writeFileSync(tokensFile, toYaml({ tokens: entries.map((e) => ({ name: e.name, sha256: hashToken(e.token), rights: e.rights })) }));
}

const ALL_ENTRIES = [
  { name: 'web-frontend', token: tokens.generator, rights: ['generate'] },
  { name: 'dashboard', token: tokens.jobsRead, rights: ['jobs.read'] },
  { name: 'operator', token: tokens.operator, rights: ['admin'] },
  { name: 'leaver', token: tokens.revoked, rights: ['generate', 'jobs'] },
];

before(async () => {
  ca = makeCa(dir, 'ca');
  server = makeCert(dir, 'server', ca, { cn: 'router', use: 'server' });
  writeTokens(ALL_ENTRIES);
  nats = await NatsServerProcess.start();
});
after(async () => {
  await nats?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A client of the router sending `token` (or none) the way the CLI does. */
const clientWith = (router: Router, token?: string) =>
  securedClient(router.grpcAddress, { tlsCa: ca.cert, ...(token ? { tokenFile: tokenFile(dir, hashToken(token).slice(0, 12), token) } : {}) });

/** Reflection's ListServices over its bidirectional stream: the service names, or the error. */
function listServices(router: Router, token?: string): Promise<string[]> {
  // The reflection service's own .proto, as @grpc/reflection ships it (grpcurl speaks the same).
  const proto = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true })) as unknown as { grpc: { reflection: { v1alpha: { ServerReflection: grpc.ServiceClientConstructor } } } };
  const Reflection = pkg.grpc.reflection.v1alpha.ServerReflection;
  const c = new Reflection(router.grpcAddress, channelCredentials({ tlsCa: ca.cert, ...(token ? { tokenFile: tokenFile(dir, 'reflection', token) } : {}) }));
  return new Promise<string[]>((resolve, reject) => {
    const call = (c as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, { list_services_response?: { service: Array<{ name: string }> } }> }).ServerReflectionInfo();
    call.on('data', (res: { list_services_response?: { service: Array<{ name: string }> } }) => {
      resolve(res.list_services_response?.service.map((s) => s.name) ?? []);
      call.end();
    });
    call.on('error', reject);
    call.write({ list_services: '' });
  }).finally(() => c.close());
}

describe('gRPC bearer tokens (router.auth)', () => {
  let router: Router;
  before(async () => {
    router = await startSecureRouter(nats, { tls: { cert_file: server.cert, key_file: server.key }, auth: { tokens_file: tokensFile, reload_interval_s: 0.1 } }, { jobs: { enabled: true } });
  });
  after(() => router?.stop(1000));

  test('a call without a token gets UNAUTHENTICATED saying how to send one', async () => {
    const c = clientWith(router);
    try {
      const err = await grpcError(unary(c, 'ListModels'));
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /needs a bearer token: send metadata "authorization: Bearer <token>"/);
    } finally {
      c.close();
    }
  });

  test('a wrong token gets UNAUTHENTICATED, and so does a header that is not Bearer', async () => {
    const c = clientWith(router, newToken());
    const plain = clientWith(router);
    try {
      const err = await grpcError(unary(c, 'ListModels'));
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /bearer token is not valid/);
      const basic = new grpc.Metadata();
      basic.set('authorization', `Basic ${Buffer.from(`user:${tokens.operator}`).toString('base64')}`);
      const err2 = await grpcError(unary(plain, 'ListModels', {}, basic));
      assert.equal(err2.code, grpc.status.UNAUTHENTICATED);
      assert.match(err2.details, /not "Bearer <token>"/);
    } finally {
      c.close();
      plain.close();
    }
  });

  test('a token without the right gets PERMISSION_DENIED naming the client, the right and the method', async () => {
    const c = clientWith(router, tokens.generator);
    try {
      const err = await grpcError(unary(c, 'GetJob', { job_id: 'j-nothing' }));
      assert.equal(err.code, grpc.status.PERMISSION_DENIED);
      assert.equal(err.details, 'client "web-frontend" lacks the right "jobs.read" that /orrery.v1.ImageService/GetJob needs (it has: generate)');
      const read = clientWith(router, tokens.jobsRead);
      try {
        const err2 = await grpcError(unary(read, 'CancelJob', { job_id: 'j-nothing' }));
        assert.equal(err2.code, grpc.status.PERMISSION_DENIED);
        assert.match(err2.details, /lacks the right "jobs" that \/orrery\.v1\.ImageService\/CancelJob needs/);
      } finally {
        read.close();
      }
    } finally {
      c.close();
    }
  });

  test('a token with the right reaches the handler', async () => {
    const gen = clientWith(router, tokens.generator);
    const read = clientWith(router, tokens.jobsRead);
    try {
      const models = await unary<{ deployments: Array<{ name: string }> }>(gen, 'ListModels');
      assert.deepEqual(models.deployments.map((d) => d.name), ['synthetic']);
      // The handler answers: NOT_FOUND for a job that does not exist, not an auth status.
      const err = await grpcError(unary(read, 'GetJob', { job_id: 'j-nothing' }));
      assert.equal(err.code, grpc.status.NOT_FOUND);
      // Generate gets past auth to validation (an empty model id on an empty pipeline is fine; steps is not).
      const invalid = await grpcError(unary(gen, 'Generate', { prompt: 'x', steps: -1 }));
      assert.notEqual(invalid.code, grpc.status.PERMISSION_DENIED);
      assert.notEqual(invalid.code, grpc.status.UNAUTHENTICATED);
    } finally {
      gen.close();
      read.close();
    }
  });

  test('health answers without a token', async () => {
    const h = healthClient(router.grpcAddress, channelCredentials({ tlsCa: ca.cert }));
    try {
      assert.equal(await checkHealth(h, ''), 'SERVING');
      assert.equal(await checkHealth(h, 'orrery.v1.ImageService'), 'SERVING');
    } finally {
      h.close();
    }
  });

  test('reflection needs the reflection right (admin has it)', async () => {
    const denied = await grpcError(listServices(router, tokens.generator));
    assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
    assert.match(denied.details, /lacks the right "reflection"/);
    const services = await listServices(router, tokens.operator);
    assert.ok(services.includes('orrery.v1.ImageService'), services.join(', '));
  });

  test('calls are counted under the token name, denials under unauthenticated or the name', async () => {
    const okBefore = await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'web-frontend', method: 'ListModels', code: 'OK' });
    const c = clientWith(router, tokens.generator);
    try {
      await unary(c, 'ListModels');
    } finally {
      c.close();
    }
    assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'web-frontend', method: 'ListModels', code: 'OK' }), okBefore + 1);
    assert.ok(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'unauthenticated', code: 'UNAUTHENTICATED' }) >= 3);
    // Once: the refused call is counted where it is refused, not again on its way out.
    assert.equal(await metricSum(router.metricsUrl, 'orrery_grpc_client_calls_total', { client: 'web-frontend', method: 'GetJob', code: 'PERMISSION_DENIED' }), 1);
  });

  test('a token removed from the file stops working without a restart; a broken file leaves the tokens in force', async () => {
    const c = clientWith(router, tokens.revoked);
    try {
      await unary(c, 'ListModels');
      writeTokens(ALL_ENTRIES.filter((e) => e.name !== 'leaver'));
      await eventually(() => unary(c, 'ListModels').then(() => false, (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED), 30_000, 'the revoked token to be refused');
      const rejectedBefore = await metricSum(router.metricsUrl, 'orrery_grpc_token_reloads_total', { result: 'rejected' });
      fs.writeFileSync(tokensFile, 'tokens: [{name: broken, sha256: not-hex, rights: [generate]}]\n');
      await eventually(async () => (await metricSum(router.metricsUrl, 'orrery_grpc_token_reloads_total', { result: 'rejected' })) > rejectedBefore, 30_000, 'the broken file to be refused');
      const gen = clientWith(router, tokens.generator);
      try {
        await unary(gen, 'ListModels');
      } finally {
        gen.close();
      }
    } finally {
      c.close();
      writeTokens(ALL_ENTRIES);
    }
  });
});

describe('router.reflection: false', () => {
  let router: Router;
  before(async () => {
    router = await startSecureRouter(nats, { tls: { cert_file: server.cert, key_file: server.key }, auth: { tokens_file: tokensFile }, reflection: false });
  });
  after(() => router?.stop(1000));

  test('hides the service list even from an admin token (UNIMPLEMENTED)', async () => {
    const err = await grpcError(listServices(router, tokens.operator));
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  });
});
