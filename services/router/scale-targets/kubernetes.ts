/**
 * The kubernetes scale target: reads and patches each Deployment's `scale` subresource
 * (`/apis/apps/v1/namespaces/NS/deployments/NAME/scale`) through @kubernetes/client-node, the way
 * `kubectl scale` and the HorizontalPodAutoscaler do. The router's ServiceAccount needs `get` and
 * `patch` on `deployments/scale` in the namespace (the chart's Role grants them).
 */
import type { ApiException, AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import type { DeploymentConfig } from '../../common/config.js';
import { ScaleTargetError, type ScaleTarget } from './scale-target.js';

export interface KubernetesScaleTargetOptions {
  /** Namespace of the Deployments (config `autoscaler.kubernetes_namespace`). */
  readonly namespace: string;
  /**
   * Credentials and API server. Default: `KubeConfig.loadFromDefault()` — $KUBECONFIG,
   * ~/.kube/config, else the in-cluster ServiceAccount.
   */
  readonly kubeConfig?: KubeConfig;
  /** Recorded as the patch's field manager (shown in `kubectl get -o yaml --show-managed-fields`). */
  readonly fieldManager?: string;
}

/** The Deployment name the kubernetes target scales for an Orrery deployment. */
export function kubernetesDeploymentName(d: DeploymentConfig): string {
  return d.autoscaling?.kubernetesDeployment ?? d.name;
}

type ClientNode = typeof import('@kubernetes/client-node');

export class KubernetesScaleTarget implements ScaleTarget {
  readonly kind = 'kubernetes';

  private constructor(
    private readonly options: KubernetesScaleTargetOptions,
    private readonly client: ClientNode,
    private readonly api: AppsV1Api,
  ) {}

  /**
   * Loads the client and the credentials. The client is an ES module: imported, not required,
   * so this works on every Node 20 (require() of ES modules needs 20.19).
   */
  static async create(options: KubernetesScaleTargetOptions): Promise<KubernetesScaleTarget> {
    const client = await import('@kubernetes/client-node');
    let kc = options.kubeConfig;
    if (!kc) {
      kc = new client.KubeConfig();
      kc.loadFromDefault();
    }
    return new KubernetesScaleTarget(options, client, kc.makeApiClient(client.AppsV1Api));
  }

  async currentReplicas(d: DeploymentConfig): Promise<number | undefined> {
    const name = kubernetesDeploymentName(d);
    try {
      const scale = await this.api.readNamespacedDeploymentScale({ name, namespace: this.options.namespace });
      return scale.spec?.replicas ?? 0;
    } catch (err) {
      throw this.error('reading', name, err);
    }
  }

  async setReplicas(d: DeploymentConfig, replicas: number, _reason: string): Promise<void> {
    const name = kubernetesDeploymentName(d);
    try {
      // A JSON merge patch touches spec.replicas alone (the client's default content type is a
      // JSON patch; the scale subresource accepts both).
      await this.api.patchNamespacedDeploymentScale(
        { name, namespace: this.options.namespace, body: { spec: { replicas } }, fieldManager: this.options.fieldManager ?? 'orrery-autoscaler' },
        this.client.setHeaderOptions('Content-Type', this.client.PatchStrategy.MergePatch),
      );
    } catch (err) {
      throw this.error('patching', name, err);
    }
  }

  async close(): Promise<void> {}

  private error(what: string, name: string, err: unknown): ScaleTargetError {
    const status = typeof (err as ApiException<unknown>)?.code === 'number' ? (err as ApiException<unknown>).code : undefined;
    const hint = status === 403 ? ' (the router\'s ServiceAccount needs get and patch on deployments/scale)'
      : status === 404 ? ' (no such Deployment: check autoscaling.kubernetes_deployment and autoscaler.kubernetes_namespace)' : '';
    const detail = status === undefined ? (err as Error)?.message ?? String(err) : `HTTP ${status}`;
    return new ScaleTargetError(`${what} the scale of Deployment ${this.options.namespace}/${name}: ${detail}${hint}`, status, { cause: err });
  }
}
