/**
 * What gRPC security costs the router: ListModels round trips (the cheapest call, so the
 * transport and the interceptor are most of its time) against three routers in this process —
 * plaintext, TLS, and TLS with bearer tokens — in interleaved rounds over one connection each,
 * and the time to a first answer on a new connection (TCP + TLS handshake + one call).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import type * as grpc from '@grpc/grpc-js';
import { imageServiceClient } from '../services/cli/client.js';
import { channelCredentials, type ClientSecurityFlags } from '../services/cli/grpc-credentials.js';
import { NatsServerProcess } from '../services/cli/nats-server-process.js';
import { compileConfig } from '../services/common/config.js';
import { createLogger } from '../services/common/logger.js';
import { Router } from '../services/router/router.js';
import { hashToken, newToken } from '../services/router/token-file.js';
import { makeCa, makeCert } from '../test/support/tls-certs.js';
import type { BenchResult } from './lib/types.js';

const CALLS = Number(process.env.GRPC_SECURITY_CALLS ?? 4000);
const ROUNDS = 5;
const CONCURRENCY = 16;
const HANDSHAKES = 60;

type Mode = 'plaintext' | 'TLS' | 'TLS + token';
const MODES: readonly Mode[] = ['plaintext', 'TLS', 'TLS + token'];

function listModels(c: grpc.Client): Promise<void> {
  return new Promise((resolve, reject) =>
    (c as unknown as { ListModels(req: object, cb: (err: Error | null) => void): void }).ListModels({}, (err) => (err ? reject(err) : resolve())));
}

/** `CALLS` ListModels, `CONCURRENCY` at a time; calls per second. */
async function throughput(c: grpc.Client): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next++ < CALLS) await listModels(c);
  }));
  return CALLS / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function run(): Promise<BenchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-sec-'));
  const nats = await NatsServerProcess.start();
  const routers: Router[] = [];
  try {
    const ca = makeCa(dir, 'ca');
    const server = makeCert(dir, 'server', ca, { cn: 'router', use: 'server' });
    const token = newToken();
    const tokenFile = path.join(dir, 'bench.token');
    fs.writeFileSync(tokenFile, token);
    const tokensFile = path.join(dir, 'tokens.yaml');
    // A realistic file: 100 tokens, the bench's among them.
    fs.writeFileSync(tokensFile, toYaml({ tokens: [{ name: 'bench', sha256: hashToken(token), rights: ['generate'] }, ...Array.from({ length: 99 }, (_, i) => ({ name: `client-${i}`, sha256: hashToken(newToken()), rights: ['jobs'] }))] }));
    const tls = { cert_file: server.cert, key_file: server.key };
    const routerSections: Record<Mode, Record<string, unknown>> = { 'plaintext': {}, 'TLS': { tls }, 'TLS + token': { tls, auth: { tokens_file: tokensFile } } };
    const flags: Record<Mode, ClientSecurityFlags> = { 'plaintext': {}, 'TLS': { tlsCa: ca.cert }, 'TLS + token': { tlsCa: ca.cert, tokenFile } };
    const address = {} as Record<Mode, string>;
    for (const mode of MODES) {
      const config = compileConfig({ nats: { url: nats.url, prefix: `bench${routers.length}` }, router: routerSections[mode], deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'] } }, jobs: { enabled: false } });
      const r = await Router.start({ config, log: createLogger('bench-router', 'warn'), grpcPort: 0, metricsPort: 0, grpcHost: '127.0.0.1' });
      routers.push(r);
      address[mode] = r.grpcAddress;
    }

    const rates: Record<Mode, number[]> = { 'plaintext': [], 'TLS': [], 'TLS + token': [] };
    const clients = Object.fromEntries(MODES.map((m) => [m, imageServiceClient(address[m], { 'orrery.bench.mode': m }, channelCredentials(flags[m]))])) as unknown as Record<Mode, grpc.Client>;
    // A warm-up round each (JIT, connection windows, the routers' heaps), not counted.
    for (const m of MODES) await throughput(clients[m]);
    for (let round = 0; round < ROUNDS; round++) for (const m of MODES) rates[m].push(await throughput(clients[m]));
    for (const c of Object.values(clients)) c.close();

    const firstCallMs: Record<Mode, number[]> = { 'plaintext': [], 'TLS': [], 'TLS + token': [] };
    for (let i = 0; i < HANDSHAKES; i++) {
      for (const m of MODES) {
        const c = imageServiceClient(address[m], { 'orrery.bench.fresh': `${m}-${i}` }, channelCredentials(flags[m]));
        const t0 = performance.now();
        await listModels(c);
        firstCallMs[m].push(performance.now() - t0);
        c.close();
      }
    }

    const rate = (m: Mode) => median(rates[m]);
    const perCallUs = (m: Mode) => 1e6 / rate(m);
    const tokenRatio = rate('TLS + token') / rate('TLS');
    const handshakeExtraMs = median(firstCallMs.TLS) - median(firstCallMs.plaintext);
    return {
      name: 'grpc-security',
      title: 'gRPC security: what TLS and bearer tokens cost the router',
      checks: [
        { name: 'ListModels calls/s with bearer tokens, relative to TLS alone (the interceptor: header parse, SHA-256, lookup, counter)', measured: Math.round(tokenRatio * 1000) / 10, unit: '%', target: '≥ 85 %', pass: tokenRatio >= 0.85 },
        { name: 'first answer on a new TLS connection, minus plaintext (median; the handshake)', measured: Math.round(handshakeExtraMs * 10) / 10, unit: 'ms', target: '≤ 20 ms', pass: handshakeExtraMs <= 20 },
      ],
      tables: [
        {
          title: `ListModels over one connection, ${CONCURRENCY} calls at a time, ${CALLS} calls a round, ${ROUNDS} interleaved rounds after a warm-up round (median)`,
          columns: ['mode', 'calls/s', 'µs per call', 'rounds (calls/s)'],
          rows: MODES.map((m) => [m, Math.round(rate(m)), Math.round(perCallUs(m)), rates[m].map((x) => Math.round(x)).join(', ')]),
        },
        {
          title: `First answer on a new connection (${HANDSHAKES} connections each)`,
          columns: ['mode', 'median ms', 'max ms'],
          rows: MODES.map((m) => [m, Math.round(median(firstCallMs[m]) * 10) / 10, Math.round(Math.max(...firstCallMs[m]) * 10) / 10]),
        },
      ],
      notes: [
        'Client and routers share this process and its cores, so the figures are the whole round trip on one machine; the ratios are what to read. On a machine shared with other work (see the load average above) single rounds vary by 2x or more: read the medians.',
        'The tokens file holds 100 tokens; each call hashes the presented token once (SHA-256) and looks it up in a Map.',
        'Certificates: P-256 keys made by openssl for the run (test/support/tls-certs.ts).',
      ],
      data: { calls: CALLS, rounds: ROUNDS, concurrency: CONCURRENCY, rates, firstCallMs },
    };
  } finally {
    for (const r of routers) await r.stop(1000);
    await nats.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
