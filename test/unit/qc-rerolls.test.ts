import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileConfig } from '../../services/common/config.js';
import { QcFailedError } from '../../services/common/errors.js';
import { compileQcOptions } from '../../services/common/qc-config.js';
import type { QcVerdictData } from '../../services/common/qc-verdict.js';
import type { DeploymentScheduler } from '../../services/router/deployment-scheduler.js';
import { PipelineRunner, type QcRejection } from '../../services/router/pipeline-runner.js';
import { attemptSeed, decideQc } from '../../services/router/qc-rerolls.js';
import { normalizeRequest, type GenerateRequestWire } from '../../services/router/request-validation.js';
import type { WorkUnit } from '../../services/router/work-unit.js';

const PASS: QcVerdictData = { passed: true, reasons: [], box: { left: 200, top: 60, right: 600, bottom: 400 }, areaFraction: 0.16 };
const FAIL: QcVerdictData = { passed: false, reasons: ['no planet found'], areaFraction: 0 };

describe('re-roll seeds', () => {
  test('attempt 1 keeps the image\'s seed; later attempts step by 0x9E3779B97F4A7C15 modulo 2^64', () => {
    assert.equal(attemptSeed(42n, 1), 42n);
    assert.equal(attemptSeed(42n, 2), 42n + 0x9e3779b97f4a7c15n);
    assert.equal(attemptSeed(2n ** 64n - 1n, 2), (2n ** 64n - 1n + 0x9e3779b97f4a7c15n) % 2n ** 64n);
  });
  test('the sequence is the same every time and never repeats a seed of the request\'s other images', () => {
    const seeds = new Set<bigint>();
    for (let i = 0n; i < 16n; i++) for (let k = 1; k <= 10; k++) seeds.add(attemptSeed(1000n + i, k));
    assert.equal(seeds.size, 160);
    assert.equal(attemptSeed(1000n, 7), attemptSeed(1000n, 7));
  });
});

describe('re-roll decisions', () => {
  const gate = compileQcOptions({ max_attempts: 3, on_fail: 'error' }, 'qc');
  test('a pass is kept at any attempt', () => {
    assert.deepEqual(decideQc(PASS, 3, 5n, 0, gate, 'p'), { kind: 'accept' });
  });
  test('a failure with attempts left is generated again with the next seed', () => {
    assert.deepEqual(decideQc(FAIL, 1, 5n, 0, gate, 'p'), { kind: 'reroll', attempt: 2, seed: attemptSeed(5n, 2) });
    assert.deepEqual(decideQc(FAIL, 2, 5n, 0, gate, 'p'), { kind: 'reroll', attempt: 3, seed: attemptSeed(5n, 3) });
  });
  test('on the last attempt, on_fail: error fails with FAILED_PRECONDITION naming pipeline, image and reason', () => {
    const d = decideQc(FAIL, 3, 5n, 2, gate, 'planet-ultrawide');
    assert.equal(d.kind, 'fail');
    const err = (d as { error: QcFailedError }).error;
    assert.ok(err instanceof QcFailedError);
    assert.equal(err.code, 'ORRERY_ERR_QC_FAILED');
    assert.equal(err.grpcStatus, 9); // FAILED_PRECONDITION
    assert.match(err.message, /pipeline planet-ultrawide: image 2 failed the quality check on all 3 attempts .*no planet found/);
  });
  test('on the last attempt, on_fail: return_flagged returns the image flagged', () => {
    assert.deepEqual(decideQc(FAIL, 1, 5n, 0, compileQcOptions({ max_attempts: 1 }, 'qc'), 'p'), { kind: 'flag' });
  });
});

/**
 * A pipeline runner over scheduler doubles that answer at once: the checking stage's verdict is
 * a function of the item's seed (`passes`), so the re-roll loop is observed without replicas
 * (the real check on real replicas: test/integration/quality-gate.test.ts).
 */
function gatedRunner(qc: Record<string, unknown>, passes: (seed: bigint) => boolean) {
  const config = compileConfig({
    deployments: { gen: { stage: 'sdxl', models: ['base'] }, up: { stage: 'upscaler', models: ['x2'] } },
    pipelines: { gated: { stages: [{ deployment: 'gen' }, { deployment: 'up', params: { scale: 2 }, size: 'scaled' }], qc } },
  });
  const seen: Array<{ deployment: string; index: number; seed: bigint; attempt?: number }> = [];
  const schedulers = new Map(Object.values(config.deployments).map((dep) => [dep.name, {
    config: dep,
    queueDepth: 0,
    submit(units: readonly WorkUnit[]) {
      for (const u of units) {
        seen.push({ deployment: u.deployment, index: u.input.imageIndex, seed: u.input.seed, ...(u.input.qc ? { attempt: u.input.qc.attempt } : {}) });
        u.succeed({
          data: new Uint8Array(1), width: u.input.width, height: u.input.height, mimeType: 'image/png', replicaId: 'r', queueSeconds: 0, runSeconds: 0,
          ...(u.input.qc ? { qc: passes(u.input.seed) ? PASS : FAIL } : {}),
        });
      }
    },
  }]));
  const counted: string[] = [];
  const metrics = { qcChecked: (p: string, passed: boolean) => counted.push(`${p}:${passed ? 'passed' : 'failed'}`), qcRerolled: (p: string) => counted.push(`${p}:reroll`) };
  const runner = new PipelineRunner(config, schedulers as unknown as ReadonlyMap<string, DeploymentScheduler>, Date.now, metrics);
  const req = (r: GenerateRequestWire) => normalizeRequest({ prompt: 'p', pipeline: 'gated', width: 128, height: 64, ...r }, () => 'id', () => 1n);
  return { runner, seen, counted, req };
}

