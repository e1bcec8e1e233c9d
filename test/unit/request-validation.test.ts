import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { InvalidArgumentError } from '../../services/common/errors.js';
import {
  DEFAULT_SIZE,
  DEFAULT_STRENGTH,
  LIMITS,
  MODEL_ID,
  imageSeed,
  normalizeRequest,
  type GenerateRequestWire,
  type NormalizedRequest,
} from '../../services/router/request-validation.js';

const U64_MAX = (1n << 64n) - 1n;
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);
const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]);
const WEBP = Uint8Array.from([...Buffer.from('RIFF'), 0, 0, 0, 0, ...Buffer.from('WEBP'), 0, 0]);

/** Fixed injections: a request id and a seed the tests can recognise. */
const newId = () => 'generated-id';
const RANDOM_SEED = 0xdead_beefn;
const randomSeed = () => RANDOM_SEED;

function normalize(over: GenerateRequestWire = {}): NormalizedRequest {
  return normalizeRequest({ prompt: 'a planet', ...over }, newId, randomSeed);
}

/** Asserts that `over` is rejected with an InvalidArgumentError naming `field` (class, code, field, message). */
function rejects(over: GenerateRequestWire, field: string, messagePart?: RegExp): void {
  assert.throws(
    () => normalize(over),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
      assert.equal(err.code, 'ORRERY_ERR_INVALID_ARGUMENT');
      assert.equal(err.field, field);
      assert.ok(err.message.startsWith(`${field}: `), `message should name ${field}: ${err.message}`);
      if (messagePart) assert.match(err.message, messagePart);
      return true;
    },
  );
}

describe('normalizeRequest: defaults', () => {
  test('fills one image, 1024x1024, png, strength 0.3 and no timeout when the request sets only a prompt', () => {
    const r = normalize();
    assert.equal(r.numImages, 1);
    assert.deepEqual(r.size, { width: 1024, height: 1024 });
    assert.deepEqual(DEFAULT_SIZE, { width: 1024, height: 1024 });
    assert.equal(r.outputFormat, 'png');
    assert.equal(r.strength, 0.3);
    assert.equal(DEFAULT_STRENGTH, 0.3);
    assert.equal(r.timeoutMs, 0);
    assert.equal(r.steps, 0);
    assert.equal(r.guidanceScale, undefined);
    assert.equal(r.modelId, '');
    assert.equal(r.pipeline, '');
    assert.equal(r.negativePrompt, '');
    assert.equal(r.initImage, undefined);
    assert.equal(r.prompt, 'a planet');
  });

  test('treats num_images 0 (the proto default) as one image', () => {
    assert.equal(normalize({ num_images: 0 }).numImages, 1);
  });

  test('maps OUTPUT_FORMAT_UNSPECIFIED to png and honours PNG, WEBP and JPEG', () => {
    assert.equal(normalize({ output_format: 'OUTPUT_FORMAT_UNSPECIFIED' }).outputFormat, 'png');
    assert.equal(normalize({ output_format: 'PNG' }).outputFormat, 'png');
    assert.equal(normalize({ output_format: 'WEBP' }).outputFormat, 'webp');
    assert.equal(normalize({ output_format: 'JPEG' }).outputFormat, 'jpeg');
  });

  test('uses the injected random seed when seed is unset or null', () => {
    assert.equal(normalize().seed, RANDOM_SEED);
    assert.equal(normalize({ seed: null }).seed, RANDOM_SEED);
  });

  test('masks an injected random seed to 64 bits', () => {
    const r = normalizeRequest({ prompt: 'p' }, newId, () => (1n << 64n) + 5n);
    assert.equal(r.seed, 5n);
  });

  test('keeps an explicit seed 0 as 0 instead of drawing a random one', () => {
    let drawn = 0;
    const r = normalizeRequest({ prompt: 'p', seed: '0' }, newId, () => {
      drawn++;
      return 42n;
    });
    assert.equal(r.seed, 0n);
    assert.equal(drawn, 0);
    assert.equal(normalize({ seed: 0 }).seed, 0n);
  });

  test('accepts seeds as decimal strings (proto-loader longs) up to 2^64-1', () => {
    assert.equal(normalize({ seed: '18446744073709551615' }).seed, U64_MAX);
    assert.equal(normalize({ seed: '12345' }).seed, 12345n);
    assert.equal(normalize({ seed: 7 }).seed, 7n);
  });

  test('uses the injected request id when request_id is empty, and the client one otherwise', () => {
    assert.equal(normalize().requestId, 'generated-id');
    assert.equal(normalize({ request_id: '' }).requestId, 'generated-id');
    assert.equal(normalize({ request_id: 'client-1:a.b_c' }).requestId, 'client-1:a.b_c');
  });

  test('keeps explicit steps, guidance scale 0, strength, timeout and negative prompt', () => {
    const r = normalize({ steps: 200, guidance_scale: 0, strength: 1, timeout_ms: LIMITS.maxTimeoutMs, negative_prompt: 'blurry', num_images: 16 });
    assert.equal(r.steps, 200);
    assert.equal(r.guidanceScale, 0);
    assert.equal(r.strength, 1);
    assert.equal(r.timeoutMs, 24 * 3600 * 1000);
    assert.equal(r.negativePrompt, 'blurry');
    assert.equal(r.numImages, 16);
  });

  test('trims the prompt, model id and pipeline', () => {
    const r = normalize({ prompt: '  red planet \n', model_id: ' base ', pipeline: ' texture ' });
    assert.equal(r.prompt, 'red planet');
    assert.equal(r.modelId, 'base');
    assert.equal(r.pipeline, 'texture');
  });

  test('allows tabs and newlines in prompts', () => {
    assert.equal(normalize({ prompt: 'a\tb\nc\r\nd' }).prompt, 'a\tb\nc\r\nd');
  });
});

