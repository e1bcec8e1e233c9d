/**
 * What a converted upscaler model says about itself, in the ONNX model's `metadata_props`:
 * its scale and the value ranges of its input and output. The converter writes these keys; the
 * upscaler stage reads them at load time (ONNX Runtime's JavaScript API does not expose custom
 * metadata, so {@link readModelMetadata} walks the protobuf's top level itself, skipping the graph
 * and its weights without decoding them).
 */
import protobuf from 'protobufjs';

/** Metadata keys (stable: converted models on disk carry them). */
export const UPSCALER_METADATA = {
  kind: 'orrery.kind',
  scale: 'orrery.upscaler.scale',
  inputRange: 'orrery.upscaler.input_range',
  outputRange: 'orrery.upscaler.output_range',
  layout: 'orrery.upscaler.layout',
  source: 'orrery.upscaler.source',
} as const;

/** A converted upscaler's contract: input `input` [B,3,H,W], output `output` [B,3,H·scale,W·scale]. */
export interface UpscalerModelInfo {
  readonly scale: number;
  /** Pixel values 0…255 map linearly onto [lo, hi] (e.g. [0,255] for RDN, [0,1] for RRDN). */
  readonly inputRange: readonly [number, number];
  /** The output's nominal range, mapped back to 0…255 (values outside are clamped by the user). */
  readonly outputRange: readonly [number, number];
  /** Where the weights came from (package@version and model file). */
  readonly source: string;
}

/** The metadata_props to write for `info`. */
export function upscalerMetadata(info: UpscalerModelInfo): Record<string, string> {
  return {
    [UPSCALER_METADATA.kind]: 'upscaler',
    [UPSCALER_METADATA.scale]: String(info.scale),
    [UPSCALER_METADATA.inputRange]: info.inputRange.join(','),
    [UPSCALER_METADATA.outputRange]: info.outputRange.join(','),
    [UPSCALER_METADATA.layout]: 'NCHW',
    [UPSCALER_METADATA.source]: info.source,
  };
}

/** ONNX ModelProto.metadata_props (field 14) of serialised model bytes, without decoding the graph. */
export function readModelMetadata(bytes: Uint8Array): Map<string, string> {
  const props = new Map<string, string>();
  const r = protobuf.Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 !== 14 || (tag & 7) !== 2) {
      r.skipType(tag & 7);
      continue;
    }
    const end = r.uint32() + r.pos;
    let key = '';
    let value = '';
    while (r.pos < end) {
      const t = r.uint32();
      if (t >>> 3 === 1 && (t & 7) === 2) key = r.string();
      else if (t >>> 3 === 2 && (t & 7) === 2) value = r.string();
      else r.skipType(t & 7);
    }
    props.set(key, value);
  }
  return props;
}

function range(text: string | undefined): [number, number] | undefined {
  const [lo, hi, ...rest] = text?.split(',').map(Number) ?? [];
  if (lo === undefined || hi === undefined || rest.length > 0 || !Number.isFinite(lo) || !Number.isFinite(hi) || lo >= hi) return undefined;
  return [lo, hi];
}

/**
 * The upscaler contract in `meta`, or a string saying what is missing or malformed (the caller
 * words the error: a load failure in the stage, a conversion failure in tools).
 */
export function parseUpscalerInfo(meta: ReadonlyMap<string, string>): UpscalerModelInfo | string {
  if (meta.get(UPSCALER_METADATA.kind) !== 'upscaler') return `metadata ${UPSCALER_METADATA.kind} is not "upscaler" (not converted by convert-upscaler?)`;
  const scale = Number(meta.get(UPSCALER_METADATA.scale));
  if (!Number.isInteger(scale) || scale < 1 || scale > 16) return `metadata ${UPSCALER_METADATA.scale} must be an integer in [1, 16], got ${JSON.stringify(meta.get(UPSCALER_METADATA.scale))}`;
  const inputRange = range(meta.get(UPSCALER_METADATA.inputRange));
  const outputRange = range(meta.get(UPSCALER_METADATA.outputRange));
  if (!inputRange || !outputRange) return `metadata ${UPSCALER_METADATA.inputRange} / ${UPSCALER_METADATA.outputRange} must be "lo,hi" with lo < hi`;
  if ((meta.get(UPSCALER_METADATA.layout) ?? 'NCHW') !== 'NCHW') return `metadata ${UPSCALER_METADATA.layout} must be NCHW`;
  return { scale, inputRange, outputRange, source: meta.get(UPSCALER_METADATA.source) ?? '' };
}
