import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { wire } from '../../services/common/wire.js';
import { decodeWorkItem, encodeWorkItem, paramsJson } from '../../services/common/work-item.js';
import { workItem } from '../support/work-items.js';

describe('work item codec', () => {
  test('an item survives router → wire → replica unchanged, 64-bit seed, params, pipeline and priority included', () => {
    // strength and guidance scale are float32 on the wire (worker.proto): values chosen to be exact there.
    const item = workItem({ seed: 18_446_744_073_709_551_615n, strength: 0.375, guidanceScale: 7.5, params: { scale: 2, kernel: 'lanczos3' }, pipeline: 'planet-ultrawide', priority: 'bulk', intermediate: true, outputFormat: 'webp' });
    const bytes = wire.batchRequest.encode({ batchId: 'b', attempt: 1, modelId: 'm', deadlineUnixMs: 0, progressSubject: '', items: [encodeWorkItem(item, null)] });
    const back = decodeWorkItem(wire.batchRequest.decode(bytes).items[0]!, undefined);
    assert.deepEqual(back, item);
  });

  test('an input image read on the replica side becomes the item\'s initImage; an empty one is none', () => {
    const w = encodeWorkItem(workItem(), { inline: new Uint8Array([1, 2]), size: 2 });
    assert.deepEqual(decodeWorkItem(w, new Uint8Array([1, 2])).initImage, new Uint8Array([1, 2]));
    assert.equal('initImage' in decodeWorkItem(w, new Uint8Array(0)), false);
  });

  test('an item from an older router (no pipeline, no priority) is online with no pipeline name', () => {
    const w = { ...encodeWorkItem(workItem(), null), pipeline: '', priority: '' };
    const back = decodeWorkItem(w, undefined);
    assert.equal(back.priority, 'online');
    assert.equal(back.pipeline, '');
  });

  test('refuses an output format no router writes, naming the item', () => {
    const w = { ...encodeWorkItem(workItem({ requestId: 'r9' }), null), outputFormat: 'gif' };
    assert.throws(() => decodeWorkItem(w, undefined), /r9\/0: unknown output format "gif"/);
  });

  test('serializes a params object once and reuses the text', () => {
    const params = Object.freeze({ strength: 0.3 });
    assert.equal(paramsJson(params), '{"strength":0.3}');
    assert.equal(paramsJson(params), paramsJson(params));
  });
});
