/**
 * Where the autoscaler's decisions land: one interface, one file per kind beside this one
 * (`kubernetes.ts` patches Deployments' scale subresource; `local.ts` asks serve-local to start
 * and stop replica processes). `none` has no file: the autoscaler then only exports its
 * decisions as metrics (e.g. when KEDA does the scaling).
 */
import type { DeploymentConfig } from '../../common/config.js';

export interface ScaleTarget {
  /** For logs and errors, e.g. `kubernetes`. */
  readonly kind: string;
  /**
   * The replica count the target runs now (Kubernetes: the Deployment's `spec.replicas`), so a
   * restarted router continues from it; undefined when the target cannot tell.
   */
  currentReplicas(deployment: DeploymentConfig): Promise<number | undefined>;
  /** Sets the replica count; rejects (with the target's reason) when it could not. */
  setReplicas(deployment: DeploymentConfig, replicas: number, reason: string): Promise<void>;
  close(): Promise<void>;
}

/** A target refused or failed a request; `status` is the HTTP status when there is one. */
export class ScaleTargetError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ScaleTargetError';
  }
}
