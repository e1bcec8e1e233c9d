/**
 * Reading the cluster config for the CLI: the file given with --config, or the embedded local
 * default (deploy/config/local.yaml). Only entry points call this (CONVENTIONS §5).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { compileConfig, type ClusterConfig } from '../common/config.js';
import { ConfigError } from '../common/errors.js';
import { packageRoot } from '../common/package-root.js';
import { applyNatsSecurityEnv } from '../common/nats-security-config.js';

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `v` if it is a YAML mapping, else an empty one: overrides edit the raw config before compileConfig checks it. */
export function asMapping(v: unknown): Record<string, unknown> {
  return isMapping(v) ? v : {};
}

export const DEFAULT_CONFIG_PATH = (): string => path.join(packageRoot(), 'deploy/config/local.yaml');

export interface LoadedConfig {
  /** The parsed YAML, with overrides applied (serve-local hands it to its children). */
  readonly raw: Record<string, unknown>;
  readonly config: ClusterConfig;
  readonly source: string;
}

export interface ConfigOverrides {
  natsUrl?: string;
  modelRepository?: string;
  /** deployment → replicas */
  replicas?: Record<string, number>;
}

/**
 * Loads, applies overrides and validates. `ORRERY_NATS_URL` overrides nats.url (for Kubernetes);
 * `ORRERY_NATS_USER`, `ORRERY_NATS_PASSWORD_FILE`, … override nats.auth and nats.tls
 * (nats-security-config.ts `NATS_SECURITY_ENV`).
 */
export function loadConfig(file: string | undefined, overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const source = file ?? DEFAULT_CONFIG_PATH();
  let text: string;
  try {
    text = fs.readFileSync(source, 'utf8');
  } catch (err) {
    throw new ConfigError('--config', `cannot read ${source}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(source, `is not valid YAML: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(source, 'must be a YAML mapping');
  const r = structuredClone(raw) as Record<string, unknown>;
  const natsUrl = overrides.natsUrl ?? env.ORRERY_NATS_URL;
  if (natsUrl) r.nats = { ...asMapping(r.nats), url: natsUrl };
  r.nats = applyNatsSecurityEnv(asMapping(r.nats), env);
  if (overrides.modelRepository) r.model_repository = overrides.modelRepository;
  const deployments = asMapping(r.deployments);
  for (const [name, n] of Object.entries(overrides.replicas ?? {})) {
    const deployment = deployments[name];
    if (!isMapping(deployment)) throw new ConfigError('--replicas', `unknown deployment "${name}" (known: ${Object.keys(deployments).join(', ')})`);
    deployment.replicas = n;
  }
  // A relative model repository is relative to the working directory, made absolute once here
  // so child processes agree.
  if (typeof r.model_repository === 'string') r.model_repository = path.resolve(r.model_repository);
  return { raw: r, config: compileConfig(r), source };
}

/** Parses `NAME=N` pairs of --replicas. */
export function parseReplicaCounts(pairs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pairs) {
    const m = /^([a-z][a-z0-9-]*)=(\d{1,2})$/.exec(p);
    if (!m) throw new ConfigError('--replicas', `"${p}" is not NAME=N (e.g. synthetic=2)`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}
