/**
 * Security of the rendered chart: every workload against the Kubernetes "restricted" Pod Security
 * Standard (checks written from https://kubernetes.io/docs/concepts/security/pod-security-standards/),
 * the NetworkPolicies' shape (who may reach which port), the built-in NATS's users and their
 * permissions (the same lists as services/common/nats-permissions.ts, in a config nats-server
 * accepts), the generated password Secret, and gRPC TLS from a Secret.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

import { natsPermissions } from '../../services/common/nats-permissions.js';
import { extractHelm, type Helm } from '../support/helm-chart.js';
import { repoRoot } from '../support/repo-root.js';

// Rendered manifests are walked untyped, as in chart.test.ts.
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-explicit-any */
type Obj = any;

const CHART = path.join(repoRoot(), 'helm', 'orrery');
const VALUE_SETS: Record<string, string[]> = {
  'defaults': [],
  'external NATS with an existing password Secret': ['--set', 'nats.builtin.enabled=false', '--set', 'nats.url=nats://x:4222', '--set', 'nats.auth.existingSecret=orrery-nats'],
  'values-gpu-small.yaml': ['-f', path.join(CHART, 'values-gpu-small.yaml')],
  'values-cpu-trial.yaml': ['-f', path.join(CHART, 'values-cpu-trial.yaml')],
  'KEDA, two routers, persistent NATS': ['--set', 'autoscaling.mode=keda', '--set', 'autoscaling.keda.prometheus.serverAddress=http://p:9090', '--set', 'router.replicas=2', '--set', 'nats.builtin.persistence.enabled=true'],
  'gRPC mTLS, models prepared by an init container, existing claim': ['--set', 'router.tls.enabled=true', '--set', 'router.tls.secretName=orrery-grpc-tls', '--set', 'router.tls.clientCA=true', '--set-json', 'modelRepository.initArgs=["models","make-tiny","/models/tiny-sdxl"]', '--set', 'modelRepository.existingClaim=models'],
  'NATS auth off': ['--set', 'nats.auth.enabled=false'],
  'external NATS over TLS with a client certificate': ['--set', 'nats.builtin.enabled=false', '--set', 'nats.url=tls://nats.messaging:4222', '--set', 'nats.tls.enabled=true', '--set', 'nats.tls.secretName=nats-client', '--set', 'nats.tls.clientCert=true'],
};

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob', 'ReplicaSet', 'Pod']);
const RESTRICTED_VOLUMES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);
const SAFE_SYSCTLS = new Set(['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes']);
const SELINUX_TYPES = new Set(['container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']);

function podSpecOf(o: Obj): Obj {
  if (o.kind === 'Pod') return o.spec;
  if (o.kind === 'CronJob') return o.spec.jobTemplate.spec.template.spec;
  return o.spec.template.spec;
}

/**
 * Every way `spec` breaks the restricted profile (baseline included), as readable strings.
 * Container-level settings win over pod-level ones, as the kubelet applies them.
 */
