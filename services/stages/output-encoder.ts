/**
 * The one output encoder every image stage uses (sdxl, upscaler, texture): PNG, WebP or JPEG with
 * the image's generation parameters in it, and the reader of those parameters in a stage's input.
 *
 * - PNG: sharp at the deployment's {@link PngOptions}, then a `parameters` text chunk
 *   (png-parameters.ts). Images that feed the next pipeline stage are always stored at level 0
 *   without filtering ({@link INTERMEDIATE_PNG}): the next stage decodes them at once, and the encode
 *   is on the batch's critical path.
 * - JPEG: quality {@link JPEG_QUALITY} with mozjpeg; WebP: quality {@link WEBP_QUALITY}. The text goes
 *   in EXIF UserComment (what AUTOMATIC1111 reads; ASCII only) and XMP dc:description (exact), see
 *   metadata-text.ts.
 *
 * Same pixels and text → same bytes: fixed settings, no timestamps (libvips writes none).
 */
import sharp from 'sharp';
import { ConfigError } from '../common/errors.js';
import { qcVerdictText, type QcVerdictData } from '../common/qc-verdict.js';
import type { OutputFormat, QcRequest } from '../common/work-item.js';
import { withQcVerdict } from './generation-parameters.js';
import { readExifUserComment, readXmpDescription, xmpWithDescription } from './metadata-text.js';
import { PNG_SIGNATURE, readTextChunk, withTextChunk } from './png-parameters.js';
import { checkPlanet } from './qc/qc-check.js';
import { checkBeforeEncode } from './qc/qc-step.js';
import type { StageOutput } from './stage.js';

/**
 * How PNG outputs for the client are compressed (sharp's `compressionLevel` and
 * `adaptiveFiltering`), from the deployment options `png_compression_level` and
 * `png_adaptive_filtering`. The default, level 3 with adaptive filtering, gives files 46–86 %
 * smaller than stored pixels (2.8 MiB at 1536x640) for ~30–55 ms an image on one CPU thread;
 * sharp's own default, level 6 without filtering, takes ~45 ms for files only 4–23 % smaller;
 * level 0 stores the pixels in ~3 ms. Figures: bench/results/sdxl.md, "PNG encode".
 */
export interface PngOptions {
  /** `png_compression_level`: zlib level 0–9; default 3. */
  readonly compressionLevel: number;
  /** `png_adaptive_filtering`: per-row PNG filters; default true. */
  readonly adaptiveFiltering: boolean;
}

/** How intermediate images (the next stage's input) are encoded: stored, no filtering. */
export const INTERMEDIATE_PNG: PngOptions = Object.freeze({ compressionLevel: 0, adaptiveFiltering: false });

/**
 * JPEG quality, with mozjpeg (trellis quantisation, optimised progressive scans). These were the
 * sdxl stage's settings, the only ones chosen on purpose (the upscaler and texture stages wrote
 * quality 90 with libjpeg's defaults, as written once and never revisited): the final image is the
 * product, so the higher quality of the two; mozjpeg gives smaller files than libjpeg at the same
 * quality, for more CPU per encode, which runs after the batch has released the device
 * (RunContext.computeDone). Same settings in every stage: a pipeline's output no longer depends on
 * which stage happens to be last.
 */
export const JPEG_QUALITY = 92;
/** WebP (lossy) quality: the sdxl stage's 92, for the reasons of {@link JPEG_QUALITY}. */
export const WEBP_QUALITY = 92;

const MIME: Readonly<Record<OutputFormat, string>> = { png: 'image/png', webp: 'image/webp', jpeg: 'image/jpeg' };

/** Reads `png_compression_level` and `png_adaptive_filtering` from a deployment's options. Throws ConfigError naming the key. */
export function compilePngOptions(o: Readonly<Record<string, unknown>>): PngOptions {
  const level = o['png_compression_level'] ?? 3;
  if (typeof level !== 'number' || !Number.isInteger(level) || level < 0 || level > 9) {
    throw new ConfigError('options.png_compression_level', `must be an integer from 0 to 9, got ${JSON.stringify(level)}`);
  }
  const filtering = o['png_adaptive_filtering'] ?? true;
  if (typeof filtering !== 'boolean') throw new ConfigError('options.png_adaptive_filtering', 'must be true or false');
  return Object.freeze({ compressionLevel: level, adaptiveFiltering: filtering });
}

