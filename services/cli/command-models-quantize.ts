/** `orrery models quantize`: fp16, int8 and q4 variants of an SDXL bundle (a LoRA fused in first, if named), checked against the base by PSNR. */
import { InvalidArgumentError, type Command } from 'commander';
import { ModelIdError, parseModelId, type ParsedModelId } from '../common/model-id.js';
import { formatBytes } from './command-models-sdxl.js';
import { commandWriter } from './command-output.js';

const VARIANTS = ['fp16', 'int8', 'q4'] as const;

function parseBlockSize(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 16 || (n & (n - 1)) !== 0) throw new InvalidArgumentError('must be a power of two ≥ 16');
  return n;
}

function parseModel(value: string): ParsedModelId {
  let id: ParsedModelId;
  try {
    id = parseModelId(value);
  } catch (err) {
    if (err instanceof ModelIdError) throw new InvalidArgumentError(err.reason);
    throw err;
  }
  if (id.variant !== undefined) throw new InvalidArgumentError('names base or base+lora; the variant goes in --variant');
  return id;
}

function parseScale(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('must be a number');
  return n;
}

/** Adds `quantize` to the `models` command. */
export function registerQuantizeCommand(models: Command): void {
  models
    .command('quantize')
    .description([
      // Lines under 80 columns: commander wraps longer ones and would break the list.
      'Write <repository>/<base>@<variant>/: a copy of the base bundle, rewritten:',
      '  fp16  all five models as a float16 export, as optimum-cli --fp16 writes',
      '        one (float inputs, outputs, weights FLOAT16; sinusoidal time',
      '        embeddings stay float32, as diffusers computes them)',
      '  int8  unet + text encoders: MatMul weights int8 per output channel with',
      '        a DequantizeLinear in front (weight-only QDQ)',
      '  q4    unet + text encoders: MatMul weights 4-bit in blocks of',
      '        --block-size along K, each with a scale and a zero point',
      '        (ONNX Runtime com.microsoft MatMulNBits)',
      'The variant and the base first render a fixed prompt and seed (8 steps,',
      '128x64); a variant whose image has a PSNR against the base image below',
      '--min-psnr-db is refused, and the message gives the measured PSNR.',
      'Serve it as model id <base>@<variant>.',
      'With --model <base>+<lora>, writes <repository>/<base>+<lora>@<variant>/:',
      'the LoRA (<repository>/loras/<lora>.safetensors) is fused into the',
      'float weights first, then the variant is written, and the check compares',
      'it with <base>+<lora> in fp32. Serve it as <base>+<lora>@<variant>; int8',
      'and q4 need this folder (their weights cannot take a LoRA at load).',
    ].join('\n'))
    .argument('[repository]', 'the model repository', './models')
    .requiredOption('--model <id>', 'the model: <base>, or <base>+<lora> to fuse a LoRA in first', parseModel)
    .requiredOption('--variant <variant>', VARIANTS.join(' | '))
    .option('--min-psnr-db <db>', 'refuse the variant below this PSNR against the base image', '30')
    .option('--block-size <n>', 'q4: quantization block size along K (a power of two ≥ 16)', parseBlockSize, 32)
    .option('--lora-scale <s>', 'with a LoRA: the strength it is fused at (deployment option lora_scale)', parseScale, 1)
    .action(async (repository: string, flags: { model: ParsedModelId; variant: string; minPsnrDb: string; blockSize: number; loraScale: number }, cmd: Command) => {
      if (!(VARIANTS as readonly string[]).includes(flags.variant)) cmd.error(`--variant must be one of ${VARIANTS.join(', ')} (fp32 is the base bundle itself)`);
      if (flags.model.lora === undefined && cmd.getOptionValueSource('loraScale') === 'cli') cmd.error('--lora-scale needs a LoRA: --model <base>+<lora>');
      const minPsnrDb = Number(flags.minPsnrDb);
      if (!Number.isFinite(minPsnrDb)) cmd.error('--min-psnr-db must be a number');
      // Loaded here, not at start-up: the check renders through the SDXL stage (onnxruntime-node, sharp).
      const { quantizeBundle } = await import('../models/quantize/quantize-bundle.js');
      const { imagePsnr } = await import('../stages/sdxl/image-psnr.js');
      try {
        const { base, lora } = flags.model;
        const r = await quantizeBundle({ repository, base, ...(lora !== undefined ? { lora, loraScale: flags.loraScale } : {}), variant: flags.variant as (typeof VARIANTS)[number], minPsnrDb, blockSize: flags.blockSize }, imagePsnr);
        const what = r.variant === 'fp16' ? `${r.tensorsRewritten} initializers stored as float16` : `${r.tensorsRewritten} MatMul weights quantized (${r.variant})`;
        const writeOut = commandWriter(cmd);
        const fused = lora !== undefined ? `LoRA ${lora} fused (${r.loraModulesFused} modules, scale ${flags.loraScale}), then ` : '';
        writeOut(`${r.dir}: ${fused}${what} in ${r.models.join(', ')}; ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}; PSNR ${r.psnrDb.toFixed(2)} dB against ${flags.model.id} (fp32)\n`);
      } catch (err) {
        cmd.error((err as Error).message);
      }
    });
}
