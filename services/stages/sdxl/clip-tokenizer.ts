/**
 * CLIP's byte-level BPE tokenizer, as SDXL's two text encoders expect it.
 *
 * Matches OpenAI's reference `SimpleTokenizer.encode` (github.com/openai/CLIP, clip/simple_tokenizer.py):
 * text cleanup, lowercase, the CLIP pre-tokenisation pattern, UTF-8 bytes mapped through
 * `bytes_to_unicode()`, then BPE by merge rank with `</w>` on a word's last symbol.
 * Both SDXL tokenizers (`tokenizer/`, `tokenizer_2/`) share one vocabulary; they differ only in the pad
 * token, which is read from the folder's `special_tokens_map.json` / `tokenizer_config.json`.
 * No id is hard-coded: BOS, EOS, pad and unk are looked up in the vocabulary by their token strings.
 *
 * Text cleanup — what the reference does and what is replicated:
 * - HTML entities are unescaped like the reference: once by ftfy (`&...;` forms only, skipped when the
 *   text contains `<`; ftfy decides per line, here the whole text decides), then twice by
 *   `html.unescape`. Only numeric references (with Python's rules for invalid code points) and the
 *   named entities in {@link NAMED_ENTITIES} are known; other named entities stay as typed.
 * - Of the rest of `ftfy.fix_text`, only the character-level fixes are replicated, after the unescaping:
 *   Latin ligatures, full/half-width forms, curly quotes, removal of invisible control characters, NFC.
 *   Not replicated: mojibake repair (`fix_encoding` and friends), C1-control and terminal-escape fixes.
 * - Whitespace (Python's `str.isspace` set) is collapsed to one space and trimmed; the text is lowercased.
 * - A literal `<|startoftext|>` / `<|endoftext|>` in the prompt becomes that special id, as in the reference.
 *
 * Added tokens — two modes ({@link ClipTokenizerMode}):
 * - `transformers` (default) matches Hugging Face's `CLIPTokenizer`, which diffusers runs and LoRAs are
 *   trained with: before any cleanup, the raw prompt is split on the folder's added tokens — the
 *   `added_tokens_decoder` of tokenizer_config.json plus every special token (bos, eos, unk, pad,
 *   additional_special_tokens), as `PreTrainedTokenizer.__init__` registers them — and each such
 *   token becomes its own id; the text between them is cleaned and BPE-encoded piece by piece
 *   (`PreTrainedTokenizer.tokenize` → `tokens_trie.split` → `CLIPTokenizer._tokenize`). SDXL's
 *   `tokenizer_2` pads with `!`, so there every `!` is id 0: `!!` gives `0, 0`, `wow!` gives
 *   `wow</w>, 0`. In `tokenizer/` (pad `<|endoftext|>`) `!` stays an ordinary character.
 * - `open_clip`: OpenAI's reference and open_clip — no added-token split, `!` is ordinary in both
 *   folders (`!!` → 748, `!!</w>`), as the SDXL text encoders were trained.
 */
import fs from 'node:fs';
import path from 'node:path';

import { OrreryError } from '../../common/errors.js';
import { CLIP_BYTE_PAIRS } from '../../models/clip-bytes.js';

/** SDXL's text sequence length: BOS + up to 75 tokens + EOS, then padding. */
export const CLIP_CONTEXT_LENGTH = 77;

const DEFAULT_CACHE_SIZE = 20_000;
const END_OF_WORD = '</w>';
const SPECIAL_LITERALS = new Set(['<|startoftext|>', '<|endoftext|>']);

/** A tokenizer file is missing or malformed. `file` is the path (fromDirectory) or file name (fromFiles). */
export class ClipTokenizerLoadError extends OrreryError {
  readonly file: string;
  constructor(file: string, why: string, options?: { cause?: unknown }) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', `${file}: ${why}`, options);
    this.file = file;
  }
}

/** The text of a tokenizer folder's files (for tests and generated bundles). */
export interface ClipTokenizerFiles {
  vocabJson: string;
  mergesTxt: string;
  specialTokensMapJson?: string;
  tokenizerConfigJson?: string;
}

