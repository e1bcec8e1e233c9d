/**
 * The spatial quality check: is the planet inside its region, with its margins, and of an
 * accepted size? A pure function of pixels and compiled options → verdict, so a replica can run
 * it after any stage and the re-roll loop can call it per attempt.
 */
import { detectPlanet, type PixelBox, type RawImage } from './planet-detect.js';
import type { QcOptions } from './qc-config.js';

export interface QcVerdict {
  readonly passed: boolean;
  /**
   * Why it failed, in the words: `no planet found`, `planet extends 37 px into the left
   * margin`, `planet too small: 0.4% < 2%`, `planet too large: 64.3% > 60%`. Empty when passed.
   */
  readonly reasons: readonly string[];
  /** The planet's bounding box in pixels (right/bottom exclusive), when one was found. */
  readonly box?: PixelBox;
  /** Box area / image area; 0 when no planet was found. */
  readonly areaFraction: number;
}

/** The region's bounds in pixels: margins are rounded to whole pixels. */
export function regionBounds(width: number, height: number, opts: QcOptions): PixelBox {
  const r = opts.planetRegion;
  return {
    left: Math.round(r.left * width),
    right: width - Math.round(r.right * width),
    top: Math.round(r.top * height),
    bottom: height - Math.round(r.bottom * height),
  };
}

/** A fraction as a percentage with at most one decimal: 0.004 → "0.4%", 0.02 → "2%". */
export function formatPercent(fraction: number): string {
  return `${Number((fraction * 100).toFixed(1))}%`;
}

/** The verdict for a known box (or none): the rule alone, shared by checkPlanet and the evaluation set's labels. */
export function judgeBox(box: PixelBox | undefined, width: number, height: number, opts: QcOptions): QcVerdict {
  if (!box) return { passed: false, reasons: ['no planet found'], areaFraction: 0 };
  const reasons: string[] = [];
  const region = regionBounds(width, height, opts);
  const into = (px: number, side: string): void => {
    if (px > 0) reasons.push(`planet extends ${px} px into the ${side} margin`);
  };
  into(region.left - box.left, 'left');
  into(box.right - region.right, 'right');
  into(region.top - box.top, 'top');
  into(box.bottom - region.bottom, 'bottom');
  const areaFraction = ((box.right - box.left) * (box.bottom - box.top)) / (width * height);
  if (areaFraction < opts.minAreaFraction) reasons.push(`planet too small: ${formatPercent(areaFraction)} < ${formatPercent(opts.minAreaFraction)}`);
  if (areaFraction > opts.maxAreaFraction) reasons.push(`planet too large: ${formatPercent(areaFraction)} > ${formatPercent(opts.maxAreaFraction)}`);
  return { passed: reasons.length === 0, reasons, box, areaFraction };
}

/** Checks one image (raw RGB or RGBA pixels) against the options' region and area limits. */
export function checkPlanet(pixels: RawImage, opts: QcOptions): QcVerdict {
  const found = detectPlanet(pixels);
  return judgeBox(found.found ? found.box : undefined, pixels.width, pixels.height, opts);
}
