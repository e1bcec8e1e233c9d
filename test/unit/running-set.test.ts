/**
 * The step loop of running sets (services/stages/running-set.ts) with a step model that records
 * its calls: images join at step boundaries, leave when finished, cancelled or failed, share calls
 * by key, and online images preempt bulk ones — all at boundaries, whatever the model does; the
 * sets of two models sharing the replica's device lock take turns on it call by call.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { CancelledError } from '../../services/common/errors.js';
import { RunningSet, type RunningSetReport, type StepMember, type StepModel } from '../../services/stages/running-set.js';
import { DeviceLock } from '../../services/worker/device-lock.js';

class Img implements StepMember {
  done = 0;
  started = false;
  finishedCalls = 0;
  readonly controller = new AbortController();
  constructor(readonly name: string, readonly steps: number, readonly priority: 'online' | 'bulk' = 'online', readonly key = 'k') {}
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  get finished(): boolean {
    return this.done >= this.steps;
  }
}

/** Records every call as `start:a,b`, `step:a,b`, `finish:a`; `onCall` runs inside the call. */
class Recorder implements StepModel<Img> {
  readonly calls: string[] = [];
  failStepOf?: string;
  constructor(private readonly onCall: (call: string) => void = () => undefined) {}
  async start(ms: readonly Img[]): Promise<void> {
    ms.forEach((m) => { m.started = true; });
    this.record('start', ms);
  }
  async step(ms: readonly Img[]): Promise<void> {
    await Promise.resolve();
    if (ms.some((m) => m.name === this.failStepOf)) throw new Error(`step of ${this.failStepOf} failed`);
    ms.forEach((m) => { m.done++; });
    this.record('step', ms);
  }
  async finish(ms: readonly Img[]): Promise<void> {
    ms.forEach((m) => { m.finishedCalls++; });
    this.record('finish', ms);
  }
  private record(kind: string, ms: readonly Img[]): void {
    const call = `${kind}:${ms.map((m) => m.name).join(',')}`;
    this.calls.push(call);
    this.onCall(call);
  }
}

describe('running set', () => {
  test('batches handed over in one turn join together; an image arriving mid-run joins at the next step and each leaves when done', async () => {
    const c = new Img('c', 2);
    let late: Promise<Array<Img | Error>> | undefined;
    const model = new Recorder((call) => {
      if (call === 'step:a,b' && !late) late = set.run([c]);
    });
    const set = new RunningSet(model, { capacity: 3 });
    const a = new Img('a', 3);
    const b = new Img('b', 1);
    const [ra, rb] = await Promise.all([set.run([a]), set.run([b])]);
    assert.deepEqual([ra, rb], [[a], [b]]);
    assert.deepEqual(await late, [c]);
    assert.deepEqual(model.calls, ['start:a,b', 'step:a,b', 'finish:b', 'start:c', 'step:a,c', 'step:a,c', 'finish:a,c']);
    assert.equal(a.finishedCalls + b.finishedCalls + c.finishedCalls, 3);
  });

  test('images of different keys step in separate calls of the same boundary', async () => {
    const model = new Recorder();
    const set = new RunningSet(model, { capacity: 4 });
    await set.run([new Img('a', 1, 'online', '64x64'), new Img('b', 1, 'online', '128x64'), new Img('c', 1, 'online', '64x64')]);
    assert.deepEqual(model.calls, ['start:a,b,c', 'step:a,c', 'step:b', 'finish:a,b,c']);
  });

  test('an online image takes a full set\'s bulk place at the next step; the bulk image resumes afterwards without restarting', async () => {
    const o = new Img('o', 2, 'online');
    let online: Promise<Array<Img | Error>> | undefined;
    const model = new Recorder((call) => {
      if (call === 'step:x,y' && !online) online = set.run([o]);
    });
    const reports: RunningSetReport[] = [];
    const set = new RunningSet(model, { capacity: 2, onReport: (r) => reports.push(r) });
    const x = new Img('x', 4, 'bulk');
    const y = new Img('y', 3, 'bulk');
    await set.run([x, y]);
    await online;
    assert.deepEqual(model.calls, ['start:x,y', 'step:x,y', 'start:o', 'step:o,x', 'step:o,x', 'finish:o', 'step:x,y', 'finish:x', 'step:y', 'finish:y']);
    assert.deepEqual([x.done, y.done, o.done], [4, 3, 2]);
    assert.equal(reports.reduce((n, r) => n + r.preemptions, 0), 1);
    assert.deepEqual(reports.filter((r) => r.stepped).map((r) => [r.occupied, r.waiting]), [[2, 1], [2, 1], [2, 1], [2, 0], [1, 0]]);
    assert.deepEqual(set.state, { occupied: 0, waiting: 0 });
  });

  test('a cancelled image leaves at the next boundary with its signal\'s reason; a failed call fails only its images', async () => {
    const a = new Img('a', 5);
    const b = new Img('b', 3, 'online', 'other');
    const c = new Img('c', 3);
    const model = new Recorder((call) => {
      if (call === 'step:a,c' && a.done === 2) a.controller.abort(new CancelledError('request a'));
    });
    model.failStepOf = 'b';
    const set = new RunningSet(model, { capacity: 3 });
    const [ra, rb, rc] = await set.run([a, b, c]);
    assert.ok(ra instanceof CancelledError && ra.message.includes('request a'));
    assert.ok(rb instanceof Error && /step of b failed/.test(rb.message));
    assert.equal(rc, c);
    assert.equal(a.done, 2);
    assert.equal(c.done, 3);
  });

  test('an image cancelled before it joins leaves without a model call', async () => {
    const model = new Recorder();
    const set = new RunningSet(model, { capacity: 1 });
    const a = new Img('a', 1);
    a.controller.abort();
    const [r] = await set.run([a]);
    assert.ok(r instanceof CancelledError);
    assert.deepEqual(model.calls, []);
  });
});

