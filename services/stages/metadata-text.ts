/**
 * The parameters text in JPEG and WebP metadata, where sharp (libvips) can write it:
 * - EXIF `UserComment` (Exif IFD, tag 0x9286), which AUTOMATIC1111 and the tools that follow it read
 *   for JPEG and WebP. libvips writes it with the `ASCII\0\0\0` character-code prefix and
 *   transliterates what is not ASCII (`ü` → `u`, `星` → `?`);
 * - XMP `dc:description`, which keeps the text exactly (UTF-8).
 * A reader should prefer XMP and fall back to EXIF. This file builds the XMP packet and reads both.
 */

const XML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\r': '&#13;' };

/** An XMP packet (sharp's `withXmp`) holding `text` as the image's `dc:description`. Deterministic: no dates, no ids. */
export function xmpWithDescription(text: string): string {
  const escaped = text.replace(/[&<>"\r]/g, (c) => XML_ESCAPES[c]!);
  return '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    + '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
    + `<rdf:li xml:lang="x-default">${escaped}</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>`;
}

/** The `dc:description` of an XMP packet (its x-default or first alternative), or undefined. */
export function readXmpDescription(xmp: string): string | undefined {
  const m = /<dc:description>\s*<rdf:Alt>\s*<rdf:li[^>]*>([\s\S]*?)<\/rdf:li>/.exec(xmp) ?? /<dc:description>([^<]*)<\/dc:description>/.exec(xmp);
  if (!m) return undefined;
  return m[1]!.replace(/&(amp|lt|gt|quot|apos|#(\d+)|#x([0-9a-fA-F]+));/g, (_, name: string, dec?: string, hex?: string) => {
    if (dec) return String.fromCodePoint(Number(dec));
    if (hex) return String.fromCodePoint(parseInt(hex, 16));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[name]!;
  });
}

const USER_COMMENT_TAG = 0x9286;
const EXIF_IFD_POINTER_TAG = 0x8769;

/**
 * EXIF `UserComment` from an EXIF block as sharp's `metadata().exif` gives it (`Exif\0\0` then a
 * TIFF structure), decoded by its character-code prefix (ASCII, UNICODE as UTF-16 in the block's
 * byte order, or undefined code as UTF-8). Undefined when the block has none or is malformed.
 */
export function readExifUserComment(exif: Uint8Array): string | undefined {
  const buf = Buffer.from(exif.buffer, exif.byteOffset, exif.byteLength);
  const tiff = buf.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? buf.subarray(6) : buf;
  if (tiff.length < 8) return undefined;
  const little = tiff.toString('latin1', 0, 2) === 'II';
  if (!little && tiff.toString('latin1', 0, 2) !== 'MM') return undefined;
  const u16 = (o: number) => (little ? tiff.readUInt16LE(o) : tiff.readUInt16BE(o));
  const u32 = (o: number) => (little ? tiff.readUInt32LE(o) : tiff.readUInt32BE(o));
  /** The entry of `tag` in the IFD at `offset`: [type, count, value offset field]. */
  const entry = (offset: number, tag: number): [number, number, number] | undefined => {
    if (offset + 2 > tiff.length) return undefined;
    const n = u16(offset);
    for (let i = 0; i < n; i++) {
      const at = offset + 2 + i * 12;
      if (at + 12 > tiff.length) return undefined;
      if (u16(at) === tag) return [u16(at + 2), u32(at + 4), at + 8];
    }
    return undefined;
  };
  try {
    const exifIfd = entry(u32(4), EXIF_IFD_POINTER_TAG);
    if (!exifIfd) return undefined;
    const comment = entry(u32(exifIfd[2]), USER_COMMENT_TAG);
    if (!comment) return undefined;
    const [, count, field] = comment;
    const start = count <= 4 ? field : u32(field);
    if (count < 8 || start + count > tiff.length) return undefined;
    const code = tiff.toString('latin1', start, start + 8);
    const body = tiff.subarray(start + 8, start + count);
    if (code.startsWith('UNICODE')) return little ? body.toString('utf16le') : Buffer.from(body).swap16().toString('utf16le');
    return body.toString(code.startsWith('ASCII') ? 'latin1' : 'utf8').replace(/\0+$/, '');
  } catch {
    return undefined;
  }
}
