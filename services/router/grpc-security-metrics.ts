/**
 * Metrics of the router's gRPC security (CONVENTIONS §8): calls per client (the token's name, a
 * verified client certificate's common name, or `anonymous`/`unauthenticated`), and the reloads
 * of the TLS and token files. Registered on the router's registry.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class GrpcSecurityMetrics {
  readonly clientCalls: Counter<'client' | 'method' | 'code'>;
  readonly tlsReloads: Counter<'result'>;
  readonly tlsCertificateExpiry: Gauge;
  readonly tokenReloads: Counter<'result'>;

  constructor(registry: Registry) {
    this.clientCalls = new Counter({
      name: 'orrery_grpc_client_calls_total',
      help: 'gRPC calls by client (token name, client certificate CN, anonymous, or unauthenticated), method and final status code',
      labelNames: ['client', 'method', 'code'], registers: [registry],
    });
    this.tlsReloads = new Counter({ name: 'orrery_grpc_tls_reloads_total', help: 'Reads of changed gRPC TLS files: loaded (in use for new connections) or rejected (unusable; the previous set stays)', labelNames: ['result'], registers: [registry] });
    this.tlsCertificateExpiry = new Gauge({ name: 'orrery_grpc_tls_certificate_expiry_timestamp_seconds', help: 'Expiry (notAfter) of the gRPC server certificate in use, Unix seconds', registers: [registry] });
    this.tokenReloads = new Counter({ name: 'orrery_grpc_token_reloads_total', help: 'Reads of a changed bearer tokens file: loaded or rejected (invalid; the previous tokens stay)', labelNames: ['result'], registers: [registry] });
  }
}
