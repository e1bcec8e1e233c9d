/**
 * Tiny LoRA adapters for the tiny SDXL bundle, in the three key formats real adapters use:
 * `kohya` (sd-scripts; UNet modules under their SGM names, as SDXL kohya files name them, or
 * flattened diffusers names with `sgmNames: false`), `peft` (diffusers/PEFT `lora_A`/`lora_B`,
 * alpha in `lora_adapter_metadata`) and `peft-legacy` (`lora.down`/`lora.up`, alpha = rank).
 *
 * The targets are real modules of the tiny UNet (attention projections, the GEGLU projection,
 * the resnet's 3×3 conv1) and of both text encoders. Weights are seeded: the same arguments write
 * the same bytes. The returned modules (diffusers names, float32 values) let a test build the
 * unfused reference graph without going through the parser.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fromHalf, float32ToHalf } from '../onnx/float16.js';
import { encodeSafetensors } from '../lora/safetensors.js';
import { diffusersToSgm } from '../lora/sgm-names.js';
import type { LoraComponent, LoraFormat } from '../lora/lora-keys.js';
import { TINY_CROSS_ATTENTION_DIM, TINY_SDXL_DIMS as D } from './dims.js';
import { randomValues } from './net.js';

export interface TinyLoraTarget {
  readonly component: LoraComponent;
  /** The diffusers / transformers module name, e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`. */
  readonly module: string;
  readonly inDim: number;
  readonly outDim: number;
  /** Conv kernel size (absent: a Linear). */
  readonly kernel?: number;
}

const TB = 'down_blocks.0.attentions.0.transformer_blocks.0';
const C = D.unetChannels;

/** The default targets: every kind of layer a real SDXL LoRA touches, in all three models. */
export const TINY_LORA_TARGETS: readonly TinyLoraTarget[] = [
  { component: 'unet', module: `${TB}.attn1.to_q`, inDim: C, outDim: C },
  { component: 'unet', module: `${TB}.attn1.to_v`, inDim: C, outDim: C },
  { component: 'unet', module: `${TB}.attn2.to_k`, inDim: TINY_CROSS_ATTENTION_DIM, outDim: C },
  { component: 'unet', module: `${TB}.attn2.to_out.0`, inDim: C, outDim: C },
  { component: 'unet', module: `${TB}.ff.net.0.proj`, inDim: C, outDim: 8 * C },
  { component: 'unet', module: 'down_blocks.0.attentions.0.proj_in', inDim: C, outDim: C },
  { component: 'unet', module: 'down_blocks.0.resnets.0.conv1', inDim: C, outDim: C, kernel: 3 },
  { component: 'unet', module: 'down_blocks.0.resnets.0.time_emb_proj', inDim: D.timeEmbedDim, outDim: C },
  { component: 'text_encoder', module: 'text_model.encoder.layers.0.self_attn.q_proj', inDim: D.hiddenSize1, outDim: D.hiddenSize1 },
  { component: 'text_encoder', module: 'text_model.encoder.layers.11.mlp.fc1', inDim: D.hiddenSize1, outDim: D.hiddenSize1 },
  { component: 'text_encoder_2', module: 'text_model.encoder.layers.0.self_attn.v_proj', inDim: D.hiddenSize2, outDim: D.hiddenSize2 },
  { component: 'text_encoder_2', module: 'text_model.encoder.layers.31.self_attn.out_proj', inDim: D.hiddenSize2, outDim: D.hiddenSize2 },
];

export interface TinyLoraOptions {
  readonly format: LoraFormat;
  readonly seed?: number;
  readonly rank?: number;
  /** Stored alpha (kohya `.alpha`, PEFT metadata); ignored by `peft-legacy` (alpha = rank). Default: rank. */
  readonly alpha?: number;
  /** Tensor dtype in the file (default F32). */
  readonly dtype?: 'F32' | 'F16';
  /** kohya only: UNet keys under SGM names (default true, as SDXL kohya files). */
  readonly sgmNames?: boolean;
  readonly targets?: readonly TinyLoraTarget[];
  /** Extra modules with no counterpart in the graph (to test unmatched-module reporting). */
  readonly bogusModules?: readonly string[];
}