/** What to encode an image as. */
export interface EncodeTarget {
  /** The client's format; ignored for an intermediate image (always PNG). */
  readonly format: OutputFormat;
  /** The image feeds the next pipeline stage: PNG at {@link INTERMEDIATE_PNG}. */
  readonly intermediate?: boolean;
  /** The deployment's PNG options (compilePngOptions). */
  readonly png: PngOptions;
  /** The parameters text (generation-parameters.ts); '' writes none. */
  readonly parameters: string;
  /**
   * The item's quality gate (work-item.ts QcRequest): the pixels are checked before encoding
   * (qc/qc-step.ts), the verdict is returned as StageOutput.qc and written in the text's `QC` field.
   */
  readonly qc?: QcRequest;
}

/** A sharp pipeline over interleaved 8-bit RGB pixels. */
export function rawRgb(data: Uint8Array, width: number, height: number): sharp.Sharp {
  return sharp(data, { raw: { width, height, channels: 3 }, limitInputPixels: false });
}

/**
 * Encodes `image` (any sharp pipeline: raw pixels, a resize, …) per `target`. The size returned is
 * the encoded image's. Throws sharp's error when encoding fails.
 */
export async function encodeOutput(pixels: sharp.Sharp, target: EncodeTarget): Promise<StageOutput> {
  if (!target.qc) return encodeChecked(pixels, target, undefined);
  const checked = await checkBeforeEncode(pixels, target.qc);
  return encodeChecked(checked.image, target, checked.verdict);
}

/**
 * {@link encodeOutput} for interleaved 8-bit RGB pixels (what the sdxl and texture stages hold):
 * the quality gate checks them where they are, without the raw copy a sharp pipeline needs.
 */
export async function encodeRgb(data: Uint8Array, width: number, height: number, target: EncodeTarget): Promise<StageOutput> {
  const verdict = target.qc ? checkPlanet({ data, width, height, channels: 3 }, target.qc.options) : undefined;
  return encodeChecked(rawRgb(data, width, height), target, verdict);
}

/** Encodes `image`, with the gate's `verdict` (when checked) in the text's `QC` field and in the output. */
async function encodeChecked(image: sharp.Sharp, target: EncodeTarget, verdict: QcVerdictData | undefined): Promise<StageOutput> {
  const format: OutputFormat = target.intermediate ? 'png' : target.format;
  const text = verdict && target.qc && target.parameters ? withQcVerdict(target.parameters, qcVerdictText(verdict, target.qc.attempt)) : target.parameters;
  let out: sharp.Sharp;
  if (format === 'png') {
    const { compressionLevel, adaptiveFiltering } = target.intermediate ? INTERMEDIATE_PNG : target.png;
    out = image.png({ compressionLevel, adaptiveFiltering });
  } else {
    const tagged = text ? image.withExif({ IFD2: { UserComment: text } }).withXmp(xmpWithDescription(text)) : image;
    out = format === 'webp' ? tagged.webp({ quality: WEBP_QUALITY }) : tagged.jpeg({ quality: JPEG_QUALITY, mozjpeg: true });
  }
  const { data, info } = await out.toBuffer({ resolveWithObject: true });
  return {
    data: format === 'png' && text ? withTextChunk(data, 'parameters', text) : data,
    width: info.width, height: info.height, mimeType: MIME[format], ...(verdict ? { qc: verdict } : {}),
  };
}

/**
 * The parameters text an image carries: a PNG's `parameters` chunk; for other formats the XMP
 * description, else the EXIF UserComment. Undefined when there is none or the bytes are not an
 * image sharp reads (the stage's decode reports that).
 */
export async function readParameters(bytes: Uint8Array | undefined): Promise<string | undefined> {
  if (!bytes || bytes.byteLength < 8) return undefined;
  if (Buffer.from(bytes.buffer, bytes.byteOffset, 8).equals(PNG_SIGNATURE)) {
    try {
      return readTextChunk(bytes, 'parameters');
    } catch {
      return undefined;
    }
  }
  try {
    const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    const xmp = meta.xmpAsString ?? meta.xmp?.toString('utf8');
    return (xmp ? readXmpDescription(xmp) : undefined) ?? (meta.exif ? readExifUserComment(meta.exif) : undefined);
  } catch {
    return undefined;
  }
}
