/**
 * Leader election for the router's autoscaler: with several routers, exactly one scales at a time.
 * A {@link LeaderLock} is the shared record (a NATS KV key with a bucket TTL under serve-local, a
 * Kubernetes Lease under scale_target kubernetes); the elector tries to take or renew it every
 * third of the lease and tells its owner when this router starts or stops leading. It steps down
 * at the first renewal that fails or is refused: a leader that cannot prove it still holds the
 * lock stops scaling before another may take over (a whole lease later).
 */
import type { Logger } from '../../common/logger.js';

export interface LeaderLock {
  /** For logs: `nats-kv` or `kubernetes-lease`. */
  readonly kind: string;
  /**
   * Takes the lock when nobody holds it or its holder's lease ran out, renews it when this
   * process holds it. Resolves true when this process holds it now; false when another does;
   * rejects when the store cannot be reached (counts as not holding it).
   */
  acquireOrRenew(): Promise<boolean>;
  /** Gives the lock up if this process holds it, so another router need not wait out the lease. */
  release(): Promise<void>;
}

export interface LeaderElectorOptions {
  readonly lock: LeaderLock;
  /** The lease (ms): renewals come every third of it. */
  readonly leaseMs: number;
  readonly log: Logger;
  /** Called when this router starts (true) or stops (false) leading; never twice with the same value. */
  readonly onChange: (leader: boolean) => void;
}

export class LeaderElector {
  private leader = false;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastErrorLogged = '';

  constructor(private readonly options: LeaderElectorOptions) {}

  get isLeader(): boolean {
    return this.leader;
  }

  /** Tries at once, then every third of the lease. */
  start(): void {
    this.attempt = this.tryOnce();
    this.timer = setInterval(() => {
      this.attempt = this.attempt.then(() => this.tryOnce());
    }, Math.max(1, Math.floor(this.options.leaseMs / 3)));
    this.timer.unref();
  }

  private async tryOnce(): Promise<void> {
    if (this.stopped) return;
    let holds = false;
    try {
      holds = await this.options.lock.acquireOrRenew();
      this.lastErrorLogged = '';
    } catch (err) {
      const message = (err as Error).message;
      // Once per distinct error: a NATS outage would otherwise log at every renewal.
      if (message !== this.lastErrorLogged) this.options.log.warn({ lock: this.options.lock.kind, err: message }, 'autoscaler leader lock unreachable; not leading');
      this.lastErrorLogged = message;
    }
    if (this.stopped) return;
    this.set(holds);
  }

  private set(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.options.log.info({ lock: this.options.lock.kind }, leader ? 'this router now leads the autoscaler' : 'this router no longer leads the autoscaler');
    this.options.onChange(leader);
  }

  /** Stops trying; a leader steps down (onChange(false)) and releases the lock. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.attempt;
    const wasLeader = this.leader;
    this.set(false);
    if (wasLeader) await this.options.lock.release().catch((err: Error) => this.options.log.warn({ err: err.message }, 'could not release the autoscaler leader lock; it expires with its lease'));
  }
}
