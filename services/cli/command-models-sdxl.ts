/** `orrery models make-tiny`: the tiny SDXL-shaped bundle for tests and demos. */
import type { Command } from 'commander';
import path from 'node:path';
import { LORA_FOLDER, MODEL_ID } from '../common/model-id.js';
import { nameSeed } from '../models/local-models.js';
import { writeTinySdxlBundle } from '../models/tiny-sdxl.js';
import { writeTinyLora } from '../models/tiny-sdxl/tiny-lora.js';
import { commandWriter } from './command-output.js';

interface MakeTinyFlags {
  fp16?: boolean;
  legacyTimestep?: boolean;
  legacyVaeEncoder?: boolean;
  externalData: boolean;
}

/** Bytes as kB / MB (decimal), for the model tools' summaries. */
export function formatBytes(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

/** Adds `make-tiny` and `make-tiny-lora` to the `models` command. */
export function registerSdxlModelCommands(models: Command): void {
  models
    .command('make-tiny')
    .description(
      'Write a tiny SDXL bundle with the layout, tensor names, dtypes and dynamic axes of an Optimum ONNX export ' +
      '(optimum-cli export onnx --model stabilityai/stable-diffusion-xl-base-1.0), tiny sizes and deterministic weights. ' +
      'Put it at <model repository>/<base id>/ to serve it. Its images are noise: it exercises the serving path, not image quality.',
    )
    .argument('<dir>', 'the bundle directory to write, e.g. models/tiny-sdxl')
    .option('--fp16', 'float16 weights, inputs and outputs (as optimum-cli --fp16)')
    .option('--legacy-timestep', 'UNet timestep as int64 [steps] (older exports) instead of a float scalar')
    .option('--legacy-vae-encoder', 'vae_encoder output latent_sample (older exports) instead of latent_parameters')
    .option('--no-external-data', 'keep the UNet weights inside unet/model.onnx instead of unet/model.onnx_data')
    .action(async (dir: string, flags: MakeTinyFlags, cmd: Command) => {
      const info = await writeTinySdxlBundle(dir, {
        dtype: flags.fp16 ? 'float16' : 'float32',
        timestep: flags.legacyTimestep ? 'int64-batch' : 'float-scalar',
        vaeEncoderOutput: flags.legacyVaeEncoder ? 'latent_sample' : 'latent_parameters',
        externalData: flags.externalData,
      });
      const writeOut = commandWriter(cmd);
      const width = Math.max(...info.files.map((f) => f.path.length));
      writeOut(`tiny SDXL bundle in ${info.dir}:\n`);
      for (const f of info.files) writeOut(`  ${f.path.padEnd(width)}  ${formatBytes(f.bytes).padStart(9)}\n`);
      writeOut(`  ${'total'.padEnd(width)}  ${formatBytes(info.totalBytes).padStart(9)}\n`);
      writeOut('Reminder: a tiny bundle has random weights, so its images are noise; serve a real Optimum export for real images.\n');
    });

  models
    .command('make-tiny-lora')
    .description(
      'Write a tiny LoRA adapter for the tiny SDXL bundle to <repository>/loras/<name>.safetensors, targeting real modules of its UNet ' +
      'and both text encoders; serve it as model id tiny-sdxl+<name>. Deterministic: the same name and options write the same bytes.',
    )
    .argument('<repository>', 'the model repository, e.g. models')
    .argument('<name>', 'the adapter name (the part after + in the model id)')
    .option('--format <format>', 'kohya (SGM UNet names, as SDXL kohya files) | kohya-diffusers | peft | peft-legacy', 'kohya')
    .option('--rank <n>', 'LoRA rank', '4')
    .option('--fp16', 'store the tensors as F16')
    .action((repository: string, name: string, flags: { format: string; rank: string; fp16?: boolean }, cmd: Command) => {
      if (!MODEL_ID.test(`base+${name}`) || name.includes('@')) cmd.error(`"${name}" is not a LoRA name (lower-case letters, digits, . _ -)`);
      const formats = ['kohya', 'kohya-diffusers', 'peft', 'peft-legacy'];
      if (!formats.includes(flags.format)) cmd.error(`--format must be one of ${formats.join(', ')}`);
      const rank = Number(flags.rank);
      if (!Number.isInteger(rank) || rank < 1 || rank > 32) cmd.error('--rank must be an integer in [1, 32]');
      const file = path.join(repository, LORA_FOLDER, `${name}.safetensors`);
      const modules = writeTinyLora(file, {
        format: flags.format === 'kohya-diffusers' ? 'kohya' : flags.format as 'kohya' | 'peft' | 'peft-legacy',
        sgmNames: flags.format === 'kohya', seed: nameSeed(name), rank, dtype: flags.fp16 ? 'F16' : 'F32',
      });
      const writeOut = commandWriter(cmd);
      writeOut(`tiny ${flags.format} LoRA (${modules.length} modules, rank ${rank}) in ${path.resolve(file)}; model id tiny-sdxl+${name}\n`);
    });
}
