/** The `orrery` command line. Reads the environment and files; everything below takes options. */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { Command } from 'commander';
import { OrreryError } from '../common/errors.js';
import { registerDemoCommand } from './command-demo.js';
import { registerGenerateCommand } from './command-generate.js';
import { registerJobsCommand } from './command-jobs.js';
import { registerModelsCommand } from './command-models.js';
import { registerNatsConfigCommand } from './command-nats-config.js';
import { registerServeCommands } from './commands-serve.js';
import { registerTokensCommand } from './command-tokens.js';

const program = new Command()
  .name('orrery')
  .description('Orrery: a serving cluster for diffusion pipelines — gRPC router, micro-batching, model multiplexing, NATS, ONNX Runtime replicas.')
  .showHelpAfterError('(run with --help for usage)')
  .addHelpText('after', `
Examples:
  orrery serve-local                                  a local cluster with the embedded default config
  orrery generate --color "deep blue" --atmosphere "frosted cloudy zones" --moons "no moons" \\
                  --sky "distant stars dark sky" -n 4 --aspect 21:9 --out ./out
  orrery jobs submit deploy/jobs/planet-grid.yaml --watch   a bulk job: a grid over planet attributes
  orrery router --config cluster.yaml                 cluster mode (Kubernetes): the router
  orrery worker --deployment texture --config cluster.yaml   one replica`);

registerServeCommands(program);
registerGenerateCommand(program);
registerModelsCommand(program);
registerJobsCommand(program);
registerDemoCommand(program);
registerNatsConfigCommand(program);
registerTokensCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  // Readable errors for people: the coded message, no stack, unless it is a bug.
  if (err instanceof OrreryError) process.stderr.write(`orrery: ${err.message}\n`);
  else if (typeof (err as { details?: unknown }).details === 'string') {
    // A gRPC status: its name and the server's details (which name the field or the job).
    const { code, details } = err as { code?: number; details: string };
    const name = typeof code === 'number' ? GrpcStatus[code] : undefined;
    process.stderr.write(`orrery: ${name ? `${name}: ` : ''}${details}\n`);
  } else process.stderr.write(`orrery: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
