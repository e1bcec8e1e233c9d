/**
 * Text chunks in PNG files: the generation parameters go in a `tEXt` chunk with the keyword
 * `parameters` (an `iTXt` chunk when the text is not Latin-1), the convention image tools read
 * (generation-parameters.ts has the text's format). Chunks are written right after IHDR, so a
 * reader scanning the file from the start finds them before the pixel data.
 */
import zlib from 'node:zlib';

/** The 8-byte PNG signature. */
export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Returns the PNG with a `tEXt` chunk (keyword, Latin-1 text) inserted right after IHDR.
 * Characters outside Latin-1 go in an `iTXt` chunk instead (UTF-8), as the PNG spec requires.
 */
export function withTextChunk(png: Uint8Array, keyword: string, text: string): Buffer {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (!buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG');
  const ihdrEnd = 8 + 12 + buf.readUInt32BE(8); // signature + IHDR (length, type, data, crc)
  // eslint-disable-next-line no-control-regex
  const latin1 = /^[\u0000-\u00ff]*$/.test(text);
  const data = latin1
    ? Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')])
    : Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]);
  const type = Buffer.from(latin1 ? 'tEXt' : 'iTXt', 'latin1');
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  type.copy(chunk, 4);
  data.copy(chunk, 8);
  chunk.writeUInt32BE(zlib.crc32(Buffer.concat([type, data])) >>> 0, 8 + data.length);
  return Buffer.concat([buf.subarray(0, ihdrEnd), chunk, buf.subarray(ihdrEnd)]);
}

/** Reads a `tEXt`/`iTXt` chunk's text by keyword (undefined when absent). */
export function readTextChunk(png: Uint8Array, keyword: string): string | undefined {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  for (let off = 8; off + 12 <= buf.length;) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    const nul = data.indexOf(0);
    if ((type === 'tEXt' || type === 'iTXt') && data.toString('latin1', 0, nul) === keyword) {
      return type === 'tEXt' ? data.toString('latin1', nul + 1) : data.toString('utf8', nul + 5);
    }
    off += 12 + len;
  }
  return undefined;
}
