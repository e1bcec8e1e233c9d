/**
 * The security keys of the config's `router` section: TLS of the gRPC port (`router.tls`),
 * bearer tokens (`router.auth`) and server reflection (`router.reflection`). Compiled here and
 * spread into `ClusterConfig.router` by config.ts; the files named are read by the router
 * (services/router/grpc-tls.ts, grpc-auth.ts), not here. docs/security-grpc.md explains them.
 */
import { ConfigError } from './errors.js';

export const CLIENT_AUTH_MODES = ['none', 'optional', 'required'] as const;
/** Whether the router asks TLS clients for a certificate signed by `client_ca_file`. */
export type ClientAuthMode = (typeof CLIENT_AUTH_MODES)[number];

export interface GrpcTlsConfig {
  /** `cert_file`: the server's certificate chain (PEM). */
  readonly certFile: string;
  /** `key_file`: its private key (PEM). */
  readonly keyFile: string;
  /** `client_ca_file`: CA bundle (PEM) that signs client certificates; needed unless client_auth is none. */
  readonly clientCaFile?: string;
  /** `client_auth` (default none): optional lets clients without a certificate in; required does not. */
  readonly clientAuth: ClientAuthMode;
  /** `reload_interval_s` (default 10): how often the three files are read again; a changed, valid set takes over for new connections. */
  readonly reloadIntervalMs: number;
}

export interface GrpcAuthConfig {
  /** `tokens_file`: YAML of `tokens: [{name, sha256, rights}]` (a mounted Kubernetes Secret works). */
  readonly tokensFile: string;
  /** `reload_interval_s` (default 10): how often the tokens file is read again. */
  readonly reloadIntervalMs: number;
}

export interface GrpcSecurityConfig {
  /** Absent: the gRPC port is plaintext. */
  readonly tls?: GrpcTlsConfig;
  /** Absent: no bearer tokens; every client that reaches the port may call every method. */
  readonly auth?: GrpcAuthConfig;
  /** `reflection` (default true): serve grpc.reflection.v1alpha (grpcurl's service list). */
  readonly reflection: boolean;
}

/** Keys of `router` this file owns. */
export const GRPC_SECURITY_KEYS = ['tls', 'auth', 'reflection'] as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function mapping(obj: Obj, key: string, path: string): Obj | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw new ConfigError(`${path}.${key}`, 'must be a mapping');
  return v;
}

function onlyKeys(obj: Obj, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw new ConfigError(`${path}.${k}`, `unknown key (allowed: ${allowed.join(', ')})`);
}

function file(obj: Obj, key: string, path: string, required: boolean): string | undefined {
  const v = obj[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`${path}.${key}`, required ? 'is required: a file path' : 'must be a file path');
  return v;
}

function intervalMs(obj: Obj, path: string): number {
  const v = obj.reload_interval_s ?? 10;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0.05 || v > 3600) throw new ConfigError(`${path}.reload_interval_s`, `must be a number of seconds in [0.05, 3600], got ${JSON.stringify(v)}`);
  return Math.round(v * 1000);
}

function compileTls(raw: Obj): GrpcTlsConfig {
  const path = 'router.tls';
  onlyKeys(raw, ['cert_file', 'key_file', 'client_ca_file', 'client_auth', 'reload_interval_s'], path);
  const clientAuth = (raw.client_auth ?? 'none') as ClientAuthMode;
  if (!CLIENT_AUTH_MODES.includes(clientAuth)) throw new ConfigError(`${path}.client_auth`, `must be one of ${CLIENT_AUTH_MODES.join(', ')}, got ${JSON.stringify(raw.client_auth)}`);
  const clientCaFile = file(raw, 'client_ca_file', path, false);
  if (clientAuth !== 'none' && !clientCaFile) throw new ConfigError(`${path}.client_ca_file`, `is required when client_auth is ${clientAuth}: the CA that signs client certificates`);
  if (clientAuth === 'none' && clientCaFile) throw new ConfigError(`${path}.client_auth`, 'is none, so client_ca_file would be unused: set optional or required');
  return {
    certFile: file(raw, 'cert_file', path, true)!,
    keyFile: file(raw, 'key_file', path, true)!,
    ...(clientCaFile ? { clientCaFile } : {}),
    clientAuth,
    reloadIntervalMs: intervalMs(raw, path),
  };
}

/** Validates `router.tls`, `router.auth` and `router.reflection` of a raw `router` section. Throws ConfigError naming the key. */
export function compileGrpcSecurity(router: Obj): GrpcSecurityConfig {
  const tlsRaw = mapping(router, 'tls', 'router');
  const authRaw = mapping(router, 'auth', 'router');
  const reflection = router.reflection ?? true;
  if (typeof reflection !== 'boolean') throw new ConfigError('router.reflection', `must be true or false, got ${JSON.stringify(reflection)}`);
  const tls = tlsRaw ? compileTls(tlsRaw) : undefined;
  let auth: GrpcAuthConfig | undefined;
  if (authRaw) {
    onlyKeys(authRaw, ['tokens_file', 'reload_interval_s'], 'router.auth');
    // A bearer token is a password: over plaintext anyone on the path could replay it.
    if (!tls) throw new ConfigError('router.auth.tokens_file', 'needs router.tls: bearer tokens are accepted only over TLS');
    auth = { tokensFile: file(authRaw, 'tokens_file', 'router.auth', true)!, reloadIntervalMs: intervalMs(authRaw, 'router.auth') };
  }
  return { ...(tls ? { tls } : {}), ...(auth ? { auth } : {}), reflection };
}
