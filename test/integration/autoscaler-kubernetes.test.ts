/**
 * The kubernetes scale target and the router's autoscaler against an API server that speaks the
 * Deployment `scale` subresource. No Kubernetes API server can run on the build machines (no
 * container runtime, no etcd, no network to fetch one), so the server here is a small local HTTP
 * server implementing exactly the two calls the target makes — GET and PATCH
 * /apis/apps/v1/namespaces/NS/deployments/NAME/scale, with bearer-token auth, merge, strategic
 * merge or JSON patches, and Kubernetes `Status` errors — and, for the end-to-end cases, a
 * "controller" that starts and drains real replicas when the scale changes, as the Deployment
 * controller would start and stop pods. It also keeps coordination.k8s.io/v1 Leases (GET, create,
 * replace with resourceVersion conflicts), for the autoscaler's leader Lease. The
 * @kubernetes/client-node calls, the router, NATS and the replicas are the real ones.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { generate, imageServiceClient, type ImageServiceClient } from '../../services/cli/client.js';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { compileConfig, type ClusterConfig, type DeploymentConfig } from '../../services/common/config.js';
import { createLogger } from '../../services/common/logger.js';
import { Autoscaler } from '../../services/router/autoscaler.js';
import { KubernetesLeaseLock } from '../../services/router/leadership/kubernetes-lease-lock.js';
import { Router } from '../../services/router/router.js';
import { KubernetesScaleTarget } from '../../services/router/scale-targets/kubernetes.js';
import { ScaleTargetError } from '../../services/router/scale-targets/scale-target.js';
import { Replica } from '../../services/worker/replica.js';
import { eventually, grpcError, metricSum } from './harness.js';

const TOKEN = 'test-token-abc';
const NS = 'orrery';
const log = createLogger('test', process.env.ORRERY_TEST_LOG_LEVEL ?? 'silent');

interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string;
  readonly authorization: string;
  readonly body: unknown;
}

interface LeaseObject {
  metadata: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string; leaseTransitions?: number };
}

/** Applies a JSON patch (RFC 6902) of `replace`/`add` ops on /spec/replicas, the only field a scale patch may change. */
function applyJsonPatch(scale: { spec: { replicas: number } }, ops: Array<{ op: string; path: string; value: number }>): void {
  for (const op of ops) {
    if ((op.op === 'replace' || op.op === 'add') && op.path === '/spec/replicas') scale.spec.replicas = op.value;
    else throw new Error(`unsupported JSON patch op ${JSON.stringify(op)}`);
  }
}

