import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ItemQc, ItemRecord, JobRecord } from '../../services/router/jobs/job-store.js';
import { JobView } from '../../services/router/jobs/job-view.js';
import { manifestLine, MANIFEST_KEYS, parseManifest, type ManifestEntry } from '../../services/router/jobs/sinks/manifest.js';

const job: JobRecord = {
  id: 'j1', jobKey: '', name: '', state: 'in_progress', outputUri: 'file:///tmp/x', total: 10, itemsFollow: false, cursor: 10, generation: 0,
  retryPending: false, createdAtMs: 0, message: '', spec: { template: {}, pipeline: 'p', modelId: '', seed: '1', ext: 'png', width: 64, height: 64, maxAttempts: 3 },
};
const qc = (passed: boolean, attempts: number): ItemQc => ({ passed, attempts, seed: '9', reasons: passed ? [] : ['no planet found'], areaFraction: 0 });
const rec = (state: ItemRecord['state'], itemQc?: ItemQc): ItemRecord => ({ state, customId: 'x', gen: 0, attempts: 1, totalAttempts: 1, seed: '1', ...(itemQc ? { qc: itemQc } : {}) });

describe('quality gate results in bulk jobs', () => {
  test('the job view counts flagged items and re-rolls from the items\' latest records', () => {
    const v = new JobView();
    v.apply(0, rec('succeeded', qc(true, 1)), 0);
    v.apply(1, rec('succeeded', qc(true, 3)), 0);
    v.apply(2, rec('succeeded', qc(false, 3)), 0);
    v.apply(5000, rec('succeeded', qc(false, 2)), 0);
    v.apply(3, rec('running'), 0);
    assert.deepEqual([v.counts(job).qcFlagged, v.counts(job).qcRerolls], [2, 5]);
    // The same record seen again (a KV watch restarting) changes nothing; a deleted record is taken back.
    v.apply(2, rec('succeeded', qc(false, 3)), 0);
    v.apply(5000, undefined, 0);
    assert.deepEqual([v.counts(job).qcFlagged, v.counts(job).qcRerolls], [1, 4]);
  });

  test('a manifest line carries the verdict last, and only when there is one', () => {
    const entry: ManifestEntry = { custom_id: 'a', status: 'succeeded', seed: '1', prompt: 'p', model: '', size: '64x64', file: 'a.png', bytes: 3, sha256: 'ab', attempts: 1, error: '' };
    const withQc = { ...entry, qc: { passed: false, attempts: 3, seed: '99', reasons: ['no planet found'], box: null, area_fraction: 0 } };
    assert.deepEqual(Object.keys(JSON.parse(manifestLine(withQc)) as object), [...MANIFEST_KEYS, 'qc']);
    assert.deepEqual(Object.keys(JSON.parse(manifestLine(entry)) as object), [...MANIFEST_KEYS]);
    assert.deepEqual(parseManifest(manifestLine(withQc)).get('a')!.qc, withQc.qc);
  });
});
