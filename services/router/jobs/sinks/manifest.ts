/**
 * manifest.jsonl: exactly one JSON line per finished item of a job, written beside its outputs.
 * Keys always come in the same order so the file reads well and diffs cleanly.
 */

/** One finished item. `file` is the output's object name ('' when the item produced none). */
export interface ManifestEntry {
  custom_id: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  /** Decimal string: seeds are 64-bit and would lose precision as JSON numbers. */
  seed: string;
  /** The final prompt the item ran with (a planet prompt already rendered to text). */
  prompt: string;
  model: string;
  /** `WIDTHxHEIGHT`. */
  size: string;
  file: string;
  bytes: number;
  /** Lower-case hex SHA-256 of the file's bytes ('' when there is no file). */
  sha256: string;
  attempts: number;
  /** Why the item failed or was cancelled; '' when it succeeded. */
  error: string;
  /** The quality gate's result (pipelines with `qc`), written last and only when present. */
  qc?: ManifestQc;
}

/** An item's quality gate result in its manifest line. `seed` is the seed of the attempt kept. */
export interface ManifestQc {
  passed: boolean;
  attempts: number;
  seed: string;
  reasons: string[];
  box: { left: number; top: number; right: number; bottom: number } | null;
  area_fraction: number;
}

/** The manifest's keys, in the order every line has them. */
export const MANIFEST_KEYS = ['custom_id', 'status', 'seed', 'prompt', 'model', 'size', 'file', 'bytes', 'sha256', 'attempts', 'error'] as const satisfies readonly (keyof ManifestEntry)[];

/** One manifest line: a JSON object with the keys in {@link MANIFEST_KEYS} order (then `qc` when present), then '\n'. */
export function manifestLine(e: ManifestEntry): string {
  const ordered: Record<string, unknown> = {};
  for (const k of MANIFEST_KEYS) ordered[k] = e[k];
  if (e.qc) ordered['qc'] = e.qc;
  return `${JSON.stringify(ordered)}\n`;
}

/**
 * The entries of a manifest's text, the last line per custom_id winning should one appear twice
 * (e.g. manifests concatenated across retries). Blank and unparseable lines (a torn last line) are skipped.
 */
export function parseManifest(text: string): Map<string, ManifestEntry> {
  const entries = new Map<string, ManifestEntry>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    if (value && typeof value === 'object' && typeof (value as ManifestEntry).custom_id === 'string') {
      const e = value as ManifestEntry;
      entries.set(e.custom_id, e);
    }
  }
  return entries;
}
