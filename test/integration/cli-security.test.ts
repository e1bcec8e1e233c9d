/**
 * The CLI against a router with TLS and bearer tokens, as an operator sets it up: tokens made by
 * `orrery tokens new` (only their hashes go in the router's file), then `orrery generate` and
 * `orrery jobs` with --tls-ca and --token-file (or their environment variables); without a token
 * or with one lacking the right, a readable status and exit 1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { packageRoot } from '../../services/common/package-root.js';
import { hashToken } from '../../services/router/token-file.js';
import { makeCa, makeCert, type PemPair } from '../support/tls-certs.js';
import { startCluster, testConfig, type TestCluster } from './harness.js';

const CLI = path.join(packageRoot(), 'bin/orrery.js');

function orrery(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
}

describe('the CLI against a router with TLS and bearer tokens', () => {
  let c: TestCluster;
  let dir: string;
  let ca: PemPair;
  let addr: string;
  const token = (name: string) => path.join(dir, `${name}.token`);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-cli-security-'));
    ca = makeCa(dir, 'ca');
    const server = makeCert(dir, 'server', ca, { cn: 'router', use: 'server' });
    const entries: unknown[] = [];
    for (const [name, rights] of [['artist', 'generate'], ['dashboard', 'jobs.read']] as const) {
      const r = orrery(['tokens', 'new', '--name', name, '--rights', rights, '--out', token(name)]);
      assert.equal(r.status, 0, r.stderr);
      entries.push(...(parseYaml(r.stdout) as unknown[]));
    }
    const tokensFile = path.join(dir, 'tokens.yaml');
    fs.writeFileSync(tokensFile, toYaml({ tokens: entries }));
    c = await startCluster(testConfig(
      { synthetic: { stage: 'synthetic', models: ['syn-a'], options: { fixed_ms: 5 } } },
      { router: { replica_timeout_intervals: 10, tls: { cert_file: server.cert, key_file: server.key }, auth: { tokens_file: tokensFile } } },
    ));
    addr = c.cluster.grpcAddress;
  });
  after(async () => {
    await c?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('tokens new writes a 0600 token file and prints an entry holding only its hash; tokens hash agrees', () => {
    const text = fs.readFileSync(token('artist'), 'utf8').trim();
    assert.equal(fs.statSync(token('artist')).mode & 0o777, 0o600);
    const stored = fs.readFileSync(path.join(dir, 'tokens.yaml'), 'utf8');
    assert.ok(!stored.includes(text), 'the tokens file never holds the token');
    assert.ok(stored.includes(hashToken(text)));
    const r = orrery(['tokens', 'hash', '--token-file', token('artist')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), hashToken(text));
    const fromStdin = spawnSync(process.execPath, [CLI, 'tokens', 'hash'], { encoding: 'utf8', input: `${text}\n` });
    assert.equal(fromStdin.stdout.trim(), hashToken(text));
  });

  test('generate with --tls-ca and --token-file writes the images', () => {
    const out = path.join(dir, 'images');
    const r = orrery(['generate', '--addr', addr, '--tls-ca', ca.cert, '--token-file', token('artist'), '--prompt', 'a small moon', '-n', '2', '--seed', '3', '--pipeline', 'synthetic', '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(out).sort(), ['a-small-moon-3.bin', 'a-small-moon-4.bin']);
  });

  test('generate without a token: UNAUTHENTICATED, exit 1; with a token but no TLS flag: refused before sending it', () => {
    const r = orrery(['generate', '--addr', addr, '--tls-ca', ca.cert, '--prompt', 'x', '--pipeline', 'synthetic', '--out', path.join(dir, 'none')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^orrery: UNAUTHENTICATED: \/orrery\.v1\.ImageService\/GenerateStream needs a bearer token/m);
    const plain = orrery(['generate', '--addr', addr, '--token-file', token('artist'), '--prompt', 'x', '--out', path.join(dir, 'none')]);
    assert.equal(plain.status, 1);
    assert.match(plain.stderr, /^orrery: --token-file: a bearer token is sent only over TLS/m);
  });

  test('jobs list with the flags, and with ORRERY_TLS_CA and ORRERY_TOKEN_FILE instead', () => {
    const r = orrery(['jobs', 'list', '--addr', addr, '--tls-ca', ca.cert, '--token-file', token('dashboard')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'no jobs\n');
    const env = orrery(['jobs', 'list', '--addr', addr], { ORRERY_TLS_CA: ca.cert, ORRERY_TOKEN_FILE: token('dashboard') });
    assert.equal(env.status, 0, env.stderr);
    assert.equal(env.stdout, 'no jobs\n');
  });

  test('--tls-server-name checks the certificate against that name instead of --addr\'s host', () => {
    const wrong = orrery(['generate', '--addr', addr, '--tls-ca', ca.cert, '--tls-server-name', 'router.example.org', '--token-file', token('artist'), '--prompt', 'x', '--pipeline', 'synthetic', '--out', path.join(dir, 'none')]);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /^orrery: UNAVAILABLE: .*router\.example\.org/m);
    const right = orrery(['jobs', 'list', '--addr', addr, '--tls-ca', ca.cert, '--tls-server-name', 'localhost', '--token-file', token('dashboard')]);
    assert.equal(right.status, 0, right.stderr);
    assert.equal(right.stdout, 'no jobs\n');
  });

  test('jobs with a token lacking the right: PERMISSION_DENIED naming it, exit 1', () => {
    const r = orrery(['jobs', 'get', 'j-0123abcd', '--addr', addr, '--tls-ca', ca.cert, '--token-file', token('artist')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^orrery: PERMISSION_DENIED: client "artist" lacks the right "jobs\.read" that \/orrery\.v1\.ImageService\/GetJob needs/m);
  });

  test('--help of generate and jobs explains the flags and their variables', () => {
    for (const args of [['generate', '--help'], ['jobs', 'list', '--help'], ['jobs', '--help']]) {
      const r = orrery(args);
      assert.equal(r.status, 0, r.stderr);
      if (args[0] === 'generate' || args[1] === 'list') for (const flag of ['--tls-ca <file>', '--tls-cert <file>', '--tls-key <file>', '--token-file <file>', 'ORRERY_TOKEN_FILE']) assert.ok(r.stdout.includes(flag), `${args.join(' ')}: ${flag}`);
      if (args[1] !== 'list') assert.match(r.stdout, /never from the command line/);
    }
  });
});
