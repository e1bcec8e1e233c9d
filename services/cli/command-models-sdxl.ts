/** `orrery models make-tiny`: the tiny SDXL-shaped bundle for tests and demos. */
import type { Command } from 'commander';
import { writeTinySdxlBundle } from '../models/tiny-sdxl.js';

interface MakeTinyFlags {
  fp16?: boolean;
  legacyTimestep?: boolean;
  legacyVaeEncoder?: boolean;
  externalData: boolean;
}

function formatBytes(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

/** Adds `make-tiny` to the `models` command. */
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
      const writeOut = cmd.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s));
      const width = Math.max(...info.files.map((f) => f.path.length));
      writeOut(`tiny SDXL bundle in ${info.dir}:\n`);
      for (const f of info.files) writeOut(`  ${f.path.padEnd(width)}  ${formatBytes(f.bytes).padStart(9)}\n`);
      writeOut(`  ${'total'.padEnd(width)}  ${formatBytes(info.totalBytes).padStart(9)}\n`);
      writeOut('Reminder: a tiny bundle has random weights, so its images are noise; serve a real Optimum export for real images.\n');
    });
}
