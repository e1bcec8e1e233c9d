/**
 * The built-in autoscaler runs on exactly one router at a time (NATS KV lock; the Kubernetes
 * Lease is tested in autoscaler-kubernetes.test.ts). Real nats-server and router processes:
 * one of two routers leads; after kill -9 of the leader (no release: its key stays until the
 * bucket's TTL removes it) the other takes over; a router stopped with SIGTERM releases the lock
 * and a waiting router takes it without waiting out the lease.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify as toYaml } from 'yaml';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { spawnReady } from '../../services/cli/local-cluster.js';
import { eventually, metricSum, sleep } from './harness.js';

interface RouterProc {
  readonly child: ChildProcess;
  readonly metricsUrl: string;
}

const isLeader = async (r: RouterProc): Promise<boolean> => (await metricSum(r.metricsUrl, 'orrery_autoscaler_leader')) === 1;

/** Routers sharing one nats-server and one config, with autoscaler.leader_lease_ms = `leaseMs`. */
async function routers(nats: NatsServerProcess, dir: string, leaseMs: number, n: number): Promise<RouterProc[]> {
  const file = path.join(dir, `config-${leaseMs}.yaml`);
  fs.writeFileSync(file, toYaml({
    nats: { url: nats.url, prefix: `lead${leaseMs}` },
    model_repository: path.join(dir, 'models'),
    autoscaler: { scale_target: 'none', interval_ms: 100, leader_lease_ms: leaseMs },
    deployments: { auto: { stage: 'synthetic', models: ['m'], autoscaling: { min_replicas: 0, max_replicas: 2 } } },
  }));
  const logs = fs.openSync(path.join(dir, 'routers.log'), 'a');
  return Promise.all(Array.from({ length: n }, async () => {
    const { child, fields } = await spawnReady(['router', '--config', file, '--grpc-port', '0', '--metrics-port', '0'], logs, {}, 30_000);
    return { child, metricsUrl: fields.metrics! };
  }));
}

/** Waits until exactly one of `rs` leads, checking that it stays so over a few samples; returns it. */
async function soleLeader(rs: readonly RouterProc[], timeoutMs: number): Promise<RouterProc> {
  const leader = await eventually(async () => {
    const flags = await Promise.all(rs.map(isLeader));
    return flags.filter(Boolean).length === 1 ? rs[flags.indexOf(true)] : undefined;
  }, timeoutMs, 'one leader');
  for (let i = 0; i < 5; i++) {
    await sleep(100);
    assert.deepEqual(await Promise.all(rs.map(isLeader)), rs.map((r) => r === leader), 'the same single leader');
  }
  return leader!;
}

const exit = (r: RouterProc, signal: NodeJS.Signals): Promise<unknown> => {
  const exited = new Promise((resolve) => r.child.once('exit', resolve));
  r.child.kill(signal);
  return exited;
};

describe('autoscaler leader election over NATS KV', () => {
  let nats: NatsServerProcess;
  let dir: string;
  const started: RouterProc[] = [];
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-leader-'));
    nats = await NatsServerProcess.start();
  });
  after(async () => {
    await Promise.all(started.filter((r) => r.child.exitCode === null && r.child.signalCode === null).map((r) => exit(r, 'SIGTERM')));
    await nats?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('one of two routers leads; after kill -9 of the leader the other takes over once the lease runs out', async () => {
    const leaseMs = 2000;
    const rs = await routers(nats, dir, leaseMs, 2);
    started.push(...rs);
    const leader = await soleLeader(rs, 10_000);
    const other = rs.find((r) => r !== leader)!;
    await exit(leader, 'SIGKILL');
    const killedAt = Date.now();
    await eventually(() => isLeader(other), 8 * leaseMs, 'the other router to lead');
    const seconds = (Date.now() - killedAt) / 1000;
    // The key expires a lease after the dead leader's last renewal, and the other tries every
    // third of a lease: the figure is reported, the bound above is deliberately loose.
    process.stderr.write(`took over ${seconds.toFixed(2)} s after kill -9 (lease ${leaseMs / 1000} s)\n`);
    assert.equal(await isLeader(other), true);
  });

  test('a router stopped with SIGTERM releases the lock: a waiting router leads without waiting out the lease', async () => {
    const leaseMs = 60_000;
    const rs = await routers(nats, dir, leaseMs, 2);
    started.push(...rs);
    const leader = await soleLeader(rs, 10_000);
    const other = rs.find((r) => r !== leader)!;
    await exit(leader, 'SIGTERM');
    const stoppedAt = Date.now();
    // It tries every 20 s (a third of the lease); the key would expire only 60 s after the last
    // renewal, at least 40 s after the stop.
    await eventually(() => isLeader(other), 35_000, 'the other router to lead');
    process.stderr.write(`took over ${((Date.now() - stoppedAt) / 1000).toFixed(2)} s after SIGTERM (lease ${leaseMs / 1000} s)\n`);
  });
});
