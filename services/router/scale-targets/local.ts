/**
 * The local scale target: the router asks `orrery serve-local` (services/cli/local-cluster.ts),
 * over NATS, to run N replica processes of a deployment; serve-local starts them, or stops some
 * with SIGTERM (a drain: nothing in flight is lost), and answers with the count it now runs.
 *
 * Subject `<prefix>.scale.<deployment>`, request/reply, so a router learns when nobody applies
 * its decisions (no responders) instead of publishing into the void. The messages are small JSON
 * documents rather than protobuf: they travel between two processes of one machine and never
 * reach a replica, and JSON keeps worker.proto about the data path.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { DeploymentConfig } from '../../common/config.js';
import { ScaleTargetError, type ScaleTarget } from './scale-target.js';

/** The scale subject of one deployment; `scaleSubject(prefix, '*')` subscribes to all. */
export const scaleSubject = (prefix: string, deployment: string): string => `${prefix}.scale.${deployment}`;

/** Router → serve-local. `replicas` absent: only asks how many run. */
export interface ScaleRequest {
  readonly deployment: string;
  readonly replicas?: number;
  readonly reason?: string;
}

/** serve-local → router: the count it runs (or is starting) after applying the request. */
export type ScaleReply = { readonly replicas: number } | { readonly error: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const encodeScaleMessage = (m: ScaleRequest | ScaleReply): Uint8Array => encoder.encode(JSON.stringify(m));
export const decodeScaleMessage = <T extends ScaleRequest | ScaleReply>(data: Uint8Array): T => JSON.parse(decoder.decode(data)) as T;

export class LocalScaleTarget implements ScaleTarget {
  readonly kind = 'local';

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
    private readonly timeoutMs = 5000,
  ) {}

  async currentReplicas(d: DeploymentConfig): Promise<number | undefined> {
    return this.ask({ deployment: d.name });
  }

  async setReplicas(d: DeploymentConfig, replicas: number, reason: string): Promise<void> {
    await this.ask({ deployment: d.name, replicas, reason });
  }

  async close(): Promise<void> {}

  private async ask(req: ScaleRequest): Promise<number> {
    let reply: ScaleReply;
    try {
      const msg = await this.nc.request(scaleSubject(this.prefix, req.deployment), encodeScaleMessage(req), { timeout: this.timeoutMs });
      reply = decodeScaleMessage<ScaleReply>(msg.data);
    } catch (err) {
      throw new ScaleTargetError(`asking serve-local to scale ${req.deployment}: ${(err as Error).message} (is this router run by orrery serve-local?)`, undefined, { cause: err });
    }
    if ('error' in reply) throw new ScaleTargetError(`serve-local could not scale ${req.deployment}: ${reply.error}`);
    return reply.replicas;
  }
}
