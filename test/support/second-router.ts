/**
 * A second router beside a test cluster (test/integration/harness.ts): the same config on the same
 * nats-server, started as its own process by serve-local's LocalCluster with no replicas and no
 * NATS of its own, so both routers share the cluster's replicas as two router pods do behind a
 * Kubernetes Service. It is not restarted when it dies (the HA tests kill it on purpose).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as fromYaml, stringify as toYaml } from 'yaml';
import { imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { LocalCluster } from '../../services/cli/local-cluster.js';
import { loadConfig } from '../../services/cli/load-config.js';
import type { TestCluster } from '../integration/harness.js';

export interface SecondRouter {
  readonly cluster: LocalCluster;
  readonly client: ImageServiceClient;
  readonly grpcAddress: string;
  /** Stops the router (if still running) and closes its client. */
  stop(): Promise<void>;
}

/** Starts a second router for `c` (its config, its NATS); resolves once it serves health. */
export async function startSecondRouter(c: TestCluster): Promise<SecondRouter> {
  const raw = fromYaml(fs.readFileSync(path.join(c.dir, 'config.yaml'), 'utf8')) as { deployments: Record<string, Record<string, unknown>> };
  // The cluster runs the replicas; this one only routes to them.
  for (const d of Object.values(raw.deployments)) if (!d.autoscaling) d.replicas = 0;
  const file = path.join(c.dir, 'config-router-2.yaml');
  fs.writeFileSync(file, toYaml(raw));
  const logFd = fs.openSync(c.logFile, 'a');
  const cluster = await LocalCluster.start({ loaded: loadConfig(file, {}, {}), natsUrl: c.cluster.natsUrl, grpcPort: 0, logs: logFd, restartRouter: false, restartReplicas: false, readyTimeoutMs: 30_000 });
  const client = imageServiceClient(cluster.grpcAddress);
  return {
    cluster, client, grpcAddress: cluster.grpcAddress,
    stop: async () => {
      client.close();
      await cluster.stop();
      fs.closeSync(logFd);
    },
  };
}
