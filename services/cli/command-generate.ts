/** `orrery generate`: a client that asks a running cluster for images and writes them to a folder. */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { imageServiceClient, type GenerateEvent, type ImageMessage } from './client.js';
import { CLIENT_SECURITY_HELP, addClientSecurityOptions, channelCredentials, type ClientSecurityFlags } from './grpc-credentials.js';
import { RETRYING_CHANNEL_OPTIONS } from './retry-policy.js';

export interface GenerateOptions extends ClientSecurityFlags {
  addr: string; prompt?: string; color?: string; atmosphere?: string; moons?: string; sky?: string; extra: string[];
  negative?: string; count: number; requests: number; seed?: string; steps?: number; guidance?: number; width?: number; height?: number;
  aspect?: string; model?: string; pipeline?: string; format: string; out: string; timeoutMs: number; initImage?: string; strength?: number; quiet?: boolean;
}

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${v}`);
  return n;
};
const collect = (v: string, prev: string[]) => [...prev, v];
const EXT: Record<string, string> = { 'image/png': 'png', 'image/webp': 'webp', 'image/jpeg': 'jpg' };

/** A file name from the prompt: its first words, lower-case, dashes ("deep-blue-planet-with"). */
function fileStem(prompt: string): string {
  const slug = prompt.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  return (slug.length > 40 ? slug.slice(0, 41).replace(/-[^-]*$/, '') : slug) || 'image';
}

function buildRequest(o: GenerateOptions, index: number): Record<string, unknown> {
  const planet = o.color || o.atmosphere || o.moons || o.sky ? { color: o.color ?? '', atmosphere: o.atmosphere ?? '', moons: o.moons ?? '', sky: o.sky ?? '', extras: o.extra } : undefined;
  return {
    model_id: o.model ?? '', ...(planet ? { planet } : { prompt: o.prompt ?? '' }), negative_prompt: o.negative ?? '',
    // Request i of --requests N uses seed + i × count, so every image has its own seed.
    ...(o.seed !== undefined ? { seed: (BigInt(o.seed) + BigInt(index * o.count)).toString() } : {}),
    num_images: o.count, steps: o.steps ?? 0, ...(o.guidance !== undefined ? { guidance_scale: o.guidance } : {}),
    width: o.width ?? 0, height: o.height ?? 0, aspect: o.aspect ?? '', pipeline: o.pipeline ?? '',
    output_format: o.format.toUpperCase(), timeout_ms: o.timeoutMs,
    ...(o.initImage ? { init_image: fs.readFileSync(o.initImage) } : {}), ...(o.strength !== undefined ? { strength: o.strength } : {}),
  };
}

/** Streams one request, assembling image chunks; reports progress through `onEvent`. */
function streamOne(client: ReturnType<typeof imageServiceClient>, req: object, timeoutMs: number, onEvent: (e: GenerateEvent) => void): Promise<ImageMessage[]> {
  return new Promise((resolve, reject) => {
    const images: ImageMessage[] = [];
    const parts = new Map<number, Buffer[]>();
    const call = client.GenerateStream(req, undefined, { deadline: Date.now() + timeoutMs });
    call.on('data', (e: GenerateEvent) => {
      onEvent(e);
      const c = e.image_chunk;
      if (!c) return;
      if (c.meta) images[c.image_index] = c.meta;
      const list = parts.get(c.image_index) ?? [];
      list.push(c.data);
      parts.set(c.image_index, list);
      if (c.last) images[c.image_index]!.data = Buffer.concat(list);
    });
    call.on('error', reject);
    call.on('end', () => resolve(images));
  });
}

export function registerGenerateCommand(program: Command): void {
  addClientSecurityOptions(program
    .command('generate')
    .description('Ask a running Orrery cluster for images and write them to a folder.')
    .option('--addr <host:port>', 'router gRPC address, or several comma-separated (ip:port,ip:port: calls go round robin); UNAVAILABLE is retried (README, "Several routers")', '127.0.0.1:50051')
    .option('--prompt <text>', 'the prompt (or use the planet attributes below)')
    .option('--color <text>', 'planet colour, e.g. "deep blue"')
    .option('--atmosphere <text>', 'planet atmosphere, e.g. "frosted cloudy zones"')
    .option('--moons <text>', 'moons, e.g. "no moons"')
    .option('--sky <text>', 'sky, e.g. "distant stars dark sky"')
    .option('--extra <text>', 'extra prompt words after the planet slots (repeatable)', collect, [])
    .option('--negative <text>', 'negative prompt')
    .option('-n, --count <n>', 'images per request', int, 1)
    .option('--requests <n>', 'requests to send at once (each with --count images)', int, 1)
    .option('--seed <n>', 'seed of the first image (default: random)')
    .option('--steps <n>', 'denoising steps (default: the deployment\'s)', int)
    .option('--guidance <x>', 'guidance scale (default: the deployment\'s)', Number)
    .option('--width <n>', 'width, a multiple of 8', int)
    .option('--height <n>', 'height, a multiple of 8', int)
    .option('--aspect <w:h>', 'aspect ratio mapped to an SDXL bucket, e.g. 21:9')
    .option('--model <id>', 'model id (base, base+lora or base+lora@variant)')
    .option('--pipeline <name>', 'pipeline (default: the cluster\'s default)')
    .option('--init-image <file>', 'input image for img2img stages')
    .option('--strength <x>', 'img2img strength in [0, 1]', Number)
    .option('--format <fmt>', 'png, webp or jpeg', 'png')
    .option('--out <dir>', 'output folder', './out')
    .option('--timeout-ms <n>', 'give up after this long', int, 600_000)
    .option('--quiet', 'no progress output'))
    .addHelpText('after', CLIENT_SECURITY_HELP)
    .action(async (o: GenerateOptions) => {
      const { files, seconds, qc } = await generateToFolder(o);
      process.stdout.write(`${files.length} images in ${seconds.toFixed(2)} s (${(files.length / seconds).toFixed(2)} images/s) written to ${path.resolve(o.out)}\n`);
      for (const f of files) process.stdout.write(`  ${f}${qc[f] ? `  (QC: ${qc[f]})` : ''}\n`);
    });
}

/**
 * Sends `o.requests` streaming requests at once and writes every image to `o.out`, showing
 * progress on a terminal. Resolves with the files written, the wall time, and per file the quality
 * gate's verdict when the pipeline has one (`passed (attempt 2)`, `FLAGGED after 3 attempts: …`).
 */
export async function generateToFolder(o: GenerateOptions): Promise<{ files: string[]; seconds: number; qc: Record<string, string> }> {
  if (!['png', 'webp', 'jpeg'].includes(o.format)) throw new Error(`--format must be png, webp or jpeg, not ${o.format}`);
  fs.mkdirSync(o.out, { recursive: true });
  const client = imageServiceClient(o.addr, RETRYING_CHANNEL_OPTIONS, channelCredentials(o));
  const total = o.requests * o.count;
  let done = 0;
  const status = (line: string) => {
    if (!o.quiet && process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line}`);
  };
  const started = performance.now();
  const files: string[] = [];
  const qc: Record<string, string> = {};
  try {
    await Promise.all(Array.from({ length: o.requests }, async (_, r) => {
      const images = await streamOne(client, buildRequest(o, r), o.timeoutMs, (e) => {
        if (e.progress) status(`[${done}/${total} done] request ${r} image ${e.progress.image_index}: ${e.progress.stage} step ${e.progress.step}/${e.progress.total_steps}`);
        else if (e.stage_started) status(`[${done}/${total} done] request ${r}: ${e.stage_started.deployment} on ${e.stage_started.replica_id} (batch of ${e.stage_started.batch_size})`);
        else if (e.qc_rejected) status(`[${done}/${total} done] request ${r} image ${e.qc_rejected.image_index}: attempt ${e.qc_rejected.attempt} failed the quality check (${e.qc_rejected.reasons.join('; ')})${e.qc_rejected.rerolled ? '; generating it again' : ''}`);
      });
      for (const img of images) {
        const file = path.join(o.out, `${fileStem(img.prompt)}-${img.seed}.${EXT[img.mime_type] ?? 'bin'}`);
        fs.writeFileSync(file, img.data);
        files.push(file);
        if (img.qc) qc[file] = img.qc.passed ? `passed (attempt ${img.qc.attempts})` : `FLAGGED after ${img.qc.attempts} attempts: ${img.qc.reasons.join('; ')}`;
        done++;
      }
    }));
  } finally {
    client.close();
  }
  status('');
  return { files, seconds: (performance.now() - started) / 1000, qc };
}
