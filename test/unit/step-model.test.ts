import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { simulateContinuous, simulateRequestLevel, type ContinuousModelOptions, type StepModelOptions } from '../../bench/continuous-batching/step-model.js';
import { DEFAULT_STEP_COST_MS, stepCostAt } from '../../services/stages/synthetic-steps.js';

/** Three steps of 10 ms whatever the rows, one replica, sets of up to 4, no batch wait. */
const flat: StepModelOptions = { steps: 3, maxBatch: 4, replicas: 1, stepMs: () => 10, waitMs: 0 };

describe('stepCostAt', () => {
  test('follows issue 12\'s calibration: 79 ms + 7.6 ms per row up to 8 rows, 270 ms at 16', () => {
    for (const rows of [1, 2, 4, 8]) assert.ok(Math.abs(stepCostAt(DEFAULT_STEP_COST_MS, rows) - (79 + 7.6 * rows)) < 1e-9, `${rows} rows`);
    assert.ok(Math.abs(stepCostAt(DEFAULT_STEP_COST_MS, 12) - (139.8 + 270) / 2) < 1e-9);
    assert.equal(stepCostAt(DEFAULT_STEP_COST_MS, 16), 270);
  });
});

describe('simulateRequestLevel', () => {
  test('runs every step of a batch before the next batch starts', () => {
    // The second image arrives during the first one's batch and waits for all of it.
    const r = simulateRequestLevel([0, 15], flat);
    assert.deepEqual(r.latencies, [30, 45]);
    assert.equal(r.lastDoneMs, 60);
  });

  test('costs a batch steps × stepMs(2 × images)', () => {
    const r = simulateRequestLevel([0, 0], { ...flat, stepMs: (rows) => rows });
    assert.deepEqual(r.latencies, [12, 12]);
  });
});

describe('simulateContinuous', () => {
  test('lets an image join at the next step boundary while another is stepping', () => {
    // The second image joins at 20 (the first one's second step ends) and takes three steps.
    const r = simulateContinuous([0, 15], flat);
    assert.deepEqual(r.latencies, [30, 35]);
    assert.equal(r.lastDoneMs, 50);
  });

  test('prices each step by the rows of the images in the set', () => {
    // Alone for one step (2 rows), then together (4 rows) until the first leaves, then alone again.
    const r = simulateContinuous([0, 1], { ...flat, stepMs: (rows) => rows });
    // Steps: [0,2) {a}; [2,6) {a,b}; [6,10) {a,b} → a done at 10; [10,12) {b} → b done at 12.
    assert.deepEqual(r.latencies, [10, 11]);
  });

  test('holds at most maxBatch images in a set; the rest wait their turn', () => {
    const r = simulateContinuous([0, 0, 0], { ...flat, maxBatch: 1, steps: 2 });
    assert.deepEqual(r.latencies, [20, 40, 60]);
  });

  test('puts queued images on the replica with the most room', () => {
    const r = simulateContinuous([0, 0], { ...flat, replicas: 2, stepMs: (rows) => rows * 5 });
    // Each alone on its own replica: 3 steps of 2 rows.
    assert.deepEqual(r.latencies, [30, 30]);
  });

  test('with transport and room only, a row freed by a leave stays empty until the reply has reached the router and the next image the replica', () => {
    // One row, 2 steps of 10 ms, 1 ms each way. The second image is sent on the first one's reply
    // (at 22), reaches the replica at 23, and is answered at 44.
    const o: ContinuousModelOptions = { ...flat, maxBatch: 1, steps: 2, transportMs: 1 };
    assert.deepEqual(simulateContinuous([0, 0], o).latencies, [22, 44]);
    // One waiting image: sent at once, it joins at the boundary the row frees (21).
    assert.deepEqual(simulateContinuous([0, 0], { ...o, waitingImages: 1 }).latencies, [22, 42]);
  });

  test('soonest-row sends an image to wait where a row frees first, where most-room goes by the images held', () => {
    // Two replicas of 2 rows and 1 waiting place, 4 steps of 10 ms. At 44 both sets are full:
    // replica 0's images have 3 steps left, replica 1's first image 1 step.
    const o: ContinuousModelOptions = { steps: 4, maxBatch: 2, replicas: 2, stepMs: () => 10, waitMs: 0, waitingImages: 1 };
    const arrivals = [0, 5, 41, 42, 43, 44];
    assert.equal(simulateContinuous(arrivals, o).latencies[5], 77);
    assert.equal(simulateContinuous(arrivals, { ...o, dispatch: 'soonest-row' }).latencies[5], 41);
  });

  test('request-level batching adds one round trip of transport to every image', () => {
    assert.deepEqual(simulateRequestLevel([0, 15], { ...flat, transportMs: 2 }).latencies, [34, 49]);
  });
});
