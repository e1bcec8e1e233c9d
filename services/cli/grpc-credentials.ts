/**
 * How the CLI's gRPC clients reach a router that has TLS, mTLS or bearer tokens: the flags
 * `--tls`, `--tls-ca`, `--tls-cert`, `--tls-key`, `--tls-server-name`, `--token-file` (each with an ORRERY_* variable)
 * and the channel credentials they make. Files are read when the credentials are made.
 */
import fs from 'node:fs';
import { checkServerIdentity } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../common/errors.js';

/** The flags as commander parses them. */
export interface ClientSecurityFlags {
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  tokenFile?: string;
}

function readFlagFile(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new InvalidArgumentError(flag, `cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * Channel credentials for the flags: plaintext when none is given; TLS (the CA file, else the
 * system's roots) with --tls or any --tls-* flag; a client certificate with --tls-cert and
 * --tls-key; and the token of --token-file as `authorization: Bearer` on every call. A token is
 * sent only over TLS, so --token-file without TLS is refused here rather than by the router.
 */
export function channelCredentials(o: ClientSecurityFlags): grpc.ChannelCredentials {
  const tls = Boolean(o.tls || o.tlsCa || o.tlsCert || o.tlsKey || o.tlsServerName);
  if (Boolean(o.tlsCert) !== Boolean(o.tlsKey)) throw new InvalidArgumentError(o.tlsCert ? '--tls-key' : '--tls-cert', 'a client certificate needs both --tls-cert and --tls-key');
  if (o.tokenFile && !tls) throw new InvalidArgumentError('--token-file', 'a bearer token is sent only over TLS: add --tls-ca <file> (or --tls for a certificate the system trusts)');
  if (!tls) return grpc.credentials.createInsecure();
  const ssl = grpc.credentials.createSsl(
    o.tlsCa ? readFlagFile('--tls-ca', o.tlsCa) : null,
    o.tlsKey ? readFlagFile('--tls-key', o.tlsKey) : null,
    o.tlsCert ? readFlagFile('--tls-cert', o.tlsCert) : null,
    // The name the certificate must carry when --addr is not it (a port-forward to localhost).
    o.tlsServerName ? { checkServerIdentity: (_host, cert) => checkServerIdentity(o.tlsServerName!, cert) } : {},
  );
  if (!o.tokenFile) return ssl;
  const token = readFlagFile('--token-file', o.tokenFile).toString('utf8').trim();
  if (!/^\S+$/.test(token)) throw new InvalidArgumentError('--token-file', `${o.tokenFile} must hold one token (no spaces), got ${token ? 'several words' : 'nothing'}`);
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(ssl, bearer);
}

/** Adds the six flags (and their environment variables) to `cmd`. */
export function addClientSecurityOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--tls', 'connect with TLS, trusting the system\'s CAs (implied by --tls-ca, --tls-cert, --tls-key)').env('ORRERY_TLS'))
    .addOption(new Option('--tls-ca <file>', 'PEM CA bundle that signs the router\'s certificate (router.tls.cert_file)').env('ORRERY_TLS_CA'))
    .addOption(new Option('--tls-cert <file>', 'PEM client certificate, for a router with router.tls.client_auth optional or required (with --tls-key)').env('ORRERY_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'PEM private key of --tls-cert').env('ORRERY_TLS_KEY'))
    .addOption(new Option('--tls-server-name <name>', 'the name the router\'s certificate must hold, when --addr differs (e.g. localhost through kubectl port-forward)').env('ORRERY_TLS_SERVER_NAME'))
    .addOption(new Option('--token-file <file>', 'file holding a bearer token (orrery tokens new), sent as "authorization: Bearer" on every call; needs TLS').env('ORRERY_TOKEN_FILE'));
}

/** Help text for commands with the flags. */
export const CLIENT_SECURITY_HELP = `
Security: a router with router.tls needs --tls-ca (or --tls when a public CA signed its
certificate); with client_auth: required also --tls-cert and --tls-key; with router.auth a
token: --token-file. Each flag has an environment variable (ORRERY_TLS, ORRERY_TLS_CA,
ORRERY_TLS_CERT, ORRERY_TLS_KEY, ORRERY_TLS_SERVER_NAME, ORRERY_TOKEN_FILE), so a shell can set
them once. The token is read from a file, never from the command line, so it stays out of shell
history and ps. Through kubectl port-forward: --addr localhost:50051 --tls-server-name <the
certificate's DNS name>.`;
