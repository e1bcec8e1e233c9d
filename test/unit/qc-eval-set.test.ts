/**
 * The planet check against a fixed subset of the labelled evaluation set (the full set and the
 * timings are in bench/qc.bench.ts): a behaviour floor, not a measurement.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkPlanet } from '../../services/stages/qc/qc-check.js';
import { DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';
import { evaluationSet, iou, makeCase, renderCase, SCENE_CATEGORIES, SCENE_SIZES } from '../support/planet-scenes.js';

describe('the evaluation set', () => {
  test('holds at least 300 labelled cases over every category at both sizes, with passes and failures', () => {
    const set = evaluationSet();
    assert.ok(set.length >= 300, `${set.length} cases`);
    for (const cat of SCENE_CATEGORIES) {
      for (const [w, h] of SCENE_SIZES) assert.ok(set.some((c) => c.category === cat && c.spec.width === w && c.spec.height === h), `${cat} at ${w}x${h}`);
    }
    const passes = set.filter((c) => c.expected.passed).length;
    assert.ok(passes > 60 && passes < set.length - 60, `${passes} expected passes of ${set.length}`);
    assert.ok(set.filter((c) => c.category === 'none').every((c) => !c.box && c.expected.reasons[0] === 'no planet found'));
    assert.ok(set.filter((c) => c.category === 'cut').every((c) => !c.expected.passed), 'a planet cut by the frame always reaches into a margin');
  });

  test('renders the same pixels for the same case', () => {
    const a = renderCase(makeCase('ringed', 1536, 640, 99));
    const b = renderCase(makeCase('ringed', 1536, 640, 99));
    assert.ok(Buffer.from(a.data).equals(Buffer.from(b.data)));
  });
});

describe('checkPlanet on 60 evaluation cases (3 per category and size)', () => {
  test('gives the labelled verdict on at least 98% of them, with a median box IoU of at least 0.9', () => {
    const cases = evaluationSet(3);
    assert.equal(cases.length, 60);
    const wrong: string[] = [];
    const ious: number[] = [];
    for (const c of cases) {
      const v = checkPlanet(renderCase(c), DEFAULT_QC_OPTIONS);
      if (v.passed !== c.expected.passed) wrong.push(`${c.id}: expected ${c.expected.reasons.join('; ') || 'pass'}, got ${v.reasons.join('; ') || 'pass'}`);
      if (c.box) ious.push(iou(c.box, v.box));
    }
    ious.sort((a, b) => a - b);
    assert.ok(wrong.length <= 1, `${wrong.length} wrong verdicts of 60:\n${wrong.join('\n')}`);
    assert.ok(ious[Math.floor((ious.length - 1) / 2)]! >= 0.9, `median IoU ${ious[Math.floor((ious.length - 1) / 2)]}`);
  });
});