export function restrictedViolations(spec: Obj, annotations: Record<string, string> = {}): string[] {
  const out: string[] = [];
  const psc = spec.securityContext ?? {};
  const containers: Obj[] = [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...(spec.ephemeralContainers ?? [])];
  // Baseline.
  for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) if (spec[k] === true) out.push(`${k} is true`);
  if (psc.windowsOptions?.hostProcess === true) out.push('pod windowsOptions.hostProcess');
  for (const s of psc.sysctls ?? []) if (!SAFE_SYSCTLS.has(s.name)) out.push(`unsafe sysctl ${s.name}`);
  for (const [k, v] of Object.entries(annotations)) if (k.startsWith('container.apparmor.security.beta.kubernetes.io/') && !(v === 'runtime/default' || v.startsWith('localhost/'))) out.push(`AppArmor ${k}=${v}`);
  const checkSeLinux = (o: Obj, where: string) => {
    if (!o) return;
    if (o.type && !SELINUX_TYPES.has(o.type)) out.push(`${where} seLinuxOptions.type ${o.type}`);
    if (o.user || o.role) out.push(`${where} seLinuxOptions user/role set`);
  };
  checkSeLinux(psc.seLinuxOptions, 'pod');
  if (psc.appArmorProfile?.type === 'Unconfined') out.push('pod AppArmor Unconfined');
  // Restricted: volumes.
  for (const v of spec.volumes ?? []) {
    const types = Object.keys(v).filter((k) => k !== 'name');
    for (const t of types) if (!RESTRICTED_VOLUMES.has(t)) out.push(`volume ${v.name} is ${t}`);
  }
  // Restricted: pod-level user and seccomp.
  if (psc.runAsUser === 0) out.push('pod runAsUser 0');
  const podSeccomp = psc.seccompProfile?.type;
  if (podSeccomp === 'Unconfined') out.push('pod seccomp Unconfined');
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const where = `container ${c.name}`;
    if (sc.privileged === true) out.push(`${where} privileged`);
    if (sc.windowsOptions?.hostProcess === true) out.push(`${where} hostProcess`);
    for (const p of c.ports ?? []) if (p.hostPort) out.push(`${where} hostPort ${p.hostPort}`);
    if (sc.procMount && sc.procMount !== 'Default') out.push(`${where} procMount ${sc.procMount}`);
    checkSeLinux(sc.seLinuxOptions, where);
    if (sc.appArmorProfile?.type === 'Unconfined') out.push(`${where} AppArmor Unconfined`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${where} allowPrivilegeEscalation is not false`);
    const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
    if (nonRoot !== true) out.push(`${where} runAsNonRoot is not true`);
    if (sc.runAsUser === 0) out.push(`${where} runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? podSeccomp;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${where} seccomp ${seccomp ?? 'unset'}`);
    const drop: string[] = sc.capabilities?.drop ?? [];
    if (!drop.includes('ALL')) out.push(`${where} does not drop ALL capabilities`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`${where} adds capability ${cap}`);
  }
  return out;
}

/** Whether a LabelSelector (matchLabels + matchExpressions) selects `labels`. */
function selects(selector: Obj, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    if (e.operator === 'In' && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** nats.conf of the built-in NATS, with its password variables set, checked by `nats-server -t`. */
function checkNatsConf(conf: string): { status: number | null; output: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-chart-nats-'));
  try {
    const file = path.join(dir, 'nats.conf');
    fs.writeFileSync(file, conf.replace('/data/jetstream', path.join(dir, 'js')));
    const r = spawnSync('nats-server', ['-c', file, '-t'], { encoding: 'utf8', env: { ...process.env, ORRERY_NATS_ROUTER_PASSWORD: 'r', ORRERY_NATS_WORKER_PASSWORD: 'w' } });
    return { status: r.status, output: r.stdout + r.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The allow lists of each user in nats.conf, read back from the rendered text. */
function confPermissions(conf: string): Record<string, { publish: string[]; subscribe: string[] }> {
  const out: Record<string, { publish: string[]; subscribe: string[] }> = {};
  for (const m of conf.matchAll(/user: "([^"]+)",[^\n]*\n\s*permissions: \{ publish: \{ allow: (\[[^\]]*\]) \},\n\s*subscribe: \{ allow: (\[[^\]]*\]) \}/g)) {
    out[m[1]!] = { publish: JSON.parse(m[2]!) as string[], subscribe: JSON.parse(m[3]!) as string[] };
  }
  return out;
}

let helm: Helm;
before(() => {
  helm = extractHelm();
});
after(() => helm?.remove());

const find = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `no ${kind}/${name}`);
  return o;
};
const workloads = (objs: Obj[]) => objs.filter((o) => WORKLOAD_KINDS.has(o.kind));

describe('helm/orrery: the restricted Pod Security Standard', () => {
  for (const [name, args] of Object.entries(VALUE_SETS)) {
    test(`${name}: every workload meets the restricted profile, with a read-only root filesystem and no API token unless the router autoscales`, () => {
      const objs: Obj[] = helm.render(...args);
      const ws = workloads(objs);
      assert.ok(ws.length >= 4, `${ws.length} workloads`);
      for (const w of ws) {
        const spec = podSpecOf(w);
        assert.deepEqual(restrictedViolations(spec, w.spec.template?.metadata?.annotations), [], `${w.kind}/${w.metadata.name}`);
        for (const c of [...(spec.initContainers ?? []), ...spec.containers]) assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${w.metadata.name}/${c.name} root filesystem`);
        const routerAutoscales = w.metadata.name === 't-orrery-router' && !args.includes('autoscaling.mode=keda');
        assert.equal(spec.automountServiceAccountToken, routerAutoscales, `${w.metadata.name} service-account token`);
        // Writable places are volumes: /tmp for Orrery pods, /data for NATS.
        const mounts = spec.containers[0].volumeMounts.map((m: Obj) => m.mountPath);
        assert.ok(mounts.includes(w.metadata.labels['app.kubernetes.io/component'] === 'nats' ? '/data' : '/tmp'), `${w.metadata.name} mounts ${mounts.join(', ')}`);
      }
    });
  }

  test('the check catches what the profile forbids (so a passing chart means something)', () => {
    const objs: Obj[] = helm.render('--set', 'securityContext.allowPrivilegeEscalation=true', '--set', 'podSecurityContext.runAsNonRoot=false', '--set', 'securityContext.runAsNonRoot=false', '--set-json', 'securityContext.capabilities={"add":["SYS_ADMIN"],"drop":[]}', '--set', 'podSecurityContext.seccompProfile.type=Unconfined', '--set', 'securityContext.seccompProfile=null');
    const v = restrictedViolations(podSpecOf(find(objs, 'Deployment', 't-orrery-router')));
    for (const part of ['allowPrivilegeEscalation is not false', 'runAsNonRoot is not true', 'does not drop ALL', 'adds capability SYS_ADMIN', 'pod seccomp Unconfined']) assert.ok(v.some((x) => x.includes(part)), `${part} in ${v.join('; ')}`);
    assert.deepEqual(restrictedViolations({ hostNetwork: true, volumes: [{ name: 'h', hostPath: { path: '/' } }], containers: [] }), ['hostNetwork is true', 'volume h is hostPath']);
  });
});