/**
 * How added tokens in a prompt are treated: `transformers` (Hugging Face `CLIPTokenizer`, what
 * diffusers does) or `open_clip` (OpenAI's reference tokenizer). See the file comment.
 */
export type ClipTokenizerMode = 'transformers' | 'open_clip';

export interface ClipTokenizerOptions {
  /** Most distinct words whose BPE result is kept (least recently used evicted). Default 20000; 0 disables. */
  cacheSize?: number;
  /** Default `transformers`. */
  mode?: ClipTokenizerMode;
}

/** A token the raw prompt is split on before BPE (`transformers` mode), with its `AddedToken` flags. */
interface AddedToken {
  readonly content: string;
  readonly id: number;
  /** Eats the whitespace on its left / right. */
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  /** Only matches as a whole word (else it is glued back to its neighbour text). */
  readonly singleWord: boolean;
}

/** Token strings of the special tokens; each is also looked up in the vocabulary for its id. */
export interface ClipSpecialTokens {
  bos: string;
  eos: string;
  pad: string;
  unk: string;
}

/** One prompt as a fixed-length sequence. */
export interface ClipEncoding {
  /** `maxLength` ids: BOS, up to `maxLength - 2` tokens, EOS, then padding. */
  ids: BigInt64Array;
  /** Tokens the prompt produced, before truncation (BOS/EOS not counted). */
  tokenCount: number;
  /** True when tokens past `maxLength - 2` were dropped. */
  truncated: boolean;
}

/** Several prompts as one row-major `[texts.length, maxLength]` tensor. */
export interface ClipBatchEncoding {
  ids: BigInt64Array;
  maxLength: number;
  /** Per prompt, in input order: tokens before truncation. */
  tokenCounts: number[];
  /** Per prompt, in input order: whether it was truncated. */
  truncated: boolean[];
}

/** Byte value → its byte character. */
const BYTE_CHAR: readonly string[] = (() => {
  const table: string[] = new Array<string>(256);
  for (const [b, c] of CLIP_BYTE_PAIRS) table[b] = c;
  return table;
})();

// --- Text cleanup ---------------------------------------------------------------------------------

/** Python's `html.unescape` reference syntax: numeric, hex, or up to 32 name characters. */
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;
/** Named entities replaced: name → [text, legacy]. Legacy names also match without `;`, as in HTML5 and Python. */
const NAMED_ENTITIES: ReadonlyMap<string, readonly [string, boolean]> = new Map<string, readonly [string, boolean]>([
  ['amp', ['&', true]], ['AMP', ['&', true]], ['lt', ['<', true]], ['LT', ['<', true]], ['gt', ['>', true]],
  ['GT', ['>', true]], ['quot', ['"', true]], ['QUOT', ['"', true]], ['nbsp', ['\u00a0', true]],
  ['copy', ['©', true]], ['COPY', ['©', true]], ['reg', ['®', true]], ['REG', ['®', true]], ['deg', ['°', true]],
  ['times', ['×', true]], ['apos', ["'", false]], ['hellip', ['…', false]], ['mdash', ['—', false]],
  ['ndash', ['–', false]], ['lsquo', ['‘', false]], ['rsquo', ['’', false]], ['ldquo', ['“', false]],
  ['rdquo', ['”', false]], ['trade', ['™', false]],
]);
/** What `&#128;`..`&#159;` mean (Windows-1252), per Python's `html._invalid_charrefs`. */
const CP1252_C1 = '€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8dŽ\x8f\x90‘’“”•–—˜™š›œ\x9džŸ';

function numericCharref(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const cp = parseInt(ref.slice(hex ? 2 : 1).replace(/;$/, ''), hex ? 16 : 10);
  if (cp === 0) return '\ufffd';
  if (cp === 0x0d) return '\r';
  if (cp >= 0x80 && cp <= 0x9f) return CP1252_C1[cp - 0x80]!;
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return '\ufffd';
  const invalid = (cp >= 0x1 && cp <= 0x8) || cp === 0xb || (cp >= 0xe && cp <= 0x1f) || cp === 0x7f ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
  return invalid ? '' : String.fromCodePoint(cp);
}

