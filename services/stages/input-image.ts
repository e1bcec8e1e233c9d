/**
 * Strict decoding of untrusted input images (img2img `init_image`, the upscaler's input) with
 * sharp, shared by every stage that reads one, so they all follow one set of rules:
 * - formats: PNG, JPEG and WebP only (what the router admits; sharp's other parsers — SVG, TIFF,
 *   HEIF, GIF — are never reached with client bytes);
 * - memory: the header is read first and a declared size above the stage's pixel limit is refused
 *   before any pixel memory exists; the decode runs with `limitInputPixels`, sequential read and
 *   one page, so a decompression bomb is refused or bounded, never decoded whole;
 * - corruption: `failOn: 'error'`, so truncated or corrupt data fails instead of decoding to grey;
 * - pixels: EXIF orientation applied, alpha composited onto white (the colour hidden under a
 *   transparent pixel is arbitrary), greyscale, CMYK and 16-bit converted to 8-bit sRGB, an
 *   animation's first frame.
 * Every refusal is an InvalidArgumentError on `init_image` that says why.
 */
import sharp from 'sharp';
import { InvalidArgumentError } from '../common/errors.js';

/** Formats accepted from clients. */
export const INPUT_IMAGE_FORMATS: readonly string[] = ['png', 'jpeg', 'webp'];

/** What the header says, checked against the rules before decoding. */
export interface InputImageHeader {
  readonly format: string;
  readonly width: number;
  readonly height: number;
  /** Frames of an animated image (1 otherwise); only the first is decoded. */
  readonly pages: number;
}

/** The first line of a libvips error (they run on with repeats of the same complaint). */
const firstLine = (err: unknown): string => ((err as Error).message ?? String(err)).split('\n')[0]!.trim();

/** Reads and checks the header of `bytes`: format, declared size within `maxPixels`. Decodes nothing. */
export async function inspectInputImage(bytes: Uint8Array, maxPixels: number): Promise<InputImageHeader> {
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    const msg = firstLine(err);
    if (/unsupported image format/i.test(msg)) throw new InvalidArgumentError('init_image', `not an image: ${bytes.length} bytes in none of ${INPUT_IMAGE_FORMATS.join(', ')}, or with its header cut short`);
    throw new InvalidArgumentError('init_image', `truncated or corrupt image header (${bytes.length} bytes): ${msg}`);
  }
  const format = meta.format ?? 'unknown';
  if (!INPUT_IMAGE_FORMATS.includes(format)) throw new InvalidArgumentError('init_image', `${format} images are not accepted (use ${INPUT_IMAGE_FORMATS.join(', ')})`);
  const width = meta.width ?? 0;
  // An animation's metadata height is one frame's when pageHeight is set; the first page is what is decoded.
  const height = meta.pageHeight ?? meta.height ?? 0;
  if (width < 1 || height < 1) throw new InvalidArgumentError('init_image', `${format} declares no size`);
  if (width * height > maxPixels) {
    throw new InvalidArgumentError('init_image', `too large: ${format} declares ${width}x${height} = ${width * height} pixels, above this stage's limit of ${maxPixels} pixels`);
  }
  return { format, width, height, pages: meta.pages ?? 1 };
}

/**
 * A sharp pipeline decoding a checked input image to 8-bit sRGB without alpha, oriented; the
 * caller adds a resize and the output (`.raw({ depth: 'uchar' })`).
 */
export function inputImagePipeline(bytes: Uint8Array, maxPixels: number): sharp.Sharp {
  return sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels, sequentialRead: true, pages: 1 })
    .rotate()
    .flatten({ background: '#ffffff' })
    .toColourspace('srgb');
}

/** The InvalidArgumentError for a decode that failed after the header passed. */
export function decodeFailure(header: InputImageHeader, bytes: Uint8Array, err: unknown): InvalidArgumentError {
  return new InvalidArgumentError('init_image', `truncated or corrupt ${header.format} data (${header.width}x${header.height} declared, ${bytes.length} bytes): ${firstLine(err)}`);
}
