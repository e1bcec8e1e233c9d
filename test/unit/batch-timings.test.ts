import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { BatchTimings } from '../../services/router/batch-timings.js';

describe('BatchTimings', () => {
  test('knows nothing about a key it has not seen', () => {
    const t = new BatchTimings();
    assert.equal(t.runLowerBoundMs('k', 4), undefined);
    assert.equal(t.runExpectedMs('k', 4), undefined);
    assert.equal(t.overheadMs, undefined);
  });

  test('lower bound: the fastest recent run of the largest size seen that is not larger', () => {
    const t = new BatchTimings();
    for (const ms of [130, 120, 125]) t.record('k', 8, ms);
    for (const ms of [52, 50]) t.record('k', 1, ms);
    assert.equal(t.runLowerBoundMs('k', 8), 120);
    assert.equal(t.runLowerBoundMs('k', 16), 120);
    assert.equal(t.runLowerBoundMs('k', 4), 50, 'only a smaller batch bounds a batch of 4 from below');
    assert.equal(t.runLowerBoundMs('other', 8), undefined);
  });

  test('the window forgets old runs: a model that got slower raises the bound', () => {
    const t = new BatchTimings();
    t.record('k', 1, 10);
    for (let i = 0; i < 8; i++) t.record('k', 1, 100 + i);
    assert.equal(t.runLowerBoundMs('k', 1), 100);
  });

  test('expected: the median of recent runs of the nearest size, larger preferred', () => {
    const t = new BatchTimings();
    for (const ms of [100, 300, 110]) t.record('k', 4, ms);
    t.record('k', 2, 60);
    t.record('k', 6, 140);
    assert.equal(t.runExpectedMs('k', 4), 110, 'median, not thrown by one slow run');
    assert.equal(t.runExpectedMs('k', 5), 140, 'between 4 and 6: the larger');
    assert.equal(t.runExpectedMs('k', 1), 60);
  });

  test('overhead is a moving average of the samples given', () => {
    const t = new BatchTimings();
    t.record('k', 1, 10, 2);
    assert.equal(t.overheadMs, 2);
    t.record('k', 1, 10);
    assert.equal(t.overheadMs, 2, 'a batch without an overhead sample leaves it');
    t.record('k', 1, 10, 12);
    assert.equal(t.overheadMs, 4);
  });

  test('ignores nonsense samples', () => {
    const t = new BatchTimings();
    t.record('k', 0, 10);
    t.record('k', 1, Number.NaN);
    t.record('k', 1, -1);
    assert.equal(t.runExpectedMs('k', 1), undefined);
  });

  test('remembers a bounded number of keys, forgetting the least recently recorded', () => {
    const t = new BatchTimings();
    t.record('first', 1, 5);
    for (let i = 0; i < 300; i++) t.record(`k${i}`, 1, 5);
    assert.equal(t.runExpectedMs('first', 1), undefined);
    assert.equal(t.runExpectedMs('k299', 1), 5);
  });
});
