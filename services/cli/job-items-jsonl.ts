/**
 * JSONL item files (`orrery jobs submit items.jsonl`): one item a line,
 * `{"custom_id": "p-000001", "prompt": "a red planet", "seed": 7}` (or `planet` instead of
 * `prompt`), read as a stream and cut into AddJobItems chunks placed by offset. A file of a
 * million lines never sits in memory: at most two chunks do.
 */
import fs from 'node:fs';
import readline from 'node:readline';
import { JobFileError } from './job-file-error.js';
import { checkItem, type JobItemSpec } from './job-file.js';

/** One AddJobItems chunk: its items, the number of items before it, and whether it is the last. */
export interface ItemChunk {
  readonly offset: number;
  readonly items: JobItemSpec[];
  readonly last: boolean;
}

/** Limits of one chunk. The byte limit keeps a chunk of long prompts far below gRPC's message limit. */
export interface ChunkLimits {
  /** Items per chunk; default 1000. */
  readonly maxItems?: number;
  /** Bytes of JSON text per chunk (a chunk always takes at least one item); default 1 MiB. */
  readonly maxBytes?: number;
}

/** One line → its item; undefined for a blank line. Errors name the line: `items.jsonl: line 12: seed: …`. */
export function parseItemLine(line: string, lineNo: number, file: string, promptOptional = false): JobItemSpec | undefined {
  if (line.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new JobFileError(file, `line ${lineNo}`, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return checkItem(value, { file, path: `line ${lineNo}` }, promptOptional);
}

/** The items of a JSONL file's lines, in order, blank lines skipped. */
export async function* jsonlItems(lines: AsyncIterable<string>, file: string, promptOptional = false): AsyncGenerator<JobItemSpec> {
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    const item = parseItemLine(line, lineNo, file, promptOptional);
    if (item) yield item;
  }
}

/**
 * Cuts a stream of items into chunks. Holds one chunk back until the next item arrives, so the
 * final chunk is marked `last`. No items at all is an error naming `file` (a job needs one).
 */
export async function* itemChunks(items: AsyncIterable<JobItemSpec> | Iterable<JobItemSpec>, file: string, limits: ChunkLimits = {}): AsyncGenerator<ItemChunk> {
  const maxItems = limits.maxItems ?? 1000;
  const maxBytes = limits.maxBytes ?? 1024 * 1024;
  let offset = 0;
  let chunk: JobItemSpec[] = [];
  let bytes = 0;
  for await (const item of items) {
    const size = JSON.stringify(item).length;
    if (chunk.length > 0 && (chunk.length >= maxItems || bytes + size > maxBytes)) {
      yield { offset, items: chunk, last: false };
      offset += chunk.length;
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += size;
  }
  if (offset === 0 && chunk.length === 0) throw new JobFileError(file, '', 'has no items (one JSON object a line: {"custom_id": …, "prompt": …})');
  yield { offset, items: chunk, last: true };
}

/** The lines of a file, read as a stream. */
export function fileLines(file: string): AsyncIterable<string> {
  return readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
}
