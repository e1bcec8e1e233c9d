/** How jobs read for people: progress lines (the non-TTY view), summaries, tables, the retry policy of job calls. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { retryDelayMs, withRetry } from '../../services/cli/job-client.js';
import { formatDuration, jobsTable, progressLine, shouldPrintPlain, summaryLines, type JobMessage } from '../../services/cli/job-format.js';
import { JobProgressView } from '../../services/cli/job-progress-view.js';

function job(over: Partial<JobMessage> = {}): JobMessage {
  return {
    job_id: 'j-1', state: 'in_progress', total: '960', done: '120', failed: '3', succeeded: '120', queued: '829', running: '8', cancelled: '0', attempts: '131',
    items_per_second: 2.4, eta_seconds: 350, created_at: { seconds: '1796630400', nanos: 0 }, started_at: { seconds: '1796630401', nanos: 0 }, finished_at: null,
    output_uri: 'file:///data/jobs/j-1', job_key: 'k', name: 'planets', pipeline: 'planet-ultrawide', model_id: 'tiny-sdxl', message: '', max_attempts: 3, ...over,
  };
}

/** A stream that keeps what is written to it. */
function sink(): { stream: Writable; text: () => string } {
  const parts: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _enc, cb) => { parts.push(chunk.toString()); cb(); } });
  return { stream, text: () => parts.join('') };
}

