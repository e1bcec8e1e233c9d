/**
 * `!` and other added tokens: the default `transformers` mode against Hugging Face's
 * `CLIPTokenizer` (what diffusers runs for SDXL), the `open_clip` mode against OpenAI's reference.
 *
 * Expected ids come from the real CLIP vocabulary in test/fixtures/clip and from how transformers
 * tokenizes (tokenization_utils.py `PreTrainedTokenizer.tokenize`: the raw text is cut on every
 * added token by `tokens_trie.split`; `__init__` registers every special token, so SDXL's
 * tokenizer_2 pad token `!` (id 0) is one; each remaining part goes through
 * `CLIPTokenizer._tokenize` alone). `!` is the byte symbol with id 0, `!</w>` 256, `!!</w>` 748.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../services/common/package-root.js';
import { ClipTokenizer, type ClipTokenizerFiles, type ClipTokenizerMode } from '../../services/stages/sdxl/clip-tokenizer.js';
import { specialTokensMap, tokenizerConfig } from '../../services/models/tiny-sdxl/configs.js';

const FIXTURES = path.join(packageRoot(), 'test/fixtures/clip');
const VOCAB_JSON = fs.readFileSync(path.join(FIXTURES, 'vocab.json'), 'utf8');
const MERGES_TXT = fs.readFileSync(path.join(FIXTURES, 'merges.txt'), 'utf8');
const VOCAB = JSON.parse(VOCAB_JSON) as Record<string, number>;
const CASES = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-cases.json'), 'utf8')) as Array<{ text: string; ids: number[] }>;

/** Ids of the words the cases use, read from the real vocabulary. */
const ID = {
  bang: 0, bangWord: 256, bangBangWord: 748,
  wow: VOCAB['wow</w>']!, hello: VOCAB['hello</w>']!, world: VOCAB['world</w>']!, leading: VOCAB['leading</w>']!, great: VOCAB['great</w>']!,
};

const REAL_IDS = { bos: 49406, eos: 49407 };

/** A real SDXL export's tokenizer folder files (the layout the tiny bundle writes), over the real vocabulary. */
function sdxlFiles(which: 1 | 2, configOverride?: object): ClipTokenizerFiles {
  return {
    vocabJson: VOCAB_JSON, mergesTxt: MERGES_TXT,
    specialTokensMapJson: JSON.stringify(specialTokensMap(which)),
    tokenizerConfigJson: JSON.stringify(configOverride ?? tokenizerConfig(which, REAL_IDS)),
  };
}

const tokenizer = (which: 1 | 2, mode?: ClipTokenizerMode, config?: object) => ClipTokenizer.fromFiles(sdxlFiles(which, config), mode ? { mode } : {});

/** prompt → [tokenizer_2 ids as transformers gives them, ids where `!` is an ordinary character]. */
const BANG_CASES: ReadonlyArray<readonly [string, number[], number[]]> = [
  ['!', [ID.bang], [ID.bangWord]],
  ['!!', [ID.bang, ID.bang], [ID.bangBangWord]],
  ['wow!', [ID.wow, ID.bang], [ID.wow, ID.bangWord]],
  ['hello!!world', [ID.hello, ID.bang, ID.bang, ID.world], [ID.hello, ID.bangBangWord, ID.world]],
  ['! leading', [ID.bang, ID.leading], [ID.bangWord, ID.leading]],
];

