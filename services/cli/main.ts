/** The `orrery` command line. Reads the environment and files; everything below takes options. */
import { Command } from 'commander';
import { OrreryError } from '../common/errors.js';
import { registerDemoCommand } from './command-demo.js';
import { registerGenerateCommand } from './command-generate.js';
import { registerModelsCommand } from './command-models.js';
import { registerServeCommands } from './commands-serve.js';

const program = new Command()
  .name('orrery')
  .description('Orrery: a serving cluster for diffusion pipelines — gRPC router, micro-batching, model multiplexing, NATS, ONNX Runtime replicas.')
  .showHelpAfterError('(run with --help for usage)')
  .addHelpText('after', `
Examples:
  orrery serve-local                                  a local cluster with the embedded default config
  orrery generate --color "deep blue" --atmosphere "frosted cloudy zones" --moons "no moons" \\
                  --sky "distant stars dark sky" -n 4 --aspect 21:9 --out ./out
  orrery router --config cluster.yaml                 cluster mode (Kubernetes): the router
  orrery worker --deployment texture --config cluster.yaml   one replica`);

registerServeCommands(program);
registerGenerateCommand(program);
registerModelsCommand(program);
registerDemoCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  // Readable errors for people: the coded message, no stack, unless it is a bug.
  if (err instanceof OrreryError) process.stderr.write(`orrery: ${err.message}\n`);
  else if (typeof (err as { details?: unknown }).details === 'string') process.stderr.write(`orrery: ${(err as { details: string }).details}\n`);
  else process.stderr.write(`orrery: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
