/**
 * LoRA state-dict keys → modules to fuse. Two families:
 *
 * - **kohya** (sd-scripts): `lora_unet_<module>`, `lora_te1_<module>`, `lora_te2_<module>`
 *   (`lora_te_` for single-encoder models = text_encoder), each with `.lora_down.weight`,
 *   `.lora_up.weight` and an optional scalar `.alpha`. Module names are flattened (`.` → `_`);
 *   SDXL files name UNet modules the SGM way (see sgm-names.ts), others the diffusers way.
 * - **diffusers / PEFT**: `unet.<module>.lora_A.weight` / `.lora_B.weight` (also with PEFT's
 *   `base_model.model.` prefix or an adapter name `lora_A.default.weight`), `text_encoder.…`,
 *   `text_encoder_2.…`; the legacy diffusers form `….lora.down.weight` / `….lora.up.weight` and
 *   attention processors `….processor.to_q_lora.down.weight`. Alpha: a `<module>.alpha` tensor,
 *   else the safetensors metadata `lora_adapter_metadata` (diffusers: `unet.lora_alpha`,
 *   `unet.alpha_pattern`, …) or `lora_alpha`, else the rank (scale 1).
 *
 * The result names each module by flattened candidates; fusion looks them up in the ONNX graph.
 */
import { OrreryError } from '../../common/errors.js';
import type { SafeTensor, SafetensorsFile } from './safetensors.js';
import { sgmToDiffusers } from './sgm-names.js';

export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';
export type LoraFormat = 'kohya' | 'peft' | 'peft-legacy';

export interface LoraModule {
  /** The module's key prefix in the file (for messages). */
  readonly key: string;
  readonly component: LoraComponent;
  /** Flattened (`.` → `_`) module names to look up, in preference order. */
  readonly candidates: readonly string[];
  /** [rank, in] or [rank, in, kh, kw]. */
  readonly down: SafeTensor;
  /** [out, rank] or [out, rank, 1, 1]. */
  readonly up: SafeTensor;
  readonly rank: number;
  readonly alpha: number;
}

export class LoraFormatError extends OrreryError {
  constructor(readonly file: string, detail: string) {
    super('ORRERY_ERR_MODEL_LOAD_FAILED', `${file}: ${detail}`);
  }
}

export const flatten = (dotted: string): string => dotted.replace(/\./g, '_');

