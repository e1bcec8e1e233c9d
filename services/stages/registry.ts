/**
 * Stage implementations by name (a deployment's `stage` key). Each is required lazily, on first
 * use, so a process only loads onnxruntime-node or sharp if it runs a stage that needs them.
 */
import { ConfigError } from '../common/errors.js';
import type { Stage } from './stage.js';

// `require` rather than static imports: importing this module must stay cheap.
const STAGES: Readonly<Record<string, () => Stage>> = {
  synthetic: () => (require('./synthetic.js') as typeof import('./synthetic.js')).syntheticStage,
  texture: () => (require('./texture.js') as typeof import('./texture.js')).textureStage,
  upscaler: () => (require('./upscaler.js') as typeof import('./upscaler.js')).upscalerStage,
  sdxl: () => (require('./sdxl/sdxl-stage.js') as typeof import('./sdxl/sdxl-stage.js')).sdxlStage,
};

/** Names {@link loadStage} accepts, sorted. */
export function knownStages(): string[] {
  return Object.keys(STAGES).sort();
}

/** The stage called `name`. Throws ConfigError (key `stage`) naming it and the known stages. */
export function loadStage(name: string): Stage {
  const make = Object.hasOwn(STAGES, name) ? STAGES[name] : undefined;
  if (!make) throw new ConfigError('stage', `unknown stage "${name}" (known: ${knownStages().join(', ')})`);
  return make();
}