describe('normalizeRequest: model_id', () => {
  for (const id of ['base', 'base+lora', 'base+lora@fp16', 'sdxl-1.0_x', 'syn-a', '0abc']) {
    test(`accepts the model id "${id}"`, () => {
      assert.equal(normalize({ model_id: id }).modelId, id);
      assert.match(id, MODEL_ID);
    });
  }

  for (const [label, id] of [
    ['a relative path', '../x'],
    ['an absolute path', '/abs'],
    ['a space', 'a b'],
    ['upper-case letters', 'Base'],
    ['a base longer than 64 characters', 'a'.repeat(65)],
    ['a variant longer than 32 characters', `base@${'v'.repeat(33)}`],
    ['two loras', 'base+a+b'],
    ['a leading dot', '.hidden'],
    ['a backslash', 'a\\b'],
    ['an empty lora', 'base+'],
    ['a variant with a dot', 'base@fp.16'],
  ] as const) {
    test(`rejects a model id with ${label}`, () => rejects({ model_id: id }, 'model_id', /is not a model id/));
  }

  test('quotes at most 80 characters of a rejected model id', () => {
    assert.throws(
      () => normalize({ model_id: 'X'.repeat(500) }),
      (err: unknown) => err instanceof InvalidArgumentError && err.field === 'model_id' && !err.message.includes('X'.repeat(81)) && err.message.includes('X'.repeat(80)),
    );
  });
});