/** One pass of Python's `html.unescape`, limited to numeric references and {@link NAMED_ENTITIES}. */
function unescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (whole: string, ref: string) => {
    if (ref[0] === '#') return numericCharref(ref);
    const name = ref.endsWith(';') ? ref.slice(0, -1) : ref;
    const exact = NAMED_ENTITIES.get(name);
    if (exact && (ref.endsWith(';') || exact[1])) return exact[0];
    // Like Python: the longest legacy name that prefixes the reference, the rest kept as text.
    for (let len = ref.length - 1; len >= 2; len--) {
      const legacy = NAMED_ENTITIES.get(ref.slice(0, len));
      if (legacy?.[1]) return legacy[0] + ref.slice(len);
    }
    return whole;
  });
}

/** ftfy's `unescape_html` reference syntax: the `;` is required. */
const FTFY_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

/** One pass of ftfy's `unescape_html` (named entities limited to {@link NAMED_ENTITIES}). */
function ftfyUnescapeHtml(text: string): string {
  return text.replace(FTFY_ENTITY, (ref) => {
    if (ref[1] === '#') return /^&#([0-9]+|[xX][0-9a-fA-F]+);$/.test(ref) ? numericCharref(ref.slice(1)) : ref;
    return NAMED_ENTITIES.get(ref.slice(1, -1))?.[0] ?? ref;
  });
}

/** ftfy's `fix_latin_ligatures` table. */
const LIGATURES: Readonly<Record<string, string>> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};
const LIGATURE_RE = /[Ĳĳﬀ-ﬆ]/gu;
/** ftfy's `fix_character_width`: U+3000 and the half/full-width forms block. */
const WIDTH_RE = /[\u3000\uff01-\uffef]/gu;
/** ftfy's `remove_control_chars` set. */
// eslint-disable-next-line no-control-regex -- control characters are what this removes
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/gu;
/** Python's `str.isspace` set, which the reference's `re` `\s` uses (wider than JavaScript's `\s`). */
// eslint-disable-next-line no-control-regex -- U+001C–U+001F are whitespace to Python
const WHITESPACE_RUN = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu;

