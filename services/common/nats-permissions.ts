/**
 * Least-privilege NATS users: what a router and a worker may publish and subscribe to, built from
 * the subjects of subjects.ts under the config's prefix, and the nats-server `authorization`
 * block that grants them. `orrery nats-config` prints the block, serve-local --nats-auth runs
 * nats-server with it, and the chart renders the same lists (test/chart checks they agree).
 */
import { subjects } from './subjects.js';

export type NatsRole = 'router' | 'worker';

export interface NatsPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

/** Inboxes (request replies, JetStream deliveries) of one role, so roles cannot read each other's. */
export const inboxPrefix = (prefix: string, role: NatsRole): string => `_INBOX.${prefix}.${role}`;

/** The JetStream API subjects that use one stream (an object store bucket is stream `OBJ_<bucket>`). */
function streamApi(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`, `$JS.API.STREAM.CREATE.${stream}`, `$JS.API.STREAM.PURGE.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`, `$JS.API.STREAM.MSG.DELETE.${stream}`, `$JS.API.DIRECT.GET.${stream}`, `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`, `$JS.API.CONSUMER.CREATE.${stream}.>`, `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`, `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`, `$JS.FC.${stream}.>`,
  ];
}

/**
 * Router: sends batches, cancellations and heartbeat requests, reads heartbeats and its inbox,
 * owns the jobs (their work stream `<prefix>.jobs.>`, the KV buckets and any object store a
 * job writes to) and the JetStream API. Worker: reads batches, cancellations and heartbeat
 * requests, publishes heartbeats and the replies and progress of batches, and uses the payload
 * object store only — no job stream, no job KV, no other replica's or router's requests.
 * serve-local's supervisor answers scale requests (`<prefix>.scale.*`) as the router user; routers
 * report their queues to the autoscaler's leader on `<prefix>.autoscaler.>` (its lock is a KV key).
 */
export function natsPermissions(prefix: string): Record<NatsRole, NatsPermissions> {
  const s = subjects(prefix);
  const payloadStream = `OBJ_${s.payloadBucket}`;
  return {
    router: {
      publish: [s.batch('*'), s.cancel('*'), s.heartbeatRequest, `${prefix}.scale.*`, `${prefix}.autoscaler.>`, `${prefix}.jobs.>`, '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', '$KV.>', '$O.>'],
      subscribe: [s.heartbeatAll, `${s.routerInbox('*')}.>`, `${prefix}.scale.*`, `${prefix}.autoscaler.>`, `${inboxPrefix(prefix, 'router')}.>`],
    },
    worker: {
      publish: [s.heartbeatAll, `${s.routerInbox('*')}.reply.>`, `${s.routerInbox('*')}.progress.>`, '$JS.API.INFO', ...streamApi(payloadStream), `$O.${s.payloadBucket}.>`],
      subscribe: [s.batch('*'), s.cancel('*'), s.heartbeatRequest, `${inboxPrefix(prefix, 'worker')}.>`],
    },
  };
}

/** One user's credential in the server config: a password (plain or a bcrypt hash) or an nkey public key. */
export type NatsServerCredential = { readonly user: string; readonly password: string } | { readonly nkey: string };

/** The nats-server `authorization { users = [...] }` block for a router user and a worker user. */
export function natsAuthorizationBlock(prefix: string, users: Record<NatsRole, NatsServerCredential>): string {
  const perms = natsPermissions(prefix);
  const list = (xs: readonly string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
  const lines = (['router', 'worker'] as const).map((role) => {
    const c = users[role];
    const who = 'nkey' in c ? `nkey: ${JSON.stringify(c.nkey)}` : `user: ${JSON.stringify(c.user)}, password: ${JSON.stringify(c.password)}`;
    const p = perms[role];
    // A router acknowledges replies that carry stored images (replica.ts answer()): it may answer the requests it receives.
    const responses = role === 'router' ? ', allow_responses: true' : '';
    return `    # ${role}\n    { ${who},\n      permissions: { publish: { allow: ${list(p.publish)} },\n                     subscribe: { allow: ${list(p.subscribe)} }${responses} } }`;
  });
  return `authorization {\n  users = [\n${lines.join('\n')}\n  ]\n}\n`;
}