describe('normalizeRequest: prompt', () => {
  test('rejects a missing prompt', () => rejects({ prompt: undefined }, 'prompt', /is required/));
  test('rejects an empty prompt', () => rejects({ prompt: '' }, 'prompt', /is required/));
  test('rejects a whitespace-only prompt', () => rejects({ prompt: ' \n\t ' }, 'prompt', /is required/));
  test('rejects a prompt over 2000 characters', () => rejects({ prompt: 'x'.repeat(LIMITS.maxPromptChars + 1) }, 'prompt', /2001 characters; at most 2000/));
  test('accepts a prompt of exactly 2000 characters', () => {
    assert.equal(normalize({ prompt: 'x'.repeat(2000) }).prompt.length, 2000);
  });
  for (const c of ['\u0000', '\u0007', '\u000b', '\u001b', '\u001f']) {
    test(`rejects a prompt containing control character U+${c.charCodeAt(0).toString(16).padStart(4, '0')}`, () =>
      rejects({ prompt: `a${c}b` }, 'prompt', /control characters/));
  }
});

describe('normalizeRequest: planet', () => {
  test('builds the prompt from the planet slots in the fixed order', () => {
    const r = normalize({
      prompt: '',
      prompt_source: 'planet',
      planet: { sky: 'distant stars dark sky', moons: 'no moons', atmosphere: 'frosted cloudy zones', color: 'deep blue', extras: ['rings'] },
    });
    assert.equal(r.prompt, 'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky, rings');
  });

  test('uses the text prompt when prompt_source says prompt, even if a planet object is present', () => {
    const r = normalize({ prompt: 'text wins', prompt_source: 'prompt', planet: { color: 'red' } });
    assert.equal(r.prompt, 'text wins');
  });

  test('rejects a planet whose slots are all empty', () => rejects({ prompt: '', prompt_source: 'planet', planet: { color: ' ', extras: [] } }, 'planet', /every slot is empty/));

  test('rejects more than 16 planet extras', () =>
    rejects({ prompt_source: 'planet', planet: { color: 'red', extras: Array.from({ length: LIMITS.maxPlanetExtras + 1 }, (_, i) => `e${i}`) } }, 'planet.extras', /17 entries; at most 16/));

  test('accepts exactly 16 planet extras', () => {
    const extras = Array.from({ length: 16 }, (_, i) => `e${i}`);
    assert.equal(normalize({ prompt_source: 'planet', planet: { color: 'red', extras } }).prompt, `red planet, ${extras.join(', ')}`);
  });

  test('rejects a planet slot over 200 characters, naming the slot', () =>
    rejects({ prompt_source: 'planet', planet: { color: 'red', atmosphere: 'a'.repeat(LIMITS.maxPlanetSlotChars + 1) } }, 'planet.atmosphere', /at most 200/));

  test('rejects a planet slot with control characters, naming the slot', () =>
    rejects({ prompt_source: 'planet', planet: { color: 'red', sky: 'dark\u0000sky' } }, 'planet.sky', /control characters/));

  test('rejects a bad planet extra, naming its index', () =>
    rejects({ prompt_source: 'planet', planet: { color: 'red', extras: ['ok', 'bad\u0001'] } }, 'planet.extras[1]', /control characters/));
});

describe('normalizeRequest: negative_prompt', () => {
  test('rejects a negative prompt over 2000 characters', () => rejects({ negative_prompt: 'n'.repeat(2001) }, 'negative_prompt', /at most 2000/));
  test('rejects a negative prompt with control characters', () => rejects({ negative_prompt: 'blur\u0002' }, 'negative_prompt', /control characters/));
});

describe('normalizeRequest: counts and scales', () => {
  test('rejects num_images above 16', () => rejects({ num_images: LIMITS.maxNumImages + 1 }, 'num_images', /17 is more than 16/));
  test('rejects steps above 200', () => rejects({ steps: LIMITS.maxSteps + 1 }, 'steps', /201 is more than 200/));
  test('rejects a negative guidance scale', () => rejects({ guidance_scale: -0.5 }, 'guidance_scale', /outside \[0, 50\]/));
  test('rejects a NaN guidance scale', () => rejects({ guidance_scale: Number.NaN }, 'guidance_scale'));
  test('rejects an infinite guidance scale', () => rejects({ guidance_scale: Number.POSITIVE_INFINITY }, 'guidance_scale'));
  test('rejects a guidance scale above 50', () => rejects({ guidance_scale: LIMITS.maxGuidanceScale + 0.5 }, 'guidance_scale'));
  test('accepts a guidance scale of exactly 50', () => assert.equal(normalize({ guidance_scale: 50 }).guidanceScale, 50));
  test('rejects timeout_ms above 24 hours', () => rejects({ timeout_ms: LIMITS.maxTimeoutMs + 1 }, 'timeout_ms', /24 hours/));
});