/** A step model of one named model whose calls take `ms` of timer time, logged in `log` as `model:kind:images` with their overlap. */
class Timed implements StepModel<Img> {
  constructor(private readonly model: string, private readonly ms: number, private readonly log: string[], private readonly busy: { calls: number; overlaps: number }) {}
  start(ms: readonly Img[]): Promise<void> {
    return this.call('start', ms, () => undefined);
  }
  step(ms: readonly Img[]): Promise<void> {
    return this.call('step', ms, () => ms.forEach((m) => { m.done++; }));
  }
  finish(ms: readonly Img[]): Promise<void> {
    return this.call('finish', ms, () => undefined);
  }
  private async call(kind: string, ms: readonly Img[], effect: () => void): Promise<void> {
    if (++this.busy.calls > 1) this.busy.overlaps++;
    await new Promise((resolve) => setTimeout(resolve, this.ms));
    effect();
    this.log.push(`${this.model}:${kind}:${ms.map((m) => m.name).join(',')}`);
    this.busy.calls--;
  }
}

describe('running sets of two models sharing a device', () => {
  test('take turns call by call: no two calls overlap, and two busy models alternate', async () => {
    const log: string[] = [];
    const busy = { calls: 0, overlaps: 0 };
    const device = new DeviceLock();
    const a = new RunningSet(new Timed('A', 2, log, busy), { capacity: 2, device });
    const b = new RunningSet(new Timed('B', 2, log, busy), { capacity: 2, device });
    await Promise.all([a.run([new Img('a1', 4, 'bulk')]), b.run([new Img('b1', 4, 'bulk')])]);
    assert.equal(busy.overlaps, 0);
    const steps = log.filter((c) => c.includes(':step:')).map((c) => c[0]);
    assert.deepEqual(steps, ['A', 'B', 'A', 'B', 'A', 'B', 'A', 'B']);
  });

  test('an online image of one model steps at the next turn, ahead of another model\'s bulk steps', async () => {
    const log: string[] = [];
    const busy = { calls: 0, overlaps: 0 };
    const device = new DeviceLock();
    const bulkA = new RunningSet(new Timed('A', 2, log, busy), { capacity: 2, device });
    const onlineB = new RunningSet(new Timed('B', 2, log, busy), { capacity: 2, device });
    const bulk = bulkA.run([new Img('a1', 12, 'bulk'), new Img('a2', 12, 'bulk')]);
    // Once A has stepped twice, B's online image arrives and needs 3 steps.
    while (log.filter((c) => c.startsWith('A:step')).length < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    const arrivedAt = log.length;
    await onlineB.run([new Img('o', 3, 'online')]);
    const during = log.slice(arrivedAt, log.lastIndexOf('B:finish:o') + 1);
    // At most the A call running when it arrived comes before each of B's calls: B's calls (start, 3 steps, finish) run back to back.
    assert.ok(during.filter((c) => c.startsWith('A:')).length <= 1, during.join(' '));
    await bulk;
    assert.equal(busy.overlaps, 0);
  });
});
