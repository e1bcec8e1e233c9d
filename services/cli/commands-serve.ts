/** `orrery serve-local`, `orrery router` and `orrery worker`: the long-running commands. */
import { Option, type Command } from 'commander';
import { SCALE_TARGETS, type ScaleTargetKind } from '../common/config.js';
import { ConfigError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { Router } from '../router/router.js';
import { Replica } from '../worker/replica.js';
import { LocalCluster } from './local-cluster.js';
import { loadConfig, parseReplicaCounts } from './load-config.js';
import { prepareLocalModels } from '../models/local-models.js';

const collect = (v: string, prev: string[]) => [...prev, v];
const port = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`not a port: ${v}`);
  return n;
};

/** Runs `stop` on the first SIGINT/SIGTERM, exits when it finishes; a second signal forces exit. */
function onShutdown(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`orrery: ${sig} again; exiting now\n`);
      process.exit(130);
    }
    stopping = true;
    stop().then(
      () => process.exit(process.exitCode ?? 0),
      (err: Error) => {
        process.stderr.write(`orrery: shutdown failed: ${err.message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  // Started by serve-local (an IPC channel to the parent): if the parent dies without stopping us,
  // the channel closes and we drain and exit instead of living on as an orphan.
  if (process.channel) {
    process.channel.unref();
    process.on('disconnect', () => handler('SIGTERM'));
  }
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve-local')
    .description('Run a whole cluster on this machine: nats-server, the router and the replicas of each deployment, as separate processes.')
    .option('--config <file>', 'cluster config YAML (default: the embedded local config, deploy/config/local.yaml)')
    .option('--grpc-port <n>', 'router gRPC port; 0 picks a free one', port)
    .option('--nats-url <url>', 'use this NATS instead of starting nats-server')
    .option('--replicas <name=n>', 'replicas of a deployment (repeatable), e.g. --replicas synthetic=2', collect, [])
    .option('--model-repository <dir>', 'model repository directory (default: the config\'s model_repository)')
    .option('--quiet', 'do not show the processes\' logs')
    .option('--nats-auth', 'run nats-server with authorization: throwaway router and worker users with least-privilege permissions (not with --nats-url)')
    .addHelpText('after', '\nPrints one line `ready grpc=HOST:PORT metrics=URL` when it can serve. Ctrl-C drains and stops everything.')
    .action(async (opts: { config?: string; grpcPort?: number; natsUrl?: string; replicas: string[]; modelRepository?: string; quiet?: boolean; natsAuth?: boolean }) => {
      if (opts.natsAuth && opts.natsUrl) throw new ConfigError('--nats-auth', 'applies to the nats-server serve-local starts, not to --nats-url');
      const loaded = loadConfig(opts.config, { natsUrl: opts.natsUrl, modelRepository: opts.modelRepository, replicas: parseReplicaCounts(opts.replicas) });
      for (const line of await prepareLocalModels(loaded.config)) process.stderr.write(`orrery: made ${line}\n`);
      const cluster = await LocalCluster.start({ loaded, natsUrl: opts.natsUrl, grpcPort: opts.grpcPort, logs: opts.quiet ? 'ignore' : 'inherit', natsAuth: opts.natsAuth });
      onShutdown(() => cluster.stop());
      process.stdout.write(`ready grpc=${cluster.grpcAddress} metrics=${cluster.metricsUrl}\n`);
    });

  program
    .command('router')
    .description('Run the router (cluster mode): gRPC API, scheduling and dispatch over NATS.')
    .option('--config <file>', 'cluster config YAML (default: the embedded local config)')
    .option('--grpc-port <n>', 'gRPC port (default: router.grpc_port); 0 picks a free one', port)
    .option('--metrics-port <n>', 'metrics port (default: router.metrics_port); 0 picks a free one', port)
    .option('--nats-url <url>', 'NATS URL (default: nats.url, or $ORRERY_NATS_URL)')
    .addOption(new Option('--scale-target <kind>', 'where autoscaling decisions go (default: autoscaler.scale_target): none, local (serve-local), kubernetes').choices(SCALE_TARGETS))
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .action(async (opts: { config?: string; grpcPort?: number; metricsPort?: number; natsUrl?: string; scaleTarget?: ScaleTargetKind; logLevel: string }) => {
      const { config } = loadConfig(opts.config, { natsUrl: opts.natsUrl });
      const log = createLogger('orrery-router', opts.logLevel);
      const router = await Router.start({ config, log, grpcPort: opts.grpcPort, metricsPort: opts.metricsPort, scaleTarget: opts.scaleTarget });
      onShutdown(() => router.stop());
      process.stdout.write(`ready grpc=${router.grpcAddress} metrics=${router.metricsUrl}\n`);
    });

  program
    .command('worker')
    .description('Run one replica of a deployment (cluster mode).')
    .requiredOption('--deployment <name>', 'the deployment this replica serves (a key of deployments in the config)')
    .option('--config <file>', 'cluster config YAML (default: the embedded local config)')
    .option('--metrics-port <n>', 'metrics port (default: worker.metrics_port); 0 picks a free one', port)
    .option('--nats-url <url>', 'NATS URL (default: nats.url, or $ORRERY_NATS_URL)')
    .option('--replica-id <id>', 'replica id (default: <deployment>-<random>; letters, digits, _ and -)')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .action(async (opts: { deployment: string; config?: string; metricsPort?: number; natsUrl?: string; replicaId?: string; logLevel: string }) => {
      const { config } = loadConfig(opts.config, { natsUrl: opts.natsUrl });
      const log = createLogger('orrery-worker', opts.logLevel).child({ deployment: opts.deployment });
      const replica = await Replica.start({ config, deployment: opts.deployment, log, replicaId: opts.replicaId, metricsPort: opts.metricsPort });
      onShutdown(() => replica.drain());
      process.stdout.write(`ready replica=${replica.id} metrics=${replica.metricsUrl}\n`);
    });
}
