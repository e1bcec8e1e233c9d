/**
 * The parameters text: AUTOMATIC1111's format, and the history a pipeline's stages build in it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  appendStageParameters, float32Text, formatParameters, parseParameters, withQcVerdict, type StageParameters,
} from '../../services/stages/generation-parameters.js';

const PROMPT = 'deep blue planet with frosted cloudy zones, no moons';
const NEGATIVE = 'blurry, text';

/** What the sdxl stage adds (text-to-image, or img2img with `strength`). */
function sdxl(width: number, height: number, strength?: number, over: Partial<StageParameters> = {}): StageParameters {
  return {
    prompt: PROMPT, negativePrompt: NEGATIVE, width, height, pipeline: 'planet-ultrawide',
    fields: [
      ['Steps', '30'], ['Sampler', 'Euler'], ['CFG scale', '5'], ['Seed', '11'], ['Size', ''], ['Model', 'tiny-sdxl'],
      ...(strength === undefined ? [] : [{ field: ['Denoising strength', String(strength)] as const, perStage: true as const }]),
    ],
    ...over,
  };
}

/** What the upscaler stage adds. */
function upscaler(width: number, height: number, over: Partial<StageParameters> = {}): StageParameters {
  return {
    prompt: PROMPT, negativePrompt: NEGATIVE, width, height, pipeline: 'planet-ultrawide',
    fields: [{ field: ['Upscaler', 'esrgan-slim-x2'], perStage: true }, { field: ['Upscale by', '2'], perStage: true }],
    ...over,
  };
}

describe('generation parameters', () => {
  test('formats a single generation the way AUTOMATIC1111 writes it, pipeline last', () => {
    assert.equal(appendStageParameters(undefined, sdxl(1536, 640), 'same-generation'),
      `${PROMPT}\nNegative prompt: ${NEGATIVE}\nSteps: 30, Sampler: Euler, CFG scale: 5, Seed: 11, Size: 1536x640, Model: tiny-sdxl, Pipeline: planet-ultrawide`);
  });

  test('carries the whole planet-ultrawide history into the final image, with the final size', () => {
    let text = appendStageParameters(undefined, sdxl(1536, 640), 'same-generation');
    text = appendStageParameters(text, upscaler(2520, 1080), 'always');
    text = appendStageParameters(text, sdxl(2520, 1080, 0.3), 'same-generation');
    text = appendStageParameters(text, upscaler(2520, 1080), 'always');
    assert.equal(text, `${PROMPT}\nNegative prompt: ${NEGATIVE}\n`
      + 'Steps: 30, Sampler: Euler, CFG scale: 5, Seed: 11, Size: 2520x1080, First pass size: 1536x640, Model: tiny-sdxl, '
      + 'Upscaler: esrgan-slim-x2, Upscale by: 2, Denoising strength: 0.3, Upscaler 2: esrgan-slim-x2, Upscale by 2: 2, Pipeline: planet-ultrawide');
  });

  test('numbers a later stage\'s field whose value differs from the history\'s', () => {
    const first = appendStageParameters(undefined, sdxl(64, 64), 'same-generation');
    const text = appendStageParameters(first, sdxl(64, 64, 0.5, { fields: [['Steps', '30'], ['Seed', '11'], ['Model', 'other-model']] }), 'same-generation');
    assert.match(text, /Model: tiny-sdxl, Model 2: other-model, Pipeline: planet-ultrawide$/);
  });

  test('starts a new history in img2img when the input came from another prompt or seed', () => {
    const foreign = 'a castle\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 99, Size: 512x512, Model: sd15';
    const fresh = appendStageParameters(undefined, sdxl(64, 64, 0.5), 'same-generation');
    assert.equal(appendStageParameters(foreign, sdxl(64, 64, 0.5), 'same-generation'), fresh);
    const otherSeed = appendStageParameters(undefined, sdxl(64, 64, undefined, { fields: [['Steps', '30'], ['Seed', '12'], ['Size', '']] }), 'same-generation');
    assert.equal(appendStageParameters(otherSeed, sdxl(64, 64, 0.5), 'same-generation'), fresh);
  });

  test('keeps a foreign image\'s history in the upscaler and adds the upscale, as AUTOMATIC1111 Extras does', () => {
    const foreign = 'a castle\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 99, Size: 512x512, Model: sd15';
    assert.equal(appendStageParameters(foreign, upscaler(1024, 1024, { prompt: 'x', pipeline: 'upscaler' }), 'always'),
      'a castle\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 99, Size: 1024x1024, First pass size: 512x512, Model: sd15, Upscaler: esrgan-slim-x2, Upscale by: 2, Pipeline: upscaler');
  });

  test('writes the request\'s prompt when the upscaler\'s input carries no parameters', () => {
    assert.equal(appendStageParameters(undefined, upscaler(128, 64, { prompt: 'x', negativePrompt: '', pipeline: 'upscaler' }), 'always'),
      'x\nUpscaler: esrgan-slim-x2, Upscale by: 2, Size: 128x64, Pipeline: upscaler');
  });

  test('quotes values with commas, colons or newlines, and parses them back', () => {
    const p = { prompt: 'line one\nline two', negativePrompt: 'a\nb', fields: [['Steps', '4'], ['Model', 'base+lora@fp16'], ['Note', 'a, b: c'], ['Seed', '18446744073709551615']] as const };
    const text = formatParameters(p);
    assert.match(text, /Note: "a, b: c"/);
    assert.deepEqual(parseParameters(text), { ...p, fields: p.fields.map((f) => [...f]) });
  });

  test('reads a prompt whose last line has fewer than three fields as all prompt', () => {
    assert.deepEqual(parseParameters('a planet\nstyle: oil, mood: calm'), { prompt: 'a planet\nstyle: oil, mood: calm', negativePrompt: '', fields: [] });
  });

  test('puts the QC verdict before Pipeline, replaces an earlier one, and keeps it there through later stages', () => {
    const generated = appendStageParameters(undefined, sdxl(1536, 640), 'same-generation');
    const failed = withQcVerdict(generated, 'failed (attempt 1)');
    const passed = withQcVerdict(failed, 'passed (attempt 2)');
    assert.match(passed, /Model: tiny-sdxl, QC: passed \(attempt 2\), Pipeline: planet-ultrawide$/);
    assert.doesNotMatch(passed, /attempt 1/);
    const upscaled = appendStageParameters(passed, upscaler(2520, 1080), 'always');
    assert.match(upscaled, /Upscale by: 2, QC: passed \(attempt 2\), Pipeline: planet-ultrawide$/);
  });

  test('writes a float32 from the work item as the decimal the request gave', () => {
    assert.deepEqual([0.3, 7.5, 5, 0.35, 1e-7, 12.34].map((x) => float32Text(Math.fround(x))), ['0.3', '7.5', '5', '0.35', '1e-7', '12.34']);
  });

  test('writes no Pipeline field when the pipeline is unknown', () => {
    assert.doesNotMatch(appendStageParameters(undefined, sdxl(64, 64, undefined, { pipeline: '' }), 'same-generation'), /Pipeline/);
  });
});
