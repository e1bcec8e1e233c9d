/** Connecting to NATS with the reconnect policy every Orrery process uses. */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './logger.js';

/**
 * Connects and keeps reconnecting forever: a NATS restart must never take a router or replica
 * down. Status changes are logged.
 */
export async function connectNats(url: string, name: string, log: Logger): Promise<NatsConnection> {
  const nc = await connect({
    servers: url.split(','),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
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
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'error') log.info({ nats: s.type }, 'nats status');
    }
  })();
  return nc;
}