describe('helm/orrery: NetworkPolicies', () => {
  test('router: gRPC from anyone by default and metrics from Prometheus; workers: metrics only; NATS: clients only from this release\'s router and workers', () => {
    const objs: Obj[] = helm.render();
    const pods = workloads(objs).map((w) => ({ name: w.metadata.name, labels: w.spec.template.metadata.labels as Record<string, string>, ports: w.spec.template.spec.containers[0].ports.map((p: Obj) => p.name) }));
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy');
    assert.deepEqual(policies.map((p) => p.metadata.name).sort(), ['t-orrery-nats', 't-orrery-router', 't-orrery-worker']);
    const prometheus = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }];
    for (const p of policies) {
      assert.deepEqual(p.spec.policyTypes, ['Ingress']);
      const selected = pods.filter((x) => selects(p.spec.podSelector, x.labels)).map((x) => x.name).sort();
      const rules = p.spec.ingress.map((r: Obj) => ({ ports: r.ports.map((x: Obj) => x.port), from: r.from }));
      // Named ports exist on every selected pod.
      for (const r of rules) for (const port of r.ports) for (const x of pods.filter((y) => selected.includes(y.name))) assert.ok(x.ports.includes(port), `${x.name} has port ${port}`);
      if (p.metadata.name === 't-orrery-router') {
        assert.deepEqual(selected, ['t-orrery-router']);
        assert.deepEqual(rules, [{ ports: ['grpc'], from: undefined }, { ports: ['metrics'], from: prometheus }]);
      } else if (p.metadata.name === 't-orrery-worker') {
        assert.deepEqual(selected, ['t-orrery-sdxl-base', 't-orrery-sdxl-img2img', 't-orrery-upscaler']);
        assert.deepEqual(rules, [{ ports: ['metrics'], from: prometheus }]);
      } else {
        assert.deepEqual(selected, ['t-orrery-nats']);
        assert.deepEqual(rules.map((r: Obj) => r.ports), [['client'], ['monitor']]);
        assert.deepEqual(rules[1].from, prometheus);
        const [peer] = rules[0].from;
        assert.equal(rules[0].from.length, 1);
        assert.equal(peer.namespaceSelector, undefined, 'same namespace only');
        const clients = pods.filter((x) => selects(peer.podSelector, x.labels)).map((x) => x.name).sort();
        assert.deepEqual(clients, ['t-orrery-router', 't-orrery-sdxl-base', 't-orrery-sdxl-img2img', 't-orrery-upscaler']);
        assert.ok(!selects(peer.podSelector, { ...pods.find((x) => x.name === 't-orrery-router')!.labels, 'app.kubernetes.io/instance': 'other' }), 'another release\'s router is not a client');
      }
    }
  });

  test('takes the gRPC clients and the Prometheus peers from values, and renders none when disabled', () => {
    const clients = [{ ipBlock: { cidr: '10.0.0.0/8' } }, { namespaceSelector: { matchLabels: { team: 'apps' } } }];
    const prom = [{ namespaceSelector: { matchLabels: { name: 'obs' } }, podSelector: { matchLabels: { app: 'prometheus' } } }];
    const objs: Obj[] = helm.render('--set-json', `networkPolicy.grpcClients=${JSON.stringify(clients)}`, '--set-json', `networkPolicy.prometheus=${JSON.stringify(prom)}`);
    const router = find(objs, 'NetworkPolicy', 't-orrery-router');
    assert.deepEqual(router.spec.ingress[0].from, clients);
    assert.deepEqual(router.spec.ingress[1].from, prom);
    assert.deepEqual(find(objs, 'NetworkPolicy', 't-orrery-worker').spec.ingress[0].from, prom);
    assert.equal((helm.render('--set', 'networkPolicy.enabled=false') as Obj[]).filter((o) => o.kind === 'NetworkPolicy').length, 0);
    assert.equal((helm.render('--set', 'nats.builtin.enabled=false', '--set', 'nats.url=nats://x:4222') as Obj[]).filter((o) => o.kind === 'NetworkPolicy').length, 2);
  });
});