/** The scale subresource of a few Deployments, over HTTP, as the API server serves it. */
class FakeScaleApi {
  readonly seen: SeenRequest[] = [];
  readonly replicas = new Map<string, number>();
  /** Leases by `namespace/name`. */
  readonly leases = new Map<string, LeaseObject>();
  private leaseVersion = 0;
  /** Called after a PATCH changed a Deployment's replicas (the Deployment controller's part). */
  onScale: (name: string, replicas: number) => void = () => undefined;
  /** Deployments whose scale the caller may not touch (HTTP 403, like missing RBAC). */
  readonly forbidden = new Set<string>();
  /** Deployments whose requests are never answered (an API server that hangs). */
  readonly hang = new Set<string>();
  private server!: http.Server;
  url = '';

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => this.handle(req, raw, res));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: http.IncomingMessage, raw: string, res: http.ServerResponse): void {
    const send = (code: number, body: object) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const fail = (code: number, reason: string, message: string) => send(code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
    const body = raw ? JSON.parse(raw) as unknown : undefined;
    this.seen.push({ method: req.method!, path: req.url!, contentType: String(req.headers['content-type'] ?? ''), authorization: String(req.headers.authorization ?? ''), body });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return fail(401, 'Unauthorized', 'Unauthorized');
    const lease = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/?]+))?(\?.*)?$/.exec(req.url!);
    if (lease) return this.handleLease(req.method!, lease[1]!, lease[2], body as LeaseObject | undefined, send, fail);
    const m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments\/([^/]+)\/scale(\?.*)?$/.exec(req.url!);
    if (!m) return fail(404, 'NotFound', `the server could not find the requested resource ${req.url}`);
    const [, ns, name] = m as unknown as [string, string, string];
    if (this.hang.has(name)) return;
    if (this.forbidden.has(name)) return fail(403, 'Forbidden', `deployments.apps "${name}" is forbidden: User "system:serviceaccount:${ns}:t-orrery-router" cannot patch resource "deployments/scale"`);
    if (ns !== NS || !this.replicas.has(name)) return fail(404, 'NotFound', `deployments.apps "${name}" not found`);
    const scale = () => ({
      kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: { name, namespace: ns, resourceVersion: String(this.seen.length) },
      spec: { replicas: this.replicas.get(name)! }, status: { replicas: this.replicas.get(name)!, selector: `app.kubernetes.io/name=orrery,orrery.io/deployment=${name}` },
    });
    if (req.method === 'GET') return send(200, scale());
    if (req.method !== 'PATCH') return fail(405, 'MethodNotAllowed', `${req.method} is not allowed`);
    const s = scale();
    const type = String(req.headers['content-type'] ?? '').split(';')[0];
    if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') {
      const replicas = (body as { spec?: { replicas?: unknown } })?.spec?.replicas;
      if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) return fail(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}`);
      s.spec.replicas = replicas;
    } else if (type === 'application/json-patch+json') {
      applyJsonPatch(s, body as Array<{ op: string; path: string; value: number }>);
    } else return fail(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`);
    const before = this.replicas.get(name);
    this.replicas.set(name, s.spec.replicas);
    send(200, scale());
    if (before !== s.spec.replicas) this.onScale(name, s.spec.replicas);
  }

  /**
   * coordination.k8s.io/v1 Leases: GET, POST (create; 409 AlreadyExists) and PUT (replace; 409
   * Conflict unless metadata.resourceVersion is the stored one), each write a new resourceVersion.
   */
  private handleLease(method: string, ns: string, name: string | undefined, body: LeaseObject | undefined, send: (code: number, body: object) => void, fail: (code: number, reason: string, message: string) => void): void {
    const stored = name ? this.leases.get(`${ns}/${name}`) : undefined;
    const store = (key: string, obj: LeaseObject, code: number) => {
      const saved = { ...obj, apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { ...obj.metadata, namespace: ns, resourceVersion: String(++this.leaseVersion) } };
      this.leases.set(key, saved);
      send(code, saved);
    };
    if (method === 'GET' && name) return stored ? send(200, stored) : fail(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`);
    if (method === 'POST' && !name && body?.metadata?.name) {
      const key = `${ns}/${body.metadata.name}`;
      if (this.leases.has(key)) return fail(409, 'AlreadyExists', `leases.coordination.k8s.io "${body.metadata.name}" already exists`);
      return store(key, body, 201);
    }
    if (method === 'PUT' && name && body) {
      if (!stored) return fail(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`);
      if (body.metadata?.resourceVersion !== stored.metadata.resourceVersion) return fail(409, 'Conflict', `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      return store(`${ns}/${name}`, body, 200);
    }
    fail(405, 'MethodNotAllowed', `${method} is not allowed`);
  }

  patches(name: string): SeenRequest[] {
    return this.seen.filter((r) => r.method === 'PATCH' && r.path.includes(`/deployments/${name}/scale`));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Credentials for the fake server (the client is an ES module, hence the dynamic import). */
async function kubeConfigFor(api: FakeScaleApi): Promise<KubeConfig> {
  const kc = new (await import('@kubernetes/client-node')).KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: api.url, skipTLSVerify: true }],
    users: [{ name: 'router', token: TOKEN }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'router', namespace: NS }],
    currentContext: 'fake',
  });
  return kc;
}

function deployment(name: string, autoscaling: Record<string, unknown>): DeploymentConfig {
  return compileConfig({ deployments: { [name]: { stage: 'synthetic', models: ['m'], autoscaling } } }).deployments[name]!;
}

describe('kubernetes scale target (local HTTP server speaking the scale subresource)', () => {
  const api = new FakeScaleApi();
  let target: KubernetesScaleTarget;
  before(async () => {
    await api.start();
    target = await KubernetesScaleTarget.create({ namespace: NS, kubeConfig: await kubeConfigFor(api) });
  });
  after(() => api.close());

  test('reads spec.replicas of the Deployment named by autoscaling.kubernetes_deployment', async () => {
    api.replicas.set('t-orrery-sdxl-base', 3);
    assert.equal(await target.currentReplicas(deployment('sdxl-base', { max_replicas: 4, kubernetes_deployment: 't-orrery-sdxl-base' })), 3);
    const get = api.seen.at(-1)!;
    assert.equal(get.method, 'GET');
    assert.equal(get.path, `/apis/apps/v1/namespaces/${NS}/deployments/t-orrery-sdxl-base/scale`);
    assert.equal(get.authorization, `Bearer ${TOKEN}`);
  });

  test('patches spec.replicas alone with a JSON merge patch, as the orrery-autoscaler field manager', async () => {
    api.replicas.set('upscaler', 1);
    await target.setReplicas(deployment('upscaler', { max_replicas: 8 }), 5, 'test');
    assert.equal(api.replicas.get('upscaler'), 5);
    const patch = api.patches('upscaler').at(-1)!;
    assert.equal(patch.contentType.split(';')[0], 'application/merge-patch+json');
    assert.deepEqual(patch.body, { spec: { replicas: 5 } });
    assert.match(patch.path, /[?&]fieldManager=orrery-autoscaler(&|$)/);
  });

  test('a missing Deployment fails with a ScaleTargetError carrying 404 and naming the keys to check', async () => {
    await assert.rejects(target.setReplicas(deployment('ghost', { max_replicas: 2 }), 2, 'test'), (err: unknown) => {
      assert.ok(err instanceof ScaleTargetError);
      assert.equal(err.status, 404);
      assert.match(err.message, /Deployment orrery\/ghost: HTTP 404/);
      assert.match(err.message, /autoscaling\.kubernetes_deployment/);
      assert.ok(err.cause, 'the client error is kept as the cause');
      return true;
    });
  });

  test('a forbidden patch (missing RBAC) fails with 403 and says which permission is needed', async () => {
    api.replicas.set('locked', 1);
    api.forbidden.add('locked');
    await assert.rejects(target.setReplicas(deployment('locked', { max_replicas: 2 }), 2, 'test'), (err: unknown) => {
      assert.ok(err instanceof ScaleTargetError);
      assert.equal(err.status, 403);
      assert.match(err.message, /get and patch on deployments\/scale/);
      return true;
    });
    assert.equal(api.replicas.get('locked'), 1);
  });

  test('the autoscaler continues from the Deployment\'s current count and patches it down when idle', async () => {
    api.replicas.set('idle', 3);
    const registry = new Registry();
    const d = deployment('idle', { min_replicas: 1, max_replicas: 4, downscale_delay_s: 0 });
    const a = await Autoscaler.start({ deployments: [d], target, registry, log, intervalMs: 3_600_000, now: Date.now, observe: () => ({ runningReplicas: 3, totalOngoing: 0 }) });
    try {
      assert.equal(a.desired('idle'), 3, 'started from the live count, not initial_replicas');
      await a.tickAll();
      assert.equal(api.replicas.get('idle'), 1);
      assert.equal(a.desired('idle'), 1);
      assert.match(await registry.metrics(), /orrery_replicas_desired\{deployment="idle"\} 1/);
    } finally {
      await a.stop();
    }
  });

  test('an API server that does not answer stalls neither the start nor the loop: the calls time out', async () => {
    api.replicas.set('slow', 1);
    api.hang.add('slow');
    const d = deployment('slow', { min_replicas: 1, max_replicas: 4, upscale_delay_s: 0 });
    const t0 = Date.now();
    const a = await Autoscaler.start({ deployments: [d], target, registry: new Registry(), log, intervalMs: 3_600_000, now: Date.now, targetTimeoutMs: 300, observe: () => ({ runningReplicas: 1, totalOngoing: 8 }) });
    try {
      assert.ok(Date.now() - t0 < 2000, 'started without the current count');
      assert.equal(a.desired('slow'), 1);
      await a.tickAll();
      assert.equal(a.desired('slow'), 1, 'not applied, so not counted as applied');
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      await a.stop();
    }
  });

  test('a decision the API server refuses is retried at the next tick, and the desired count only moves once applied', async () => {
    api.replicas.set('flaky', 1);
    api.forbidden.add('flaky');
    const d = deployment('flaky', { min_replicas: 1, max_replicas: 4, upscale_delay_s: 0 });
    const a = await Autoscaler.start({ deployments: [d], target, registry: new Registry(), log, intervalMs: 3_600_000, now: Date.now, observe: () => ({ runningReplicas: 1, totalOngoing: 8 }) });
    try {
      assert.equal(a.desired('flaky'), 1, 'the GET was refused too: initial_replicas');
      await a.tickAll();
      assert.equal(a.desired('flaky'), 1);
      api.forbidden.delete('flaky');
      await a.tickAll();
      assert.equal(api.replicas.get('flaky'), 4);
      assert.equal(a.desired('flaky'), 4);
    } finally {
      await a.stop();
    }
  });
});

describe('autoscaler leader Lease (the same fake API server speaking coordination.k8s.io/v1 Leases)', () => {
  const api = new FakeScaleApi();
  before(() => api.start());
  after(() => api.close());

  test('one router holds the Lease; another takes it over only after the holder stops renewing for a whole lease', async () => {
    let now = 1_000_000;
    const clock = () => now;
    const kubeConfig = await kubeConfigFor(api);
    const a = await KubernetesLeaseLock.create({ namespace: NS, name: 'lease-test', holder: 'router-a', leaseMs: 15_000, now: clock, kubeConfig });
    const b = await KubernetesLeaseLock.create({ namespace: NS, name: 'lease-test', holder: 'router-b', leaseMs: 15_000, now: clock, kubeConfig });
    assert.equal(await a.acquireOrRenew(), true, 'a creates the Lease');
    const created = api.leases.get(`${NS}/lease-test`)!;
    assert.equal(created.spec?.holderIdentity, 'router-a');
    assert.equal(created.spec?.leaseDurationSeconds, 15);
    assert.equal(await b.acquireOrRenew(), false, 'b sees a holding it');
    now += 10_000;
    assert.equal(await a.acquireOrRenew(), true, 'a renews');
    now += 10_000;
    // 20 s since b first looked, but a renewed 10 s ago: b counts from when it saw the renewal.
    assert.equal(await b.acquireOrRenew(), false);
    now += 15_000; // a is gone: no renewal for 15 s
    assert.equal(await b.acquireOrRenew(), true, 'b takes over');
    const taken = api.leases.get(`${NS}/lease-test`)!;
    assert.equal(taken.spec?.holderIdentity, 'router-b');
    assert.equal(taken.spec?.leaseTransitions, 1);
    assert.equal(await a.acquireOrRenew(), false, 'a, back, sees b holding it');
    await b.release();
    assert.equal(api.leases.get(`${NS}/lease-test`)!.spec?.holderIdentity, '');
    assert.equal(await a.acquireOrRenew(), true, 'a released Lease is taken at once');
  });

  test('of two routers taking over at once the API server lets one win (resourceVersion conflict)', async () => {
    const kubeConfig = await kubeConfigFor(api);
    const locks = await Promise.all(['x', 'y', 'z'].map((h) => KubernetesLeaseLock.create({ namespace: NS, name: 'race-test', holder: h, leaseMs: 5000, now: Date.now, kubeConfig })));
    const won = await Promise.all(locks.map((l) => l.acquireOrRenew()));
    assert.equal(won.filter(Boolean).length, 1, `exactly one holder (got ${JSON.stringify(won)})`);
  });
});

describe('router autoscaling a Kubernetes Deployment from zero (fake API server, real router, NATS and replicas)', () => {
  const api = new FakeScaleApi();
  let nats: NatsServerProcess;
  let router: Router;
  let client: ImageServiceClient;
  let config: ClusterConfig;
  let dir = '';
  /** The "pods" of t-orrery-auto: real replicas in this process. */
  const pods: Array<Promise<Replica>> = [];
  const drains: Array<Promise<void>> = [];
  const savedKubeconfig = process.env.KUBECONFIG;

  before(async () => {
    await api.start();
    api.replicas.set('t-orrery-auto', 0);
    api.replicas.set('t-orrery-stuck', 0);
    // The Deployment controller's part: pods for `t-orrery-auto` come and go with its scale.
    api.onScale = (name, n) => {
      if (name !== 't-orrery-auto') return;
      while (pods.length < n) pods.push(Replica.start({ config, deployment: 'auto', log, metricsPort: 0 }));
      while (pods.length > n) drains.push(pods.pop()!.then((r) => r.drain()));
    };
    nats = await NatsServerProcess.start();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-kube-'));
    // The router finds its API server the way it would outside a cluster: through $KUBECONFIG.
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, JSON.stringify({
      apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'fake', cluster: { server: api.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'router', user: { token: TOKEN } }], contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'router' } }], 'current-context': 'fake',
    }));
    process.env.KUBECONFIG = kubeconfig;
    config = compileConfig({
      nats: { url: nats.url, prefix: 'kube' },
      autoscaler: { scale_target: 'kubernetes', kubernetes_namespace: NS, interval_ms: 100 },
      worker: { heartbeat_interval_ms: 100, drain_timeout_ms: 10_000 },
      deployments: {
        auto: {
          stage: 'synthetic', models: ['m'], options: { fixed_ms: 30 },
          autoscaling: { min_replicas: 0, max_replicas: 2, upscale_delay_s: 0.2, downscale_delay_s: 0.3, downscale_to_zero_delay_s: 1, kubernetes_deployment: 't-orrery-auto' },
        },
        // Its "pods" never start: requests are held, then fail after max_hold_s.
        stuck: {
          stage: 'synthetic', models: ['m'],
          autoscaling: { min_replicas: 0, max_replicas: 1, max_hold_s: 1, kubernetes_deployment: 't-orrery-stuck' },
        },
      },
    });
    router = await Router.start({ config, log, grpcPort: 0, grpcHost: '127.0.0.1', metricsPort: 0 });
    client = imageServiceClient(router.grpcAddress);
  });

  after(async () => {
    client?.close();
    await router?.stop(1000);
    await Promise.all([...drains, ...pods.map((p) => p.then((r) => r.drain()))]);
    await nats?.close();
    await api.close();
    if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = savedKubeconfig;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a request to a deployment at zero scales it to one at once, is held, and is answered by the new replica', async () => {
    assert.equal(await metricSum(router.metricsUrl, 'orrery_replicas_desired', { deployment: 'auto' }), 0);
    const t0 = Date.now();
    const res = await generate(client, { pipeline: 'auto', prompt: 'cold start', seed: '7' }, 30_000);
    assert.equal(res.images.length, 1);
    const patches = api.patches('t-orrery-auto');
    assert.deepEqual(patches[0]!.body, { spec: { replicas: 1 } });
    assert.equal(patches[0]!.authorization, `Bearer ${TOKEN}`);
    assert.ok(Date.now() - t0 < 15_000, 'held until the replica was ready, not failed');
    assert.equal(await metricSum(router.metricsUrl, 'orrery_replicas_desired', { deployment: 'auto' }), 1);
  });

  test('once idle it patches the Deployment back to zero after downscale_to_zero_delay_s, and the replica drains', async () => {
    await eventually(() => api.replicas.get('t-orrery-auto') === 0, 10_000, 'scale to zero');
    await eventually(async () => (await metricSum(router.metricsUrl, 'orrery_replicas', { deployment: 'auto', state: 'running' })) === 0, 10_000, 'no running replica');
    assert.equal(await metricSum(router.metricsUrl, 'orrery_replicas_desired', { deployment: 'auto' }), 0);
  });

  test('a held request fails with UNAVAILABLE after max_hold_s when no replica comes', async () => {
    const t0 = Date.now();
    const err = await grpcError(generate(client, { pipeline: 'stuck', prompt: 'x' }, 30_000));
    assert.equal(err.code, status.UNAVAILABLE);
    assert.match(err.details, /deployment stuck has no ready replica: none became ready within 1 s \(autoscaling\.max_hold_s\)/);
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_NO_REPLICA');
    assert.ok(Date.now() - t0 >= 900, 'it was held first');
    assert.deepEqual(api.patches('t-orrery-stuck')[0]!.body, { spec: { replicas: 1 } }, 'the scale-up was asked for at once');
  });

  test('a held request with a shorter deadline ends with DEADLINE_EXCEEDED at its deadline', async () => {
    const t0 = Date.now();
    const err = await grpcError(generate(client, { pipeline: 'stuck', prompt: 'x' }, 300));
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - t0 < 900, 'not held past its deadline');
  });
});
