import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { ConfigError } from '../../services/common/errors.js';
import { hashToken, newToken, parseTokenFile } from '../../services/router/token-file.js';

const H = (t: string) => createHash('sha256').update(t).digest('hex');

/** Asserts that parsing `text` throws a ConfigError whose key is `key`. */
function refuses(text: string, key: string, why: RegExp): void {
  assert.throws(() => parseTokenFile(text, 'tokens.yaml'), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.key, key);
    assert.match(err.message, why);
    return true;
  });
}

describe('tokens file', () => {
  test('hashToken is SHA-256 hex of the UTF-8 token', () => {
    assert.equal(hashToken('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  test('newToken makes distinct 256-bit tokens with a recognisable prefix', () => {
    const a = newToken();
    const b = newToken();
    assert.match(a, /^orrery_[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a, b);
  });

  test('parses entries into a table keyed by hash, with names and rights', () => {
    const t = parseTokenFile(`tokens:\n  - name: web\n    sha256: ${H('a')}\n    rights: [generate]\n  - name: ops\n    sha256: ${H('b')}\n    rights: [jobs, reflection]\n`, 'tokens.yaml');
    assert.equal(t.size, 2);
    assert.equal(t.get(H('a'))!.name, 'web');
    assert.deepEqual([...t.get(H('b'))!.rights], ['jobs', 'reflection']);
  });

  test('an empty list is valid (every call is refused)', () => {
    assert.equal(parseTokenFile('tokens: []\n', 'tokens.yaml').size, 0);
  });

  test('refuses a file without a tokens list, bad YAML, unknown keys (a plaintext token), bad names, hashes and rights', () => {
    refuses('clients: []\n', 'tokens.yaml tokens', /must be a list/);
    refuses('tokens: [\n', 'tokens.yaml', /not valid YAML/);
    refuses(`tokens: [{name: web, sha256: ${H('a')}, rights: [generate], token: a}]`, 'tokens.yaml tokens[0].token', /stored as its sha256 only/);
    refuses(`tokens: [{name: Web, sha256: ${H('a')}, rights: [generate]}]`, 'tokens.yaml tokens[0].name', /lower-case/);
    refuses(`tokens: [{name: unauthenticated, sha256: ${H('a')}, rights: [generate]}]`, 'tokens.yaml tokens[0].name', /not unauthenticated or anonymous/);
    refuses(`tokens: [{name: a, sha256: ${H('a')}, rights: [generate]}, {name: a, sha256: ${H('b')}, rights: [generate]}]`, 'tokens.yaml tokens[1].name', /appears twice/);
    refuses(`tokens: [{name: a, sha256: ${H('a')}, rights: [generate]}, {name: b, sha256: ${H('a')}, rights: [generate]}]`, 'tokens.yaml tokens[1].sha256', /same token as "a"/);
    refuses('tokens: [{name: a, sha256: abc, rights: [generate]}]', 'tokens.yaml tokens[0].sha256', /64 lower-case hex/);
    refuses(`tokens: [{name: a, sha256: ${H('a').toUpperCase()}, rights: [generate]}]`, 'tokens.yaml tokens[0].sha256', /64 lower-case hex/);
    refuses(`tokens: [{name: a, sha256: ${H('a')}, rights: []}]`, 'tokens.yaml tokens[0].rights', /non-empty/);
    refuses(`tokens: [{name: a, sha256: ${H('a')}, rights: [root]}]`, 'tokens.yaml tokens[0].rights', /unknown right "root"/);
  });
});
