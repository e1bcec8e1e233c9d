/**
 * Hostile and unusual input images, made in code (sharp and raw bytes; no downloads): truncated
 * PNG/JPEG/WebP, decompression bombs (a huge declared size, a zlib stream inflating far past the
 * declared size), 16-bit, CMYK, greyscale, alpha, animated and EXIF-rotated images.
 */
import zlib from 'node:zlib';
import sharp from 'sharp';

/** A w×h image, left half `left` and right half `right` (so orientation is visible after decoding). */
export async function twoTone(w: number, h: number, left: string, right: string): Promise<sharp.Sharp> {
  const half = await sharp({ create: { width: Math.ceil(w / 2), height: h, channels: 3, background: right } }).png().toBuffer();
  return sharp({ create: { width: w, height: h, channels: 3, background: left } }).composite([{ input: half, left: Math.floor(w / 2), top: 0 }]);
}

export const solid = (w: number, h: number, colour: string, channels: 3 | 4 = 3): sharp.Sharp => sharp({ create: { width: w, height: h, channels, background: colour } });

/** The first `fraction` of `bytes`. */
export const truncated = (bytes: Buffer, fraction: number): Buffer => bytes.subarray(0, Math.floor(bytes.length * fraction));

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A PNG written by hand: 8-bit RGB, `width`×`height` declared, `idat` as the (compressed) pixel data. */
export function handmadePng(width: number, height: number, idat: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

/** Bomb 1: a PNG declaring 100,000 × 100,000 pixels (30 GB of RGB) in a few hundred bytes. */
export function hugeDeclaredPng(): Buffer {
  return handmadePng(100_000, 100_000, zlib.deflateSync(Buffer.alloc(1024)));
}

/** Bomb 2: a PNG declaring 64×64 whose zlib stream inflates to `inflatedBytes` zeros (far past the 12 KB the size needs). */
export async function zlibBombPng(inflatedBytes = 256 * 1024 * 1024): Promise<Buffer> {
  const deflate = zlib.createDeflate({ level: 9 });
  const parts: Buffer[] = [];
  deflate.on('data', (d: Buffer) => parts.push(d));
  const done = new Promise<void>((resolve, reject) => {
    deflate.on('end', resolve);
    deflate.on('error', reject);
  });
  const block = Buffer.alloc(1024 * 1024);
  for (let n = 0; n < inflatedBytes; n += block.length) {
    if (!deflate.write(block)) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  return handmadePng(64, 64, Buffer.concat(parts));
}

/** A JPEG whose header declares `width`×`height` (SOF0 patched), with the scan data of a small image. */
export async function hugeDeclaredJpeg(width = 60_000, height = 60_000): Promise<Buffer> {
  const jpeg = Buffer.from(await solid(64, 64, '#808080').jpeg().toBuffer());
  for (let i = 2; i < jpeg.length - 9; i++) {
    if (jpeg[i] === 0xff && (jpeg[i + 1] === 0xc0 || jpeg[i + 1] === 0xc2)) {
      jpeg.writeUInt16BE(height, i + 5);
      jpeg.writeUInt16BE(width, i + 7);
      return jpeg;
    }
  }
  throw new Error('no SOF marker in the JPEG');
}

/** Every kind of unusual-but-valid image, keyed by name: [bytes, what a correct decode yields]. */
export async function unusualImages(): Promise<Record<string, Buffer>> {
  const orange = '#ff8000';
  return {
    'png 16-bit': await solid(32, 24, orange).toColourspace('rgb16').png().toBuffer(),
    'jpeg CMYK': await solid(32, 24, orange).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer(),
    'png greyscale': await solid(32, 24, '#808080').toColourspace('b-w').png().toBuffer(),
    'png alpha': await solid(32, 24, '#ff800000', 4).png().toBuffer(),
  };
}

/** An animated WebP: first frame red, second blue (16×16 each). */
export async function animatedWebp(): Promise<Buffer> {
  const red = await solid(16, 16, '#ff0000').png().toBuffer();
  const blue = await solid(16, 16, '#0000ff').png().toBuffer();
  return sharp([red, blue], { join: { animated: true } }).webp({ lossless: true }).toBuffer();
}

/**
 * A JPEG stored 32 wide × 16 high, left half red and right half blue, with EXIF orientation 6
 * ("rotate 90° clockwise to view"): auto-oriented it is 16 wide × 32 high, red on top.
 */
export async function exifRotatedJpeg(): Promise<Buffer> {
  return (await twoTone(32, 16, '#ff0000', '#0000ff')).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
}
