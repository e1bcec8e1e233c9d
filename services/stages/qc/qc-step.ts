/**
 * The quality gate as a step of the stage it checks (issue 13): the stage's final pixels are read
 * once as raw RGB(A), checked (qc-check.ts), and encoded from those same pixels, so the check costs
 * one pixel copy and the detector, never a decode. Runs in the replica's executor thread, like the
 * stage itself (never on the router or the replica's main thread).
 */
import sharp from 'sharp';
import type { QcVerdictData } from '../../common/qc-verdict.js';
import type { QcRequest } from '../../common/work-item.js';
import { checkPlanet } from './qc-check.js';

export interface CheckedPixels {
  /** The same pixels, ready to encode. */
  readonly image: sharp.Sharp;
  readonly verdict: QcVerdictData;
}

/** Renders `image` to raw pixels, checks them against `qc.options`, and hands the pixels back for encoding. */
export async function checkBeforeEncode(image: sharp.Sharp, qc: QcRequest): Promise<CheckedPixels> {
  const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const verdict = checkPlanet({ data, width, height, channels }, qc.options);
  return { image: sharp(data, { raw: { width, height, channels }, limitInputPixels: false }), verdict };
}
