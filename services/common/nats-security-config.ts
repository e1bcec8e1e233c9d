/**
 * The `nats.auth` and `nats.tls` sections of the cluster config: how a process proves who it is
 * to nats-server and how it checks the server. Secrets are never in the config itself, only the
 * paths of files holding them (a Kubernetes Secret mounted as files, or files serve-local writes);
 * the files are read when connecting (nats-auth-options.ts), never logged.
 */
import { ConfigError } from './errors.js';

/** At most one way to authenticate; absent: no credentials (a server without authorization). */
export interface NatsAuthConfig {
  /** `user` + `password_file`: user/password authentication. */
  readonly user?: string;
  readonly passwordFile?: string;
  /** `token_file`: a bearer token. */
  readonly tokenFile?: string;
  /** `nkey_seed_file`: an nkey seed (`SU…`) whose public key the server knows. */
  readonly nkeySeedFile?: string;
  /** `creds_file`: a decentralized-auth credentials file (JWT + nkey seed, e.g. from `nsc`). */
  readonly credsFile?: string;
}

/** TLS to nats-server: `ca_file` verifies the server; `cert_file` + `key_file` are the client's certificate. */
export interface NatsTlsConfig {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface NatsSecurityConfig {
  readonly auth: NatsAuthConfig;
  /** Absent: plain TCP unless the URL is `tls://`. */
  readonly tls?: NatsTlsConfig;
}

const AUTH_KEYS = ['user', 'password_file', 'token_file', 'nkey_seed_file', 'creds_file'] as const;
const TLS_KEYS = ['ca_file', 'cert_file', 'key_file'] as const;

function mapping(raw: unknown, path: string): Record<string, unknown> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(path, 'must be a mapping');
  return raw as Record<string, unknown>;
}

function strings(raw: Record<string, unknown>, keys: readonly string[], path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!keys.includes(k)) throw new ConfigError(`${path}.${k}`, `unknown key (known: ${keys.join(', ')})`);
    if (v === undefined || v === null || v === '') continue;
    if (typeof v !== 'string') throw new ConfigError(`${path}.${k}`, `must be a string, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out;
}

/** Validates `nats.auth` and `nats.tls` (both optional). Throws ConfigError naming the key. */
export function compileNatsSecurity(rawAuth: unknown, rawTls: unknown): NatsSecurityConfig {
  const a = strings(mapping(rawAuth, 'nats.auth'), AUTH_KEYS, 'nats.auth');
  const methods = [a.user !== undefined || a.password_file !== undefined ? 'user/password_file' : '', a.token_file ? 'token_file' : '', a.nkey_seed_file ? 'nkey_seed_file' : '', a.creds_file ? 'creds_file' : ''].filter(Boolean);
  if (methods.length > 1) throw new ConfigError('nats.auth', `choose one way to authenticate, got ${methods.join(' and ')}`);
  if (a.user !== undefined && a.password_file === undefined) throw new ConfigError('nats.auth.password_file', 'is required with nats.auth.user');
  if (a.password_file !== undefined && a.user === undefined) throw new ConfigError('nats.auth.user', 'is required with nats.auth.password_file');
  const t = strings(mapping(rawTls, 'nats.tls'), TLS_KEYS, 'nats.tls');
  if ((t.cert_file === undefined) !== (t.key_file === undefined)) throw new ConfigError(t.cert_file === undefined ? 'nats.tls.cert_file' : 'nats.tls.key_file', 'cert_file and key_file go together');
  const tlsSet = Object.keys(t).length > 0;
  return {
    auth: {
      ...(a.user !== undefined ? { user: a.user, passwordFile: a.password_file } : {}),
      ...(a.token_file ? { tokenFile: a.token_file } : {}),
      ...(a.nkey_seed_file ? { nkeySeedFile: a.nkey_seed_file } : {}),
      ...(a.creds_file ? { credsFile: a.creds_file } : {}),
    },
    ...(tlsSet ? { tls: { ...(t.ca_file ? { caFile: t.ca_file } : {}), ...(t.cert_file ? { certFile: t.cert_file, keyFile: t.key_file } : {}) } } : {}),
  };
}

/**
 * Environment overrides of nats.auth / nats.tls, as `ORRERY_NATS_URL` overrides nats.url (the
 * chart sets them per workload: routers and workers are different NATS users). A variable that
 * is set replaces the key; setting any auth variable replaces the whole `nats.auth` section, so a
 * process never mixes two identities.
 */
export const NATS_SECURITY_ENV = {
  auth: { ORRERY_NATS_USER: 'user', ORRERY_NATS_PASSWORD_FILE: 'password_file', ORRERY_NATS_TOKEN_FILE: 'token_file', ORRERY_NATS_NKEY_SEED_FILE: 'nkey_seed_file', ORRERY_NATS_CREDS_FILE: 'creds_file' },
  tls: { ORRERY_NATS_TLS_CA_FILE: 'ca_file', ORRERY_NATS_TLS_CERT_FILE: 'cert_file', ORRERY_NATS_TLS_KEY_FILE: 'key_file' },
} as const;

/** Applies NATS_SECURITY_ENV to a raw `nats` section (a copy); the result still goes through compileConfig. */
export function applyNatsSecurityEnv(rawNats: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out = { ...rawNats };
  const auth: Record<string, string> = {};
  for (const [name, key] of Object.entries(NATS_SECURITY_ENV.auth)) if (env[name]) auth[key] = env[name];
  if (Object.keys(auth).length > 0) out.auth = auth;
  const tls: Record<string, unknown> = { ...mapping(out.tls, 'nats.tls') };
  let tlsSet = false;
  for (const [name, key] of Object.entries(NATS_SECURITY_ENV.tls)) {
    if (env[name]) {
      tls[key] = env[name];
      tlsSet = true;
    }
  }
  if (tlsSet) out.tls = tls;
  return out;
}

/** nats.auth / nats.tls from the environment alone, for CLI commands that take no --config. */
export function natsSecurityFromEnv(env: NodeJS.ProcessEnv): NatsSecurityConfig {
  const raw = applyNatsSecurityEnv({}, env);
  return compileNatsSecurity(raw.auth, raw.tls);
}