describe('helm/orrery: NATS authorization', () => {
  for (const prefix of ['orrery', 'team.a']) {
    test(`prefix ${prefix}: the built-in NATS grants the router and worker users exactly natsPermissions(), in a config nats-server accepts`, () => {
      const objs: Obj[] = helm.render('--set', `config.nats.prefix=${prefix}`);
      const conf: string = find(objs, 'ConfigMap', 't-orrery-nats-config').data['nats.conf'];
      const want = natsPermissions(prefix);
      assert.deepEqual(confPermissions(conf), { router: { ...want.router }, worker: { ...want.worker } });
      assert.match(conf, /password: \$ORRERY_NATS_ROUTER_PASSWORD/);
      const r = checkNatsConf(conf);
      assert.equal(r.status, 0, r.output);
      assert.deepEqual(find(objs, 'StatefulSet', 't-orrery-nats').spec.template.spec.containers[0].args.slice(0, 2), ['-c', '/etc/nats/nats.conf']);
    });
  }

  test('generates a Secret with two distinct random passwords, and gives each pod only its own role\'s password as a file', () => {
    const objs: Obj[] = helm.render();
    const secret = find(objs, 'Secret', 't-orrery-nats-auth');
    const pw = (k: string) => Buffer.from(secret.data[k], 'base64').toString();
    assert.match(pw('router-password'), /^[A-Za-z0-9]{32}$/);
    assert.match(pw('worker-password'), /^[A-Za-z0-9]{32}$/);
    assert.notEqual(pw('router-password'), pw('worker-password'));
    for (const o of objs.filter((x) => x.kind === 'ConfigMap')) {
      const text = JSON.stringify(o.data);
      assert.ok(!text.includes(pw('router-password')) && !text.includes(pw('worker-password')), `${o.metadata.name} holds no password`);
    }
    for (const [name, role] of [['t-orrery-router', 'router'], ['t-orrery-sdxl-base', 'worker'], ['t-orrery-upscaler', 'worker']] as const) {
      const spec = find(objs, 'Deployment', name).spec.template.spec;
      const env = Object.fromEntries(spec.containers[0].env.map((e: Obj) => [e.name, e.value]));
      assert.equal(env.ORRERY_NATS_USER, role);
      assert.equal(env.ORRERY_NATS_PASSWORD_FILE, '/var/run/secrets/orrery/nats/password');
      const vol = spec.volumes.find((v: Obj) => v.name === 'nats-auth');
      assert.deepEqual(vol.secret.items, [{ key: `${role}-password`, path: 'password' }]);
      assert.equal(vol.secret.secretName, 't-orrery-nats-auth');
      assert.deepEqual(spec.containers[0].volumeMounts.find((m: Obj) => m.name === 'nats-auth'), { name: 'nats-auth', mountPath: '/var/run/secrets/orrery/nats', readOnly: true });
    }
    const natsEnv = find(objs, 'StatefulSet', 't-orrery-nats').spec.template.spec.containers[0].env;
    assert.deepEqual(natsEnv.map((e: Obj) => [e.name, e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key]), [
      ['ORRERY_NATS_ROUTER_PASSWORD', 't-orrery-nats-auth', 'router-password'],
      ['ORRERY_NATS_WORKER_PASSWORD', 't-orrery-nats-auth', 'worker-password'],
    ]);
  });

  test('uses an existing Secret instead of generating one, and renders no users when auth is off', () => {
    let objs: Obj[] = helm.render('--set', 'nats.auth.existingSecret=orrery-nats');
    assert.equal(objs.filter((o) => o.kind === 'Secret').length, 0);
    assert.equal(find(objs, 'Deployment', 't-orrery-router').spec.template.spec.volumes.find((v: Obj) => v.name === 'nats-auth').secret.secretName, 'orrery-nats');
    objs = helm.render('--set', 'nats.auth.enabled=false');
    assert.equal(objs.filter((o) => o.kind === 'Secret').length, 0);
    assert.doesNotMatch(find(objs, 'ConfigMap', 't-orrery-nats-config').data['nats.conf'], /authorization/);
    assert.equal(find(objs, 'Deployment', 't-orrery-router').spec.template.spec.containers[0].env.some((e: Obj) => e.name === 'ORRERY_NATS_USER'), false);
  });
});

