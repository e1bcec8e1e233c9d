/** CPU time of processes from /proc/<pid>/stat (Linux), to say who burns the CPU under load. */
import fs from 'node:fs';

const TICKS_PER_S = 100; // USER_HZ; 100 on every Linux the project targets (getconf CLK_TCK)

interface Stat {
  readonly pid: number;
  readonly comm: string;
  readonly ppid: number;
  /** utime + stime, seconds. */
  readonly cpuSeconds: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // exited, or not Linux
  }
  // comm may hold spaces and parentheses: split after the last ')'.
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  return { pid, comm: text.slice(text.indexOf('(') + 1, close), ppid: Number(rest[1]), cpuSeconds: (Number(rest[11]) + Number(rest[12])) / TICKS_PER_S };
}

/** User + system CPU seconds used so far by `pid` (NaN if unknown). */
export function cpuSeconds(pid: number | undefined): number {
  return pid === undefined ? Number.NaN : (readStat(pid)?.cpuSeconds ?? Number.NaN);
}

/** Descendants of `pid` whose command name is `comm` (e.g. the nats-server a cluster started, under its shell). */
export function descendantPids(pid: number, comm: string): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const stats = entries.map((e) => readStat(Number(e))).filter((s): s is Stat => !!s);
  const parent = new Map(stats.map((s) => [s.pid, s.ppid]));
  const descends = (p: number): boolean => {
    for (let cur = parent.get(p), hops = 0; cur !== undefined && hops < 64; cur = parent.get(cur), hops++) if (cur === pid) return true;
    return false;
  };
  return stats.filter((s) => s.comm === comm && descends(s.pid)).map((s) => s.pid);
}

/** CPU seconds used by the whole machine so far (all CPUs, from /proc/stat), NaN if unknown. */
export function machineCpuSeconds(): number {
  try {
    const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    const busy = cpu.slice(0, 8).reduce((s, v, i) => (i === 3 || i === 4 ? s : s + v), 0);
    return busy / TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU seconds of named processes between two moments, plus the machine's total and what
 * everything else on it used ('other': the benchmark cannot control a shared machine, so it
 * reports how busy the rest of it was).
 */
export class CpuMeter {
  private start = new Map<string, number>();
  private startedAt = 0;
  constructor(private readonly pids: Readonly<Record<string, readonly number[]>>) {}

  private sample(): Map<string, number> {
    const m = new Map<string, number>();
    for (const [name, list] of Object.entries(this.pids)) m.set(name, list.reduce((s, pid) => s + cpuSeconds(pid), 0));
    const own = process.cpuUsage();
    m.set('bench (this process)', (own.user + own.system) / 1e6);
    m.set('machine', machineCpuSeconds());
    return m;
  }

  begin(): void {
    this.start = this.sample();
    this.startedAt = performance.now();
  }

  /** Per process group: CPU seconds used and the share of one core over the interval. */
  end(): Record<string, { cpuSeconds: number; cores: number }> {
    const wallS = (performance.now() - this.startedAt) / 1000;
    const out: Record<string, { cpuSeconds: number; cores: number }> = {};
    const put = (name: string, used: number) => {
      out[name] = { cpuSeconds: Math.round(used * 100) / 100, cores: Math.round((used / wallS) * 100) / 100 };
    };
    let mine = 0;
    for (const [name, v] of this.sample()) {
      const used = v - (this.start.get(name) ?? 0);
      put(name, used);
      if (name !== 'machine') mine += used;
    }
    // /proc/stat and the per-process counters tick separately: a quiet machine can read a few
    // hundredths below zero.
    put('other', Math.max(0, out.machine!.cpuSeconds - mine));
    return out;
  }
}
