/**
 * The record a LoRA leaves in a bundle it was fused into ahead of serving
 * (`orrery models quantize --model base+lora`, folder `<base>+<lora>@<variant>`): which adapter,
 * at which strength. The loader reads it to refuse a deployment whose `lora_scale` asks for a
 * different strength than the one in the weights (a fused folder cannot change it).
 */
import fs from 'node:fs';
import path from 'node:path';

/** File name at the bundle's root (beside model_index.json, which the SDXL loader reads; it ignores this one). */
export const FUSED_LORA_RECORD = 'orrery_fused_lora.json';

export interface FusedLoraRecord {
  /** The LoRA name (`<repo>/loras/<lora>.safetensors` when it was fused). */
  readonly lora: string;
  /** The strength it was fused at (as the deployment option `lora_scale`). */
  readonly loraScale: number;
  /** LoRA modules fused into the weights. */
  readonly loraModulesFused: number;
}

export function writeFusedLoraRecord(bundleDir: string, r: FusedLoraRecord): void {
  const json = { lora: r.lora, lora_scale: r.loraScale, lora_modules_fused: r.loraModulesFused };
  fs.writeFileSync(path.join(bundleDir, FUSED_LORA_RECORD), `${JSON.stringify(json, null, 2)}\n`);
}

/** The record of `bundleDir`, or undefined when it has none (a folder made by hand) or it is unreadable. */
export function readFusedLoraRecord(bundleDir: string): FusedLoraRecord | undefined {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(path.join(bundleDir, FUSED_LORA_RECORD), 'utf8'));
  } catch {
    return undefined;
  }
  const o = json as Record<string, unknown>;
  if (typeof o?.lora !== 'string' || typeof o.lora_scale !== 'number' || typeof o.lora_modules_fused !== 'number') return undefined;
  return { lora: o.lora, loraScale: o.lora_scale, loraModulesFused: o.lora_modules_fused };
}
