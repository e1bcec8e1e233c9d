/**
 * The router's gRPC security in one place for router.ts: server credentials (plaintext, or TLS
 * with optional mTLS, reloaded on change; grpc-tls.ts) and the interceptor that checks bearer
 * tokens and counts calls per client (grpc-auth.ts). docs/security-grpc.md describes the whole.
 */
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import type { GrpcSecurityConfig } from '../common/grpc-security-config.js';
import type { Logger } from '../common/logger.js';
import { ReloadingTokenFile, authInterceptor } from './grpc-auth.js';
import { GrpcSecurityMetrics } from './grpc-security-metrics.js';
import { ReloadingTlsFiles, tlsServerCredentials } from './grpc-tls.js';

export class GrpcSecurity {
  private constructor(
    readonly credentials: grpc.ServerCredentials,
    /** For the grpc.Server option `interceptors`; empty on a plaintext port without tokens. */
    readonly interceptors: grpc.ServerInterceptor[],
    private readonly tls: ReloadingTlsFiles | undefined,
    private readonly tokens: ReloadingTokenFile | undefined,
  ) {}

  /** Reads the certificate and token files (a ConfigError naming the key if one is unusable) and starts watching them. */
  static async start(config: GrpcSecurityConfig, registry: Registry, log: Logger): Promise<GrpcSecurity> {
    if (!config.tls && !config.auth) return new GrpcSecurity(grpc.ServerCredentials.createInsecure(), [], undefined, undefined);
    const metrics = new GrpcSecurityMetrics(registry);
    let tls: ReloadingTlsFiles | undefined;
    let tokens: ReloadingTokenFile | undefined;
    try {
      if (config.tls) {
        tls = await ReloadingTlsFiles.open(config.tls, log, {
          loaded: (notAfterMs) => {
            metrics.tlsReloads.inc({ result: 'loaded' });
            metrics.tlsCertificateExpiry.set(notAfterMs / 1000);
          },
          rejected: () => metrics.tlsReloads.inc({ result: 'rejected' }),
        });
      }
      if (config.auth) tokens = await ReloadingTokenFile.open(config.auth, log, metrics);
    } catch (err) {
      tls?.close();
      throw err;
    }
    const credentials = tls ? tlsServerCredentials(tls, config.tls!.clientAuth) : grpc.ServerCredentials.createInsecure();
    const interceptor = authInterceptor({ metrics, log, ...(tokens ? { tokens: () => tokens.table } : {}) });
    return new GrpcSecurity(credentials, [interceptor], tls, tokens);
  }

  /** Stops watching the files. */
  close(): void {
    this.tls?.close();
    this.tokens?.close();
  }
}
