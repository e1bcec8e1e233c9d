/** `orrery models convert-upscaler`: UpscalerJS ESRGAN weights (TensorFlow.js) → ONNX. */
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { convertUpscaler, UPSCALER_SCALES } from '../models/upscaler/convert-upscaler.js';
import { commandWriter } from './command-output.js';

function parseScale(value: string): number {
  const n = Number(value);
  if (!(UPSCALER_SCALES as readonly number[]).includes(n)) throw new InvalidArgumentError(`must be one of ${UPSCALER_SCALES.join(', ')}`);
  return n;
}

/** Adds `convert-upscaler` to the `models` command. */
export function registerUpscalerModelCommands(models: Command): void {
  models
    .command('convert-upscaler')
    .description(
      'Convert an UpscalerJS ESRGAN package (@upscalerjs/esrgan-slim, -medium, -thick: TensorFlow.js Layers model) ' +
      'into an ONNX model for the upscaler stage: input "input" and output "output", float32 NCHW RGB, in the ' +
      "package's own value range (recorded with the scale in the model's metadata). Put it at " +
      '<model repository>/<model id>/model.onnx to serve it.',
    )
    .requiredOption('--from <dir>', 'the npm package directory, e.g. node_modules/@upscalerjs/esrgan-slim')
    .requiredOption('--scale <n>', `upscaling factor: ${UPSCALER_SCALES.join(', ')}`, parseScale)
    .requiredOption('--out <file>', 'the ONNX file to write, e.g. models/x2/model.onnx')
    .action(async (opts: { from: string; scale: number; out: string }, cmd: Command) => {
      const res = await convertUpscaler({ from: opts.from, scale: opts.scale, out: opts.out });
      const mb = (res.bytes / 1e6).toFixed(1);
      // Commander's configured output (stdout unless a caller redirects it, as the tests do).
      const writeOut = commandWriter(cmd);
      writeOut(
        `${path.resolve(res.file)}: ${res.info.source}, ${res.layers} layers, ${mb} MB, ` +
        `scale ${res.info.scale}, input range [${res.info.inputRange.join(', ')}], output range [${res.info.outputRange.join(', ')}]\n`,
      );
    });
}
