/** The `orrery` command as a person uses it: help, serve-local's ready line and clean shutdown, generate, readable errors. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, describe, test } from 'node:test';
import { stringify as toYaml } from 'yaml';
import { packageRoot } from '../../services/common/package-root.js';

const CLI = path.join(packageRoot(), 'bin/orrery.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-cli-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function orrery(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
}

/** Pids of the live descendants of `pid` (from /proc/<pid>/stat's parent field). */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      parent.set(Number(p), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended while we looked
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) if (pp === p) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

describe('the orrery command', () => {
  test('--help lists the commands and an example', () => {
    const r = orrery(['--help']);
    assert.equal(r.status, 0);
    for (const cmd of ['serve-local', 'router', 'worker', 'generate', 'models', 'demo']) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
    assert.match(r.stdout, /Examples:/);
  });

  test('serve-local --help explains the ready line and the flags', () => {
    const r = orrery(['serve-local', '--help']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /--grpc-port/);
    assert.match(r.stdout, /--replicas <name=n>/);
    assert.match(r.stdout, /ready grpc=HOST:PORT metrics=URL/);
  });

  test('a config error names the key and exits 1 without a stack trace', () => {
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, toYaml({ deployments: { synthetic: { stage: 'synthetic', models: ['a'], max_batch_size: 0 } } }));
    const r = orrery(['serve-local', '--config', file]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^orrery: config deployments\.synthetic\.max_batch_size: must be an integer/m);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test('serve-local prints one ready line, serves generate, and shuts everything down on SIGINT', async () => {
    const file = path.join(dir, 'ok.yaml');
    const prefix = `clitest${process.pid}`;
    fs.writeFileSync(file, toYaml({
      nats: { prefix }, worker: { heartbeat_interval_ms: 100 }, model_repository: path.join(dir, 'models'),
      deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'], options: { fixed_ms: 5 } } },
    }));
    const child = spawn(process.execPath, [CLI, 'serve-local', '--config', file, '--grpc-port', '0', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const ready = await new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: child.stdout }).on('line', (l) => {
        lines.push(l);
        if (l.startsWith('ready ')) resolve(l);
      });
      child.once('exit', (code) => reject(new Error(`serve-local exited ${code}`)));
      setTimeout(() => reject(new Error('no ready line in 60 s')), 60_000);
    });
    const m = /^ready grpc=(127\.0\.0\.1:\d+) metrics=(http:\/\/\S+\/metrics)$/.exec(ready);
    assert.ok(m, ready);
    const out = path.join(dir, 'out');
    const gen = orrery(['generate', '--addr', m[1]!, '--prompt', 'a small moon', '-n', '3', '--seed', '7', '--out', out, '--pipeline', 'synthetic']);
    assert.equal(gen.status, 0, gen.stderr);
    assert.match(gen.stdout, /3 images in [\d.]+ s \([\d.]+ images\/s\) written to /);
    assert.deepEqual(fs.readdirSync(out).sort(), ['a-small-moon-7.bin', 'a-small-moon-8.bin', 'a-small-moon-9.bin']);
    assert.equal((await fetch(m[2]!)).status, 200);

    const children = descendants(child.pid!);
    assert.ok(children.length >= 3, `nats-server, router and replica run as child processes (${children.length})`);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.deepEqual(lines.filter((l) => l.startsWith('ready ')).length, 1);
    const alive = children.filter((p) => fs.existsSync(`/proc/${p}`) && !fs.readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z '));
    assert.deepEqual(alive, [], 'no child outlives serve-local');
  });
});
