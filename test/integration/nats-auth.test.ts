/**
 * NATS authorization against a real nats-server: the router and the workers as separate users
 * with least-privilege permissions (serve-local --nats-auth, services/common/nats-permissions.ts)
 * serve end to end; a worker with a wrong password stops at once saying so; a worker user that
 * publishes on a router's subject or subscribes to the job stream is refused, and the refusal is
 * logged and counted; TLS to nats-server with a test CA and client certificates.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, errors, type NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { Registry } from 'prom-client';
import { stringify as toYaml } from 'yaml';
import { generate } from '../../services/cli/client.js';
import { writeLocalNatsAuth, type LocalNatsAuth } from '../../services/cli/local-nats-auth.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { NatsAuthError } from '../../services/common/errors.js';
import { natsAuthOptions } from '../../services/common/nats-auth-options.js';
import { connectNats } from '../../services/common/nats-connection.js';
import { inboxPrefix, natsAuthorizationBlock, type NatsRole } from '../../services/common/nats-permissions.js';
import { compileNatsSecurity, type NatsSecurityConfig } from '../../services/common/nats-security-config.js';
import { PayloadStore } from '../../services/common/payload-store.js';
import { subjects } from '../../services/common/subjects.js';
import { makeTestCa, type TestCa } from '../support/test-ca.js';
import { repoRoot } from '../support/repo-root.js';
import { eventually, metricSum, startCluster, testConfig, type TestCluster } from './harness.js';
import { grid, isFinal, rpc, waitJob } from './jobs-harness.js';

/** A logger whose JSON lines land in `lines`. */
function captureLogger(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

const security = (auth: LocalNatsAuth, role: NatsRole): NatsSecurityConfig =>
  compileNatsSecurity({ user: auth.env[role].ORRERY_NATS_USER, password_file: auth.env[role].ORRERY_NATS_PASSWORD_FILE }, undefined);

async function permissionErrors(registry: Registry, operation: string): Promise<number> {
  const m = await registry.getSingleMetricAsString('orrery_nats_permission_errors_total');
  return [...m.matchAll(new RegExp(`^orrery_nats_permission_errors_total\\{operation="${operation}"\\} (\\d+)`, 'gm'))].reduce((n, x) => n + Number(x[1]), 0);
}

describe('NATS authorization: a cluster with separate router and worker users', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster(testConfig(
      // Images of 64 KiB over an inline limit of 4 KiB: every reply goes through the payload
      // object store, which the worker user may use.
      { synthetic: { stage: 'synthetic', models: ['syn-a'], max_batch_size: 2, options: { fixed_ms: 5, image_bytes: 65_536, progress: true } } },
      { max_inline_payload_bytes: 4096 },
    ), { natsAuth: true });
  });
  after(() => c?.stop());

  test('serves Generate through the router and a worker, each with its own user, without a permission error', async () => {
    const res = await generate(c.client, { prompt: 'a planet', model_id: 'syn-a', num_images: 3, seed: '7' }, 60_000);
    assert.equal(res.images.length, 3);
    for (const img of res.images) assert.ok(img.data.length >= 65_536, `image of ${img.data.length} bytes`);
    assert.equal(await metricSum(c.cluster.metricsUrl, 'orrery_nats_permission_errors_total'), 0, 'router');
    for (const r of c.cluster.replicas) assert.equal(await metricSum(r.metricsUrl, 'orrery_nats_permission_errors_total'), 0, `replica ${r.id}`);
  });

  test('runs a bulk job into a nats-object:// sink under the router\'s user (work stream, job KV, object store) without a permission error', async () => {
    const job = await rpc(c.client, 'SubmitJob', { template: { pipeline: 'synthetic', model_id: 'syn-a', width: 64, height: 64 }, grid: grid(2, 2), output_uri: 'nats-object://auth_test/run1' });
    const done = await waitJob(c.client, job.job_id, isFinal, 60_000);
    assert.equal(done.state, 'completed');
    assert.equal(done.succeeded, '4');
    assert.equal(await metricSum(c.cluster.metricsUrl, 'orrery_nats_permission_errors_total'), 0, 'router');
    for (const r of c.cluster.replicas) assert.equal(await metricSum(r.metricsUrl, 'orrery_nats_permission_errors_total'), 0, `replica ${r.id}`);
  });

  test('refuses an anonymous connection with NatsAuthError saying authorization failed', async () => {
    const { log } = captureLogger();
    const started = Date.now();
    const err = await connectNats(c.cluster.natsUrl, 'anonymous', log).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof NatsAuthError, `got ${String(err)}`);
    assert.equal(err.code, 'ORRERY_ERR_NATS_AUTH');
    assert.match(err.message, /NATS authorization failed for an anonymous connection/);
    assert.ok(Date.now() - started < 30_000, 'fails instead of retrying forever');
  });
});

