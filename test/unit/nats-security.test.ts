/**
 * The nats.auth / nats.tls config, its environment overrides, and the least-privilege permission
 * lists with the nats-server authorization block built from them (checked by nats-server itself).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';

import { loadConfig } from '../../services/cli/load-config.js';
import { compileConfig } from '../../services/common/config.js';
import { ConfigError } from '../../services/common/errors.js';
import { natsAuthorizationBlock, natsPermissions } from '../../services/common/nats-permissions.js';
import { subjects } from '../../services/common/subjects.js';
import { repoRoot } from '../support/repo-root.js';

const minimal = (nats: Record<string, unknown>) => ({ nats, deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'] } } });

function rejects(nats: Record<string, unknown>, key: string, part: RegExp): void {
  assert.throws(() => compileConfig(minimal(nats)), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.key, key);
    assert.match(err.message, part);
    return true;
  });
}

/** NATS's subject matching: `*` one token, `>` one or more at the end. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const allowed = (list: readonly string[], subject: string) => list.some((p) => matches(p, subject));

describe('nats.auth and nats.tls', () => {
  test('compile to file paths, with no auth and no TLS by default', () => {
    assert.deepEqual(compileConfig(minimal({})).nats.auth, {});
    assert.equal(compileConfig(minimal({})).nats.tls, undefined);
    const c = compileConfig(minimal({ auth: { user: 'router', password_file: '/run/pw' }, tls: { ca_file: '/ca', cert_file: '/c', key_file: '/k' } }));
    assert.deepEqual(c.nats.auth, { user: 'router', passwordFile: '/run/pw' });
    assert.deepEqual(c.nats.tls, { caFile: '/ca', certFile: '/c', keyFile: '/k' });
    assert.deepEqual(compileConfig(minimal({ auth: { creds_file: '/x.creds' } })).nats.auth, { credsFile: '/x.creds' });
  });

  test('refuse two ways to authenticate, a user without a password file, half a client certificate and unknown keys, naming the key', () => {
    rejects({ auth: { token_file: '/t', creds_file: '/c' } }, 'nats.auth', /choose one way to authenticate, got token_file and creds_file/);
    rejects({ auth: { user: 'router' } }, 'nats.auth.password_file', /required with nats\.auth\.user/);
    rejects({ auth: { password: 'inline-secret' } }, 'nats.auth.password', /unknown key/);
    rejects({ tls: { cert_file: '/c' } }, 'nats.tls.key_file', /go together/);
    rejects({ auth: { user: 7, password_file: '/p' } }, 'nats.auth.user', /must be a string/);
  });

  test('ORRERY_NATS_* variables override the file\'s nats.auth as a whole and nats.tls key by key', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-nats-env-'));
    try {
      const file = path.join(dir, 'c.yaml');
      fs.writeFileSync(file, toYaml(minimal({ auth: { token_file: '/t' }, tls: { ca_file: '/ca' } })));
      const { config } = loadConfig(file, {}, { ORRERY_NATS_USER: 'worker', ORRERY_NATS_PASSWORD_FILE: '/w', ORRERY_NATS_TLS_CERT_FILE: '/c', ORRERY_NATS_TLS_KEY_FILE: '/k' });
      assert.deepEqual(config.nats.auth, { user: 'worker', passwordFile: '/w' });
      assert.deepEqual(config.nats.tls, { caFile: '/ca', certFile: '/c', keyFile: '/k' });
      assert.deepEqual(loadConfig(file, {}, {}).config.nats.auth, { tokenFile: '/t' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('least-privilege NATS permissions', () => {
  for (const prefix of ['orrery', 'team.a']) {
    test(`prefix ${prefix}: each role may use exactly the subjects of its side of the protocol`, () => {
      const s = subjects(prefix);
      const { router, worker } = natsPermissions(prefix);
      // What a worker does.
      for (const subj of [s.heartbeat('sdxl-base'), s.batchReply('r1', 'b1'), s.progress('r1', 'b1'), `$O.${s.payloadBucket}.C.x`, `$JS.API.STREAM.INFO.OBJ_${s.payloadBucket}`]) assert.ok(allowed(worker.publish, subj), `worker publishes ${subj}`);
      for (const subj of [s.batch('sdxl-base-1'), s.cancel('sdxl-base-1'), s.heartbeatRequest, `_INBOX.${prefix}.worker.abc`]) assert.ok(allowed(worker.subscribe, subj), `worker subscribes ${subj}`);
      // What a worker must not do: act as a router, read the router's traffic or the jobs.
      for (const subj of [s.batch('other'), s.cancel('other'), s.heartbeatRequest, `${prefix}.jobs.work.j1`, `${prefix}.scale.x`, `$JS.API.STREAM.INFO.${prefix.replace(/\./g, '_')}_job_work`, `$KV.${prefix.replace(/\./g, '_')}_jobs.job.j1`, '$JS.API.STREAM.DELETE.OBJ_' + s.payloadBucket, '$JS.API.STREAM.CREATE.KV_x']) assert.ok(!allowed(worker.publish, subj), `worker must not publish ${subj}`);
      for (const subj of [`${s.routerInbox('r1')}.reply.b1`, s.heartbeat('x'), `${prefix}.jobs.work.j1`, `_INBOX.${prefix}.router.abc`, '_INBOX.abc']) assert.ok(!allowed(worker.subscribe, subj), `worker must not subscribe ${subj}`);
      // What a router does.
      for (const subj of [s.batch('w1'), s.cancel('w1'), s.heartbeatRequest, `${prefix}.jobs.work.j1`, '$JS.API.STREAM.CREATE.x', '$KV.b.k', '$O.b.x', '$JS.ACK.s.c.1.1.1.1.0']) assert.ok(allowed(router.publish, subj), `router publishes ${subj}`);
      for (const subj of [s.heartbeat('sdxl-base'), `${s.routerInbox('r1')}.reply.b1`, `${s.routerInbox('r1')}.progress.b1`, `_INBOX.${prefix}.router.x`]) assert.ok(allowed(router.subscribe, subj), `router subscribes ${subj}`);
      assert.ok(!allowed(router.publish, s.heartbeat('sdxl-base')), 'a router does not forge heartbeats');
      assert.ok(!allowed(router.subscribe, `_INBOX.${prefix}.worker.x`), 'a router does not read worker inboxes');
    });
  }

  test('the authorization block is a config nats-server accepts, with each user and its lists', () => {
    const block = natsAuthorizationBlock('orrery', { router: { user: 'router', password: 'p"1' }, worker: { nkey: 'UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4' } });
    assert.match(block, /user: "router", password: "p\\"1"/);
    assert.match(block, /nkey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"/);
    for (const p of natsPermissions('orrery').worker.publish) assert.ok(block.includes(JSON.stringify(p)), p);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-nats-conf-'));
    try {
      fs.writeFileSync(path.join(dir, 'auth.conf'), block);
      const r = spawnSync('nats-server', ['-c', path.join(dir, 'auth.conf'), '-t'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr + r.stdout);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('orrery nats-config prints that block for the config\'s prefix from password files, and refuses a role without a credential', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-nats-config-'));
    try {
      const config = path.join(dir, 'c.yaml');
      fs.writeFileSync(config, toYaml({ nats: { prefix: 'team.a' }, deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'] } } }));
      fs.writeFileSync(path.join(dir, 'r.pw'), 'router-secret\n');
      fs.writeFileSync(path.join(dir, 'w.pw'), 'worker-secret\n');
      const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(repoRoot(), 'bin/orrery.js'), 'nats-config', '--config', config, ...args], { encoding: 'utf8', cwd: dir });
      const r = cli('--router-password-file', 'r.pw', '--worker-password-file', 'w.pw', '--out', 'auth.conf');
      assert.equal(r.status, 0, r.stderr);
      const block = fs.readFileSync(path.join(dir, 'auth.conf'), 'utf8');
      assert.equal(block, natsAuthorizationBlock('team.a', { router: { user: 'router', password: 'router-secret' }, worker: { user: 'worker', password: 'worker-secret' } }));
      assert.equal(fs.statSync(path.join(dir, 'auth.conf')).mode & 0o777, 0o600);
      const bad = cli('--router-password-file', 'r.pw');
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /config --worker-password-file: give either --worker-password-file or --worker-nkey/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
