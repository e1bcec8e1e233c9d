/**
 * The autoscaler's leader lock on Kubernetes: a coordination.k8s.io/v1 Lease (as
 * kube-controller-manager and client-go's leader election use), read and written through
 * @kubernetes/client-node. Who may write is decided by lease-policy.ts (pure); every write is a
 * create or a replace carrying the resourceVersion read, so of two routers writing at once the
 * API server takes one (409 Conflict for the other). The router's ServiceAccount needs get,
 * create and update on `leases` in the namespace (the chart's Role grants them).
 */
import type { CoordinationV1Api, KubeConfig, V1Lease } from '@kubernetes/client-node';
import { decideLease, type LeaseObservation } from './lease-policy.js';
import type { LeaderLock } from './leader-elector.js';

export interface KubernetesLeaseLockOptions {
  readonly namespace: string;
  /** The Lease's name (default `orrery-autoscaler`). */
  readonly name?: string;
  /** This router's identity, written as spec.holderIdentity (the pod name). */
  readonly holder: string;
  readonly leaseMs: number;
  readonly now: () => number;
  /** Credentials and API server; default KubeConfig.loadFromDefault() (in-cluster ServiceAccount). */
  readonly kubeConfig?: KubeConfig;
}

type ClientNode = typeof import('@kubernetes/client-node');

export class KubernetesLeaseLock implements LeaderLock {
  readonly kind = 'kubernetes-lease';
  private seen: LeaseObservation | undefined;

  private constructor(
    private readonly options: KubernetesLeaseLockOptions,
    private readonly client: ClientNode,
    private readonly api: CoordinationV1Api,
  ) {}

  static async create(options: KubernetesLeaseLockOptions): Promise<KubernetesLeaseLock> {
    const client = await import('@kubernetes/client-node');
    let kc = options.kubeConfig;
    if (!kc) {
      kc = new client.KubeConfig();
      kc.loadFromDefault();
    }
    return new KubernetesLeaseLock(options, client, kc.makeApiClient(client.CoordinationV1Api));
  }

  private get name(): string {
    return this.options.name ?? 'orrery-autoscaler';
  }

  async acquireOrRenew(): Promise<boolean> {
    const { namespace, holder } = this.options;
    const lease = await this.read();
    const now = this.options.now();
    const { decision, seen } = decideLease(lease && {
      holder: lease.spec?.holderIdentity ?? '', durationMs: (lease.spec?.leaseDurationSeconds ?? 0) * 1000, version: lease.metadata?.resourceVersion ?? '',
    }, this.seen, holder, now);
    this.seen = seen;
    if (decision.kind === 'wait') return false;
    const renewTime = new this.client.V1MicroTime(now);
    const spec = { holderIdentity: holder, leaseDurationSeconds: Math.ceil(this.options.leaseMs / 1000), renewTime };
    try {
      if (decision.kind === 'create') {
        await this.api.createNamespacedLease({ namespace, body: { metadata: { name: this.name, namespace }, spec: { ...spec, acquireTime: renewTime, leaseTransitions: 0 } } });
      } else {
        const taking = decision.kind === 'take-over';
        const transitions = (lease!.spec?.leaseTransitions ?? 0) + (taking ? 1 : 0);
        await this.api.replaceNamespacedLease({
          name: this.name, namespace,
          body: { metadata: { ...lease!.metadata, name: this.name, namespace }, spec: { ...lease!.spec, ...spec, leaseTransitions: transitions, ...(taking ? { acquireTime: renewTime } : {}) } },
        });
      }
      return true;
    } catch (err) {
      // Another router wrote first (409 Conflict, or 409 AlreadyExists on create): not ours.
      if (statusOf(err) === 409) return false;
      throw err;
    }
  }

  async release(): Promise<void> {
    const lease = await this.read();
    if (!lease || lease.spec?.holderIdentity !== this.options.holder) return;
    await this.api.replaceNamespacedLease({ name: this.name, namespace: this.options.namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: '' } } });
  }

  /** The Lease, or undefined when it does not exist yet. */
  private async read(): Promise<V1Lease | undefined> {
    try {
      return await this.api.readNamespacedLease({ name: this.name, namespace: this.options.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }
}

function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}
