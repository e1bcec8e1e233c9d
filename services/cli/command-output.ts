import type { Command } from 'commander';

/**
 * A writer for a command's normal output: the command's configured `writeOut` (tests capture output
 * with `configureOutput`), else stdout. Calls `writeOut` on its configuration object, as commander
 * does, rather than detaching the method.
 */
export function commandWriter(cmd: Command): (text: string) => void {
  const out = cmd.configureOutput();
  return (text) => {
    if (out.writeOut) out.writeOut(text);
    else process.stdout.write(text);
  };
}