describe('job progress lines', () => {
  test('a running job\'s line has done/total, failures apart from done, running, items/s and ETA', () => {
    assert.equal(progressLine(job()), 'job j-1 in_progress: 120/960 done (12.5%), 3 failed, 8 running, 2.40 items/s, ETA 5m50s');
  });

  test('a finished job\'s line has no rate or ETA; cancelled items and the server\'s message show', () => {
    const line = progressLine(job({ state: 'cancelled', done: '500', cancelled: '457', message: 'cancelled by a client' }));
    assert.equal(line, 'job j-1 cancelled: 500/960 done (52.1%), 3 failed, 457 cancelled — cancelled by a client');
  });

  test('a paused job says why', () => {
    assert.match(progressLine(job({ state: 'paused', message: 'sink file:///data not writable: EACCES' })), / — sink file:\/\/\/data not writable: EACCES$/);
  });

  test('durations read as 45s, 3m05s, 2h07m, 3d04h, and ? when unknown', () => {
    assert.deepEqual([45, 185, 7620, 273600, 0, Infinity].map(formatDuration), ['45s', '3m05s', '2h07m', '3d04h', '?', '?']);
  });

  test('the plain printer prints the first update, state changes and the end at once, others at most every interval', () => {
    const first = job();
    assert.equal(shouldPrintPlain(undefined, first, 0, 5000), true);
    const last = { atMs: 0, line: progressLine(first), state: 'in_progress' };
    assert.equal(shouldPrintPlain(last, job({ done: '130' }), 1000, 5000), false, 'too soon');
    assert.equal(shouldPrintPlain(last, job({ done: '130' }), 5000, 5000), true, 'interval passed and counts changed');
    assert.equal(shouldPrintPlain(last, first, 60_000, 5000), false, 'nothing changed');
    assert.equal(shouldPrintPlain(last, job({ state: 'paused' }), 10, 5000), true, 'state change');
    assert.equal(shouldPrintPlain(last, job({ state: 'completed' }), 10, 5000), true, 'the end');
  });

  test('the view writes one plain line per shown update when the output is not a terminal', () => {
    const out = sink();
    let now = 0;
    const view = new JobProgressView({ out: out.stream, tty: false, plainIntervalMs: 5000, now: () => now });
    for (let i = 0; i < 20; i++) {
      now = i * 1000;
      view.update(job({ done: String(100 + i) }));
    }
    now = 20_500;
    view.update(job({ state: 'completed', done: '957', running: '0', queued: '0', eta_seconds: 0 }));
    view.stop();
    const lines = out.text().trimEnd().split('\n');
    assert.deepEqual(lines.map((l) => /(\d+)\/960/.exec(l)![1]), ['100', '105', '110', '115', '957']);
    assert.equal(lines.at(-1), 'job j-1 completed: 957/960 done (99.7%), 3 failed');
    // eslint-disable-next-line no-control-regex -- ESC is the character this looks for
    assert.doesNotMatch(out.text(), /\x1b\[|\r/, 'no terminal control characters');
  });

  test('on a terminal the view draws one bar with done/total, the job\'s items/s and ETA, failures and state', () => {
    const out = sink();
    Object.assign(out.stream, { isTTY: true, columns: 200 });
    const view = new JobProgressView({ out: out.stream });
    view.update(job());
    view.stop();
    const text = out.text();
    assert.match(text, /job j-1 in_progress\s+\|=+-+\| 120\/960 done 12% \| 2\.40 items\/s \| ETA 5m50s \| 3 failed, 8 running/);
    assert.doesNotMatch(text.trimEnd(), /\n/, 'redrawn in place, not line by line');
  });

  test('the summary says what succeeded and failed, the images/s, where the outputs are and how to retry failures', () => {
    const lines = summaryLines(job({ state: 'completed', done: '957', finished_at: { seconds: '1796630801', nanos: 0 } }));
    assert.equal(lines[0], 'job j-1 completed: 957 of 960 succeeded, 3 failed, 0 cancelled in 6m40s, 2.39 images/s');
    assert.ok(lines.includes('  manifest:      /data/jobs/j-1/manifest.jsonl'));
    assert.ok(lines.includes('  contact sheet: /data/jobs/j-1/contact-sheet.png'));
    assert.ok(lines.includes('  images:        /data/jobs/j-1/<custom_id>.<ext>'));
    assert.ok(lines.some((l) => l.includes('orrery jobs retry j-1')));
    const s3 = summaryLines(job({ state: 'completed', done: '960', failed: '0', output_uri: 's3://renders/planets/' }));
    assert.ok(s3.includes('  manifest:      s3://renders/planets/manifest.jsonl'));
    assert.ok(!s3.some((l) => l.includes('retry')), 'nothing to retry');
  });

  test('the jobs table aligns its columns', () => {
    const rows = jobsTable([job(), job({ job_id: 'j-22222', state: 'completed', done: '960', failed: '0', name: '' })]);
    assert.equal(rows.length, 3);
    assert.match(rows[0]!, /^JOB\s+STATE\s+DONE\/TOTAL\s+FAILED\s+ITEMS\/S\s+CREATED\s+NAME$/);
    assert.equal(rows[1]!.indexOf('in_progress'), rows[2]!.indexOf('completed'));
    assert.match(rows[2]!, /960\/960\s+0\s+-\s+2026-/);
  });
});

describe('retries of job calls', () => {
  test('back off from 250 ms doubling to 5 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 10].map(retryDelayMs), [250, 500, 1000, 2000, 4000, 5000, 5000]);
  });

  test('an UNAVAILABLE call is repeated until it succeeds; other errors are not repeated', async () => {
    const slept: number[] = [];
    let calls = 0;
    const unavailable = Object.assign(new Error('down'), { code: status.UNAVAILABLE, details: 'down' });
    const v = await withRetry(async () => {
      if (++calls < 3) throw unavailable;
      return 'ok';
    }, { sleep: async (ms) => void slept.push(ms) });
    assert.equal(v, 'ok');
    assert.deepEqual(slept, [250, 500]);

    let invalid = 0;
    const bad = Object.assign(new Error('bad'), { code: status.INVALID_ARGUMENT });
    await assert.rejects(withRetry(async () => { invalid++; throw bad; }, { sleep: async () => undefined }), bad);
    assert.equal(invalid, 1);

    let tries = 0;
    await assert.rejects(withRetry(async () => { tries++; throw unavailable; }, { attempts: 4, sleep: async () => undefined }), unavailable);
    assert.equal(tries, 4);
  });
});
