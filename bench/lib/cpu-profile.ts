/**
 * Where a process's CPU went, from a V8 .cpuprofile (`node --cpu-prof`): self time summed per
 * function and per package/file. Run as `node dist/bench/lib/cpu-profile.js <file.cpuprofile> [top]`.
 * The benchmarks profile the cluster's processes when BENCH_CPU_PROF=<dir> is set.
 */
import fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly byFunction: Array<{ name: string; ms: number; share: number }>;
  readonly byFile: Array<{ name: string; ms: number; share: number }>;
}

/** Shortens a script URL to a package (node_modules/<pkg>) or a path under the project. */
function where(url: string): string {
  if (!url) return '(native/VM)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return url;
  const own = /\/dist\/(.*)$/.exec(url);
  return own ? own[1]! : url;
}

export function summarizeProfile(p: Profile, top = 25): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)' || f.functionName === '(program)') continue;
    total += us;
    const w = where(f.url);
    const key = `${f.functionName || '(anonymous)'} ${w}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    file.set(w, (file.get(w) ?? 0) + us);
  }
  const list = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, ms: Math.round(us / 1000), share: Math.round((us / total) * 1000) / 10 }));
  return { totalMs: Math.round(total / 1000), byFunction: list(fn), byFile: list(file) };
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) throw new Error('usage: cpu-profile <file.cpuprofile> [top]');
  const s = summarizeProfile(JSON.parse(fs.readFileSync(file, 'utf8')) as Profile, Number(top ?? 25));
  process.stdout.write(`busy (non-idle) CPU: ${s.totalMs} ms\n\nby package/file:\n`);
  for (const r of s.byFile) process.stdout.write(`  ${String(r.share).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}\n`);
  process.stdout.write('\nby function (self time):\n');
  for (const r of s.byFunction) process.stdout.write(`  ${String(r.share).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}\n`);
}
