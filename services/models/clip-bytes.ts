/**
 * CLIP's byte alphabet: `bytes_to_unicode()` of OpenAI's CLIP (clip/simple_tokenizer.py), the 256
 * characters that stand for the bytes of UTF-8 text in a byte-level BPE vocabulary. A fact of the
 * vocabulary format, so it sits with the models: the SDXL stage's tokenizer encodes with it and the
 * tiny test vocabulary (tiny-vocab.ts) is laid out by it.
 */

/**
 * `bytes_to_unicode()` as [byte, char] pairs in vocabulary order (ids 0–255): the printable bytes
 * map to themselves, the others to U+0100 onwards in byte order.
 */
function byteUnicodePairs(): Array<readonly [number, string]> {
  const printable: number[] = [];
  for (const [lo, hi] of [[0x21, 0x7e], [0xa1, 0xac], [0xae, 0xff]] as const) {
    for (let b = lo; b <= hi; b++) printable.push(b);
  }
  const pairs: Array<readonly [number, string]> = printable.map((b) => [b, String.fromCharCode(b)] as const);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.includes(b)) pairs.push([b, String.fromCharCode(256 + n++)]);
  }
  return pairs;
}

/** [byte, byte character] for the 256 bytes, in CLIP vocabulary order (element i is id i). */
export const CLIP_BYTE_PAIRS: ReadonlyArray<readonly [number, string]> = Object.freeze(byteUnicodePairs());

/** The 256 byte characters in CLIP vocabulary order: id i (and i + 256 with `</w>`) is element i. */
export function clipByteSymbols(): readonly string[] {
  return CLIP_BYTE_PAIRS.map(([, c]) => c);
}
