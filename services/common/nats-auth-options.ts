/**
 * nats.js connection options from `nats.auth` / `nats.tls`. Secret files are read on every
 * (re)connect, through authenticator functions, so a rotated password, token, seed or creds file
 * is used at the next reconnect without a restart; nats.js reads the TLS files at every connect
 * too. A secret is never put in a log line or an error message — only its file's path.
 */
import fs from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, tokenAuthenticator, usernamePasswordAuthenticator, type Authenticator, type TlsOptions } from '@nats-io/transport-node';
import { ConfigError } from './errors.js';
import type { NatsSecurityConfig } from './nats-security-config.js';

export interface NatsAuthOptions {
  readonly authenticator?: Authenticator;
  readonly tls?: TlsOptions;
}

/** The file's text without its trailing newline (Kubernetes Secrets and `echo` add one). */
function readSecret(file: string, key: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new ConfigError(key, `${file} is empty`);
  return secret;
}

/** Fails at start when a file is missing, then reads it again at every connect. */
function secretSource(file: string, key: string): () => string {
  readSecret(file, key);
  return () => readSecret(file, key);
}

function checkReadable(file: string | undefined, key: string): void {
  if (file === undefined) return;
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Builds the authenticator and TLS options; throws ConfigError (naming the key) for an unreadable file. */
export function natsAuthOptions(security: NatsSecurityConfig): NatsAuthOptions {
  const { auth, tls } = security;
  let authenticator: Authenticator | undefined;
  if (auth.user !== undefined && auth.passwordFile !== undefined) {
    authenticator = usernamePasswordAuthenticator(auth.user, secretSource(auth.passwordFile, 'nats.auth.password_file'));
  } else if (auth.tokenFile !== undefined) {
    authenticator = tokenAuthenticator(secretSource(auth.tokenFile, 'nats.auth.token_file'));
  } else if (auth.nkeySeedFile !== undefined) {
    const seed = secretSource(auth.nkeySeedFile, 'nats.auth.nkey_seed_file');
    authenticator = nkeyAuthenticator(() => new TextEncoder().encode(seed().trim()));
  } else if (auth.credsFile !== undefined) {
    const creds = secretSource(auth.credsFile, 'nats.auth.creds_file');
    authenticator = credsAuthenticator(() => new TextEncoder().encode(creds()));
  }
  if (tls) {
    checkReadable(tls.caFile, 'nats.tls.ca_file');
    checkReadable(tls.certFile, 'nats.tls.cert_file');
    checkReadable(tls.keyFile, 'nats.tls.key_file');
  }
  return {
    ...(authenticator ? { authenticator } : {}),
    ...(tls ? { tls: { ...(tls.caFile ? { caFile: tls.caFile } : {}), ...(tls.certFile ? { certFile: tls.certFile, keyFile: tls.keyFile } : {}) } } : {}),
  };
}

/** Who a connection claims to be, for log lines and errors (never a secret). */
export function natsIdentity(security: NatsSecurityConfig): string {
  const { auth } = security;
  if (auth.user !== undefined) return `user "${auth.user}"`;
  if (auth.tokenFile !== undefined) return `the token in ${auth.tokenFile}`;
  if (auth.nkeySeedFile !== undefined) return `the nkey in ${auth.nkeySeedFile}`;
  if (auth.credsFile !== undefined) return `the credentials in ${auth.credsFile}`;
  return 'an anonymous connection';
}
