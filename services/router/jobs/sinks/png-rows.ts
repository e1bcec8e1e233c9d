/**
 * A PNG encoder fed a band of rows at a time: rows go through one deflate stream as they come,
 * so encoding an image holds one band of raw pixels, not the whole image. 8-bit RGB, filter type
 * None (what sharp writes by default), zlib level 6.
 */
import zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS = 3;

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.byteLength, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(data, zlib.crc32(head.subarray(4))), 0);
  return Buffer.concat([head, data, crc]);
}

export class PngRows {
  private readonly deflate = zlib.createDeflate({ level: 6 });
  private readonly idat: Buffer[] = [];
  private readonly done: Promise<void>;
  private rows = 0;

  constructor(readonly width: number, readonly height: number) {
    this.deflate.on('data', (b: Buffer) => this.idat.push(b));
    this.done = new Promise((resolve, reject) => {
      this.deflate.once('end', resolve);
      this.deflate.once('error', reject);
    });
  }

  /** Appends whole rows of raw RGB pixels (width × 3 bytes each). */
  async write(pixels: Uint8Array): Promise<void> {
    const stride = this.width * CHANNELS;
    if (pixels.byteLength % stride !== 0) throw new Error(`a band of ${pixels.byteLength} bytes is not whole rows of ${stride}`);
    const count = pixels.byteLength / stride;
    if (this.rows + count > this.height) throw new Error(`${this.rows + count} rows written to a PNG ${this.height} rows high`);
    const filtered = Buffer.alloc(count * (stride + 1)); // each row: filter byte 0 (None), then its pixels
    for (let r = 0; r < count; r++) filtered.set(pixels.subarray(r * stride, (r + 1) * stride), r * (stride + 1) + 1);
    this.rows += count;
    if (!this.deflate.write(filtered)) await new Promise((resolve) => this.deflate.once('drain', resolve));
  }

  /** The PNG file, once every row has been written. */
  async end(): Promise<Buffer> {
    if (this.rows !== this.height) throw new Error(`${this.rows} of ${this.height} rows written`);
    this.deflate.end();
    await this.done;
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(this.width, 0);
    ihdr.writeUInt32BE(this.height, 4);
    ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour (RGB), deflate, adaptive filtering, no interlace
    return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', Buffer.concat(this.idat)), chunk('IEND', new Uint8Array(0))]);
  }
}
