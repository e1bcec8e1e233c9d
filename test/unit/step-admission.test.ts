/** The admission policy of running sets (services/stages/step-admission.ts): pure, no timers. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { admit, type AdmissionCandidate } from '../../services/stages/step-admission.js';

const c = (seq: number, priority: 'online' | 'bulk', state: 'waiting' | 'stepping' | 'paused' = 'waiting'): AdmissionCandidate =>
  ({ seq, priority, stepping: state === 'stepping', started: state !== 'waiting' });

describe('step admission', () => {
  test('fills free room with waiting images, online before bulk, each in arrival order', () => {
    const a = admit([c(0, 'bulk', 'stepping'), c(1, 'bulk'), c(2, 'online'), c(3, 'bulk'), c(4, 'online')], 4);
    assert.deepEqual(a.step, [2, 4, 0, 1]);
    assert.deepEqual(a.joins, [2, 4, 1]);
    assert.deepEqual(a.preempted, []);
    assert.equal(a.waiting, 1);
  });

  test('a full set pauses its latest bulk image for a waiting online image', () => {
    const a = admit([c(0, 'bulk', 'stepping'), c(1, 'bulk', 'stepping'), c(2, 'online')], 2);
    assert.deepEqual(a.step, [2, 0]);
    assert.deepEqual(a.joins, [2]);
    assert.deepEqual(a.preempted, [1]);
    assert.equal(a.waiting, 1);
  });

  test('never displaces a stepping online image, nor a stepping bulk image for a later bulk one', () => {
    const online = admit([c(0, 'online', 'stepping'), c(1, 'online', 'stepping'), c(2, 'online')], 2);
    assert.deepEqual([online.step, online.preempted], [[0, 1], []]);
    const bulk = admit([c(0, 'bulk', 'stepping'), c(1, 'bulk')], 1);
    assert.deepEqual([bulk.step, bulk.preempted], [[0], []]);
  });

  test('a paused bulk image resumes before bulk images that arrived after it', () => {
    const a = admit([c(1, 'bulk', 'paused'), c(0, 'bulk', 'stepping'), c(5, 'bulk')], 2);
    assert.deepEqual(a.step, [0, 1]);
    assert.deepEqual(a.resumed, [1]);
    assert.deepEqual(a.joins, []);
  });
});
