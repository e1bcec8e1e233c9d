import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkPlanet, formatPercent, judgeBox, regionBounds } from '../../services/stages/qc/qc-check.js';
import { DEFAULT_QC_OPTIONS } from '../../services/stages/qc/qc-config.js';
import { detectPlanet, type RawImage } from '../../services/stages/qc/planet-detect.js';
import { mulberry32 } from '../../services/models/demo-models.js';

const W = 1536;
const H = 640;
const OPTS = DEFAULT_QC_OPTIONS;

/**
 * A constructed scene: a near-black sky with grain and stars, and (optionally) a uniformly lit
 * disc whose pixels are those with centres inside the circle — so its box is known to the pixel.
 */
function scene(disc?: { left: number; top: number; diameter: number; colour?: readonly [number, number, number] }, channels = 3): RawImage {
  const rng = mulberry32(7);
  const data = new Uint8Array(W * H * channels);
  for (let i = 0; i < W * H; i++) {
    const g = 6 + Math.floor(rng() * 4);
    data.set(channels === 4 ? [g, g, g + 2, 255] : [g, g, g + 2], i * channels);
  }
  for (let s = 0; s < 600; s++) {
    const i = Math.floor(rng() * W * H) * channels;
    data[i] = data[i + 1] = data[i + 2] = 120 + Math.floor(rng() * 135);
  }
  if (disc) {
    const r = disc.diameter / 2;
    const cx = disc.left + r;
    const cy = disc.top + r;
    const [cr, cg, cb] = disc.colour ?? [200, 160, 110];
    for (let y = disc.top; y < disc.top + disc.diameter; y++) {
      for (let x = disc.left; x < disc.left + disc.diameter; x++) {
        if (x < 0 || y < 0 || x >= W || y >= H) continue;
        if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > r * r) continue;
        data.set([cr, cg, cb], (y * W + x) * channels);
      }
    }
  }
  return { data, width: W, height: H, channels };
}

describe('judgeBox (the rule alone)', () => {
  test('names the left margin intrusion in whole pixels', () => {
    const region = regionBounds(W, H, OPTS); // left margin: round(0.08 × 1536) = 123 px
    assert.equal(region.left, 123);
    const v = judgeBox({ left: 86, top: 100, right: 400, bottom: 414 }, W, H, OPTS);
    assert.equal(v.passed, false);
    assert.deepEqual(v.reasons, ['planet extends 37 px into the left margin']);
  });

  test('names every broken rule at once, margins then area', () => {
    const v = judgeBox({ left: 1300, top: 10, right: 1536, bottom: 640 }, W, H, OPTS);
    assert.deepEqual(v.reasons, [
      'planet extends 123 px into the right margin',
      'planet extends 28 px into the top margin',
      'planet extends 38 px into the bottom margin',
    ]);
  });

  test('reports a too-small planet with its percentage and the limit', () => {
    const v = judgeBox({ left: 700, top: 300, right: 763, bottom: 363 }, W, H, OPTS); // 63² / 1536·640 = 0.40%
    assert.deepEqual(v.reasons, ['planet too small: 0.4% < 2%']);
    assert.ok(Math.abs(v.areaFraction - 0.004037) < 1e-5);
  });

  test('passes a planet inside the region with an accepted area', () => {
    const v = judgeBox({ left: 500, top: 100, right: 900, bottom: 500 }, W, H, OPTS);
    assert.deepEqual([v.passed, v.reasons], [true, []]);
  });

  test('fails with "no planet found" when there is no box', () => {
    assert.deepEqual(judgeBox(undefined, W, H, OPTS), { passed: false, reasons: ['no planet found'], areaFraction: 0 });
  });

  test('formats percentages with at most one decimal', () => {
    assert.deepEqual([formatPercent(0.004), formatPercent(0.02), formatPercent(0.6), formatPercent(0.64321)], ['0.4%', '2%', '60%', '64.3%']);
  });
});

describe('checkPlanet on constructed images', () => {
  test('finds a disc to the pixel and passes it when it keeps the margins', () => {
    const v = checkPlanet(scene({ left: 600, top: 120, diameter: 360 }), OPTS);
    assert.deepEqual(v.box, { left: 600, top: 120, right: 960, bottom: 480 });
    assert.deepEqual([v.passed, v.reasons], [true, []]);
  });

  test('reports a disc 37 px into the left margin as exactly that', () => {
    const v = checkPlanet(scene({ left: 123 - 37, top: 150, diameter: 300 }), OPTS);
    assert.deepEqual(v.reasons, ['planet extends 37 px into the left margin']);
  });

  test('reports a small disc as too small with its percentage', () => {
    const v = checkPlanet(scene({ left: 700, top: 300, diameter: 63 }), OPTS);
    assert.deepEqual(v.reasons, ['planet too small: 0.4% < 2%']);
  });

  test('reports a sky with only stars as "no planet found"', () => {
    const v = checkPlanet(scene(), OPTS);
    assert.deepEqual([v.passed, v.reasons, v.box], [false, ['no planet found'], undefined]);
  });

  test('reads RGBA buffers the same as RGB', () => {
    const rgb = detectPlanet(scene({ left: 500, top: 100, diameter: 400 }, 3));
    const rgba = detectPlanet(scene({ left: 500, top: 100, diameter: 400 }, 4));
    assert.deepEqual(rgba.box, rgb.box);
    assert.ok(rgb.found && rgb.fillRatio > 0.7 && rgb.fillRatio < 0.85, `a disc fills ~π/4 of its box, got ${rgb.fillRatio}`);
  });

  test('finds a saturated deep-blue disc whose luminance is low', () => {
    const v = checkPlanet(scene({ left: 600, top: 120, diameter: 360, colour: [20, 40, 150] }), OPTS);
    assert.deepEqual(v.box, { left: 600, top: 120, right: 960, bottom: 480 });
  });
});
