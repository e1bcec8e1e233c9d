/**
 * The Grafana dashboards (helm/orrery/dashboards/*.json) against a real Prometheus (Debian's
 * `prometheus`, installed by `make deps`) scraping a running local cluster under load: every panel
 * query, with the dashboard's variables substituted as Grafana would, is evaluated through
 * Prometheus's HTTP API and must return data; every metric name a query uses must be in the
 * processes' exposition; the variables' label_values() queries must list the cluster's values.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate } from '../../services/cli/client.js';
import { JobClient } from '../../services/cli/job-client.js';
import { freePort } from '../../services/cli/nats-server-process.js';
import { packageRoot } from '../../services/common/package-root.js';
import { eventually, sleep, startCluster, testConfig, type TestCluster } from './harness.js';

interface Dashboard {
  title: string;
  panels: Array<{ title: string; type: string; targets?: Array<{ expr: string; refId: string }> }>;
  templating: { list: Array<{ name: string; type: string; query?: string | { query: string }; allValue?: string }> };
}

/** Grafana's value for each variable when "All" is selected, and a fixed rate interval. */
const SUBSTITUTIONS: Record<string, string> = { deployment: '.*', pipeline: '.*', __rate_interval: '30s', __interval: '5s' };

function substitute(expr: string): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (all, name: string) => {
    const v = SUBSTITUTIONS[name];
    if (v === undefined) throw new Error(`unknown dashboard variable ${all} in ${expr}`);
    return v;
  });
}

function findPrometheus(): string {
  const candidates = [process.env.PROMETHEUS_BIN, ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'prometheus')), '/usr/bin/prometheus'];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  throw new Error('prometheus not found: install Debian\'s prometheus package (`make deps` does) or set PROMETHEUS_BIN');
}

type PromResult = { status: string; error?: string; data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };

