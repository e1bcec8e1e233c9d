/**
 * The finalizer's manifest is a stream: records are pulled only as chunks are written, every
 * chunk holds at most MANIFEST_CHUNK_LINES lines, and what it keeps besides (counts, the contact
 * sheet's tiles) does not grow with the job — so finalizing a million-item job costs one chunk of
 * memory, not the whole manifest.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MANIFEST_CHUNK_LINES, manifestChunks, newTally } from '../../services/router/jobs/finalizer.js';
import type { IndexedRecord, ItemRecord, JobRecord } from '../../services/router/jobs/job-store.js';

const job = { id: 'jt', spec: { modelId: 'm', width: 64, height: 64 } } as unknown as JobRecord;

function record(index: number): ItemRecord {
  const state = index % 10 === 3 ? 'failed' : 'succeeded';
  return { state, customId: `item-${index}`, gen: 0, attempts: 1, totalAttempts: 1, seed: String(index), prompt: 'p', file: `item-${index}.png`, bytes: 10, sha256: 'ab', ...(state === 'failed' ? { error: 'boom' } : {}) };
}

/** Records of `n` items in a scrambled order (as the KV stream gives them), counting how many were pulled. */
function source(n: number, pulled: { count: number }): AsyncIterable<IndexedRecord> {
  return (async function* () {
    for (let k = 0; k < n; k++) {
      const index = (k * 7919) % n;
      pulled.count++;
      yield { index, value: record(index), revision: k + 1 };
    }
  })();
}

async function drain(n: number): Promise<{ maxLines: number; lines: number; pulledAtFirstChunk: number; tally: ReturnType<typeof newTally> }> {
  const pulled = { count: 0 };
  const tally = newTally();
  let maxLines = 0;
  let lines = 0;
  let pulledAtFirstChunk = -1;
  for await (const chunk of manifestChunks(job, source(n, pulled), () => Promise.reject(new Error('every record is final')), tally)) {
    if (pulledAtFirstChunk < 0) pulledAtFirstChunk = pulled.count;
    const k = Buffer.from(chunk).toString('utf8').split('\n').filter((l) => l.length > 0).length;
    maxLines = Math.max(maxLines, k);
    lines += k;
  }
  return { maxLines, lines, pulledAtFirstChunk, tally };
}

describe('manifest streaming (finalizer)', () => {
  test('a chunk is handed on after at most one chunk of records was read, whatever the job size', async () => {
    for (const n of [2_000, 20_000]) {
      const r = await drain(n);
      assert.equal(r.pulledAtFirstChunk, MANIFEST_CHUNK_LINES, `${n} items: first chunk after ${r.pulledAtFirstChunk} records`);
      assert.equal(r.maxLines, MANIFEST_CHUNK_LINES);
      assert.equal(r.lines, n);
      assert.equal(r.tally.lines, n);
    }
  });

  test('counts every outcome, and keeps the lowest-index successes for the contact sheet, in item order', async () => {
    const { tally } = await drain(20_000);
    assert.equal(tally.counts.failed, 2_000);
    assert.equal(tally.counts.succeeded, 18_000);
    assert.equal(tally.counts.attempts, 20_000);
    assert.equal(tally.tiles.length, 200, 'the tiles stay bounded');
    const expected = Array.from({ length: 223 }, (_, i) => i).filter((i) => i % 10 !== 3).slice(0, 200);
    assert.deepEqual(tally.tiles.map((t) => t.index), expected);
  });

  test('a record that is not final goes through settle, and its failure stops the stream', async () => {
    const recs = [{ index: 0, value: record(0), revision: 1 }, { index: 1, value: { ...record(1), state: 'running' as const }, revision: 2 }];
    const tally = newTally();
    const settled = async (r: IndexedRecord): Promise<ItemRecord> => ({ ...r.value, state: 'cancelled', error: 'cancelled with its job' });
    const out: string[] = [];
    for await (const c of manifestChunks(job, (async function* () { yield* recs; })(), settled, tally)) out.push(Buffer.from(c).toString('utf8'));
    assert.equal(tally.counts.cancelled, 1);
    assert.match(out.join(''), /"custom_id":"item-1","status":"cancelled"/);
    const stop = new Error('not final');
    await assert.rejects(async () => {
      for await (const _ of manifestChunks(job, (async function* () { yield* recs; })(), () => Promise.reject(stop), newTally())) { /* drain */ }
    }, (err) => err === stop);
  });
});
