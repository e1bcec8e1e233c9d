/**
 * serve-local --nats-auth: throwaway credentials for a local cluster. One random password per
 * role (router, worker), written to files only this user can read, a nats-server config holding
 * the authorization block of nats-permissions.ts, and the environment that hands each child its
 * own identity (ORRERY_NATS_USER / ORRERY_NATS_PASSWORD_FILE, as the chart does).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { natsAuthorizationBlock, type NatsRole } from '../common/nats-permissions.js';

export interface LocalNatsAuth {
  /** nats-server config file with the authorization block. */
  readonly serverConfigFile: string;
  /** Environment of a child of each role. */
  readonly env: Record<NatsRole, { readonly ORRERY_NATS_USER: string; readonly ORRERY_NATS_PASSWORD_FILE: string }>;
}

/** Writes the credentials and the server config into `dir` (which the cluster removes at stop). */
export function writeLocalNatsAuth(dir: string, prefix: string): LocalNatsAuth {
  const roles = ['router', 'worker'] as const;
  const passwords = Object.fromEntries(roles.map((r) => [r, randomBytes(24).toString('base64url')])) as Record<NatsRole, string>;
  const env = {} as LocalNatsAuth['env'];
  for (const role of roles) {
    const file = path.join(dir, `nats-${role}.password`);
    fs.writeFileSync(file, passwords[role], { mode: 0o600 });
    env[role] = { ORRERY_NATS_USER: role, ORRERY_NATS_PASSWORD_FILE: file };
  }
  const serverConfigFile = path.join(dir, 'nats-server.conf');
  fs.writeFileSync(serverConfigFile, natsAuthorizationBlock(prefix, { router: { user: 'router', password: passwords.router }, worker: { user: 'worker', password: passwords.worker } }), { mode: 0o600 });
  return { serverConfigFile, env };
}
