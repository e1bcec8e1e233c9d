/**
 * The bearer tokens file (`router.auth.tokens_file`): YAML, tokens stored as SHA-256 hex, never
 * in plaintext. A token is 32 random bytes (`orrery tokens new`), so a fast hash is enough: there
 * is no dictionary to try against it, and each call hashes once.
 *
 *   tokens:
 *     - name: web-frontend            # in logs and the metric label `client`
 *       sha256: 9f86d081884c7d65…     # `orrery tokens hash` of the token
 *       rights: [generate]            # generate, jobs, jobs.read, reflection, admin
 */
import { createHash, randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../common/errors.js';
import { RIGHTS, type Right } from './grpc-rights.js';

export interface TokenEntry {
  readonly name: string;
  readonly rights: ReadonlySet<Right>;
}

/** SHA-256 hex of a token → its entry. */
export type TokenTable = ReadonlyMap<string, TokenEntry>;

/** Names that label metrics: bounded by the file, and never one the router uses itself. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const RESERVED_NAMES = ['unauthenticated', 'anonymous'];

/** The key of a token in a TokenTable: SHA-256, lower-case hex. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new random token: `orrery_` and 32 random bytes in base64url (43 characters). */
export function newToken(): string {
  return `orrery_${randomBytes(32).toString('base64url')}`;
}

/** Parses and checks a tokens file's text; throws ConfigError naming `source` and the entry. */
export function parseTokenFile(text: string, source: string): TokenTable {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(source, `is not valid YAML: ${(err as Error).message}`);
  }
  const list = (raw as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list)) throw new ConfigError(`${source} tokens`, 'must be a list of {name, sha256, rights}');
  const table = new Map<string, TokenEntry>();
  const names = new Set<string>();
  list.forEach((e: unknown, i) => {
    const at = `${source} tokens[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new ConfigError(at, 'must be a mapping {name, sha256, rights}');
    const { name, sha256, rights, ...extra } = e as Record<string, unknown>;
    const unknown = Object.keys(extra);
    if (unknown.length > 0) throw new ConfigError(`${at}.${unknown[0]}`, 'unknown key (allowed: name, sha256, rights); a token is stored as its sha256 only');
    if (typeof name !== 'string' || !NAME.test(name) || RESERVED_NAMES.includes(name)) throw new ConfigError(`${at}.name`, `must be lower-case letters, digits, ".", "_" or "-" (at most 63, not ${RESERVED_NAMES.join(' or ')}), got ${JSON.stringify(name)}`);
    if (names.has(name)) throw new ConfigError(`${at}.name`, `"${name}" appears twice`);
    names.add(name);
    if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw new ConfigError(`${at}.sha256`, 'must be 64 lower-case hex digits (orrery tokens hash)');
    if (table.has(sha256)) throw new ConfigError(`${at}.sha256`, `the same token as "${table.get(sha256)!.name}"`);
    if (!Array.isArray(rights) || rights.length === 0) throw new ConfigError(`${at}.rights`, `must be a non-empty list of ${RIGHTS.join(', ')}`);
    for (const r of rights) if (!RIGHTS.includes(r as Right)) throw new ConfigError(`${at}.rights`, `unknown right ${JSON.stringify(r)} (known: ${RIGHTS.join(', ')})`);
    table.set(sha256, { name, rights: new Set(rights as Right[]) });
  });
  return table;
}