describe('normalizeRequest: size', () => {
  test('accepts an explicit width and height on the latent grid', () => {
    assert.deepEqual(normalize({ width: 512, height: 776 }).size, { width: 512, height: 776 });
  });
  test('accepts the smallest and largest sides', () => {
    assert.deepEqual(normalize({ width: 64, height: 8192 }).size, { width: 64, height: 8192 });
  });
  test('rejects a width that is not a multiple of 8', () => rejects({ width: 1020, height: 1024 }, 'width', /not a multiple of 8/));
  test('rejects a height that is not a multiple of 8', () => rejects({ width: 1024, height: 1025 }, 'height', /not a multiple of 8/));
  test('rejects a width without a height', () => rejects({ width: 1024 }, 'height', /required when width is set/));
  test('rejects a height without a width', () => rejects({ height: 1024 }, 'width', /required when height is set/));
  test('rejects a width below 64', () => rejects({ width: 56, height: 1024 }, 'width', /outside \[64, 8192\]/));
  test('rejects a height above 8192', () => rejects({ width: 1024, height: 8200 }, 'height', /outside \[64, 8192\]/));

  test('maps aspect 21:9 to the 1536x640 bucket', () => {
    assert.deepEqual(normalize({ aspect: '21:9' }).size, { width: 1536, height: 640 });
  });
  test('maps aspect 9:21 to the 640x1536 bucket', () => {
    assert.deepEqual(normalize({ aspect: '9:21' }).size, { width: 640, height: 1536 });
  });
  test('ignores a whitespace-only aspect', () => {
    assert.deepEqual(normalize({ aspect: '  ' }).size, { width: 1024, height: 1024 });
  });
  for (const aspect of ['21x9', '21:', ':9', '0:1', '1:0', '-21:9', '1.5:1', 'wide']) {
    test(`rejects the malformed aspect "${aspect}"`, () => rejects({ aspect }, 'aspect', /is not W:H/));
  }
  test('rejects an aspect more extreme than 8:1', () => rejects({ aspect: '9:1' }, 'aspect', /outside 1:8\.\.8:1/));
  test('rejects an aspect more extreme than 1:8', () => rejects({ aspect: '1:9' }, 'aspect', /outside 1:8\.\.8:1/));
  test('rejects aspect together with width', () => rejects({ aspect: '21:9', width: 1024 }, 'width', /not both/));
  test('rejects aspect together with height', () => rejects({ aspect: '21:9', height: 1024 }, 'height', /not both/));
});

describe('normalizeRequest: pipeline', () => {
  test('accepts a lower-case pipeline name', () => assert.equal(normalize({ pipeline: 'sdxl-refine' }).pipeline, 'sdxl-refine'));
  for (const pipeline of ['Texture', '1abc', 'a_b', 'a b', '../x', 'a'.repeat(64)]) {
    test(`rejects the pipeline name "${pipeline.slice(0, 20)}"`, () => rejects({ pipeline }, 'pipeline', /is not a pipeline name/));
  }
});

