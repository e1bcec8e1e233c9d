/** Connecting to NATS with the reconnect policy, credentials and TLS every Orrery process uses. */
import { connect, errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { Counter, type Registry } from 'prom-client';
import { NatsAuthError } from './errors.js';
import { natsAuthOptions, natsIdentity } from './nats-auth-options.js';
import type { NatsSecurityConfig } from './nats-security-config.js';
import type { Logger } from './logger.js';

export interface NatsConnectOptions {
  /** `nats.auth` / `nats.tls` of the config; absent: anonymous, plain TCP. */
  readonly security?: NatsSecurityConfig;
  /**
   * Subject prefix of this connection's inboxes (request replies, JetStream deliveries); one per
   * role (nats-permissions.ts `inboxPrefix`) so a worker's NATS user cannot read a router's.
   */
  readonly inboxPrefix?: string;
  /** Where `orrery_nats_permission_errors_total` is counted (the process's /metrics). */
  readonly registry?: Registry;
}

const PERMISSION_ERRORS = 'orrery_nats_permission_errors_total';

function permissionCounter(registry: Registry | undefined): Counter<'operation'> | undefined {
  if (!registry) return undefined;
  const existing = registry.getSingleMetric(PERMISSION_ERRORS);
  if (existing) return existing as Counter<'operation'>;
  return new Counter({ name: PERMISSION_ERRORS, help: 'Publishes and subscriptions nats-server refused for lack of permission (operation: publish or subscription)', labelNames: ['operation'], registers: [registry] });
}

const isAuthError = (err: unknown): err is Error => err instanceof natsErrors.AuthorizationError || err instanceof natsErrors.UserAuthenticationExpiredError;

/**
 * Connects and keeps reconnecting forever: a NATS restart must never take a router or replica
 * down, nor a server that refuses the credentials for a while (during a password rotation the
 * server may restart before the new password file reaches the pod; the file is read again at
 * every attempt). Refused credentials at start are different: one first attempt that the server
 * refuses fails the start at once with NatsAuthError. Status changes are logged; a permission
 * violation is logged with its subject and counted.
 */
export async function connectNats(url: string, name: string, log: Logger, options: NatsConnectOptions = {}): Promise<NatsConnection> {
  const security = options.security ?? { auth: {} };
  const auth = natsAuthOptions(security);
  const permissionErrors = permissionCounter(options.registry);
  const common = {
    servers: url.split(','),
    name,
    ...(auth.authenticator ? { authenticator: auth.authenticator } : {}),
    ...(auth.tls ? { tls: auth.tls } : {}),
    ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
  };
  // The first attempt, alone: refused credentials (or none where the server wants some) end the
  // start here. A server that cannot be reached is left to the connection below, which waits.
  const probe = await connect({ ...common, reconnect: false, maxReconnectAttempts: 0 }).catch((err: unknown) => {
    if (isAuthError(err)) throw new NatsAuthError(natsIdentity(security), `the server at ${url} refused the credentials (${err.message})`, { cause: err });
    return undefined;
  });
  await probe?.close();
  const nc = await connect({
    ...common,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    ignoreAuthErrorAbort: true,
    pingInterval: 2000,
    maxPingOut: 2,
    // Without this, every request() and JetStream call builds Error objects (stack captured) up
    // front to report where it was made, whether or not it fails: measurable CPU on the hot paths
    // that make one per item (bulk-job KV reads and writes, acks; the router's batches once used
    // request() too, before they moved to one inbox subscription). Timeout and no-responders
    // errors keep their types and messages; only the caller's stack is lost, which no log prints.
    noAsyncTraces: true,
  });
  void (async () => {
    // A refusal is retried every reconnectTimeWait: log the first of a run, not each attempt.
    let refusedSinceReconnect = false;
    for await (const s of nc.status()) {
      if (s.type === 'reconnect') refusedSinceReconnect = false;
      if (s.type === 'error' && s.error instanceof natsErrors.PermissionViolationError) {
        permissionErrors?.inc({ operation: s.error.operation });
        log.error({ nats: 'permission', operation: s.error.operation, subject: s.error.subject, identity: natsIdentity(security) }, `nats permission violation: ${s.error.operation} to ${s.error.subject} refused`);
      } else if (s.type === 'error' && isAuthError(s.error)) {
        if (refusedSinceReconnect) continue;
        refusedSinceReconnect = true;
        log.error({ nats: 'auth', identity: natsIdentity(security) }, `nats refused the credentials of ${natsIdentity(security)}; retrying (the secret file is read again at every attempt)`);
      } else if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') {
        log.info({ nats: s.type }, 'nats status');
      }
    }
  })();
  return nc;
}