const KOHYA = /^lora_(unet|te1|te2|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const KOHYA_COMPONENT: Record<string, LoraComponent> = { unet: 'unet', te1: 'text_encoder', te: 'text_encoder', te2: 'text_encoder_2' };
const PEFT = /^(?:base_model\.model\.)?(?:(unet|text_encoder|text_encoder_2)\.)?(.+?)\.(lora_A|lora_B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;
const LEGACY = /^(?:(unet|text_encoder|text_encoder_2)\.)?(.+?)\.lora\.(down|up)\.weight$/;
const PROCESSOR = /^(?:(unet|text_encoder|text_encoder_2)\.)?(.+?)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
const ALPHA = /^(?:base_model\.model\.)?(?:(unet|text_encoder|text_encoder_2)\.)?(.+)\.alpha$/;

interface Partial { component: LoraComponent; module: string; sgm: boolean; down?: SafeTensor; up?: SafeTensor; alpha?: number }

/** The component of an unprefixed PEFT/diffusers module name. */
function guessComponent(module: string): LoraComponent {
  return module.startsWith('text_model.') ? 'text_encoder' : 'unet';
}

/** Groups the tensors of `file` into modules; throws LoraFormatError for keys of neither format or half-present modules. */
export function parseLoraKeys(st: SafetensorsFile, file: string): { format: LoraFormat; modules: LoraModule[] } {
  const parts = new Map<string, Partial>();
  const unknown: string[] = [];
  const formats = new Set<LoraFormat>();
  const part = (key: string, component: LoraComponent, module: string, sgm = false): Partial => {
    let p = parts.get(key);
    if (!p) parts.set(key, (p = { component, module, sgm }));
    return p;
  };
  for (const [name, t] of st.tensors) {
    let m = KOHYA.exec(name);
    if (m) {
      formats.add('kohya');
      const p = part(`lora_${m[1]}_${m[2]}`, KOHYA_COMPONENT[m[1]!]!, m[2]!, m[1] === 'unet');
      if (m[3] === 'alpha') p.alpha = t.data[0];
      else if (m[3] === 'lora_down.weight') p.down = t;
      else p.up = t;
      continue;
    }
    if ((m = PEFT.exec(name))) {
      formats.add('peft');
      const component = (m[1] as LoraComponent | undefined) ?? guessComponent(m[2]!);
      const p = part(`${component}.${m[2]}`, component, m[2]!);
      if (m[3] === 'lora_A') p.down = t; else p.up = t;
      continue;
    }
    if ((m = PROCESSOR.exec(name))) {
      formats.add('peft-legacy');
      const component = (m[1] as LoraComponent | undefined) ?? 'unet';
      const module = `${m[2]}.${m[3] === 'to_out' ? 'to_out.0' : m[3]}`;
      const p = part(`${component}.${module}`, component, module);
      if (m[4] === 'down') p.down = t; else p.up = t;
      continue;
    }
    if ((m = LEGACY.exec(name))) {
      formats.add('peft-legacy');
      const component = (m[1] as LoraComponent | undefined) ?? guessComponent(m[2]!);
      const p = part(`${component}.${m[2]}`, component, m[2]!);
      if (m[3] === 'down') p.down = t; else p.up = t;
      continue;
    }
    unknown.push(name);
  }
  // Alpha tensors of the diffusers family name a module already seen.
  const stillUnknown = unknown.filter((name) => {
    const m = ALPHA.exec(name);
    if (!m) return true;
    const component = (m[1] as LoraComponent | undefined) ?? guessComponent(m[2]!);
    const p = parts.get(`${component}.${m[2]}`);
    if (!p) return true;
    p.alpha = st.tensors.get(name)!.data[0];
    return false;
  });
  if (stillUnknown.length) {
    throw new LoraFormatError(file, `${stillUnknown.length} tensor(s) are neither kohya (lora_unet_*/lora_te1_*/lora_te2_* .lora_down.weight/.lora_up.weight/.alpha) nor diffusers/PEFT (….lora_A.weight/….lora_B.weight, ….lora.down.weight/….lora.up.weight) keys: ${stillUnknown.slice(0, 8).join(', ')}${stillUnknown.length > 8 ? ', …' : ''}`);
  }
  if (parts.size === 0) throw new LoraFormatError(file, 'holds no LoRA tensors');
  if (formats.size > 1) throw new LoraFormatError(file, `mixes key formats (${[...formats].join(', ')})`);
  const format = [...formats][0]!;
  const meta = adapterMetadata(st.metadata, file);
  const modules: LoraModule[] = [];
  for (const [key, p] of parts) {
    if (!p.down || !p.up) throw new LoraFormatError(file, `module ${key} has ${p.down ? 'no up' : 'no down'} weight (a LoRA module needs both)`);
    const rank = p.down.shape[0]!;
    if (p.up.shape[1] !== rank) throw new LoraFormatError(file, `module ${key}: down is [${p.down.shape.join(', ')}] but up is [${p.up.shape.join(', ')}]; their ranks differ`);
    const flat = flatten(p.module);
    const mapped = p.sgm ? sgmToDiffusers(flat) : undefined;
    const alpha = p.alpha ?? metadataAlpha(meta, p.component, p.module) ?? rank;
    modules.push({ key, component: p.component, candidates: mapped ? [mapped, flat] : [flat], down: p.down, up: p.up, rank, alpha });
  }
  return { format, modules };
}

function adapterMetadata(metadata: Readonly<Record<string, string>>, file: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (metadata['lora_alpha'] !== undefined) out['lora_alpha'] = Number(metadata['lora_alpha']);
  const raw = metadata['lora_adapter_metadata'];
  if (raw !== undefined) {
    try {
      Object.assign(out, JSON.parse(raw) as Record<string, unknown>);
    } catch {
      throw new LoraFormatError(file, '__metadata__.lora_adapter_metadata is not JSON');
    }
  }
  return out;
}

/** `<component>.alpha_pattern` (suffix match on the module) → `<component>.lora_alpha` → `lora_alpha`. */
function metadataAlpha(meta: Record<string, unknown>, component: LoraComponent, module: string): number | undefined {
  const pattern = meta[`${component}.alpha_pattern`] ?? meta['alpha_pattern'];
  if (pattern && typeof pattern === 'object') {
    for (const [suffix, a] of Object.entries(pattern)) if ((module === suffix || module.endsWith(`.${suffix}`)) && typeof a === 'number') return a;
  }
  const a = meta[`${component}.lora_alpha`] ?? meta['lora_alpha'];
  return typeof a === 'number' && Number.isFinite(a) ? a : undefined;
}
