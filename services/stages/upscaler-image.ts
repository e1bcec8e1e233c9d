/**
 * The upscaler's pixel I/O with sharp: strict decoding of untrusted input images and encoding
 * (with the optional final resize) of results. Decoding failures are the client's fault and come
 * back as InvalidArgumentError on `init_image`, saying what is wrong.
 */
import sharp from 'sharp';
import { InvalidArgumentError } from '../common/errors.js';

/** Interleaved 8-bit RGB. */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/**
 * Decodes `bytes` to RGB (alpha dropped, greyscale expanded, EXIF orientation applied). The
 * header is read first and a declared size above `maxPixels` is refused before any pixel memory
 * is allocated; the decode itself runs with sharp's `limitInputPixels` and `failOn: 'error'`, so
 * truncated or corrupt data fails instead of decoding to grey.
 */
export async function decodeImage(bytes: Uint8Array | undefined, maxPixels: number): Promise<RgbImage> {
  if (!bytes || bytes.length === 0) throw new InvalidArgumentError('init_image', 'required: the upscaler needs an input image (got none)');
  let meta: sharp.Metadata;
  try {
    // Header only: nothing is decoded, so the limit is checked here with a precise message.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    const msg = (err as Error).message;
    if (/unsupported image format/i.test(msg)) throw new InvalidArgumentError('init_image', `not an image: ${bytes.length} bytes in no format sharp recognises (PNG, JPEG, WebP, AVIF, GIF, TIFF), or with its header cut short`);
    throw new InvalidArgumentError('init_image', `truncated or corrupt image header: ${msg}`);
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w < 1 || h < 1) throw new InvalidArgumentError('init_image', `image declares no size (${meta.format})`);
  if (w * h > maxPixels) {
    throw new InvalidArgumentError('init_image', `too large: ${meta.format} declares ${w}x${h} = ${w * h} pixels, above this upscaler's limit of ${maxPixels} pixels`);
  }
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' })
      .rotate().removeAlpha().toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    throw new InvalidArgumentError('init_image', `truncated or corrupt ${meta.format} data (${w}x${h} declared, ${bytes.length} bytes): ${(err as Error).message}`);
  }
}

/** The final resize: to exactly width × height, by centre crop after covering (`cover`) or by stretching (`fill`). */
export interface ResizeSpec {
  readonly width: number;
  readonly height: number;
  readonly fit: 'cover' | 'fill';
}

export type OutputFormat = 'png' | 'webp' | 'jpeg';
const MIME: Readonly<Record<OutputFormat, string>> = { png: 'image/png', webp: 'image/webp', jpeg: 'image/jpeg' };

/**
 * Encodes RGB bytes, resizing first (lanczos3) when `resize` is given. An `intermediate` image
 * (the next pipeline stage's input) is a PNG stored at level 0: lossless and fast to write.
 */
export async function encodeImage(
  img: RgbImage, format: OutputFormat, resize?: ResizeSpec, intermediate = false,
): Promise<{ data: Uint8Array; width: number; height: number; mimeType: string }> {
  let s = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 }, limitInputPixels: false });
  if (resize && (resize.width !== img.width || resize.height !== img.height)) {
    s = s.resize({ width: resize.width, height: resize.height, fit: resize.fit, position: 'centre', kernel: 'lanczos3' });
  }
  const out = intermediate ? s.png({ compressionLevel: 0 }) : format === 'png' ? s.png() : format === 'webp' ? s.webp({ quality: 90 }) : s.jpeg({ quality: 90 });
  const { data, info } = await out.toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, mimeType: MIME[intermediate ? 'png' : format] };
}
