/**
 * Opens a job output sink by URI. The scheme picks the implementation; each one is loaded only
 * when used, so a router that writes to files never loads the S3 SDK.
 */
import { SinkUnavailableError } from '../../../common/errors.js';
import type { JobSink, SinkDeps } from './sink.js';

export type { JobSink, SinkDeps } from './sink.js';

/** The URI schemes openSink() understands, as users write them. */
export const SINK_SCHEMES = ['file://DIR', 'nats-object://BUCKET[/PREFIX]', 's3://BUCKET[/PREFIX]'] as const;

/**
 * A sink for `uri`. Opening does no I/O (call `check()` to prove the sink is writable). Read from
 * `deps.env`: the S3 settings (s3-sink.ts) and `ORRERY_FILE_SINK_FSYNC=false`, which skips the
 * file sink's fsyncs (file-sink.ts). An unknown scheme or a malformed URI → SinkUnavailableError
 * naming the schemes that exist.
 */
export async function openSink(uri: string, deps: SinkDeps): Promise<JobSink> {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(uri.trim());
  if (!m) throw new SinkUnavailableError(uri, `not a sink URI; use one of ${SINK_SCHEMES.join(', ')}`);
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  switch (scheme) {
    case 'file': {
      const { FileSink } = await import('./file-sink.js');
      return FileSink.fromUri(uri, rest, { fsync: !/^(false|0|no)$/i.test(deps.env.ORRERY_FILE_SINK_FSYNC ?? '') });
    }
    case 'nats-object': {
      const { NatsObjectSink } = await import('./nats-object-sink.js');
      return NatsObjectSink.fromUri(uri, rest, deps);
    }
    case 's3': {
      const { S3Sink } = await import('./s3-sink.js');
      return S3Sink.fromUri(uri, rest, deps);
    }
    default:
      throw new SinkUnavailableError(uri, `unknown scheme "${scheme}://"; use one of ${SINK_SCHEMES.join(', ')}`);
  }
}
