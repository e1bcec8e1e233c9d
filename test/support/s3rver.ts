/**
 * `s3rver` (an S3-protocol server from npm) as its own process on a free port, standing in for S3
 * in tests: no S3 service can run on the build machines. The code under test talks to it with
 * @aws-sdk/client-s3 exactly as to S3; only the endpoint differs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface S3rver {
  readonly child: ChildProcess;
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
}

/** Starts s3rver storing into `dir`, with `bucket` created; resolves once it listens. */
export async function startS3rver(dir: string, bucket: string): Promise<S3rver> {
  const bin = path.resolve('node_modules/s3rver/bin/s3rver.js');
  // s3rver's list continuation tokens use a cipher OpenSSL 3 moved to its legacy provider.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--configure-bucket', bucket], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
    if (m) return { child, endpoint: `http://127.0.0.1:${m[1]}` };
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`s3rver did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stops a child process with SIGTERM and waits for it to exit (a no-op once it has). */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
