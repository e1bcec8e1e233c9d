/**
 * The upscaler's pixel I/O with sharp: strict decoding of untrusted input images (input-image.ts) and the optional
 * final resize of results (output-encoder.ts encodes them). Decoding failures are the client's fault and come
 * back as InvalidArgumentError on `init_image`, saying what is wrong.
 */
import sharp from 'sharp';
import { InvalidArgumentError } from '../common/errors.js';
import { decodeFailure, inputImagePipeline, inspectInputImage } from './input-image.js';

/** Interleaved 8-bit RGB. */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/**
 * Decodes `bytes` to RGB under input-image.ts's rules: PNG/JPEG/WebP only; the header is read
 * first and a declared size above `maxPixels` is refused before any pixel memory is allocated;
 * the decode runs with `limitInputPixels`, `failOn: 'error'` (truncated or corrupt data fails
 * instead of decoding to grey) and sequential read; EXIF orientation applied, alpha composited
 * onto white, greyscale/CMYK/16-bit converted to 8-bit sRGB, an animation's first frame.
 */
export async function decodeImage(bytes: Uint8Array | undefined, maxPixels: number): Promise<RgbImage> {
  if (!bytes || bytes.length === 0) throw new InvalidArgumentError('init_image', 'required: the upscaler needs an input image (got none)');
  const header = await inspectInputImage(bytes, maxPixels);
  try {
    const { data, info } = await inputImagePipeline(bytes, maxPixels).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    throw decodeFailure(header, bytes, err);
  }
}

/** The final resize: to exactly width × height, by centre crop after covering (`cover`) or by stretching (`fill`). */
export interface ResizeSpec {
  readonly width: number;
  readonly height: number;
  readonly fit: 'cover' | 'fill';
}

/**
 * A sharp pipeline over `img`, resized first (lanczos3) when `resize` asks for another size; the
 * caller encodes it (output-encoder.ts).
 */
export function resizedImage(img: RgbImage, resize?: ResizeSpec): sharp.Sharp {
  const s = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 }, limitInputPixels: false });
  if (!resize || (resize.width === img.width && resize.height === img.height)) return s;
  return s.resize({ width: resize.width, height: resize.height, fit: resize.fit, position: 'centre', kernel: 'lanczos3' });
}