describe('pipeline runner with a quality gate', () => {
  test('only the failed image is generated again, with its next seed; the later stage runs once per image with the seed that passed', async () => {
    // Image 1 (seed 101) fails once; its second attempt passes.
    const { runner, seen, counted, req } = gatedRunner({ after_stage: 0, max_attempts: 3 }, (s) => s !== 101n);
    const rejected: QcRejection[] = [];
    const res = await runner.run(req({ seed: '100', num_images: 3 }), new AbortController().signal, 0, { qcRejected: (r) => rejected.push(r) });
    const gen = seen.filter((s) => s.deployment === 'gen');
    assert.deepEqual(gen.map((s) => [s.index, s.seed, s.attempt]), [[0, 100n, 1], [1, 101n, 1], [2, 102n, 1], [1, attemptSeed(101n, 2), 2]]);
    const up = seen.filter((s) => s.deployment === 'up');
    assert.deepEqual(up.map((s) => [s.index, s.seed, s.attempt]), [[0, 100n, undefined], [1, attemptSeed(101n, 2), undefined], [2, 102n, undefined]]);
    assert.deepEqual(res.images.map((i) => [i.seed, i.qcResult?.attempts, i.qcResult?.verdict.passed]), [[100n, 1, true], [attemptSeed(101n, 2), 2, true], [102n, 1, true]]);
    assert.deepEqual(rejected, [{ imageIndex: 1, attempt: 1, seed: 101n, verdict: FAIL, next: { attempt: 2, seed: attemptSeed(101n, 2) } }]);
    assert.deepEqual(counted.sort(), ['gated:failed', 'gated:passed', 'gated:passed', 'gated:passed', 'gated:reroll']);
  });

  test('return_flagged: an image failing every attempt is returned with its last verdict after max_attempts generations', async () => {
    const { runner, seen, req } = gatedRunner({ max_attempts: 3, on_fail: 'return_flagged' }, () => false);
    const rejected: QcRejection[] = [];
    const res = await runner.run(req({ seed: '7' }), new AbortController().signal, 0, { qcRejected: (r) => rejected.push(r) });
    assert.deepEqual(seen.filter((s) => s.deployment === 'gen').map((s) => s.seed), [7n, attemptSeed(7n, 2), attemptSeed(7n, 3)]);
    assert.equal(res.images[0]!.seed, attemptSeed(7n, 3));
    assert.deepEqual(res.images[0]!.qcResult, { verdict: FAIL, attempts: 3, checkedWidth: 128, checkedHeight: 64 });
    assert.deepEqual(rejected.map((r) => [r.attempt, r.next?.attempt]), [[1, 2], [2, 3], [3, undefined]]);
  });

  test('on_fail: error rejects the request with QcFailedError after the last attempt; the later stage never runs', async () => {
    const { runner, seen, req } = gatedRunner({ max_attempts: 2, on_fail: 'error' }, () => false);
    await assert.rejects(runner.run(req({ seed: '7', num_images: 2 }), new AbortController().signal, 0), (e: unknown) => e instanceof QcFailedError && /image 0 failed the quality check on all 2 attempts/.test(e.message));
    assert.equal(seen.filter((s) => s.deployment === 'up').length, 0);
  });

  test('a gate after the last stage checks the final image', async () => {
    const { runner, seen, req } = gatedRunner({ after_stage: 1, max_attempts: 2 }, (s) => s === attemptSeed(3n, 2));
    const res = await runner.run(req({ seed: '3' }), new AbortController().signal, 0);
    assert.deepEqual(seen.map((s) => [s.deployment, s.seed, s.attempt]), [['gen', 3n, undefined], ['up', 3n, 1], ['gen', attemptSeed(3n, 2), undefined], ['up', attemptSeed(3n, 2), 2]]);
    assert.equal(res.images[0]!.qcResult?.attempts, 2);
    assert.equal(res.images[0]!.qcResult?.checkedWidth, 256);
  });

  test('a pipeline without a gate sends no check and returns no QC result', async () => {
    const { runner, seen, req } = gatedRunner({}, () => true);
    const res = await runner.run(req({ pipeline: 'gen', seed: '3' }), new AbortController().signal, 0);
    assert.deepEqual(seen.map((s) => s.attempt), [undefined]);
    assert.equal(res.images[0]!.qcResult, undefined);
  });
});
