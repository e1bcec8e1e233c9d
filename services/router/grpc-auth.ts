/**
 * Authentication and rights on the router's gRPC port: a server interceptor that checks each
 * call's bearer token against the tokens file (grpc-rights.ts decides), answers UNAUTHENTICATED or
 * PERMISSION_DENIED before the handler runs, and counts calls per client. The tokens file is read
 * again every `reload_interval_s`, so adding or revoking a token needs no restart.
 */
import fs from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { GrpcAuthConfig } from '../common/grpc-security-config.js';
import { ConfigError, type OrreryError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { authorize, isPublicMethod } from './grpc-rights.js';
import type { GrpcSecurityMetrics } from './grpc-security-metrics.js';
import { hashToken, parseTokenFile, type TokenTable } from './token-file.js';

/** The tokens file, re-read on an interval; a changed file that does not parse leaves the previous tokens in force. */
export class ReloadingTokenFile {
  private readonly timer: NodeJS.Timeout;
  private text: string;
  private reading = false;
  /** The text last refused, so a broken file left in place is reported once, not at every read. */
  private refused: string | undefined;

  private constructor(private readonly config: GrpcAuthConfig, text: string, private tableValue: TokenTable, private readonly log: Logger, private readonly metrics: GrpcSecurityMetrics) {
    this.text = text;
    this.timer = setInterval(() => void this.reload(), config.reloadIntervalMs);
    this.timer.unref();
  }

  /** Reads the file once (a ConfigError if it is unreadable or invalid), then watches it. */
  static async open(config: GrpcAuthConfig, log: Logger, metrics: GrpcSecurityMetrics): Promise<ReloadingTokenFile> {
    let text: string;
    try {
      text = await fs.readFile(config.tokensFile, 'utf8');
    } catch (err) {
      throw new ConfigError('router.auth.tokens_file', `cannot read ${config.tokensFile}: ${(err as Error).message}`);
    }
    const table = parseTokenFile(text, config.tokensFile);
    log.info({ tokensFile: config.tokensFile, clients: [...table.values()].map((e) => e.name) }, 'gRPC bearer tokens loaded');
    return new ReloadingTokenFile(config, text, table, log, metrics);
  }

  get table(): TokenTable {
    return this.tableValue;
  }

  /** Reads the file again and takes a changed, valid one. */
  async reload(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      const text = await fs.readFile(this.config.tokensFile, 'utf8');
      if (text === this.text || text === this.refused) return;
      this.refused = text;
      this.tableValue = parseTokenFile(text, this.config.tokensFile);
      this.text = text;
      this.refused = undefined;
      this.metrics.tokenReloads.inc({ result: 'loaded' });
      this.log.info({ tokensFile: this.config.tokensFile, clients: [...this.tableValue.values()].map((e) => e.name) }, 'gRPC bearer tokens reloaded');
    } catch (err) {
      this.metrics.tokenReloads.inc({ result: 'rejected' });
      this.log.warn({ tokensFile: this.config.tokensFile, err: (err as Error).message }, 'gRPC tokens file unreadable or invalid; the previous tokens stay in force');
    } finally {
      this.reading = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** The common name of the call's verified client certificate, if it has one. */
function certificateName(call: grpc.ServerInterceptingCallInterface): string | undefined {
  const cn = call.getAuthContext().sslPeerCertificate?.subject?.CN;
  return typeof cn === 'string' && cn.length > 0 ? cn : undefined;
}

const shortMethod = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

export interface AuthInterceptorOptions {
  /** The tokens in force; absent: no tokens are checked (TLS, maybe mTLS, is the only gate). */
  readonly tokens?: () => TokenTable;
  readonly metrics: GrpcSecurityMetrics;
  readonly log: Logger;
}

/**
 * A grpc-js server interceptor: with tokens, every method but grpc.health.v1 needs a valid
 * `authorization: Bearer <token>` whose rights cover it. Each call is counted under its client's
 * name: the token's, else a verified client certificate's common name, else `anonymous`.
 */
export function authInterceptor(options: AuthInterceptorOptions): grpc.ServerInterceptor {
  const { tokens, metrics, log } = options;
  return (descriptor, call) => {
    const method = descriptor.path;
    let client = 'anonymous';
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        client = certificateName(call) ?? 'anonymous';
        if (!tokens || isPublicMethod(method)) {
          next(metadata);
          return;
        }
        const decision = authorize(tokens(), method, metadata.get('authorization').map(String), hashToken);
        if (decision.kind === 'allow') {
          client = decision.client;
          log.debug({ client, method }, 'gRPC call authorized');
          next(metadata);
          return;
        }
        const err: OrreryError = decision.error;
        metrics.clientCalls.inc({ client: decision.client, method: shortMethod(method), code: grpc.status[err.grpcStatus] });
        log.info({ client: decision.client, method, peer: call.getPeer(), code: err.code }, err.message);
        call.sendStatus({ code: err.grpcStatus, details: err.message, metadata: new grpc.Metadata() });
      })
      .build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        metrics.clientCalls.inc({ client, method: shortMethod(method), code: grpc.status[status.code] });
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
