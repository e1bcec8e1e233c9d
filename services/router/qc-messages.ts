/** The quality gate's results as public API messages (image_service.proto QcResult, GenerateEvent.QcRejected). */
import type { QcBox, QcVerdictData } from '../common/qc-verdict.js';
import type { ImageQc, QcRejection } from './pipeline-runner.js';

function boxMessage(box: QcBox | undefined) {
  return box ? { box: { left: box.left, top: box.top, right: box.right, bottom: box.bottom } } : {};
}

function verdictFields(v: QcVerdictData) {
  return { ...boxMessage(v.box), area_fraction: v.areaFraction, reasons: [...v.reasons] };
}

/** Image.qc of an image made with `seed` (the seed of its last attempt). */
export function qcResultMessage(qc: ImageQc, seed: bigint) {
  return { passed: qc.verdict.passed, attempts: qc.attempts, seed: seed.toString(), ...verdictFields(qc.verdict), checked_width: qc.checkedWidth, checked_height: qc.checkedHeight };
}

export function qcRejectedMessage(r: QcRejection) {
  return {
    image_index: r.imageIndex, attempt: r.attempt, seed: r.seed.toString(), ...verdictFields(r.verdict), rerolled: r.next !== undefined,
    ...(r.next ? { next_attempt: r.next.attempt, next_seed: r.next.seed.toString() } : {}),
  };
}
