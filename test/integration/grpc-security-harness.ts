/**
 * For the gRPC security tests: a real router in this process (real nats-server, gRPC on port 0)
 * with the given `router` config section, clients built with the CLI's own credentials code, and
 * unary calls with explicit metadata.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { channelCredentials, type ClientSecurityFlags } from '../../services/cli/grpc-credentials.js';
import type { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { Router } from '../../services/router/router.js';

/** A router with one synthetic deployment (no replicas needed: the calls tested do not generate). */
export function startSecureRouter(nats: NatsServerProcess, router: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Router> {
  const config = compileConfig({
    nats: { url: nats.url, prefix: `sec${Math.floor(Math.random() * 1e9)}` },
    router,
    deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'] } },
    jobs: { enabled: false },
    ...extra,
  });
  return Router.start({ config, log: createLogger('secure-router', 'warn'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
}

let channelSeq = 0;

/**
 * A client with the CLI's credentials for `flags`, on a connection of its own (a distinct
 * channel option), so each client makes a new TLS handshake. `onServerCertificate` sees the
 * certificate the router presented.
 */
export function securedClient(address: string, flags: ClientSecurityFlags, onServerCertificate?: (fingerprint256: string) => void): ImageServiceClient {
  let credentials = channelCredentials(flags);
  if (onServerCertificate) {
    // The same files, with a hook that reports which certificate the server presented.
    credentials = grpc.credentials.createSsl(
      flags.tlsCa ? fs.readFileSync(flags.tlsCa) : null, flags.tlsKey ? fs.readFileSync(flags.tlsKey) : null, flags.tlsCert ? fs.readFileSync(flags.tlsCert) : null,
      { checkServerIdentity: (_host, cert) => void onServerCertificate(cert.fingerprint256) },
    );
  }
  return imageServiceClient(address, { 'orrery.test.channel': ++channelSeq }, credentials);
}

/** A unary call with `metadata`, rejected with the ServiceError on failure. */
export function unary<T = unknown>(client: grpc.Client, method: string, req: object = {}, metadata = new grpc.Metadata()): Promise<T> {
  const fn = (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: T) => void) => void>)[method]!.bind(client);
  return new Promise((resolve, reject) => fn(req, metadata, { deadline: Date.now() + 20_000 }, (err, res) => (err ? reject(err) : resolve(res))));
}

/** Writes `token` to a file in `dir` (for --token-file) and returns its path. */
export function tokenFile(dir: string, name: string, token: string): string {
  const file = path.join(dir, `${name}.token`);
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return file;
}
