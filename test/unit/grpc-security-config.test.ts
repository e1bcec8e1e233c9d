import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileConfig } from '../../services/common/config.js';
import { ConfigError } from '../../services/common/errors.js';

const withRouter = (router: Record<string, unknown>) => ({ router, deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'] } } });

function refuses(router: Record<string, unknown>, key: string, why: RegExp): void {
  assert.throws(() => compileConfig(withRouter(router)), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.key, key);
    assert.match(err.message, why);
    return true;
  });
}

describe('config router.tls, router.auth, router.reflection', () => {
  test('defaults: plaintext, no tokens, reflection on', () => {
    const r = compileConfig(withRouter({})).router;
    assert.equal(r.tls, undefined);
    assert.equal(r.auth, undefined);
    assert.equal(r.reflection, true);
  });

  test('compiles TLS with mTLS and tokens, intervals in ms', () => {
    const r = compileConfig(withRouter({
      tls: { cert_file: '/tls/tls.crt', key_file: '/tls/tls.key', client_ca_file: '/tls/ca.crt', client_auth: 'required', reload_interval_s: 2 },
      auth: { tokens_file: '/auth/tokens.yaml' }, reflection: false,
    })).router;
    assert.deepEqual(r.tls, { certFile: '/tls/tls.crt', keyFile: '/tls/tls.key', clientCaFile: '/tls/ca.crt', clientAuth: 'required', reloadIntervalMs: 2000 });
    assert.deepEqual(r.auth, { tokensFile: '/auth/tokens.yaml', reloadIntervalMs: 10_000 });
    assert.equal(r.reflection, false);
  });

  test('refuses incomplete or contradictory TLS settings, naming the key', () => {
    refuses({ tls: { key_file: 'k' } }, 'router.tls.cert_file', /is required/);
    refuses({ tls: { cert_file: 'c' } }, 'router.tls.key_file', /is required/);
    refuses({ tls: { cert_file: 'c', key_file: 'k', client_auth: 'sometimes' } }, 'router.tls.client_auth', /none, optional, required/);
    refuses({ tls: { cert_file: 'c', key_file: 'k', client_auth: 'required' } }, 'router.tls.client_ca_file', /required when client_auth is required/);
    refuses({ tls: { cert_file: 'c', key_file: 'k', client_ca_file: 'ca' } }, 'router.tls.client_auth', /would be unused/);
    refuses({ tls: { cert_file: 'c', key_file: 'k', reload_interval_s: 0 } }, 'router.tls.reload_interval_s', /\[0.05, 3600\]/);
    refuses({ tls: { cert_file: 'c', key_file: 'k', ca_file: 'x' } }, 'router.tls.ca_file', /unknown key/);
    refuses({ tls: 'on' }, 'router.tls', /mapping/);
  });

  test('refuses tokens without TLS, and a reflection that is not a boolean', () => {
    refuses({ auth: { tokens_file: 't.yaml' } }, 'router.auth.tokens_file', /needs router.tls/);
    refuses({ tls: { cert_file: 'c', key_file: 'k' }, auth: {} }, 'router.auth.tokens_file', /is required/);
    refuses({ reflection: 'no' }, 'router.reflection', /true or false/);
  });
});