describe('helm/orrery: TLS to an external NATS', () => {
  test('mounts the Secret in every Orrery pod and points ORRERY_NATS_TLS_* at ca.crt (and tls.crt/tls.key with clientCert)', () => {
    const objs: Obj[] = helm.render('--set', 'nats.builtin.enabled=false', '--set', 'nats.url=tls://nats.messaging:4222', '--set', 'nats.tls.enabled=true', '--set', 'nats.tls.secretName=nats-client', '--set', 'nats.tls.clientCert=true');
    for (const name of ['t-orrery-router', 't-orrery-sdxl-base', 't-orrery-sdxl-img2img', 't-orrery-upscaler']) {
      const spec = find(objs, 'Deployment', name).spec.template.spec;
      const env = Object.fromEntries(spec.containers[0].env.map((e: Obj) => [e.name, e.value]));
      assert.equal(env.ORRERY_NATS_TLS_CA_FILE, '/var/run/secrets/orrery/nats-tls/ca.crt', name);
      assert.equal(env.ORRERY_NATS_TLS_CERT_FILE, '/var/run/secrets/orrery/nats-tls/tls.crt', name);
      assert.equal(env.ORRERY_NATS_TLS_KEY_FILE, '/var/run/secrets/orrery/nats-tls/tls.key', name);
      assert.equal(spec.volumes.find((v: Obj) => v.name === 'nats-tls').secret.secretName, 'nats-client');
      assert.deepEqual(spec.containers[0].volumeMounts.find((m: Obj) => m.name === 'nats-tls'), { name: 'nats-tls', mountPath: '/var/run/secrets/orrery/nats-tls', readOnly: true });
    }
    const caOnly: Obj[] = helm.render('--set', 'nats.builtin.enabled=false', '--set', 'nats.url=tls://n:4222', '--set', 'nats.tls.enabled=true', '--set', 'nats.tls.secretName=s');
    const env = find(caOnly, 'Deployment', 't-orrery-router').spec.template.spec.containers[0].env.map((e: Obj) => e.name);
    assert.ok(env.includes('ORRERY_NATS_TLS_CA_FILE') && !env.includes('ORRERY_NATS_TLS_CERT_FILE'));
  });

  test('refuses nats.tls with the built-in NATS, and without a Secret name', () => {
    let r = helm.run('template', 't', helm.chart, '--set', 'nats.tls.enabled=true', '--set', 'nats.tls.secretName=s');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /nats\.tls is for an external NATS/);
    r = helm.run('template', 't', helm.chart, '--set', 'nats.builtin.enabled=false', '--set', 'nats.url=tls://n:4222', '--set', 'nats.tls.enabled=true');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /nats\.tls\.secretName is required/);
  });
});

