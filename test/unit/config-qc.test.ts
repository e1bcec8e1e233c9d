import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileConfig } from '../../services/common/config.js';
import { ConfigError } from '../../services/common/errors.js';

const deployments = {
  gen: { stage: 'sdxl', models: ['base'] },
  up: { stage: 'upscaler', models: ['x2'] },
  syn: { stage: 'synthetic', models: ['s'] },
};
const withQc = (qc: unknown, stages: unknown[] = [{ deployment: 'gen' }, { deployment: 'up' }]) =>
  compileConfig({ deployments, pipelines: { planets: { stages, qc } } });

function rejects(fn: () => unknown, key: string, part: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && err.key === key && part.test(err.message));
}

describe('a pipeline\'s qc block in the cluster config', () => {
  test('compiles into frozen options with the issue\'s keys', () => {
    const p = withQc({ after_stage: 1, planet_region: { left: 0.1, right: 0.1, top: 0.05, bottom: 0.05 }, min_area: 0.03, max_area: 0.5, max_attempts: 4, on_fail: 'error' }).pipelines['planets']!;
    assert.deepEqual(p.qc, { afterStage: 1, planetRegion: { left: 0.1, right: 0.1, top: 0.05, bottom: 0.05 }, minAreaFraction: 0.03, maxAreaFraction: 0.5, maxAttempts: 4, onFail: 'error' });
    assert.ok(Object.isFrozen(p.qc));
  });
  test('an empty block takes the documented defaults; no block means no gate', () => {
    assert.equal(withQc({}).pipelines['planets']!.qc?.maxAttempts, 3);
    assert.equal(compileConfig({ deployments, pipelines: { planets: { stages: [{ deployment: 'gen' }] } } }).pipelines['planets']!.qc, undefined);
  });
  test('after_stage past the pipeline\'s last stage is rejected naming the key', () => {
    rejects(() => withQc({ after_stage: 2 }), 'pipelines.planets.qc.after_stage', /must name one of the pipeline's 2 stages \(0-1\), got 2/);
  });
  test('after_stage on a synthetic deployment (whose outputs are not images) is rejected', () => {
    rejects(() => withQc({ after_stage: 0 }, [{ deployment: 'syn' }]), 'pipelines.planets.qc.after_stage', /synthetic deployment/);
  });
  test('bad values name their full key', () => {
    rejects(() => withQc({ on_fail: 'retry' }), 'pipelines.planets.qc.on_fail', /return_flagged or error/);
    rejects(() => withQc({ planet_region: { left: 0.6 } }), 'pipelines.planets.qc.planet_region.left', /fraction/);
    rejects(() => withQc({ max_attempts: 0 }), 'pipelines.planets.qc.max_attempts', /integer/);
    rejects(() => withQc({ colour: 'red' }), 'pipelines.planets.qc.colour', /unknown key/);
  });
});