describe('Grafana dashboards against a real Prometheus scraping a local cluster under load', () => {
  let c: TestCluster;
  let prometheus: ChildProcess | undefined;
  let promUrl = '';
  let promLog = '';
  let running = true;
  let load: Promise<void> = Promise.resolve();
  let jobs: JobClient | undefined;
  const dashboards = fs.readdirSync(path.join(packageRoot(), 'helm/orrery/dashboards'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ file: f, dash: JSON.parse(fs.readFileSync(path.join(packageRoot(), 'helm/orrery/dashboards', f), 'utf8')) as Dashboard }));

  const query = async (q: string): Promise<PromResult> => (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as PromResult;

  before(async () => {
    c = await startCluster(testConfig({
      // Three models on replicas that hold one each: loads and evictions keep happening.
      gen: {
        // A byte budget, so the memory panel has its limit series (synthetic models hold 0 bytes).
        stage: 'synthetic', models: ['m-a', 'm-b', 'm-c'], max_batch_size: 4, batch_wait_timeout_ms: 10, max_models_per_replica: 1, max_model_bytes_per_replica: 1 << 30,
        options: { fixed_ms: 40, per_item_ms: 5, load_ms: 20 },
        autoscaling: { min_replicas: 2, max_replicas: 2 },
      },
      up: { stage: 'synthetic', models: ['u'], replicas: 1, max_batch_size: 4, options: { fixed_ms: 10 } },
      // A real image stage behind a quality gate, for the QC panel (its noise fails every check).
      tex: { stage: 'texture', models: ['texture'], replicas: 1, max_batch_size: 4 },
      // Continuous batching (the running-set panels): a bulk job fills the set, online requests preempt it.
      cont: { stage: 'synthetic', models: ['c'], replicas: 1, max_batch_size: 4, batching: 'continuous', default_steps: 10, options: { step_time_scale: 0.05 } },
    }, {
      pipelines: {
        'two-stage': { stages: [{ deployment: 'gen' }, { deployment: 'up', model: 'u' }] },
        gated: { stages: [{ deployment: 'tex' }], qc: { max_attempts: 2 } },
      },
      autoscaler: { interval_ms: 200 },
    }));

    const targets = [c.cluster.metricsUrl, ...c.cluster.replicas.map((r) => r.metricsUrl)].map((u) => new URL(u).host);
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    fs.writeFileSync(path.join(c.dir, 'prometheus.yml'), [
      'global:', '  scrape_interval: 1s', '  evaluation_interval: 1s',
      'scrape_configs:', '  - job_name: orrery', '    static_configs:', `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`, '',
    ].join('\n'));
    prometheus = spawn(findPrometheus(), [
      `--config.file=${path.join(c.dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(c.dir, 'prometheus-data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    prometheus.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4000)));
    await eventually(async () => {
      if (prometheus!.exitCode !== null) throw new Error(`prometheus exited (${prometheus!.exitCode}): ${promLog}`);
      return fetch(`${promUrl}/-/ready`).then((r) => r.ok, () => false);
    }, 20_000, 'prometheus to be ready');

    // A bulk job beside the online load, for the jobs panels (and bulk images per deployment).
    jobs = new JobClient(c.cluster.grpcAddress);
    await jobs.submit({ name: 'dashboards', template: { pipeline: 'gen', model_id: 'm-a', seed: '7' }, grid: { colors: ['red', 'blue'], atmospheres: ['haze', 'storms'], seeds_per_prompt: 2000 }, output_uri: `file://${path.join(c.dir, 'job-out')}` });
    await jobs.submit({ name: 'dashboards-cont', template: { pipeline: 'cont', seed: '7' }, grid: { colors: ['red', 'blue'], atmospheres: ['haze', 'storms'], seeds_per_prompt: 2000 }, output_uri: `file://${path.join(c.dir, 'job-out-cont')}` });
    // Load: both pipelines, rotating models, and a few bad requests (errors by code).
    load = (async () => {
      let i = 0;
      const clients = Array.from({ length: 6 }, async (_, k) => {
        while (running) {
          const n = i++;
          const req = n % 11 === 5
            ? { pipeline: 'gen', model_id: 'no-such-model', prompt: 'x' }
            : k === 5 ? { pipeline: 'gated', prompt: `p${n}`, seed: String(n), width: 128, height: 64 }
              : k === 4 ? { pipeline: 'cont', prompt: `p${n}`, seed: String(n) }
                : { pipeline: k % 2 ? 'two-stage' : 'gen', model_id: ['m-a', 'm-b', 'm-c'][n % 3], prompt: `p${n}`, seed: String(n), num_images: 1 + (n % 3) };
          await generate(c.client, req, 20_000).catch(() => undefined);
        }
      });
      await Promise.all(clients);
    })();
    // Enough scrapes for rate() over 30 s windows to see several samples of everything.
    await eventually(async () => {
      const r = await query('sum(rate(orrery_model_evictions_total[30s])) > 0 and on() count(up == 1) == ' + targets.length);
      return r.data.result.length > 0;
    }, 30_000, 'prometheus to scrape every target and see evictions');
    await sleep(4000);
  });

  after(async () => {
    running = false;
    await load;
    jobs?.close();
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once('exit', r));
      prometheus.kill('SIGTERM');
      await exited;
    }
    await c?.stop();
  });

  test('there is at least one dashboard, each with panels of every kind the issue asks for', () => {
    assert.ok(dashboards.length >= 1);
    const titles = dashboards.flatMap((d) => d.dash.panels.map((p) => p.title.toLowerCase())).join(' | ');
    for (const want of ['images/s per deployment', 'images/s per pipeline', 'p50 / p95 / p99', 'queue depth', 'queue wait', 'batch size distribution', 'desired vs ready', 'model loads and evictions', 'errors/s by code', 'online vs bulk', 'jobs by state', 'job items/s and failures', 'job progress', 'qc rejection rate', 'running-set occupancy', 'preemptions']) {
      assert.ok(titles.includes(want), `a panel for "${want}" in: ${titles}`);
    }
  });

  test('every panel query returns data from Prometheus', async () => {
    let checked = 0;
    for (const { file, dash } of dashboards) {
      for (const p of dash.panels) {
        for (const t of p.targets ?? []) {
          const q = substitute(t.expr);
          const r = await query(q);
          assert.equal(r.status, 'success', `${file} "${p.title}" ${t.refId}: ${r.error ?? ''}\n${q}`);
          assert.ok(r.data.result.length > 0, `${file} "${p.title}" ${t.refId} returned no series:\n${q}`);
          const finite = r.data.result.some((s) => Number.isFinite(Number(s.value[1])));
          assert.ok(finite, `${file} "${p.title}" ${t.refId} returned only NaN/Inf:\n${q}\n${JSON.stringify(r.data.result.slice(0, 3))}`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 20, `${checked} queries`);
  });

  test('every metric name the dashboards use is in the router\'s or a replica\'s exposition', async () => {
    const exposed = new Set<string>();
    for (const url of [c.cluster.metricsUrl, ...c.cluster.replicas.map((r) => r.metricsUrl)]) {
      for (const line of (await (await fetch(url)).text()).split('\n')) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
        if (m) exposed.add(m[1]!);
      }
    }
    for (const { file, dash } of dashboards) {
      const exprs = [...dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)), ...dash.templating.list.map((v) => (typeof v.query === 'object' ? v.query.query : v.query ?? ''))];
      for (const e of exprs) for (const m of e.match(/orrery_[a-z0-9_]+/g) ?? []) assert.ok(exposed.has(m), `${file}: ${m} is not exposed by any Orrery process`);
    }
  });

  test('the dashboard variables list the cluster\'s deployments and pipelines', async () => {
    for (const { dash } of dashboards) {
      for (const v of dash.templating.list.filter((x) => x.type === 'query')) {
        const q = typeof v.query === 'object' ? v.query.query : v.query!;
        const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(q);
        assert.ok(m, `variable ${v.name}: ${q} is label_values(metric, label)`);
        const res = (await (await fetch(`${promUrl}/api/v1/label/${m[2]}/values?match[]=${encodeURIComponent(m[1]!)}`)).json()) as { status: string; data: string[] };
        assert.equal(res.status, 'success');
        const want = v.name === 'deployment' ? ['gen', 'up'] : ['gen', 'two-stage'];
        for (const w of want) assert.ok(res.data.includes(w), `variable ${v.name} lists ${w}: ${res.data.join(', ')}`);
      }
    }
  });
});
