import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { InvalidArgumentError } from '../../services/common/errors.js';
import { channelCredentials } from '../../services/cli/grpc-credentials.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-creds-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function refuses(flags: Parameters<typeof channelCredentials>[0], field: string, why: RegExp): void {
  assert.throws(() => channelCredentials(flags), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    assert.equal(err.field, field);
    assert.match(err.message, why);
    return true;
  });
}

describe('CLI channel credentials', () => {
  test('no flags: plaintext; --tls: TLS', () => {
    assert.equal(channelCredentials({})._isSecure(), false);
    assert.equal(channelCredentials({ tls: true })._isSecure(), true);
  });

  test('a token is never sent over plaintext', () => {
    const file = path.join(dir, 't.token');
    fs.writeFileSync(file, 'orrery_x\n');
    refuses({ tokenFile: file }, '--token-file', /only over TLS/);
    assert.equal(channelCredentials({ tls: true, tokenFile: file })._isSecure(), true);
  });

  test('a client certificate needs both halves; files must be readable; a token file holds one token', () => {
    refuses({ tlsCert: 'c.pem' }, '--tls-key', /both --tls-cert and --tls-key/);
    refuses({ tlsKey: 'k.pem' }, '--tls-cert', /both --tls-cert and --tls-key/);
    refuses({ tlsCa: path.join(dir, 'missing.pem') }, '--tls-ca', /cannot read .*missing\.pem/);
    const two = path.join(dir, 'two.token');
    fs.writeFileSync(two, 'one two\n');
    refuses({ tls: true, tokenFile: two }, '--token-file', /one token/);
  });
});
