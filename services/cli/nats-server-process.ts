/**
 * A nats-server child process with JetStream on, on a free loopback port, storing into a
 * private directory. `serve-local` runs one; the tests run one each (and restart it to prove
 * reconnects).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A free TCP port on 127.0.0.1 (bound then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function findNatsServer(): string {
  const candidates = [process.env.NATS_SERVER_BIN, ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'nats-server')), '/usr/sbin/nats-server', '/usr/bin/nats-server'];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  throw new Error('nats-server not found: install it (Debian: apt-get install nats-server; `make deps` does) or pass --nats-url');
}

export class NatsServerProcess {
  private child: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    readonly storeDir: string,
    private readonly ownsStore: boolean,
    private readonly configFile: string | undefined,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /**
   * Starts nats-server and resolves once it accepts connections. `configFile` (e.g. an
   * authorization or tls block) is read by the server; the port, store and JetStream flags given
   * here win over it.
   */
  static async start(options: { port?: number; storeDir?: string; configFile?: string } = {}): Promise<NatsServerProcess> {
    const storeDir = options.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-nats-'));
    const s = new NatsServerProcess(options.port ?? (await freePort()), storeDir, !options.storeDir, options.configFile);
    await s.spawn();
    return s;
  }

  private async spawn(): Promise<void> {
    // nats-server runs under a tiny shell that holds our pipe on its stdin: when this process
    // ends — even by SIGKILL — the pipe closes, `read` returns, and the shell stops nats-server,
    // so no server outlives the cluster that started it.
    const script = 'nats-server "$@" & pid=$!; trap \'kill $pid; wait $pid; exit 0\' TERM; read _; kill $pid; wait $pid';
    const args = [...(this.configFile ? ['-c', this.configFile] : []), '-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir];
    const child = spawn('/bin/sh', ['-c', script.replace('nats-server', findNatsServer()), 'sh', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    // A restart recovers every stream and consumer from the store first: seconds when there are
    // hundreds (the chaos soak's payload bucket had, before payload reads stopped creating consumers).
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${stderr}`);
      if (/Server is ready/.test(stderr) && (await canConnect(this.port))) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    // SIGTERM: the shell's trap stops nats-server too (SIGKILL would leave it holding the port).
    child.kill('SIGTERM');
    throw new Error(`nats-server did not become ready on port ${this.port}: ${stderr}`);
  }

  /** Stops the server (the store stays), for restart tests. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }

  /** Starts it again on the same port and store. */
  async restart(): Promise<void> {
    await this.stop();
    await this.spawn();
  }

  /** Stops the server and removes a store directory it created. */
  async close(): Promise<void> {
    await this.stop();
    if (this.ownsStore) fs.rmSync(this.storeDir, { recursive: true, force: true });
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