describe('helm/orrery: gRPC TLS from a Secret', () => {
  test('mounts the Secret as a directory, points router.tls at tls.crt, tls.key and (mTLS) ca.crt, and probes the port over TCP', () => {
    const objs: Obj[] = helm.render('--set', 'router.tls.enabled=true', '--set', 'router.tls.secretName=orrery-grpc-tls', '--set', 'router.tls.clientCA=true');
    const spec = find(objs, 'Deployment', 't-orrery-router').spec.template.spec;
    assert.deepEqual(spec.volumes.find((v: Obj) => v.name === 'grpc-tls').secret, { secretName: 'orrery-grpc-tls', defaultMode: 0o440 });
    const mount = spec.containers[0].volumeMounts.find((m: Obj) => m.name === 'grpc-tls');
    assert.deepEqual(mount, { name: 'grpc-tls', mountPath: '/var/run/secrets/orrery/tls', readOnly: true }, 'no subPath: renewed files reach the pod');
    const config = parseYaml(find(objs, 'ConfigMap', 't-orrery-config').data['config.yaml']);
    assert.deepEqual(config.router.tls, { cert_file: '/var/run/secrets/orrery/tls/tls.crt', key_file: '/var/run/secrets/orrery/tls/tls.key', client_ca_file: '/var/run/secrets/orrery/tls/ca.crt' });
    assert.deepEqual(spec.containers[0].readinessProbe.tcpSocket, { port: 'grpc' });
    assert.deepEqual(spec.containers[0].livenessProbe.tcpSocket, { port: 'grpc' });
    const plain = parseYaml(find(helm.render('--set', 'router.tls.enabled=true', '--set', 'router.tls.secretName=s'), 'ConfigMap', 't-orrery-config').data['config.yaml']);
    assert.equal(plain.router.tls.client_ca_file, undefined, 'server TLS only without clientCA');
  });

  test('refuses TLS without a Secret name', () => {
    const r = helm.run('template', 't', helm.chart, '--set', 'router.tls.enabled=true');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /router\.tls\.secretName is required with router\.tls\.enabled/);
  });
});
