/**
 * A small but real CLIP vocabulary for the tiny SDXL-shaped test bundle: the first
 * {@link TINY_CLIP_MERGE_COUNT} merges of OpenAI CLIP's BPE (services/models/assets/clip-merges-2048.txt,
 * MIT, see the README there), with ids assigned exactly as the full vocabulary assigns them. Any word
 * whose merges all rank below 2048 ("a photo of a cat") gets the same ids as with the full vocabulary.
 */
import fs from 'node:fs';
import path from 'node:path';

import { packageRoot } from '../common/package-root.js';
import { clipByteSymbols } from './clip-bytes.js';

/** Merges in the asset; ids 512..2559 are the merged tokens. */
export const TINY_CLIP_MERGE_COUNT = 2048;
/** `<|startoftext|>` in the tiny vocabulary. */
export const TINY_CLIP_BOS_ID = 512 + TINY_CLIP_MERGE_COUNT;
/** `<|endoftext|>` in the tiny vocabulary. */
export const TINY_CLIP_EOS_ID = TINY_CLIP_BOS_ID + 1;
/** Entries in the tiny vocabulary: the size of a tiny text encoder's token embedding table. */
export const TINY_CLIP_VOCAB_SIZE = TINY_CLIP_EOS_ID + 1;

/** Where the merges asset lives; it is read from services/ whether running from services/ or dist/. */
export function tinyClipMergesPath(): string {
  return path.join(packageRoot(), 'services/models/assets/clip-merges-2048.txt');
}

/**
 * vocab.json text for `merges` (lines "first second", in rank order), laid out like Hugging Face's CLIP
 * vocab.json: ids 0–255 the byte characters in `bytes_to_unicode()` order, 256–511 the same with `</w>`,
 * 512 + i for merge i, then `<|startoftext|>` and `<|endoftext|>`; one line, keys sorted, `", "` and
 * `": "` separators, non-ASCII as UTF-8, no trailing newline. Throws if two merges make the same token.
 */
export function buildClipVocabJson(merges: readonly string[]): string {
  const bytes = clipByteSymbols();
  const tokens = [...bytes, ...bytes.map((c) => `${c}</w>`), ...merges.map((m) => m.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
  const entries = tokens.map((token, id) => [token, id] as const);
  if (new Set(tokens).size !== tokens.length) throw new Error('buildClipVocabJson: two merges make the same token');
  // Python's sort_keys compares code points; UTF-16 order agrees because every token here is in the BMP.
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([token, id]) => `${JSON.stringify(token)}: ${id}`).join(', ')}}`;
}

let cached: { vocabJson: string; mergesTxt: string } | undefined;

/**
 * The tiny vocabulary as the text of a tokenizer folder's vocab.json and merges.txt
 * (`#version: 0.2` plus {@link TINY_CLIP_MERGE_COUNT} merges). BOS is {@link TINY_CLIP_BOS_ID} (2560),
 * EOS {@link TINY_CLIP_EOS_ID} (2561). Throws if the asset is missing or not 2048 merges.
 */
export function tinyClipVocab(): { vocabJson: string; mergesTxt: string } {
  if (cached) return cached;
  const file = tinyClipMergesPath();
  const mergesTxt = fs.readFileSync(file, 'utf8');
  const lines = mergesTxt.split('\n');
  if (lines[0] !== '#version: 0.2' || lines.at(-1) !== '') throw new Error(`${file}: expected a "#version: 0.2" header and a final newline`);
  const merges = lines.slice(1, -1);
  if (merges.length !== TINY_CLIP_MERGE_COUNT) throw new Error(`${file}: expected ${TINY_CLIP_MERGE_COUNT} merges, found ${merges.length}`);
  cached = Object.freeze({ vocabJson: buildClipVocabJson(merges), mergesTxt });
  return cached;
}
