import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../services/common/package-root.js';
import { OrreryError } from '../../services/common/errors.js';
import { ClipTokenizer, ClipTokenizerLoadError, type ClipTokenizerFiles } from '../../services/stages/sdxl/clip-tokenizer.js';
import {
  TINY_CLIP_BOS_ID, TINY_CLIP_EOS_ID, TINY_CLIP_VOCAB_SIZE, buildClipVocabJson, tinyClipMergesPath, tinyClipVocab,
} from '../../services/models/tiny-vocab.js';

interface TokenizerCase {
  text: string;
  ids: number[];
  input_ids_1: number[];
  input_ids_2: number[];
}

const FIXTURES = path.join(packageRoot(), 'test/fixtures/clip');
const CASES = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-cases.json'), 'utf8')) as TokenizerCase[];

/** special_tokens_map.json as a diffusers SDXL export writes it; `pad` differs between the two folders. */
function specialTokensMap(pad: string): string {
  const special = (content: string) => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });
  return JSON.stringify({ bos_token: special('<|startoftext|>'), eos_token: special('<|endoftext|>'), pad_token: pad, unk_token: special('<|endoftext|>') });
}

function tokenizerConfig(pad: string): string {
  return JSON.stringify({ bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: pad, unk_token: '<|endoftext|>', model_max_length: 77, tokenizer_class: 'CLIPTokenizer' });
}

let tmp: string;
/** Writes a tokenizer folder under the test's temporary directory and returns its path. */
function writeFolder(name: string, files: Record<string, string>): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), text);
  return dir;
}

function sdxlFolder(name: string, pad: string): string {
  return writeFolder(name, {
    'vocab.json': fs.readFileSync(path.join(FIXTURES, 'vocab.json'), 'utf8'),
    'merges.txt': fs.readFileSync(path.join(FIXTURES, 'merges.txt'), 'utf8'),
    'special_tokens_map.json': specialTokensMap(pad),
    'tokenizer_config.json': tokenizerConfig(pad),
  });
}

function loadError(fn: () => unknown): ClipTokenizerLoadError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ClipTokenizerLoadError, `expected ClipTokenizerLoadError, got ${String(err)}`);
    assert.ok(err instanceof OrreryError);
    assert.equal(err.code, 'ORRERY_ERR_MODEL_LOAD_FAILED');
    return err;
  }
  assert.fail('expected a ClipTokenizerLoadError');
}

