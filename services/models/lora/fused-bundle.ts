/**
 * A LoRA fused into an SDXL bundle at load: reads the adapter, fuses its modules into unet,
 * text_encoder and text_encoder_2, and writes each changed model to a private folder (model.onnx,
 * plus a copy of its external data file with the fused tensors patched in place), from which the
 * sessions are created by path.
 *
 * Why files and not buffers: onnxruntime-node 1.30 has no `externalData` session option (that is
 * onnxruntime-web only), so a model with external data loads only from a path, and a real SDXL
 * UNet (> 2 GB) cannot be one protobuf buffer anyway. Only the fused tensors are read into memory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { decodeModel, encodeModel } from '../onnx/onnx-model.js';
import { fuseLoraIntoModel, LoraFusionError } from './fuse-onnx.js';
import { parseLoraKeys, type LoraComponent, type LoraFormat, type LoraModule } from './lora-keys.js';
import { checkFiniteTensors, readSafetensors } from './safetensors.js';

export type UnmatchedPolicy = 'error' | 'warn';

export interface FuseBundleOptions {
  /** The adapter's strength (deployment option `lora_scale`, default 1). */
  readonly scale: number;
  /** Modules with no weight in the graph: fail the load (default) or only report them. */
  readonly unmatched: UnmatchedPolicy;
  /** An empty folder for the fused models; the caller removes it when the model is unloaded. */
  readonly outDir: string;
}

export interface FusedBundle {
  /** Component folder → fused model path, for the components the adapter touches. */
  readonly modelPaths: Readonly<Partial<Record<LoraComponent, string>>>;
  readonly format: LoraFormat;
  readonly modules: number;
  readonly matched: number;
  /** `<component>: <key>` of each module not found in the graph (only with `unmatched: 'warn'`). */
  readonly unmatched: readonly string[];
}

const COMPONENTS: readonly LoraComponent[] = ['text_encoder', 'text_encoder_2', 'unet'];

/** Fuses the LoRA in `loraFile` into the bundle in `bundleDir`. Errors name the LoRA file. */
export function fuseLoraIntoBundle(bundleDir: string, loraFile: string, options: FuseBundleOptions): FusedBundle {
  const file = readSafetensors(loraFile);
  checkFiniteTensors(file, loraFile);
  const lora = parseLoraKeys(file, loraFile);
  const byComponent = new Map<LoraComponent, LoraModule[]>();
  for (const m of lora.modules) byComponent.set(m.component, [...(byComponent.get(m.component) ?? []), m]);
  const modelPaths: Partial<Record<LoraComponent, string>> = {};
  const unmatched: string[] = [];
  let matched = 0;
  for (const component of COMPONENTS) {
    const modules = byComponent.get(component);
    if (!modules) continue;
    const srcDir = path.join(bundleDir, component);
    const model = decodeModel(fs.readFileSync(path.join(srcDir, 'model.onnx')));
    const result = fuseLoraIntoModel(model, srcDir, modules, options.scale);
    matched += result.fused.length;
    unmatched.push(...result.unmatched.map((m) => `${component}: ${m.key}`));
    if (result.fused.length === 0) continue;
    const outDir = path.join(options.outDir, component);
    fs.mkdirSync(outDir, { recursive: true });
    const locations = new Set((model.graph?.initializer ?? []).filter((t) => t.data_location === 1)
      .map((t) => t.external_data?.find((e) => e.key === 'location')?.value ?? ''));
    for (const location of locations) fs.copyFileSync(path.join(srcDir, location), path.join(outDir, location), fs.constants.COPYFILE_FICLONE);
    for (const p of result.patches) {
      const fd = fs.openSync(path.join(outDir, p.location), 'r+');
      try {
        fs.writeSync(fd, p.bytes, 0, p.bytes.length, p.offset);
      } finally {
        fs.closeSync(fd);
      }
    }
    const file = path.join(outDir, 'model.onnx');
    fs.writeFileSync(file, encodeModel(model));
    modelPaths[component] = file;
  }
  if (unmatched.length && options.unmatched === 'error') {
    throw new LoraFusionError(`${loraFile}: ${unmatched.length} of ${lora.modules.length} LoRA modules match no weight in ${bundleDir} (set the deployment option lora_unmatched: warn to serve anyway): ${unmatched.slice(0, 20).join(', ')}${unmatched.length > 20 ? ', …' : ''}`);
  }
  return { modelPaths, format: lora.format, modules: lora.modules.length, matched, unmatched };
}

/**
 * Fuses the LoRA into the bundle folder `bundleDir` itself, replacing the models it changes (a
 * copy the caller owns, e.g. `orrery models quantize`'s staging folder; unmatched modules are an
 * error). The fused models are written beside it first and renamed over the originals.
 */
export function fuseLoraIntoBundleFolder(bundleDir: string, loraFile: string, scale: number): FusedBundle {
  const outDir = fs.mkdtempSync(path.join(path.dirname(bundleDir), '.fuse-'));
  try {
    const fused = fuseLoraIntoBundle(bundleDir, loraFile, { scale, unmatched: 'error', outDir });
    const modelPaths: Partial<Record<LoraComponent, string>> = {};
    for (const component of Object.keys(fused.modelPaths) as LoraComponent[]) {
      for (const f of fs.readdirSync(path.join(outDir, component))) fs.renameSync(path.join(outDir, component, f), path.join(bundleDir, component, f));
      modelPaths[component] = path.join(bundleDir, component, 'model.onnx');
    }
    return { ...fused, modelPaths };
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}