describe('NATS authorization: wrong credentials and permissions of the worker user', () => {
  let nats: NatsServerProcess;
  let auth: LocalNatsAuth;
  let dir: string;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-nats-auth-'));
    auth = writeLocalNatsAuth(dir, 'orrery');
    nats = await NatsServerProcess.start({ configFile: auth.serverConfigFile });
  });
  after(async () => {
    await nats?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a worker process with a wrong password exits at once, saying NATS authorization failed for its user, without printing the password', () => {
    const wrong = path.join(dir, 'wrong.password');
    fs.writeFileSync(wrong, 'not-the-password-4711\n');
    const config = path.join(dir, 'config.yaml');
    fs.writeFileSync(config, toYaml(testConfig({ synthetic: { stage: 'synthetic', models: ['syn-a'] } }, { model_repository: path.join(dir, 'models') })));
    const r = spawnSync(process.execPath, [path.join(repoRoot(), 'bin/orrery.js'), 'worker', '--deployment', 'synthetic', '--config', config, '--metrics-port', '0'], {
      encoding: 'utf8', timeout: 60_000,
      env: { ...process.env, ORRERY_NATS_URL: nats.url, ORRERY_NATS_USER: 'worker', ORRERY_NATS_PASSWORD_FILE: wrong },
    });
    assert.equal(r.status, 1, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
    assert.match(r.stderr, /orrery: NATS authorization failed for user "worker": the server at nats:\/\/127\.0\.0\.1:\d+ refused the credentials/);
    assert.doesNotMatch(r.stderr + r.stdout, /not-the-password-4711/);
  });

  test('a missing password file is a config error naming nats.auth.password_file', async () => {
    const { log } = captureLogger();
    const s = compileNatsSecurity({ user: 'worker', password_file: path.join(dir, 'absent') }, undefined);
    await assert.rejects(connectNats(nats.url, 'x', log, { security: s }), (e: Error) => /config nats\.auth\.password_file: cannot read .*absent: ENOENT/.test(e.message));
  });

  test('the worker user publishing on a router\'s subject or subscribing to the job stream is refused, logged and counted', async () => {
    const { log, lines } = captureLogger();
    const registry = new Registry();
    const nc = await connectNats(nats.url, 'rogue-worker', log, { security: security(auth, 'worker'), inboxPrefix: inboxPrefix('orrery', 'worker'), registry });
    try {
      const s = subjects('orrery');
      nc.publish(s.batch('another-replica'), new Uint8Array([1]));
      nc.publish(s.heartbeatRequest, new Uint8Array());
      const sub = nc.subscribe('orrery.jobs.work.>');
      const kv = nc.subscribe(`${inboxPrefix('orrery', 'router')}.>`);
      await nc.flush();
      await eventually(async () => (await permissionErrors(registry, 'publish')) === 2 && (await permissionErrors(registry, 'subscription')) === 2, 10_000, 'four refusals counted');
      await assert.rejects(sub.closed.then((e) => (e ? Promise.reject(e) : undefined)), /Permissions Violation for Subscription to "orrery\.jobs\.work\.>"/);
      await kv.closed.catch(() => undefined);
      const refused = lines.filter((l) => l.nats === 'permission').map((l) => `${String(l.operation)} ${String(l.subject)}`).sort();
      assert.deepEqual(refused, ['publish orrery.hb-request', 'publish orrery.replica.another-replica.batch', 'subscription _INBOX.orrery.router.>', 'subscription orrery.jobs.work.>']);
      for (const l of lines.filter((x) => x.nats === 'permission')) assert.equal(l.identity, 'user "worker"');
    } finally {
      await nc.close();
    }
  });

  test('a connected process rides out a password rotation: the server restarts with a new password, and the process reconnects once its password file has it', async () => {
    const { log, lines } = captureLogger();
    const router = await connectNats(nats.url, 'router', log, { security: security(auth, 'router'), inboxPrefix: inboxPrefix('orrery', 'router') });
    const worker = await connectNats(nats.url, 'worker', log, { security: security(auth, 'worker'), inboxPrefix: inboxPrefix('orrery', 'worker') });
    const workerFile = auth.env.worker.ORRERY_NATS_PASSWORD_FILE;
    const oldPassword = fs.readFileSync(workerFile, 'utf8');
    try {
      const routerPassword = fs.readFileSync(auth.env.router.ORRERY_NATS_PASSWORD_FILE, 'utf8');
      fs.writeFileSync(auth.serverConfigFile, natsAuthorizationBlock('orrery', { router: { user: 'router', password: routerPassword }, worker: { user: 'worker', password: 'rotated-0123456789' } }));
      await nats.restart();
      // The worker's file still holds the old password: refused, logged, and tried again.
      await eventually(() => lines.some((l) => l.nats === 'auth'), 20_000, 'a logged refusal');
      assert.ok(!worker.isClosed(), 'the connection keeps trying');
      fs.writeFileSync(workerFile, 'rotated-0123456789');
      const sub = router.subscribe('orrery.hb.*', { max: 1 });
      const got = (async () => {
        for await (const m of sub) return m.string();
        return '';
      })();
      await router.flush();
      await eventually(async () => {
        worker.publish('orrery.hb.synthetic', 'after rotation');
        await worker.flush().catch(() => undefined);
        return Promise.race([got, new Promise((r) => setTimeout(() => r(''), 200))]);
      }, 30_000, 'a heartbeat after the rotation');
      assert.equal(await got, 'after rotation');
      assert.ok(!lines.some((l) => JSON.stringify(l).includes('rotated-0123456789') || JSON.stringify(l).includes(oldPassword)), 'no password in the logs');
    } finally {
      await router.close();
      await worker.close();
    }
  });

  test('the worker user stores and takes payloads in the object store, and heartbeats, with no permission error', async () => {
    const { log } = captureLogger();
    const registry = new Registry();
    const nc: NatsConnection = await connectNats(nats.url, 'worker', log, { security: security(auth, 'worker'), inboxPrefix: inboxPrefix('orrery', 'worker'), registry });
    try {
      const store = new PayloadStore(nc, { bucket: subjects('orrery').payloadBucket, maxInlineBytes: 1024 });
      const bytes = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 31) % 251);
      const p = await store.put(bytes, 'test');
      assert.ok(p.objectName, 'stored, not inline');
      assert.deepEqual(await store.take(p), bytes);
      nc.publish(subjects('orrery').heartbeat('synthetic'), new Uint8Array([1]));
      await nc.flush();
      assert.equal((await permissionErrors(registry, 'publish')) + (await permissionErrors(registry, 'subscription')), 0);
    } finally {
      await nc.close();
    }
  });

  test('the router user acknowledges a worker\'s reply (allow_responses); a reply to a router nobody runs is answered "no responders"', async () => {
    const { log } = captureLogger();
    const workerRegistry = new Registry();
    const routerRegistry = new Registry();
    const worker = await connectNats(nats.url, 'worker', log, { security: security(auth, 'worker'), inboxPrefix: inboxPrefix('orrery', 'worker'), registry: workerRegistry });
    const router = await connectNats(nats.url, 'router', log, { security: security(auth, 'router'), inboxPrefix: inboxPrefix('orrery', 'router'), registry: routerRegistry });
    try {
      router.subscribe(`${subjects('orrery').routerInbox('r1')}.>`, { callback: (_err, msg) => { msg.respond(); } });
      await router.flush();
      const ack = await worker.request(subjects('orrery').batchReply('r1', 'b1'), new Uint8Array([1]), { timeout: 5000 });
      assert.equal(ack.data.length, 0);
      await assert.rejects(worker.request(subjects('orrery').batchReply('gone', 'b2'), new Uint8Array([1]), { timeout: 5000 }), (err: unknown) => err instanceof errors.RequestError && err.isNoResponders());
      for (const r of [workerRegistry, routerRegistry]) assert.equal((await permissionErrors(r, 'publish')) + (await permissionErrors(r, 'subscription')), 0);
    } finally {
      await worker.close();
      await router.close();
    }
  });
});