describe('ClipTokenizer modes', () => {
  test('reads the ids the cases expect from the real vocabulary', () => {
    assert.deepEqual([VOCAB['!'], VOCAB['!</w>'], VOCAB['!!</w>']], [ID.bang, ID.bangWord, ID.bangBangWord]);
    assert.deepEqual([ID.wow, ID.hello, ID.world, ID.leading, ID.great], [2781, 3306, 1002, 3833, 830]);
  });

  test('splits every ! out as the pad token (id 0) in tokenizer_2 by default, as transformers does', () => {
    const t = tokenizer(2);
    assert.equal(t.mode, 'transformers');
    for (const [text, want] of BANG_CASES) assert.deepEqual(t.encode(text), want, text);
  });

  test('keeps ! an ordinary character in tokenizer/ (pad <|endoftext|>), as transformers does', () => {
    for (const [text, , want] of BANG_CASES) assert.deepEqual(tokenizer(1).encode(text), want, text);
  });

  test('keeps ! an ordinary character in both folders in open_clip mode', () => {
    for (const which of [1, 2] as const) {
      for (const [text, , want] of BANG_CASES) assert.deepEqual(tokenizer(which, 'open_clip').encode(text), want, `${which}: ${text}`);
    }
  });

  test('writes the split-out ! ids inside the fixed 77-id sequence, padded with !', () => {
    const ids = Array.from(tokenizer(2).encodeFixed('hello!!world'), Number);
    assert.deepEqual(ids.slice(0, 7), [49406, ID.hello, 0, 0, ID.world, 49407, 0]);
    assert.ok(ids.slice(6).every((id) => id === 0));
    assert.equal(ids.length, 77);
  });

  test('splits ! in an export without added_tokens_decoder too: every special token is an added token', () => {
    const legacy = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '!', unk_token: '<|endoftext|>' };
    assert.deepEqual(tokenizer(2, undefined, legacy).encode('wow!'), [ID.wow, ID.bang]);
  });

  test('glues a single_word added token back to a word it touches and splits it between spaces', () => {
    const config = tokenizerConfig(2, REAL_IDS) as { added_tokens_decoder: Record<string, object> };
    const singleWord = { ...config, added_tokens_decoder: { ...config.added_tokens_decoder, 0: { content: '!', lstrip: false, normalized: false, rstrip: false, single_word: true, special: true } } };
    assert.deepEqual(tokenizer(2, undefined, singleWord).encode('wow!'), [ID.wow, ID.bangWord]);
    assert.deepEqual(tokenizer(2, undefined, singleWord).encode('wow ! great'), [ID.wow, ID.bang, ID.great]);
  });

  test('maps a literal <|endoftext|> to its id in both modes, whatever its case', () => {
    for (const mode of ['transformers', 'open_clip'] as const) {
      assert.deepEqual(tokenizer(1, mode).encode('a <|endoftext|> cat'), [320, 49407, 2368], mode);
      assert.deepEqual(tokenizer(2, mode).encode('a <|ENDOFTEXT|>cat'), [320, 49407, 2368], mode);
    }
  });

  test('gives the reference ids for every prompt without ! or special tokens in both modes and folders', () => {
    for (const mode of ['transformers', 'open_clip'] as const) {
      for (const which of [1, 2] as const) {
        const t = tokenizer(which, mode);
        for (const c of CASES) assert.deepEqual(t.encode(c.text), c.ids, `${mode} ${which}: ${c.text}`);
      }
    }
  });
});

describe('ClipTokenizer.fromDirectory with a mode', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-clip-mode-'));
    const files = sdxlFiles(2);
    fs.writeFileSync(path.join(dir, 'vocab.json'), files.vocabJson);
    fs.writeFileSync(path.join(dir, 'merges.txt'), files.mergesTxt);
    fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), files.specialTokensMapJson!);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), files.tokenizerConfigJson!);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('reads a tokenizer_2 folder and applies the mode it is given', () => {
    assert.deepEqual(ClipTokenizer.fromDirectory(dir).encode('!!'), [0, 0]);
    assert.deepEqual(ClipTokenizer.fromDirectory(dir, { mode: 'open_clip' }).encode('!!'), [748]);
  });

  test('refuses an unknown mode', () => {
    assert.throws(() => ClipTokenizer.fromDirectory(dir, { mode: 'sentencepiece' as ClipTokenizerMode }), /mode must be transformers or open_clip/);
  });
});
