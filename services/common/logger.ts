/** Logger factory. Entry points create one and pass it down; modules take a child. */
import pino, { type Logger } from 'pino';

export type { Logger };

/** A JSON logger on stderr (stdout belongs to the CLI's own output, e.g. the `ready` line). */
export function createLogger(name: string, level = 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}