describe('NATS over TLS with a test CA', () => {
  let ca: TestCa;
  let nats: NatsServerProcess;
  let auth: LocalNatsAuth;
  before(async () => {
    ca = makeTestCa();
    auth = writeLocalNatsAuth(ca.dir, 'orrery');
    const conf = path.join(ca.dir, 'tls.conf');
    fs.writeFileSync(conf, `include ${JSON.stringify(path.basename(auth.serverConfigFile))}\ntls {\n  cert_file: ${JSON.stringify(ca.serverCertFile)}\n  key_file: ${JSON.stringify(ca.serverKeyFile)}\n  ca_file: ${JSON.stringify(ca.caFile)}\n  verify: true\n}\n`);
    nats = await NatsServerProcess.start({ configFile: conf });
  });
  after(async () => {
    await nats?.close();
    ca?.remove();
  });

  test('connects with the CA and a client certificate, plus the router\'s password, and round-trips a message', async () => {
    const { log } = captureLogger();
    const s = compileNatsSecurity(
      { user: auth.env.router.ORRERY_NATS_USER, password_file: auth.env.router.ORRERY_NATS_PASSWORD_FILE },
      { ca_file: ca.caFile, cert_file: ca.clientCertFile, key_file: ca.clientKeyFile },
    );
    const nc = await connectNats(nats.url, 'tls-router', log, { security: s, inboxPrefix: inboxPrefix('orrery', 'router') });
    try {
      const sub = nc.subscribe('orrery.hb.*', { max: 1 });
      const got = (async () => {
        for await (const m of sub) return m.string();
        return '';
      })();
      nc.publish('orrery.hb-request', 'x');
      const w = await connectNats(nats.url, 'tls-worker', log, {
        security: compileNatsSecurity({ user: 'worker', password_file: auth.env.worker.ORRERY_NATS_PASSWORD_FILE }, { ca_file: ca.caFile, cert_file: ca.clientCertFile, key_file: ca.clientKeyFile }),
        inboxPrefix: inboxPrefix('orrery', 'worker'),
      });
      w.publish('orrery.hb.synthetic', 'beat');
      await w.flush();
      assert.equal(await got, 'beat');
      assert.ok(nc.info?.tls_required, 'the server speaks TLS');
      await w.close();
    } finally {
      await nc.close();
    }
  });

  test('is refused without a client certificate, and a missing CA file is a config error naming nats.tls.ca_file', async () => {
    const { log } = captureLogger();
    const noCert = compileNatsSecurity({ user: 'router', password_file: auth.env.router.ORRERY_NATS_PASSWORD_FILE }, { ca_file: ca.caFile });
    // The server ends the TLS handshake. connectNats would keep trying (a NATS outage must not
    // stop a process), so this asks nats.js for one attempt with the same options.
    await assert.rejects(connect({ servers: nats.url, timeout: 5000, ...natsAuthOptions(noCert) }));
    const missing = compileNatsSecurity({}, { ca_file: path.join(ca.dir, 'absent.crt') });
    await assert.rejects(connectNats(nats.url, 'x', log, { security: missing }), /config nats\.tls\.ca_file: cannot read .*absent\.crt: ENOENT/);
  });
});
