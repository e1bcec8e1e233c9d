/** safetensors files whose header offsets lie, and weights that are not finite. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkFiniteTensors, encodeSafetensors, parseSafetensors, SafetensorsError } from '../../services/models/lora/safetensors.js';

/** A file of two F32 tensors `a` [2] and `b` [3], with `edit` applied to its parsed header. */
function file(edit: (h: Record<string, { data_offsets: [number, number] }>) => void, extraData = 0): Buffer {
  const bytes = Buffer.from(encodeSafetensors({ a: { data: Float32Array.of(1, 2), shape: [2] }, b: { data: Float32Array.of(3, 4, 5), shape: [3] } }));
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: [number, number] }>;
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, bytes.subarray(8 + n), Buffer.alloc(extraData)]);
}

function refuses(bytes: Buffer, why: RegExp): void {
  assert.throws(() => parseSafetensors(bytes, 'x.safetensors'), (err: unknown) => {
    assert.ok(err instanceof SafetensorsError);
    assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
    assert.match(err.message, /^x\.safetensors: /);
    assert.match(err.message, why);
    return true;
  });
}

describe('safetensors offsets that lie', () => {
  test('parses an honest file', () => {
    assert.deepEqual([...parseSafetensors(file(() => undefined), 'x.safetensors').tensors.keys()].sort(), ['a', 'b']);
  });

  test('refuses offsets that leave a gap between tensors, naming the tensor after it', () => {
    refuses(file((h) => { h['b']!.data_offsets = [12, 24]; }, 4), /tensor "b": data_offsets begin at byte 12, but the previous tensor ends at byte 8/);
  });

  test('refuses data the header does not account for (bytes after the last tensor)', () => {
    refuses(file(() => undefined, 16), /the header's tensors cover 20 bytes of the data section, but it holds 36/);
  });

  test('refuses a first tensor that does not start the data section', () => {
    refuses(file((h) => { h['a']!.data_offsets = [4, 12]; h['b']!.data_offsets = [12, 24]; }, 4), /tensor "a": data_offsets begin at byte 4, but the previous tensor ends at byte 0/);
  });

  test('still refuses overlapping tensors as overlapping', () => {
    refuses(file((h) => { h['b']!.data_offsets = [4, 16]; }), /overlap/);
  });
});

describe('checkFiniteTensors', () => {
  const parsed = (v: number) => parseSafetensors(encodeSafetensors({ ok: { data: Float32Array.of(1, 2), shape: [2] }, w: { data: Float32Array.of(0, 1, v, v), shape: [2, 2] } }), 'l.safetensors');

  for (const [name, v] of [['NaN', Number.NaN], ['+Infinity', Infinity], ['-Infinity', -Infinity]] as const) {
    test(`refuses a tensor holding ${name}, naming the file, the tensor, the count and the first index`, () => {
      assert.throws(() => checkFiniteTensors(parsed(v), 'l.safetensors'), (err: unknown) => {
        assert.ok(err instanceof SafetensorsError);
        assert.match(err.message, /^l\.safetensors: tensor "w": 2 of 4 values are NaN or infinite \(the first at index 2\)/);
        return true;
      });
    });
  }

  test('accepts finite weights', () => {
    checkFiniteTensors(parsed(3.5), 'l.safetensors');
  });
});