export interface TinyLoraModule extends TinyLoraTarget {
  /** [rank, in·k²] values (rows of the down projection). */
  readonly down: Float32Array;
  /** [out, rank] values. */
  readonly up: Float32Array;
  readonly rank: number;
  /** alpha / rank as the file states it. */
  readonly factor: number;
}

/** Writes the adapter to `file` (folders created) and returns its modules. */
export function writeTinyLora(file: string, options: TinyLoraOptions): TinyLoraModule[] {
  const rank = options.rank ?? 4;
  const seed = options.seed ?? 1;
  const alpha = options.format === 'peft-legacy' ? rank : (options.alpha ?? rank);
  const tensors: Record<string, { data: Float32Array; shape: number[]; dtype: 'F32' | 'F16' }> = {};
  const dtype = options.dtype ?? 'F32';
  const modules: TinyLoraModule[] = [];
  const targets = [...(options.targets ?? TINY_LORA_TARGETS)];
  const bogus = (options.bogusModules ?? []).map((module): TinyLoraTarget => ({ component: 'unet', module, inDim: C, outDim: C }));
  for (const t of [...targets, ...bogus]) {
    const k = t.kernel ?? 1;
    const cols = t.inDim * k * k;
    // Deltas of about half the weights' own scale: different adapters give visibly different images.
    const down = randomValues(seed, `${t.module}.down`, rank * cols, 1 / Math.sqrt(cols));
    const up = randomValues(seed, `${t.module}.up`, t.outDim * rank, (0.5 / Math.sqrt(rank)) * (rank / alpha));
    const downShape = t.kernel ? [rank, t.inDim, k, k] : [rank, t.inDim];
    const upShape = t.kernel ? [t.outDim, rank, 1, 1] : [t.outDim, rank];
    const keys = keysOf(t, options);
    tensors[keys.down] = { data: down, shape: downShape, dtype };
    tensors[keys.up] = { data: up, shape: upShape, dtype };
    if (keys.alpha) tensors[keys.alpha] = { data: Float32Array.of(alpha), shape: [], dtype: 'F32' };
    if (!bogus.includes(t)) modules.push({ ...t, down, up, rank, factor: alpha / rank });
  }
  const metadata: Record<string, string> = { format: 'pt' };
  if (options.format === 'peft') {
    const meta: Record<string, number> = {};
    for (const c of ['unet', 'text_encoder', 'text_encoder_2']) { meta[`${c}.lora_alpha`] = alpha; meta[`${c}.r`] = rank; }
    metadata['lora_adapter_metadata'] = JSON.stringify(meta);
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, encodeSafetensors(tensors, metadata, float32ToHalf));
  if (dtype === 'F16') {
    // The file holds rounded values; return what a reader gets.
    for (const m of modules) { roundHalf(m.down); roundHalf(m.up); }
  }
  return modules;
}

function roundHalf(v: Float32Array): void {
  const bits = float32ToHalf(v);
  for (let i = 0; i < v.length; i++) v[i] = fromHalf(bits[i]!);
}

function keysOf(t: TinyLoraTarget, o: TinyLoraOptions): { down: string; up: string; alpha?: string } {
  if (o.format === 'kohya') {
    const flat = t.module.replace(/\./g, '_');
    const prefix = t.component === 'unet' ? 'lora_unet' : t.component === 'text_encoder' ? 'lora_te1' : 'lora_te2';
    const name = t.component === 'unet' && (o.sgmNames ?? true) ? (diffusersToSgm(flat) ?? flat) : flat;
    const k = `${prefix}_${name}`;
    return { down: `${k}.lora_down.weight`, up: `${k}.lora_up.weight`, alpha: `${k}.alpha` };
  }
  const k = `${t.component}.${t.module}`;
  if (o.format === 'peft') return { down: `${k}.lora_A.weight`, up: `${k}.lora_B.weight` };
  return { down: `${k}.lora.down.weight`, up: `${k}.lora.up.weight` };
}
