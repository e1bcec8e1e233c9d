/**
 * Preloaded with `--require` (NODE_OPTIONS) into the cluster's processes when BENCH_CPU_PROF is
 * set: `--cpu-prof` itself is not allowed in NODE_OPTIONS, so this starts the same V8 sampling
 * profiler through node:inspector and writes `<dir>/<argv[2]>-<pid>.cpuprofile` at exit.
 */
import fs from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.BENCH_CPU_PROF;
if (dir && isMainThread) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  // The in-process session answers synchronously, so this works inside 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (err) return;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `${process.argv[2] ?? 'node'}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
