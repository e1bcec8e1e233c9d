/**
 * `orrery nats-config`: prints the nats-server `authorization` block with a router user and a
 * worker user and their least-privilege permissions (services/common/nats-permissions.ts) for
 * the cluster config's prefix. Include it in nats-server.conf (`include ./orrery-auth.conf`).
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { ConfigError } from '../common/errors.js';
import { natsAuthorizationBlock, type NatsServerCredential } from '../common/nats-permissions.js';
import { loadConfig } from './load-config.js';

interface Options {
  config?: string;
  routerUser: string;
  routerPasswordFile?: string;
  routerNkey?: string;
  workerUser: string;
  workerPasswordFile?: string;
  workerNkey?: string;
  out?: string;
}

function credential(role: string, user: string, passwordFile: string | undefined, nkey: string | undefined): NatsServerCredential {
  if ((passwordFile === undefined) === (nkey === undefined)) throw new ConfigError(`--${role}-password-file`, `give either --${role}-password-file or --${role}-nkey`);
  if (nkey !== undefined) {
    if (!/^U[A-Z2-7]{55}$/.test(nkey)) throw new ConfigError(`--${role}-nkey`, 'must be a user nkey public key (U followed by 55 base32 characters)');
    return { nkey };
  }
  let password: string;
  try {
    password = fs.readFileSync(passwordFile!, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new ConfigError(`--${role}-password-file`, `cannot read ${passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (password === '') throw new ConfigError(`--${role}-password-file`, `${passwordFile} is empty`);
  return { user, password };
}

export function registerNatsConfigCommand(program: Command): void {
  program
    .command('nats-config')
    .description('Print the nats-server authorization block: a router user and a worker user with least-privilege subject permissions for the config\'s nats.prefix.')
    .option('--config <file>', 'cluster config YAML (its nats.prefix; default: the embedded local config)')
    .option('--router-user <name>', 'the routers\' user name', 'router')
    .option('--router-password-file <file>', 'file holding the routers\' password (plain, or a bcrypt hash from `nats server passwd`)')
    .option('--router-nkey <public-key>', 'the routers\' nkey public key (U...), instead of a password')
    .option('--worker-user <name>', 'the workers\' user name', 'worker')
    .option('--worker-password-file <file>', 'file holding the workers\' password (plain or bcrypt)')
    .option('--worker-nkey <public-key>', 'the workers\' nkey public key (U...), instead of a password')
    .option('--out <file>', 'write the block to this file (mode 0600) instead of stdout')
    .addHelpText('after', `
Example:
  orrery nats-config --config cluster.yaml --router-password-file router.pw --worker-password-file worker.pw --out auth.conf
  (nats-server.conf: include ./auth.conf; routers then run with ORRERY_NATS_USER=router and
   ORRERY_NATS_PASSWORD_FILE=router.pw, workers with the worker's)`)
    .action((o: Options) => {
      const { config } = loadConfig(o.config);
      const block = natsAuthorizationBlock(config.nats.prefix, {
        router: credential('router', o.routerUser, o.routerPasswordFile, o.routerNkey),
        worker: credential('worker', o.workerUser, o.workerPasswordFile, o.workerNkey),
      });
      if (o.out) fs.writeFileSync(o.out, block, { mode: 0o600 });
      else process.stdout.write(block);
    });
}
