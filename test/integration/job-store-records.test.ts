/**
 * JobStore.itemRecords on a real nats-server (JetStream file storage): a job's item records are
 * read in pages through one ordered consumer — every record once, with the revision a
 * compare-and-set needs, none of another job's, and an empty job ends at once; a record rewritten
 * while the read goes on (a cancel or expiry settling it) is read once. Deleting a job's records
 * (purges of its subjects, a page of sequences at a time) removes all of them and nothing else.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsServerProcess } from '../../services/cli/nats-server-process.js';
import { JobStore, type IndexedRecord, type ItemRecord } from '../../services/router/jobs/job-store.js';

const rec = (index: number, state: ItemRecord['state'] = 'succeeded'): ItemRecord => ({ state, customId: `i${index}`, gen: 0, attempts: 1, totalAttempts: 1, seed: String(index) });

async function all(it: AsyncIterable<IndexedRecord>): Promise<IndexedRecord[]> {
  const out: IndexedRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

describe('JobStore.itemRecords', () => {
  let nats: NatsServerProcess;
  let nc: NatsConnection;
  let store: JobStore;
  before(async () => {
    nats = await NatsServerProcess.start();
    nc = await connect({ servers: nats.url });
    store = await JobStore.open(nc, 'recs');
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  test('reads every record of a job once, in pages, with its current revision, and nothing of another job', async () => {
    const n = 2_500; // more than two pages
    for (let i = 0; i < n; i += 250) {
      await Promise.all(Array.from({ length: Math.min(250, n - i) }, (_, k) => store.casItem('ja', i + k, rec(i + k, 'running'), 0)));
    }
    // A record written twice: the read must give its last value and revision.
    const first = await store.getItem('ja', 7);
    const rev = await store.casItem('ja', 7, rec(7, 'failed'), first!.revision);
    await store.casItem('jb', 0, rec(0), 0);

    const got = await all(store.itemRecords('ja'));
    assert.equal(got.length, n);
    assert.equal(new Set(got.map((r) => r.index)).size, n);
    const seven = got.find((r) => r.index === 7)!;
    assert.equal(seven.value.state, 'failed');
    assert.equal(seven.revision, rev);
    // The revision is the one a compare-and-set needs.
    await store.casItem('ja', 7, rec(7), seven.revision);
    assert.equal((await all(store.itemRecords('jb'))).length, 1);
  });

  test('a job with no records ends at once', async () => {
    assert.deepEqual(await all(store.itemRecords('jnone')), []);
  });

  test('a record rewritten while the job\'s records are read is read once, as it was first seen', async () => {
    const n = 1_200; // the rewrites land while the second page is still to come
    for (let i = 0; i < n; i += 200) await Promise.all(Array.from({ length: 200 }, (_, k) => store.casItem('jc', i + k, rec(i + k, 'queued'), 0)));
    const got: IndexedRecord[] = [];
    for await (const r of store.itemRecords('jc')) {
      got.push(r);
      await store.casItem('jc', r.index, rec(r.index, 'expired'), r.revision); // what settling a stopped job does
    }
    assert.equal(got.length, n);
    assert.equal(new Set(got.map((r) => r.index)).size, n);
    assert.ok(got.every((r) => r.value.state === 'queued'));
  });

  test('purging a job\'s item keys a page of sequences at a time removes all of them and none of another job', async () => {
    for (let i = 0; i < 300; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => store.casItem('jd', i + k, rec(i + k), 0)));
    await store.putDef('jd', 0, { customId: 'd0' });
    await store.casItem('je', 0, rec(0), 0);
    const { firstSeq, lastSeq } = await store.itemSeqBounds();
    let purged = 0;
    for (let seq = firstSeq; seq <= lastSeq; seq += 100) purged += await store.purgeItemsBelow('jd', Math.min(seq + 100, lastSeq + 1));
    assert.equal(purged, 301);
    assert.equal(await store.purgeItemsBelow('jd', lastSeq + 1), 0, 'purging again is a no-op');
    assert.deepEqual(await all(store.itemRecords('jd')), []);
    assert.equal(await store.getDef('jd', 0), undefined);
    assert.equal((await all(store.itemRecords('je'))).length, 1);
  });
});