const asNumbers = (ids: BigInt64Array): number[] => Array.from(ids, Number);

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-clip-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('ClipTokenizer on the real CLIP vocabulary', () => {
  let tokenizer1: ClipTokenizer;
  let tokenizer2: ClipTokenizer;
  before(() => {
    tokenizer1 = ClipTokenizer.fromDirectory(sdxlFolder('tokenizer', '<|endoftext|>'));
    tokenizer2 = ClipTokenizer.fromDirectory(sdxlFolder('tokenizer_2', '!'));
  });

  test('reads BOS, EOS and each folder\'s pad id from the files', () => {
    assert.deepEqual([tokenizer1.bosId, tokenizer1.eosId, tokenizer1.padId, tokenizer1.vocabSize], [49406, 49407, 49407, 49408]);
    assert.deepEqual([tokenizer2.bosId, tokenizer2.eosId, tokenizer2.padId], [49406, 49407, 0]);
    assert.equal(tokenizer2.specialTokens.pad, '!');
  });

  for (const [i, c] of CASES.entries()) {
    test(`matches the reference ids and both SDXL sequences for case ${i + 1}: ${JSON.stringify(c.text.slice(0, 48))}`, () => {
      assert.deepEqual(tokenizer1.encode(c.text), c.ids);
      assert.deepEqual(asNumbers(tokenizer1.encodeFixed(c.text)), c.input_ids_1);
      assert.deepEqual(asNumbers(tokenizer2.encodeFixed(c.text)), c.input_ids_2);
    });
  }

  test('reports truncation only when a prompt has more than 75 tokens', () => {
    const byLength = (n: number) => CASES.find((c) => c.ids.length === n)!.text;
    const long = tokenizer1.encodeFixedWithInfo(byLength(82));
    assert.deepEqual([long.tokenCount, long.truncated, long.ids.length, long.ids[76]], [82, true, 77, 49407n]);
    assert.equal(tokenizer1.encodeFixedWithInfo(byLength(76)).truncated, true);
    assert.equal(tokenizer1.encodeFixedWithInfo(byLength(75)).truncated, false);
  });

  test('encodes a batch as row-major [B, 77] rows equal to encodeFixed, flagging truncated rows', () => {
    const texts = CASES.map((c) => c.text);
    const batch = tokenizer2.encodeBatchWithInfo(texts);
    assert.equal(batch.ids.length, texts.length * 77);
    texts.forEach((text, row) => {
      assert.deepEqual(asNumbers(batch.ids.subarray(row * 77, (row + 1) * 77)), CASES[row]!.input_ids_2);
      assert.equal(batch.truncated[row], CASES[row]!.ids.length > 75, text);
    });
    assert.deepEqual(tokenizer2.encodeBatch(texts), batch.ids);
    assert.equal(tokenizer1.encodeBatch([]).length, 0);
  });

  test('encodes 64 prompts into one [64, 77] tensor reusing cached words', () => {
    const prompts = Array.from({ length: 64 }, (_, i) => `${CASES[i % CASES.length]!.text}, variation ${i}`);
    const ids = tokenizer1.encodeBatch(prompts);
    assert.equal(ids.length, 64 * 77);
    assert.deepEqual(asNumbers(ids.subarray(63 * 77, 64 * 77)), asNumbers(tokenizer1.encodeFixed(prompts[63]!)));
  });

  test('honours another maxLength and rejects one below 2', () => {
    assert.deepEqual(asNumbers(tokenizer2.encodeFixed('a photo of a cat', 10)), [49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0]);
    assert.deepEqual(asNumbers(tokenizer1.encodeFixed('a photo of a cat', 4)), [49406, 320, 1125, 49407]);
    assert.throws(() => tokenizer1.encodeFixed('a cat', 1), RangeError);
  });

  test('unescapes HTML entities three times, or twice when the text contains <, like ftfy plus the reference', () => {
    const amp = tokenizer1.encode('&');
    assert.deepEqual(amp, [261]);
    assert.deepEqual(tokenizer1.encode('&amp;'), amp);
    assert.deepEqual(tokenizer1.encode('&amp;amp;amp;'), amp);
    assert.deepEqual(tokenizer1.encode('< &amp;amp;amp;'), tokenizer1.encode('< & amp ;'));
    assert.deepEqual(tokenizer1.encode('&#39;s &quot;x&quot; &gt;3 &#x263A; &#150;'), tokenizer1.encode('\'s "x" >3 \u263a \u2013'));
    assert.deepEqual(tokenizer1.encode('R&D &ampersand'), tokenizer1.encode('R&D &ersand'));
  });

  test('applies ftfy\'s character fixes: curly quotes, full width, ligatures, NFC, invisible controls', () => {
    assert.deepEqual(tokenizer1.encode('don\u2019t \u201cstop\u201d'), tokenizer1.encode('don\'t "stop"'));
    assert.deepEqual(tokenizer1.encode('\uff21\uff22\uff23\u3000cat'), tokenizer1.encode('abc cat'));
    assert.deepEqual(tokenizer1.encode('\ufb01sh'), tokenizer1.encode('fish'));
    assert.deepEqual(tokenizer1.encode('cafe\u0301'), tokenizer1.encode('caf\u00e9'));
    assert.deepEqual(tokenizer1.encode('\ufeffc\x00a\x7ft'), tokenizer1.encode('cat'));
  });

  test('collapses every Python whitespace character, including NBSP and U+3000, to one space', () => {
    assert.deepEqual(tokenizer1.encode('\u00a0a\u2003photo\u3000of\u2009a\r\n\tcat\u2028'), [320, 1125, 539, 320, 2368]);
  });

  test('splits every ! out as the pad token in tokenizer_2 by default, as transformers does (clip-tokenizer-modes.test.ts has more)', () => {
    assert.deepEqual(tokenizer2.encode('!!'), [0, 0]);
  });

  test('maps a literal <|endoftext|> in a prompt to the end-of-text id, as the reference does', () => {
    assert.deepEqual(tokenizer1.encode('a <|endoftext|> cat'), [320, 49407, 2368]);
  });
});

