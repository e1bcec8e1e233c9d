/**
 * The quality gate's verdict on one image as it travels: from the replica that checked it (in the
 * batch reply) to the router (re-rolls, the public `Image.qc`, job manifests). The check itself is
 * services/stages/qc/qc-check.ts; its QcVerdict has this shape.
 */

/** The planet's bounding box in pixels of the checked image (right/bottom exclusive). */
export interface QcBox {
  readonly left: number;
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
}

export interface QcVerdictData {
  readonly passed: boolean;
  /** Why it failed (`no planet found`, `planet extends 37 px into the left margin`, …); empty when passed. */
  readonly reasons: readonly string[];
  /** Absent when no planet was found. */
  readonly box?: QcBox;
  /** Box area / image area; 0 when no planet was found. */
  readonly areaFraction: number;
}

/** The wire form (worker.proto ItemResult.qc_json); '' for none. */
export function encodeQcVerdict(v: QcVerdictData | undefined): string {
  if (!v) return '';
  return JSON.stringify({ passed: v.passed, reasons: v.reasons, ...(v.box ? { box: v.box } : {}), areaFraction: v.areaFraction });
}

/** The verdict of a wire form ('' → undefined). Throws a plain Error for a form no replica of this version writes. */
export function decodeQcVerdict(json: string): QcVerdictData | undefined {
  if (!json) return undefined;
  const v = JSON.parse(json) as Partial<QcVerdictData>;
  if (typeof v.passed !== 'boolean' || !Array.isArray(v.reasons) || typeof v.areaFraction !== 'number') throw new Error(`malformed QC verdict ${json.slice(0, 200)}`);
  return { passed: v.passed, reasons: v.reasons.map(String), ...(v.box ? { box: v.box } : {}), areaFraction: v.areaFraction };
}

/**
 * The `QC` field of the image's parameters text (generation-parameters.ts withQcVerdict):
 * `passed (attempt 2)`, or `failed (attempt 3): no planet found; planet too small: 0.4% < 2%`.
 */
export function qcVerdictText(v: QcVerdictData, attempt: number): string {
  return v.passed ? `passed (attempt ${attempt})` : `failed (attempt ${attempt}): ${v.reasons.join('; ')}`;
}
