/**
 * Validation against hostile values found by fuzzing (test/integration/fuzz-generate-request.test.ts):
 * error messages that echo a client's value stay short and carry no raw control characters, so
 * the answer always fits gRPC's trailers.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgumentError } from '../../services/common/errors.js';
import { normalizeRequest, type GenerateRequestWire } from '../../services/router/request-validation.js';

function rejection(over: GenerateRequestWire): InvalidArgumentError {
  try {
    normalizeRequest({ prompt: 'a planet', ...over }, () => 'id', () => 1n);
  } catch (err) {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    return err;
  }
  assert.fail(`accepted ${JSON.stringify(over).slice(0, 80)}`);
}

describe('validation of hostile values', () => {
  const huge = 'A'.repeat(100_000);

  for (const [field, over] of [
    ['aspect', { aspect: huge }],
    ['model_id', { model_id: huge }],
    ['model_id', { model_id: `syn-a+${huge}` }],
    ['pipeline', { pipeline: huge }],
    ['request_id', { request_id: huge }],
    ['prompt', { prompt: huge }],
  ] as const) {
    test(`rejects a 100,000-character ${field} with a message under 300 characters naming the field`, () => {
      const err = rejection(over);
      assert.equal(err.field, field);
      assert.ok(err.message.startsWith(`${field}: `), err.message.slice(0, 100));
      assert.ok(err.message.length < 300, `message is ${err.message.length} characters`);
    });
  }

  test('rejects a model_id longer than the grammar allows by its length, before the grammar quotes it', () => {
    assert.match(rejection({ model_id: 'a'.repeat(163) }).message, /^model_id: "a{80}…" is 163 characters; at most 162$/);
  });

  for (const [field, over] of [
    ['model_id', { model_id: 'syn\u0000a' }],
    ['model_id', { model_id: 'syn\u007fa' }],
    ['aspect', { aspect: 'x\r\ny' }],
    ['model_id', { model_id: 'syn\u0085a' }],
    ['pipeline', { pipeline: 'a\u001bb' }],
  ] as const) {
    test(`escapes the control characters of a bad ${field} in its message (${JSON.stringify(over)})`, () => {
      const err = rejection(over);
      assert.equal(err.field, field);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(err.message, /[\u0000-\u001f\u007f-\u009f]/);
    });
  }
});