describe('normalizeRequest: init_image and strength', () => {
  for (const [kind, bytes] of [['PNG', PNG], ['JPEG', JPEG], ['WebP', WEBP]] as const) {
    test(`accepts a ${kind} init image`, () => {
      const r = normalize({ init_image: bytes });
      assert.ok(r.initImage instanceof Uint8Array);
      assert.deepEqual([...r.initImage], [...bytes]);
    });
  }

  test('views a Buffer init image without its neighbours in the pooled ArrayBuffer', () => {
    const pool = Buffer.concat([Buffer.from([1, 2, 3]), Buffer.from(PNG), Buffer.from([4, 5])]);
    const view = pool.subarray(3, 3 + PNG.length);
    const r = normalize({ init_image: view });
    assert.deepEqual([...r.initImage!], [...PNG]);
  });

  test('treats an empty init_image (the proto default) as none', () => {
    assert.equal(normalize({ init_image: new Uint8Array(0) }).initImage, undefined);
  });

  test('rejects an init image that is not PNG, JPEG or WebP', () => rejects({ init_image: Buffer.from('GIF89a....') }, 'init_image', /not a PNG, JPEG or WebP/));
  test('rejects a RIFF file that is not WebP', () => rejects({ init_image: Uint8Array.from([...Buffer.from('RIFF'), 0, 0, 0, 0, ...Buffer.from('WAVE')]) }, 'init_image'));

  test('rejects an init image above 64 MiB', () => {
    const big = new Uint8Array(LIMITS.maxInitImageBytes + 1);
    big.set(PNG);
    rejects({ init_image: big }, 'init_image', /at most 67108864/);
  });

  test('rejects strength below 0', () => rejects({ strength: -0.01 }, 'strength', /outside \[0, 1\]/));
  test('rejects strength above 1', () => rejects({ strength: 1.01 }, 'strength', /outside \[0, 1\]/));
  test('rejects a NaN strength', () => rejects({ strength: Number.NaN }, 'strength'));
  test('uses the default strength when strength is null', () => assert.equal(normalize({ strength: null }).strength, 0.3));
});

describe('normalizeRequest: output_format, request_id, seed', () => {
  test('rejects an unknown output format', () => rejects({ output_format: 'GIF' }, 'output_format', /unknown format GIF/));
  test('rejects a lower-case output format name (enums arrive as upper-case names)', () => rejects({ output_format: 'png' }, 'output_format'));

  for (const [label, id] of [
    ['a space', 'a b'],
    ['a slash', 'a/b'],
    ['more than 128 characters', 'r'.repeat(129)],
    ['a newline', 'a\nb'],
  ] as const) {
    test(`rejects a request id with ${label}`, () => rejects({ request_id: id }, 'request_id', /1-128 characters/));
  }

  test('rejects a generated request id that breaks the grammar too', () => {
    assert.throws(() => normalizeRequest({ prompt: 'p' }, () => 'bad id', randomSeed), (err: unknown) => err instanceof InvalidArgumentError && err.field === 'request_id');
  });

  test('rejects a seed of 2^64', () => rejects({ seed: '18446744073709551616' }, 'seed', /64 bits/));
  test('rejects a negative seed', () => rejects({ seed: '-1' }, 'seed', /64 bits/));
  test('rejects a seed that is not an integer string', () => rejects({ seed: 'abc' }, 'seed', /not an unsigned 64-bit integer/));
  test('rejects a fractional seed number', () => rejects({ seed: 1.5 }, 'seed', /not an unsigned 64-bit integer/));
});

describe('normalizeRequest: rule order', () => {
  test('reports the first bad field in proto order when several are bad', () => rejects({ model_id: 'BAD', steps: 999, width: 3 }, 'model_id'));
});

describe('imageSeed', () => {
  test('adds the image index to the seed', () => {
    assert.equal(imageSeed(100n, 0), 100n);
    assert.equal(imageSeed(100n, 3), 103n);
  });

  test('wraps at 2^64', () => {
    assert.equal(imageSeed(U64_MAX, 0), U64_MAX);
    assert.equal(imageSeed(U64_MAX, 1), 0n);
    assert.equal(imageSeed(U64_MAX - 1n, 3), 1n);
  });
});