describe('tiny CLIP vocabulary', () => {
  const tiny = (pad?: string): ClipTokenizerFiles => ({ ...tinyClipVocab(), ...(pad === undefined ? {} : { specialTokensMapJson: specialTokensMap(pad) }) });

  test('lays out vocab.json byte for byte like the real one when given all the real merges', () => {
    const merges = fs.readFileSync(path.join(FIXTURES, 'merges.txt'), 'utf8').split('\n').slice(1, -1);
    assert.equal(buildClipVocabJson(merges), fs.readFileSync(path.join(FIXTURES, 'vocab.json'), 'utf8'));
  });

  test('ships the first 2048 merges of the real merges.txt after its version header', () => {
    const real = fs.readFileSync(path.join(FIXTURES, 'merges.txt'), 'utf8').split('\n');
    assert.equal(fs.readFileSync(tinyClipMergesPath(), 'utf8'), `${real.slice(0, 2049).join('\n')}\n`);
  });

  test('has 2562 entries with <|startoftext|> at 2560 and <|endoftext|> at 2561', () => {
    const tokenizer = ClipTokenizer.fromFiles(tiny());
    assert.deepEqual([TINY_CLIP_BOS_ID, TINY_CLIP_EOS_ID, TINY_CLIP_VOCAB_SIZE], [2560, 2561, 2562]);
    assert.deepEqual([tokenizer.vocabSize, tokenizer.bosId, tokenizer.eosId], [2562, 2560, 2561]);
  });

  test('encodes "a photo of a cat" to the same ids as the full vocabulary', () => {
    assert.deepEqual(ClipTokenizer.fromFiles(tiny()).encode('a photo of a cat'), [320, 1125, 539, 320, 2368]);
  });

  test('only produces ids below its vocabulary size for every reference prompt', () => {
    const tokenizer = ClipTokenizer.fromFiles(tiny());
    for (const c of CASES) {
      for (const id of tokenizer.encodeFixed(c.text)) assert.ok(id >= 0n && id < BigInt(tokenizer.vocabSize), `${id} for ${c.text}`);
    }
  });

  test('pads with <|endoftext|> for tokenizer/ and with ! (id 0) for tokenizer_2/', () => {
    const ids1 = asNumbers(ClipTokenizer.fromFiles(tiny('<|endoftext|>')).encodeFixed('a cat'));
    const ids2 = asNumbers(ClipTokenizer.fromFiles(tiny('!')).encodeFixed('a cat'));
    assert.deepEqual(ids1.slice(0, 5), [2560, 320, 2368, 2561, 2561]);
    assert.deepEqual(ids2.slice(0, 5), [2560, 320, 2368, 2561, 0]);
    assert.ok(ids1.slice(3).every((id) => id === 2561) && ids2.slice(4).every((id) => id === 0));
  });

  test('gives the same ids with the word cache disabled or tiny', () => {
    const texts = CASES.map((c) => c.text);
    const expected = ClipTokenizer.fromFiles(tiny()).encodeBatch(texts);
    assert.deepEqual(ClipTokenizer.fromFiles(tiny(), { cacheSize: 0 }).encodeBatch(texts), expected);
    assert.deepEqual(ClipTokenizer.fromFiles(tiny(), { cacheSize: 2 }).encodeBatch([...texts, ...texts]).subarray(texts.length * 77), expected);
  });
});

