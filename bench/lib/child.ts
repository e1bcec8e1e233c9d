/** Spawning the benchmark's own helper processes (compiled beside this file in dist/bench/lib/). */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

/** Spawns `node <script> ...args` and resolves with the `k=v` fields of its `ready` line. */
export function spawnReady(script: string, args: string[], timeoutMs = 15_000): Promise<{ child: ChildProcess; fields: Record<string, string> }> {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} was not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith('ready')) return;
      clearTimeout(timer);
      resolve({ child, fields: Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split('=') as [string, string])) });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code}) before it was ready`));
    });
  });
}

/** Forks `node <script>` with an IPC channel (for load generators that report by message). */
export function forkHelper(script: string): ChildProcess {
  return fork(path.join(__dirname, script), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** SIGTERM, then wait for the exit. */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
