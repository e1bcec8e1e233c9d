/**
 * One real Replica on its own real nats-server, for tests that speak the worker protocol to it
 * directly (BatchRequests on its subject, replies, heartbeats): the nats-server process, a test
 * connection, the replica under `replicaId` serving `deployment`, and a temporary directory that
 * is its model repository (tests may put files there, e.g. the synthetic stage's call log).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { Replica } from '../../services/worker/replica.js';

export interface ReplicaOnNats {
  readonly nats: NatsServerProcess;
  readonly nc: NatsConnection;
  readonly replica: Replica;
  readonly dir: string;
  /** Drains the replica, closes the connection and nats-server, removes the directory. */
  stop(): Promise<void>;
}

export interface ReplicaOnNatsOptions {
  readonly replicaId: string;
  readonly deployment: string;
  /** The cluster config's `deployments`, given the temporary directory. */
  readonly deployments: (dir: string) => Record<string, object>;
  /** More top-level config keys (e.g. max_inline_payload_bytes). */
  readonly config?: Record<string, unknown>;
}

export async function startReplicaOnNats(o: ReplicaOnNatsOptions): Promise<ReplicaOnNats> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `orrery-${o.replicaId}-`));
  const nats = await NatsServerProcess.start();
  const nc = await connect({ servers: nats.url });
  const config = compileConfig({
    nats: { url: nats.url, prefix: 'orrery' },
    worker: { heartbeat_interval_ms: 100 },
    model_repository: dir,
    ...o.config,
    deployments: o.deployments(dir),
  });
  const replica = await Replica.start({ config, deployment: o.deployment, log: createLogger('test', 'silent'), replicaId: o.replicaId, metricsPort: 0 });
  return {
    nats, nc, replica, dir,
    stop: async () => {
      await replica.drain();
      await nc.close();
      await nats.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
