import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../services/common/errors.js';
import { compileQcOptions, DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';

const PATH = 'pipelines.planet-ultrawide.qc';

/** Asserts that compiling `raw` throws a ConfigError whose key (and message) name `key`. */
function rejects(raw: unknown, key: string, messagePart?: RegExp): void {
  assert.throws(
    () => compileQcOptions(raw, PATH),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.code, 'ORRERY_ERR_CONFIG');
      assert.equal(err.key, key);
      assert.ok(err.message.startsWith(`config ${key}: `), `message should name ${key}: ${err.message}`);
      if (messagePart) assert.match(err.message, messagePart);
      return true;
    },
  );
}

describe('compileQcOptions', () => {
  test("compiles the issue's example into frozen options", () => {
    const opts = compileQcOptions({
      after_stage: 0, planet_region: { left: 0.08, right: 0.08, top: 0.06, bottom: 0.06 },
      min_area: 0.02, max_area: 0.6, max_attempts: 3, on_fail: 'return_flagged',
    }, PATH);
    assert.deepEqual(opts, {
      afterStage: 0, planetRegion: { left: 0.08, right: 0.08, top: 0.06, bottom: 0.06 },
      minAreaFraction: 0.02, maxAreaFraction: 0.6, maxAttempts: 3, onFail: 'return_flagged',
    });
    assert.ok(Object.isFrozen(opts) && Object.isFrozen(opts.planetRegion));
  });

  test('fills every key left out with the example values', () => {
    assert.deepEqual(compileQcOptions({}, PATH), DEFAULT_QC_OPTIONS);
    assert.deepEqual(compileQcOptions(undefined, PATH), DEFAULT_QC_OPTIONS);
    const partial = compileQcOptions({ planet_region: { left: 0.1 }, on_fail: 'error' }, PATH);
    assert.deepEqual(partial.planetRegion, { left: 0.1, right: 0.08, top: 0.06, bottom: 0.06 });
    assert.equal(partial.onFail, 'error');
  });

  test('rejects an unknown key, naming it and the allowed ones', () => {
    rejects({ max_atempts: 3 }, `${PATH}.max_atempts`, /allowed: after_stage, planet_region/);
    rejects({ planet_region: { middle: 0.1 } }, `${PATH}.planet_region.middle`);
  });

  test('rejects margins that are not fractions below one half', () => {
    rejects({ planet_region: { left: 8 } }, `${PATH}.planet_region.left`, /fraction in \[0, 0.5\)/);
    rejects({ planet_region: { top: -0.1 } }, `${PATH}.planet_region.top`);
    rejects({ planet_region: { bottom: '6%' } }, `${PATH}.planet_region.bottom`);
    rejects({ planet_region: [0.1, 0.1] }, `${PATH}.planet_region`, /must be a mapping/);
  });

  test('rejects area limits outside [0, 1] or with max_area not above min_area', () => {
    rejects({ min_area: 1.5 }, `${PATH}.min_area`, /fraction in \[0, 1\]/);
    rejects({ max_area: -0.2 }, `${PATH}.max_area`);
    rejects({ min_area: 0.5, max_area: 0.4 }, `${PATH}.max_area`, /must be > min_area \(0.5\), got 0.4/);
  });

  test('rejects max_attempts and after_stage that are not small non-negative integers', () => {
    rejects({ max_attempts: 0 }, `${PATH}.max_attempts`, /integer in \[1, 100\]/);
    rejects({ max_attempts: 2.5 }, `${PATH}.max_attempts`);
    rejects({ after_stage: -1 }, `${PATH}.after_stage`);
  });

  test('rejects an on_fail other than return_flagged or error', () => {
    rejects({ on_fail: 'retry' }, `${PATH}.on_fail`, /must be return_flagged or error, got "retry"/);
  });

  test('rejects a qc value that is not a mapping', () => {
    rejects('strict', PATH, /must be a mapping/);
  });
});
