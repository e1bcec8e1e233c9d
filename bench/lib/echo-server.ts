/**
 * Baselines for the router overhead benchmark, as a separate process (like a replica or a
 * router would be): a NATS responder that answers every request on `subject` with
 * `replyBytes` bytes, and a gRPC ImageService whose Generate answers at once with a reply shaped
 * like the router's. Measuring against it isolates what NATS alone and gRPC alone cost.
 *
 * Usage: node echo-server.js <nats-url> <subject> <reply-bytes>; prints `ready grpc=HOST:PORT`.
 */
import * as grpc from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import { imageServiceDefinition } from '../../services/common/grpc-protos.js';
import { syntheticPayload } from '../../services/stages/synthetic.js';

async function main(): Promise<void> {
  const [url, subject, replyBytes] = process.argv.slice(2);
  if (!url || !subject || !replyBytes) throw new Error('usage: echo-server <nats-url> <subject> <reply-bytes>');
  const nc = await connect({ servers: url, name: 'bench-echo' });
  const reply = new Uint8Array(Number(replyBytes)).fill(7);
  nc.subscribe(subject, { callback: (err, msg) => void (err ? undefined : msg.respond(reply)) });
  await nc.flush();

  const server = new grpc.Server();
  const data = syntheticPayload({ modelId: 'zero', seed: '1', requestId: '00000000-0000-4000-8000-000000000000', imageIndex: 0, prompt: 'a small planet' }, 0);
  server.addService(imageServiceDefinition().service, {
    Generate: (call: grpc.ServerUnaryCall<{ prompt: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      cb(null, {
        request_id: '00000000-0000-4000-8000-000000000000',
        images: [{ seed: '1', width: 1024, height: 1024, mime_type: 'application/octet-stream', data, prompt: call.request.prompt, model_id: 'zero', replica_id: 'zero-00000000' }],
        timings: [{ stage: '0:zero', deployment: 'zero', queue_seconds: 0.0001, run_seconds: 0.0001 }],
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  process.stdout.write(`ready grpc=127.0.0.1:${port}\n`);
  process.on('SIGTERM', () => {
    server.forceShutdown();
    void nc.close().then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`echo-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
