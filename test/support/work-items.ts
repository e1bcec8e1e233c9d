/** Builders for the work items stages run and the run context they get (services/stages/stage.ts). */
import type { WorkItemData } from '../../services/common/work-item.js';
import type { RunContext } from '../../services/stages/stage.js';

/** A work item with test defaults (a 64x64 png txt2img image of request `req-1`); `over` wins. */
export function workItem(over: Partial<WorkItemData> = {}): WorkItemData {
  return {
    requestId: 'req-1', imageIndex: 0, seed: 1n, prompt: 'deep blue planet with frosted cloudy zones', negativePrompt: '',
    steps: 1, guidanceScale: 5, width: 64, height: 64, strength: 0.3, outputFormat: 'png', params: {}, intermediate: false,
    ...over,
  };
}

/**
 * A run context: `progress` collects [item, step, total] events (or is called), `batch` and `items`
 * abort controllers stand for the batch's and each item's cancellation.
 */
export function runContext(opts: {
  progress?: Array<[number, number, number]> | ((i: number, step: number, total: number) => void);
  batch?: AbortController;
  items?: ReadonlyArray<AbortController | AbortSignal | undefined>;
} = {}): RunContext {
  const never = new AbortController().signal;
  const p = opts.progress;
  return {
    signal: opts.batch?.signal ?? never,
    itemSignal: (i) => {
      const s = opts.items?.[i];
      return s instanceof AbortController ? s.signal : s ?? never;
    },
    progress: typeof p === 'function' ? p : (i, step, total) => p?.push([i, step, total]),
  };
}
