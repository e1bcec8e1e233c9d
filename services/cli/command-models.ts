/** `orrery models …`: model repository tools. */
import path from 'node:path';
import type { Command } from 'commander';
import { writeDemoModels } from '../models/demo-models.js';
import { registerQuantizeCommand } from './command-models-quantize.js';
import { registerSdxlModelCommands } from './command-models-sdxl.js';
import { registerUpscalerModelCommands } from './command-models-upscaler.js';

export function registerModelsCommand(program: Command): void {
  const models = program.command('models').description('Model repository tools.');
  models
    .command('make-demo')
    .description('Write the demo models the local default config serves (the ONNX "texture" network) into a model repository.')
    .argument('[dir]', 'model repository directory', './models')
    .action((dir: string) => {
      writeDemoModels(dir);
      process.stdout.write(`demo models in ${path.resolve(dir)}\n`);
    });
  registerSdxlModelCommands(models);
  registerQuantizeCommand(models);
  registerUpscalerModelCommands(models);
}
