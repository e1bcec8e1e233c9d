/** The synthetic stage's per-step cost model (services/stages/synthetic-steps.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ConfigError } from '../../services/common/errors.js';
import { syntheticStage } from '../../services/stages/synthetic.js';
import { compileStepCost, stepRows } from '../../services/stages/synthetic-steps.js';
import { runContext, workItem } from '../support/work-items.js';

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} vs ${b}`);

describe('synthetic step cost', () => {
  test('the default table is 79 ms + 7.6 ms a row up to 8 rows, then on to 270 ms at 16 rows; the scale multiplies it', () => {
    const cost = compileStepCost({ step_time_scale: 1 })!;
    close(cost.ms(2), 79 + 15.2);
    close(cost.ms(8), 79 + 60.8);
    close(cost.ms(16), 270);
    close(cost.ms(12), (139.8 + 270) / 2);
    close(compileStepCost({ step_time_scale: 0.1 })!.ms(8), 13.98);
  });

  test('is absent unless configured, and refuses malformed tables naming the key', () => {
    assert.equal(compileStepCost({ fixed_ms: 5 }), undefined);
    for (const bad of [[[1, 2]], [[2, 1], [1, 3]], 'fast', [[1, -1], [2, 2]]]) {
      assert.throws(() => compileStepCost({ step_cost_ms: bad }), (e: unknown) => e instanceof ConfigError && e.key === 'options.step_cost_ms');
    }
    assert.throws(() => compileStepCost({ step_time_scale: -1 }), (e: unknown) => e instanceof ConfigError && e.key === 'options.step_time_scale');
  });

  test('rows are images, doubled when any image of the call uses guidance', () => {
    assert.equal(stepRows([{ guidanceScale: 1 }, { guidanceScale: 1 }]), 2);
    assert.equal(stepRows([{ guidanceScale: 1 }, { guidanceScale: 5 }]), 4);
  });
});

describe('synthetic stage with a step cost', () => {
  test('a request-level batch takes steps × the cost of its rows (a lower bound, with slack for timer rounding)', async () => {
    const model = await syntheticStage.load('m', { options: { step_cost_ms: [[1, 10], [8, 80]], progress: true }, modelRepository: '' });
    const progress: Array<[number, number, number]> = [];
    const started = performance.now();
    // Two images with guidance: 4 rows, 40 ms a step, 3 steps.
    const out = await model.run([workItem({ steps: 3, guidanceScale: 5 }), workItem({ imageIndex: 1, steps: 3, guidanceScale: 5 })], runContext({ progress }));
    assert.ok(performance.now() - started >= 115, `took ${performance.now() - started} ms`);
    assert.equal(out.filter((o) => !(o instanceof Error)).length, 2);
    assert.deepEqual(progress.filter((p) => p[0] === 1).map((p) => p[1]), [1, 2, 3]);
  });
});