describe('ClipTokenizer.fromDirectory errors', () => {
  test('names the vocab.json path when the file is missing', () => {
    const dir = writeFolder('no-vocab', { 'merges.txt': tinyClipVocab().mergesTxt });
    const err = loadError(() => ClipTokenizer.fromDirectory(dir));
    assert.equal(err.file, path.join(dir, 'vocab.json'));
    assert.match(err.message, /vocab\.json: cannot be read \(ENOENT\)/);
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });

  test('names the line number of a malformed merges.txt line', () => {
    const { vocabJson, mergesTxt } = tinyClipVocab();
    const lines = mergesTxt.split('\n');
    lines[2] = 't h e';
    const dir = writeFolder('bad-merges', { 'vocab.json': vocabJson, 'merges.txt': lines.join('\n') });
    const err = loadError(() => ClipTokenizer.fromDirectory(dir));
    assert.equal(err.file, path.join(dir, 'merges.txt'));
    assert.match(err.message, /merges\.txt: line 3: expected two symbols separated by one space, got "t h e"/);
  });

  test('rejects a merge whose result is not in vocab.json, naming the line', () => {
    const { vocabJson, mergesTxt } = tinyClipVocab();
    const err = loadError(() => ClipTokenizer.fromFiles({ vocabJson, mergesTxt: `${mergesTxt}q z\n` }));
    assert.match(err.message, /^merges\.txt: line 2050: merge "q z" makes "qz", which is not in vocab\.json$/);
  });

  test('rejects a vocab.json that is not JSON or not a CLIP byte-level vocabulary', () => {
    const { mergesTxt } = tinyClipVocab();
    assert.match(loadError(() => ClipTokenizer.fromFiles({ vocabJson: '{"a": ', mergesTxt })).message, /^vocab\.json: is not valid JSON/);
    assert.match(loadError(() => ClipTokenizer.fromFiles({ vocabJson: '{"a": 1}', mergesTxt })).message, /^vocab\.json: lacks the byte-level token "!"/);
    assert.match(loadError(() => ClipTokenizer.fromFiles({ vocabJson: '{"a": -1}', mergesTxt })).message, /token "a" has id -1/);
  });

  test('names the file and key of a pad token that is not in the vocabulary', () => {
    const dir = writeFolder('bad-pad', { ...renameFiles(tinyClipVocab()), 'special_tokens_map.json': JSON.stringify({ pad_token: '<pad>' }) });
    const err = loadError(() => ClipTokenizer.fromDirectory(dir));
    assert.equal(err.file, path.join(dir, 'vocab.json'));
    assert.ok(err.message.includes(`lacks the special token "<pad>" (pad_token in ${path.join(dir, 'special_tokens_map.json')})`), err.message);
  });

  test('rejects a special token that is neither a string nor {content}, naming file and key', () => {
    const err = loadError(() => ClipTokenizer.fromFiles({ ...tinyClipVocab(), tokenizerConfigJson: JSON.stringify({ eos_token: 5 }) }));
    assert.equal(err.file, 'tokenizer_config.json');
    assert.match(err.message, /eos_token must be a string or an object with a string "content", got 5/);
  });

  test('lets special_tokens_map.json override tokenizer_config.json, as Hugging Face does', () => {
    const dir = writeFolder('precedence', {
      ...renameFiles(tinyClipVocab()),
      'tokenizer_config.json': tokenizerConfig('<|endoftext|>'),
      'special_tokens_map.json': JSON.stringify({ pad_token: { content: '!' } }),
    });
    const tokenizer = ClipTokenizer.fromDirectory(dir);
    assert.deepEqual([tokenizer.padId, tokenizer.bosId, tokenizer.unkId], [0, 2560, 2561]);
  });

  test('uses CLIP\'s defaults (pad <|endoftext|>) when neither config file exists', () => {
    const tokenizer = ClipTokenizer.fromDirectory(writeFolder('no-config', renameFiles(tinyClipVocab())));
    assert.deepEqual(tokenizer.specialTokens, { bos: '<|startoftext|>', eos: '<|endoftext|>', pad: '<|endoftext|>', unk: '<|endoftext|>' });
    assert.equal(tokenizer.padId, 2561);
  });
});

function renameFiles(files: { vocabJson: string; mergesTxt: string }): Record<string, string> {
  return { 'vocab.json': files.vocabJson, 'merges.txt': files.mergesTxt };
}