/** The reference's cleanup, as far as replicated (see the file comment): the text the pattern splits. */
export function cleanClipText(text: string): string {
  let t = text.includes('<') ? text : ftfyUnescapeHtml(text);
  t = unescapeHtml(unescapeHtml(t));
  t = t.replace(LIGATURE_RE, (c) => LIGATURES[c] ?? c)
    .replace(WIDTH_RE, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')))
    .replace(/[\u02bc\u2018-\u201b]/gu, "'")
    .replace(/[\u201c-\u201f]/gu, '"')
    .replace(CONTROL_RE, '')
    .normalize('NFC');
  return t.replace(WHITESPACE_RUN, ' ').replace(/^ | $/g, '').toLowerCase();
}

/** CLIP's pre-tokenisation pattern (the reference compiles it case-insensitively; the text is lowercase). */
const PIECE_RE = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/gu;
const PRINTABLE_ASCII = /^[!-~]+$/;

// --- Loading --------------------------------------------------------------------------------------

function parseJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ClipTokenizerLoadError(file, `is not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

function parseVocab(file: string, text: string): Map<string, number> {
  const json = parseJson(file, text);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ClipTokenizerLoadError(file, 'expected a JSON object mapping token strings to ids');
  }
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(json)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) {
      throw new ClipTokenizerLoadError(file, `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; expected a non-negative integer`);
    }
    vocab.set(token, id as number);
  }
  for (const [, c] of CLIP_BYTE_PAIRS) {
    for (const symbol of [c, c + END_OF_WORD]) {
      if (!vocab.has(symbol)) {
        throw new ClipTokenizerLoadError(file, `lacks the byte-level token ${JSON.stringify(symbol)}; not a CLIP byte-level BPE vocabulary`);
      }
    }
  }
  return vocab;
}

/** Merge ranks keyed `"first second"`; symbols never contain a space (the space byte is `Ġ`). */
function parseMerges(file: string, text: string, vocab: ReadonlyMap<string, number>, vocabFile: string): Map<string, number> {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const ranks = new Map<string, number>();
  lines.forEach((raw, index) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (index === 0 && line.startsWith('#version')) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new ClipTokenizerLoadError(file, `line ${index + 1}: expected two symbols separated by one space, got ${JSON.stringify(line)}`);
    }
    if (!vocab.has(parts[0]! + parts[1]!)) {
      throw new ClipTokenizerLoadError(file, `line ${index + 1}: merge ${JSON.stringify(line)} makes ${JSON.stringify(parts[0]! + parts[1]!)}, which is not in ${vocabFile}`);
    }
    if (!ranks.has(line)) ranks.set(line, ranks.size);
  });
  return ranks;
}

/** A special-token value in HF config files: a string, `{content: string}`, or null/absent. */
function tokenString(file: string, key: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  throw new ClipTokenizerLoadError(file, `${key} must be a string or an object with a string "content", got ${JSON.stringify(value)}`);
}

const SPECIAL_KEYS = { bos: 'bos_token', eos: 'eos_token', pad: 'pad_token', unk: 'unk_token' } as const;
/** CLIPTokenizer's defaults when no config names a token. */
const DEFAULT_SPECIALS: ClipSpecialTokens = { bos: '<|startoftext|>', eos: '<|endoftext|>', pad: '<|endoftext|>', unk: '<|endoftext|>' };

/**
 * Special tokens with Hugging Face's precedence: defaults, then tokenizer_config.json, then
 * special_tokens_map.json. Returns each token and the file that set it (for error messages).
 */
function resolveSpecials(sources: Array<{ file: string; text: string | undefined }>): Record<keyof ClipSpecialTokens, { token: string; file: string | undefined }> {
  const out = Object.fromEntries(
    Object.entries(DEFAULT_SPECIALS).map(([k, token]: [string, string]) => [k, { token, file: undefined as string | undefined }]),
  ) as Record<keyof ClipSpecialTokens, { token: string; file: string | undefined }>;
  for (const { file, text } of sources) {
    if (text === undefined) continue;
    const json = parseJson(file, text);
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ClipTokenizerLoadError(file, 'expected a JSON object');
    for (const [k, key] of Object.entries(SPECIAL_KEYS) as Array<[keyof ClipSpecialTokens, string]>) {
      const token = tokenString(file, key, (json as Record<string, unknown>)[key]);
      if (token !== undefined) out[k] = { token, file };
    }
  }
  return out;
}

/** `AddedToken` flags of a config value (a string has none set). */
function addedFlags(file: string, key: string, value: unknown): Omit<AddedToken, 'content' | 'id'> {
  const o = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const flag = (name: string): boolean => {
    const v = o[name] ?? false;
    if (typeof v !== 'boolean') throw new ClipTokenizerLoadError(file, `${key}.${name} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  return { lstrip: flag('lstrip'), rstrip: flag('rstrip'), singleWord: flag('single_word') };
}

/**
 * The tokens Hugging Face's slow tokenizer splits a prompt on, as `PreTrainedTokenizer.__init__`
 * registers them: tokenizer_config.json's `added_tokens_decoder` (id → token) first, then every
 * special token not yet among them, with its id in the vocabulary and the flags of its object form
 * (special_tokens_map.json over tokenizer_config.json, as for the token strings).
 */
function resolveAddedTokens(
  sources: Array<{ file: string; text: string | undefined }>, vocab: ReadonlyMap<string, number>, vocabFile: string,
): Map<string, AddedToken> {
  const added = new Map<string, AddedToken>();
  type Slot = { file: string; key: string; value: unknown };
  const slots = new Map<string, Slot>(Object.entries(SPECIAL_KEYS).map(([k, key]) => [key, { file: vocabFile, key, value: DEFAULT_SPECIALS[k as keyof ClipSpecialTokens] }]));
  let extras: Slot[] = [];
  for (const { file, text } of sources) {
    if (text === undefined) continue;
    const json = parseJson(file, text) as Record<string, unknown>;
    const decoder = json['added_tokens_decoder'];
    if (decoder !== undefined) {
      if (decoder === null || typeof decoder !== 'object' || Array.isArray(decoder)) throw new ClipTokenizerLoadError(file, 'added_tokens_decoder must be an object mapping ids to tokens');
      for (const [idText, value] of Object.entries(decoder)) {
        const key = `added_tokens_decoder.${idText}`;
        const id = Number(idText);
        const content = tokenString(file, key, value);
        if (!Number.isSafeInteger(id) || id < 0 || content === undefined) throw new ClipTokenizerLoadError(file, `${key} must map a non-negative integer id to a token`);
        if (!added.has(content)) added.set(content, { content, id, ...addedFlags(file, key, value) });
      }
    }
    for (const key of Object.values(SPECIAL_KEYS)) {
      if (tokenString(file, key, json[key]) !== undefined) slots.set(key, { file, key, value: json[key] });
    }
    const extra = json['additional_special_tokens'];
    if (extra !== undefined && !Array.isArray(extra)) throw new ClipTokenizerLoadError(file, 'additional_special_tokens must be a list');
    if (Array.isArray(extra)) extras = (extra as unknown[]).map((value, i) => ({ file, key: `additional_special_tokens[${i}]`, value }));
  }
  const specials = new Map<string, Slot>();
  for (const slot of [...slots.values(), ...extras]) {
    const content = tokenString(slot.file, slot.key, slot.value);
    if (content !== undefined && content !== '' && !specials.has(content)) specials.set(content, slot);
  }
  for (const [content, { file, key, value }] of specials) {
    if (added.has(content)) continue;
    const id = vocab.get(content);
    if (id === undefined) throw new ClipTokenizerLoadError(vocabFile, `lacks the special token ${JSON.stringify(content)} (${key} in ${file})`);
    added.set(content, { content, id, ...addedFlags(file, key, value) });
  }
  return added;
}

/** Python's `str.strip` whitespace at either end (the set of {@link WHITESPACE_RUN}). */
// eslint-disable-next-line no-control-regex -- U+001C–U+001F are whitespace to Python
const PY_LEADING_SPACE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
// eslint-disable-next-line no-control-regex -- U+001C–U+001F are whitespace to Python
const PY_TRAILING_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/u;

function readRequired(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ClipTokenizerLoadError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
}

function readOptional(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ClipTokenizerLoadError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
}

// --- The tokenizer --------------------------------------------------------------------------------

function checkMaxLength(maxLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${maxLength}`);
}

/** CLIP BPE tokenizer over one vocabulary + merges, with one folder's special tokens. Immutable but for its word cache. */
export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  /** Entries in vocab.json. */
  readonly vocabSize: number;
  readonly specialTokens: Readonly<ClipSpecialTokens>;

  readonly #vocab: ReadonlyMap<string, number>;
  readonly #ranks: ReadonlyMap<string, number>;
  readonly #cacheSize: number;
  /** `transformers` mode: tokens the raw prompt is split on, by content; empty in `open_clip` mode. */
  readonly #added: ReadonlyMap<string, AddedToken>;
  /** Matches any added token, longest first at the leftmost position (transformers' `Trie.split`). */
  readonly #addedPattern: RegExp | undefined;
  /** Piece (lowercased text) → ids; a Map's insertion order serves as the LRU order. */
  readonly #cache = new Map<string, readonly number[]>();

  private constructor(files: { vocab: string; merges: string; specialTokensMap: string; tokenizerConfig: string }, text: ClipTokenizerFiles, options: ClipTokenizerOptions) {
    const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
    if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new RangeError(`cacheSize must be a non-negative integer, got ${cacheSize}`);
    this.#cacheSize = cacheSize;
    this.#vocab = parseVocab(files.vocab, text.vocabJson);
    this.#ranks = parseMerges(files.merges, text.mergesTxt, this.#vocab, files.vocab);
    this.vocabSize = this.#vocab.size;
    const sources = [
      { file: files.tokenizerConfig, text: text.tokenizerConfigJson },
      { file: files.specialTokensMap, text: text.specialTokensMapJson },
    ];
    const specials = resolveSpecials(sources);
    const idOf = (k: keyof ClipSpecialTokens): number => {
      const { token, file } = specials[k];
      const id = this.#vocab.get(token);
      if (id === undefined) {
        const origin = file === undefined ? ` (CLIP's default ${SPECIAL_KEYS[k]})` : ` (${SPECIAL_KEYS[k]} in ${file})`;
        throw new ClipTokenizerLoadError(files.vocab, `lacks the special token ${JSON.stringify(token)}${origin}`);
      }
      return id;
    };
    this.bosId = idOf('bos');
    this.eosId = idOf('eos');
    this.padId = idOf('pad');
    this.unkId = idOf('unk');
    this.specialTokens = Object.freeze({ bos: specials.bos.token, eos: specials.eos.token, pad: specials.pad.token, unk: specials.unk.token });
    const mode = options.mode ?? 'transformers';
    if (mode !== 'transformers' && mode !== 'open_clip') throw new RangeError(`mode must be transformers or open_clip, got ${String(mode)}`);
    this.mode = mode;
    this.#added = mode === 'transformers' ? resolveAddedTokens(sources, this.#vocab, files.vocab) : new Map();
    // Longest first: at one position the regex takes the first alternative that matches. For
    // CLIP's added tokens (none is a prefix of another) this is exactly the trie's split.
    const contents = [...this.#added.keys()].sort((a, b) => b.length - a.length);
    this.#addedPattern = contents.length ? new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gu') : undefined;
  }

  /** The added-token mode this tokenizer was built with. */
  readonly mode: ClipTokenizerMode;

  /**
   * Loads a tokenizer folder: `vocab.json` and `merges.txt` (required), `tokenizer_config.json` and
   * `special_tokens_map.json` (optional; bos/eos/pad/unk tokens). Throws {@link ClipTokenizerLoadError}
   * naming the file's path and what is wrong with it.
   */
  static fromDirectory(dir: string, options: ClipTokenizerOptions = {}): ClipTokenizer {
    const files = {
      vocab: path.join(dir, 'vocab.json'),
      merges: path.join(dir, 'merges.txt'),
      specialTokensMap: path.join(dir, 'special_tokens_map.json'),
      tokenizerConfig: path.join(dir, 'tokenizer_config.json'),
    };
    return new ClipTokenizer(files, {
      vocabJson: readRequired(files.vocab),
      mergesTxt: readRequired(files.merges),
      specialTokensMapJson: readOptional(files.specialTokensMap),
      tokenizerConfigJson: readOptional(files.tokenizerConfig),
    }, options);
  }

  /** Builds a tokenizer from file contents; errors name the file as `vocab.json`, `merges.txt`, etc. */
  static fromFiles(files: ClipTokenizerFiles, options: ClipTokenizerOptions = {}): ClipTokenizer {
    const names = { vocab: 'vocab.json', merges: 'merges.txt', specialTokensMap: 'special_tokens_map.json', tokenizerConfig: 'tokenizer_config.json' };
    return new ClipTokenizer(names, files, options);
  }

  /** Token ids of `text`: no BOS/EOS, no length limit. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const part of this.#splitAdded(text)) {
      const token = this.#added.get(part);
      if (token) {
        ids.push(token.id);
        continue;
      }
      for (const match of cleanClipText(part).matchAll(PIECE_RE)) {
        for (const id of this.#pieceIds(match[0])) ids.push(id);
      }
    }
    return ids;
  }

  /**
   * `transformers` mode: the raw text cut before and after every added token, then the tokens'
   * `lstrip` / `rstrip` / `single_word` flags applied to their neighbours, as
   * `PreTrainedTokenizer.tokenize` does; empty parts dropped. `open_clip` mode: the text whole.
   */
  #splitAdded(text: string): string[] {
    if (!this.#addedPattern) return [text];
    const parts: string[] = [];
    let start = 0;
    for (const m of text.matchAll(this.#addedPattern)) {
      if (m.index > start) parts.push(text.slice(start, m.index));
      parts.push(m[0]);
      start = m.index + m[0].length;
    }
    if (start < text.length) parts.push(text.slice(start));
    for (let i = 0; i < parts.length; i++) {
      const token = this.#added.get(parts[i]!);
      if (!token) continue;
      const left = i > 0 ? parts[i - 1] : undefined;
      const right = i < parts.length - 1 ? parts[i + 1] : undefined;
      if (token.rstrip && right) parts[i + 1] = right.replace(PY_LEADING_SPACE, '');
      if (token.lstrip && left) parts[i - 1] = left.replace(PY_TRAILING_SPACE, '');
      if (token.singleWord && left && !left.endsWith(' ')) {
        parts[i - 1] += token.content;
        parts[i] = '';
      } else if (token.singleWord && right && !right.startsWith(' ')) {
        parts[i + 1] = token.content + right;
        parts[i] = '';
      }
    }
    return parts.filter((p) => p !== '');
  }

  /** `[maxLength]` int64 ids: BOS, at most `maxLength - 2` tokens, EOS, pad. Truncates silently; see {@link encodeFixedWithInfo}. */
  encodeFixed(text: string, maxLength: number = CLIP_CONTEXT_LENGTH): BigInt64Array {
    return this.encodeFixedWithInfo(text, maxLength).ids;
  }

  /** Like {@link encodeFixed}, also reporting the token count and whether the prompt was truncated. */
  encodeFixedWithInfo(text: string, maxLength: number = CLIP_CONTEXT_LENGTH): ClipEncoding {
    checkMaxLength(maxLength);
    const ids = new BigInt64Array(maxLength);
    const tokenCount = this.#writeRow(text, ids);
    return { ids, tokenCount, truncated: tokenCount > maxLength - 2 };
  }

  /** Row-major `[texts.length, maxLength]` int64 ids, each row as {@link encodeFixed} gives it. */
  encodeBatch(texts: readonly string[], maxLength: number = CLIP_CONTEXT_LENGTH): BigInt64Array {
    return this.encodeBatchWithInfo(texts, maxLength).ids;
  }

  /** Like {@link encodeBatch}, also reporting per prompt its token count and whether it was truncated. */
  encodeBatchWithInfo(texts: readonly string[], maxLength: number = CLIP_CONTEXT_LENGTH): ClipBatchEncoding {
    checkMaxLength(maxLength);
    const ids = new BigInt64Array(texts.length * maxLength);
    const tokenCounts = texts.map((text, row) => this.#writeRow(text, ids.subarray(row * maxLength, (row + 1) * maxLength)));
    return { ids, maxLength, tokenCounts, truncated: tokenCounts.map((n) => n > maxLength - 2) };
  }

  /** Fills `row` (its length is the max length) and returns the prompt's token count before truncation. */
  #writeRow(text: string, row: BigInt64Array): number {
    const tokens = this.encode(text);
    const kept = Math.min(tokens.length, row.length - 2);
    row.fill(BigInt(this.padId));
    row[0] = BigInt(this.bosId);
    for (let i = 0; i < kept; i++) row[i + 1] = BigInt(tokens[i]!);
    row[kept + 1] = BigInt(this.eosId);
    return tokens.length;
  }

  /** Ids of one pre-tokenised piece, through the LRU cache. */
  #pieceIds(piece: string): readonly number[] {
    const cached = this.#cache.get(piece);
    if (cached) {
      this.#cache.delete(piece);
      this.#cache.set(piece, cached);
      return cached;
    }
    const special = SPECIAL_LITERALS.has(piece) ? this.#vocab.get(piece) : undefined;
    const ids = special !== undefined
      ? [special]
      : this.#bpe(this.#byteSymbols(piece)).map((s) => this.#vocab.get(s) ?? this.unkId);
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(piece, ids);
    }
    return ids;
  }

  /** The piece's UTF-8 bytes as byte characters, `</w>` appended to the last. */
  #byteSymbols(piece: string): string[] {
    // Printable ASCII bytes map to themselves, the common case for English prompts.
    const symbols = PRINTABLE_ASCII.test(piece)
      ? Array.from(piece)
      : Array.from(Buffer.from(piece, 'utf8'), (b) => BYTE_CHAR[b]!);
    symbols[symbols.length - 1] += END_OF_WORD;
    return symbols;
  }

  /** Applies merges, lowest rank first, each to every non-overlapping occurrence left to right. */
  #bpe(word: string[]): string[] {
    while (word.length > 1) {
      let bestRank = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.#ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          first = word[i]!;
          second = word[i + 1]!;
        }
      }
      if (bestRank === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(word[i]!);
        }
      }
      word = merged;
    }
    return word;
  }
}
