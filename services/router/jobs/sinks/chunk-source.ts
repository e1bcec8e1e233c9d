/**
 * The chunks a putStream() writes come from its caller (the finalizer reading item records),
 * whose errors are not the sink's: a sink reports its own failures as SinkUnavailableError (which
 * pauses a job) but must pass a failure of its source on as it is. `fromSource` marks them.
 */

/** A failure of the chunks' source, carried through a sink's own error handling. */
export class SourceFailed extends Error {
  constructor(readonly reason: unknown) {
    super('the chunk source failed');
  }
}

/** `chunks`, with any error it throws wrapped in SourceFailed. */
export async function* fromSource(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const it = chunks[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await it.next();
    } catch (err) {
      throw new SourceFailed(err);
    }
    if (next.done) return;
    yield next.value;
  }
}

/** Rethrows a source's own error unwrapped; anything else goes to `sinkError`. */
export function rethrow(err: unknown, sinkError: (err: unknown) => Error): never {
  if (err instanceof SourceFailed) throw err.reason;
  throw sinkError(err);
}
