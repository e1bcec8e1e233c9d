import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { JobState } from '../../services/router/jobs/job-store.js';
import { DELETION_START, expiresAt, nextDeletionStep, retentionDecision, windowDecision, type DeletionProgress, type DeletionStep } from '../../services/router/jobs/lifecycle-policy.js';

describe('completion window', () => {
  test('a running job expires once now reaches expires_at, and waits until then before', () => {
    for (const state of ['validating', 'in_progress', 'paused'] as JobState[]) {
      assert.deepEqual(windowDecision({ state, expiresAtMs: 10_000 }, 9_999), { kind: 'wait', untilMs: 10_000 });
      assert.deepEqual(windowDecision({ state, expiresAtMs: 10_000 }, 10_000), { kind: 'expire' }, state);
    }
  });

  test('a job without a window never expires', () => {
    assert.deepEqual(windowDecision({ state: 'in_progress' }, Number.MAX_SAFE_INTEGER), { kind: 'none' });
  });

  test('a job finalizing, stopping or finished is not expired by its window', () => {
    for (const state of ['finalizing', 'completed', 'cancelling', 'cancelled', 'expiring', 'expired', 'deleting'] as JobState[]) {
      assert.deepEqual(windowDecision({ state, expiresAtMs: 10 }, 1_000_000), { kind: 'none' }, state);
    }
  });

  test('a window opens at its start; 0 is no window', () => {
    assert.equal(expiresAt(1000, 2000), 3000);
    assert.equal(expiresAt(1000, 0), undefined);
  });
});

describe('retention', () => {
  test('a finished job is deleted once retention has passed since it finished', () => {
    for (const state of ['completed', 'cancelled', 'expired'] as JobState[]) {
      assert.deepEqual(retentionDecision({ state, finishedAtMs: 1000 }, 1999, 1000), { kind: 'wait', untilMs: 2000 });
      assert.deepEqual(retentionDecision({ state, finishedAtMs: 1000 }, 2000, 1000), { kind: 'delete' }, state);
    }
  });

  test('retention 0 keeps finished jobs for ever', () => {
    assert.deepEqual(retentionDecision({ state: 'completed', finishedAtMs: 0 }, Number.MAX_SAFE_INTEGER, 0), { kind: 'keep' });
  });

  test('an unfinished job, or one already being deleted, is not deleted by retention', () => {
    for (const state of ['validating', 'in_progress', 'paused', 'finalizing', 'cancelling', 'expiring', 'deleting'] as JobState[]) {
      assert.deepEqual(retentionDecision({ state, finishedAtMs: 0 }, 1e12, 1), { kind: 'keep' }, state);
    }
  });
});

describe('deletion steps', () => {
  /** Runs the planner from `from` to the end, the stream's bounds fixed; returns the steps taken. */
  function run(from: DeletionProgress, bounds: { firstSeq: number; lastSeq: number }, page: number): DeletionStep[] {
    const steps: DeletionStep[] = [];
    let p = from;
    for (let i = 0; i < 1000; i++) {
      const step = nextDeletionStep(p, bounds, page);
      steps.push(step);
      if (step.kind === 'delete-record') return steps;
      p = step.next;
    }
    throw new Error('the deletion did not end');
  }

  test('key, then work messages, then item pages over the stream\'s sequences, then the record', () => {
    const steps = run(DELETION_START, { firstSeq: 101, lastSeq: 350 }, 100);
    assert.deepEqual(steps.map((s) => (s.kind === 'purge-items' ? `items<${s.belowSeq}` : s.kind)), ['release-key', 'purge-work', 'items<201', 'items<301', 'items<351', 'delete-record']);
  });

  test('the item pages end at the last sequence seen when they began, however the stream grows meanwhile', () => {
    const p = nextDeletionStep({ step: 'work' }, { firstSeq: 1, lastSeq: 10 }, 100);
    assert.deepEqual(p.kind === 'purge-work' && p.next, { step: 'items', fromSeq: 1, untilSeq: 10 });
    const page = nextDeletionStep({ step: 'items', fromSeq: 1, untilSeq: 10 }, { firstSeq: 1, lastSeq: 1_000_000 }, 100);
    assert.deepEqual(page, { kind: 'purge-items', belowSeq: 11, next: { step: 'record' } });
  });

  test('resuming from recorded progress redoes at most the page it was on', () => {
    const steps = run({ step: 'items', fromSeq: 201, untilSeq: 350 }, { firstSeq: 1, lastSeq: 999 }, 100);
    assert.deepEqual(steps.map((s) => (s.kind === 'purge-items' ? `items<${s.belowSeq}` : s.kind)), ['items<301', 'items<351', 'delete-record']);
  });

  test('an empty items stream goes straight to the record', () => {
    const steps = run({ step: 'work' }, { firstSeq: 0, lastSeq: 0 }, 100);
    assert.deepEqual(steps.map((s) => s.kind), ['purge-work', 'purge-items', 'delete-record']);
  });
});
