/**
 * The autoscaler's leader lock on NATS (serve-local, or any cluster without Kubernetes): one key
 * in a KV bucket whose TTL is the lease. The server removes the key a lease after its last write,
 * so a router that died (kill -9, lost node) frees it with no clock shared between routers;
 * the holder renews by compare-and-set on the revision it wrote last, so a holder that lost the
 * key (it expired while this router was paused) cannot overwrite its new holder.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { LeaderLock } from './leader-elector.js';

const KEY = 'autoscaler';

export class NatsKvLock implements LeaderLock {
  readonly kind = 'nats-kv';
  private kv: KV | undefined;
  /** The revision of this router's last write while it holds the key. */
  private revision = 0;

  /**
   * @param bucket KV bucket name (letters, digits, `-`, `_`): `<prefix>_autoscaler_leader`.
   * @param holder this router's id, written as the key's value (for operators: who leads).
   */
  constructor(
    private readonly nc: NatsConnection,
    private readonly bucket: string,
    private readonly holder: string,
    private readonly leaseMs: number,
  ) {}

  /** The bucket name for NATS subject prefix `prefix`. */
  static bucketFor(prefix: string): string {
    return `${prefix.replace(/\./g, '_')}_autoscaler_leader`;
  }

  private async open(): Promise<KV> {
    this.kv ??= await new Kvm(this.nc).create(this.bucket, { history: 1, ttl: this.leaseMs });
    return this.kv;
  }

  async acquireOrRenew(): Promise<boolean> {
    const kv = await this.open();
    if (this.revision > 0) {
      try {
        this.revision = await kv.update(KEY, this.holder, this.revision);
        return true;
      } catch {
        // Expired and taken (or recreated) by another router: no longer ours.
        this.revision = 0;
      }
    }
    try {
      this.revision = await kv.create(KEY, this.holder);
      return true;
    } catch {
      // Held. By this router, when a renewal failed in transit but reached the server: take it back.
      const e = await kv.get(KEY);
      if (!e || e.operation !== 'PUT' || e.string() !== this.holder) return false;
      this.revision = await kv.update(KEY, this.holder, e.revision);
      return true;
    }
  }

  async release(): Promise<void> {
    if (this.revision === 0 || !this.kv) return;
    const revision = this.revision;
    this.revision = 0;
    await this.kv.delete(KEY, { previousSeq: revision });
  }
}
