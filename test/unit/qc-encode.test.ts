import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_QC_OPTIONS } from '../../services/common/qc-config.js';
import { parseParameters } from '../../services/stages/generation-parameters.js';
import { encodeOutput, encodeRgb, INTERMEDIATE_PNG, rawRgb, readParameters } from '../../services/stages/output-encoder.js';
import { checkPlanet } from '../../services/stages/qc/qc-check.js';
import { fillNoise } from '../../services/stages/texture.js';
import { makeCase, renderCase } from '../support/planet-scenes.js';

const W = 768;
const H = 320;
const TEXT = 'a planet\nSeed: 5, Size: 768x320, Model: m, Pipeline: planets';

/** A rendered disc scene the check passes (and its labelled verdict agrees): the first such of a fixed seed sequence. */
function passingScene() {
  for (let seed = 1; ; seed++) {
    const c = makeCase('disc', W, H, seed);
    const pixels = renderCase(c);
    if (c.expected.passed && checkPlanet(pixels, DEFAULT_QC_OPTIONS).passed) return pixels;
  }
}

/** Per-pixel uniform noise (the texture stage's fillNoise): no planet in it. */
function noise(): Uint8Array {
  const f = new Float32Array(W * H * 3);
  fillNoise(9n, f);
  return Uint8Array.from(f, (v) => 128 + v * 40);
}

const fields = (text: string | undefined) => Object.fromEntries(parseParameters(text ?? '').fields);

describe('the quality check as a step of encoding', () => {
  test('a passing image is encoded with its verdict returned and "QC: passed (attempt N)" before Pipeline', async () => {
    const scene = passingScene();
    const out = await encodeOutput(rawRgb(scene.data, W, H), { format: 'png', png: INTERMEDIATE_PNG, parameters: TEXT, qc: { options: DEFAULT_QC_OPTIONS, attempt: 2 } });
    const direct = checkPlanet(scene, DEFAULT_QC_OPTIONS);
    assert.deepEqual(out.qc, { passed: true, reasons: [], box: direct.box, areaFraction: direct.areaFraction });
    const text = await readParameters(out.data);
    assert.equal(fields(text)['QC'], 'passed (attempt 2)');
    assert.deepEqual(parseParameters(text!).fields.map(([k]) => k).slice(-2), ['QC', 'Pipeline']);
  });

  test('raw RGB is checked in place (encodeRgb) with the same verdict as through a sharp pipeline', async () => {
    const scene = passingScene();
    const target = { format: 'png' as const, png: INTERMEDIATE_PNG, parameters: TEXT, qc: { options: DEFAULT_QC_OPTIONS, attempt: 1 } };
    const [inPlace, piped] = await Promise.all([encodeRgb(scene.data, W, H, target), encodeOutput(rawRgb(scene.data, W, H), target)]);
    assert.deepEqual(inPlace.qc, piped.qc);
    assert.ok(Buffer.from(inPlace.data).equals(Buffer.from(piped.data)), 'same bytes either way');
  });

  test('noise fails as "no planet found", and JPEG metadata carries the failed verdict', async () => {
    const out = await encodeRgb(noise(), W, H, { format: 'jpeg', png: INTERMEDIATE_PNG, parameters: TEXT, qc: { options: DEFAULT_QC_OPTIONS, attempt: 3 } });
    assert.equal(out.mimeType, 'image/jpeg');
    assert.deepEqual(out.qc, { passed: false, reasons: ['no planet found'], areaFraction: 0 });
    assert.equal(fields(await readParameters(out.data))['QC'], 'failed (attempt 3): no planet found');
  });

  test('the encoded pixels are the checked ones: a lossless PNG decodes to the input', async () => {
    const scene = passingScene();
    const out = await encodeOutput(rawRgb(scene.data, W, H), { format: 'png', png: INTERMEDIATE_PNG, parameters: '', qc: { options: DEFAULT_QC_OPTIONS, attempt: 1 } });
    const { data } = await (await import('sharp')).default(out.data).raw().toBuffer({ resolveWithObject: true });
    assert.ok(Buffer.from(data).equals(Buffer.from(scene.data)));
    assert.equal(await readParameters(out.data), undefined, 'no text asked for, none written');
  });

  test('without a gate nothing is checked', async () => {
    const out = await encodeOutput(rawRgb(noise(), W, H), { format: 'png', png: INTERMEDIATE_PNG, parameters: TEXT });
    assert.equal(out.qc, undefined);
    assert.equal(fields(await readParameters(out.data))['QC'], undefined);
  });
});
