/** Job files → SubmitJob requests: YAML job files, JSONL items cut into offset chunks, the default job key. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { packageRoot } from '../../services/common/package-root.js';
import { JobFileError } from '../../services/cli/job-file-error.js';
import { gridItemCount, mergeTemplate, parseJobYaml, submitRequest } from '../../services/cli/job-file.js';
import { fileLines, itemChunks, jsonlItems, parseItemLine } from '../../services/cli/job-items-jsonl.js';
import { jobKeyOf } from '../../services/cli/job-key.js';
import { prepareSubmission, templateFromFlags } from '../../services/cli/job-submit.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-cli-jobs-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The JobFileError `fn` throws. */
function fileError(fn: () => unknown): JobFileError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof JobFileError, `a JobFileError, not ${String(err)}`);
    assert.equal(err.code, 'ORRERY_ERR_INVALID_ARGUMENT');
    return err;
  }
  assert.fail('expected a JobFileError');
}

async function rejection(p: Promise<unknown>): Promise<JobFileError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof JobFileError, `a JobFileError, not ${String(err)}`);
    return err;
  }
  assert.fail('expected a JobFileError');
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function* lines(...ls: string[]): AsyncGenerator<string> {
  yield* ls;
}

const GRID_YAML = `
name: planets
template:
  pipeline: planet-ultrawide
  aspect: "21:9"
  steps: 30
  guidance_scale: 5
  output_format: webp
  seed: 1000
grid:
  colors: [deep blue, violet]
  atmospheres: [frosted cloudy zones, swirling auroras, thin hazy rings]
  moons: [no moons]
  skies: [milky way sky]
  fixed_extras: [realistic]
  seeds_per_prompt: 2
output_uri: file:///tmp/x
max_attempts: 4
`;

describe('YAML job files', () => {
  test('a grid file becomes a SubmitJob request with the template in the proto\'s field names', () => {
    const spec = parseJobYaml(GRID_YAML, 'g.yaml');
    const req = submitRequest(spec, { grid: spec.grid });
    assert.deepEqual(req, {
      template: { pipeline: 'planet-ultrawide', aspect: '21:9', steps: 30, guidance_scale: 5, output_format: 'WEBP', seed: '1000' },
      output_uri: 'file:///tmp/x', name: 'planets', max_attempts: 4, job_key: '', items_follow: false,
      grid: { colors: ['deep blue', 'violet'], atmospheres: ['frosted cloudy zones', 'swirling auroras', 'thin hazy rings'], moons: ['no moons'], skies: ['milky way sky'], fixed_extras: ['realistic'], seeds_per_prompt: 2 },
    });
    assert.equal(gridItemCount(spec.grid!), 12n);
  });

  test('an items file keeps each item\'s prompt or planet, seed (as a uint64 string) and negative prompt', () => {
    const spec = parseJobYaml(`
template: { pipeline: synthetic }
items:
  - { custom_id: a-1, prompt: a red planet, seed: 7 }
  - { custom_id: b.2, planet: { color: violet, moons: no moons, extras: [ethereal] }, seed: "18446744073709551615", negative_prompt: blur }
`, 'i.yaml');
    assert.deepEqual(spec.items, [
      { custom_id: 'a-1', prompt: 'a red planet', seed: '7' },
      { custom_id: 'b.2', planet: { color: 'violet', moons: 'no moons', extras: ['ethereal'] }, seed: '18446744073709551615', negative_prompt: 'blur' },
    ]);
    assert.deepEqual(submitRequest(spec, { items: spec.items }).items, { items: spec.items });
  });

  test('the example grid files are valid: planet-grid is 960 items of 21:9 planet-ultrawide, demo-grid is 2 × 2', () => {
    const read = (f: string) => fs.readFileSync(path.join(packageRoot(), 'deploy/jobs', f), 'utf8');
    const planet = parseJobYaml(read('planet-grid.yaml'), 'planet-grid.yaml');
    assert.equal(gridItemCount(planet.grid!), 6n * 5n * 4n * 4n * 2n);
    assert.equal(planet.template.pipeline, 'planet-ultrawide');
    assert.equal(planet.template.aspect, '21:9');
    const demo = parseJobYaml(read('demo-grid.yaml'), 'demo-grid.yaml');
    assert.equal(demo.grid!.colors!.length, 2);
    assert.equal(demo.grid!.atmospheres!.length, 2);
    assert.equal(gridItemCount(demo.grid!), 4n);
  });

  test('a wrong grid axis is named: grid.colors: must be a list of strings', () => {
    const err = fileError(() => parseJobYaml('template: {}\ngrid: { colors: deep blue }\n', 'g.yaml'));
    assert.equal(err.where, 'grid.colors');
    assert.equal(err.message, 'g.yaml: grid.colors: must be a list of strings');
  });

  test('a completion window in the file goes into the request; a non-boolean no_completion_window is named', () => {
    const spec = parseJobYaml('completion_window_s: 7200\ngrid: { colors: [a] }\n', 'w.yaml');
    assert.equal(submitRequest(spec, { grid: spec.grid }).completion_window_s, 7200);
    const none = parseJobYaml('no_completion_window: true\ngrid: { colors: [a] }\n', 'w.yaml');
    assert.equal(submitRequest(none, { grid: none.grid }).no_completion_window, true);
    assert.equal(fileError(() => parseJobYaml('no_completion_window: yes please\ngrid: { colors: [a] }\n', 'w.yaml')).where, 'no_completion_window');
  });

  test('an unknown key is named with the keys that exist (a typo in a template field)', () => {
    const err = fileError(() => parseJobYaml('template: { stpes: 30 }\ngrid: { colors: [a] }\n', 'g.yaml'));
    assert.equal(err.where, 'template.stpes');
    assert.match(err.message, /unknown key \(known: pipeline, model_id, aspect, width, height, steps,/);
  });

  test('wrong values name their key: a negative step count, a fractional seed, an unknown format, a lone width', () => {
    assert.match(fileError(() => parseJobYaml('template: { steps: -3 }\ngrid: { colors: [a] }', 'f')).message, /^f: template\.steps: must be a non-negative integer, not number -3$/);
    assert.equal(fileError(() => parseJobYaml('template: { seed: 1.5 }\ngrid: { colors: [a] }', 'f')).where, 'template.seed');
    assert.match(fileError(() => parseJobYaml('template: { output_format: gif }\ngrid: { colors: [a] }', 'f')).message, /template\.output_format: must be one of PNG, WEBP, JPEG, not the string "gif"/);
    assert.equal(fileError(() => parseJobYaml('template: { width: 640 }\ngrid: { colors: [a] }', 'f')).where, 'template.height');
    assert.match(fileError(() => parseJobYaml('template: { seed: 12345678901234567890 }\ngrid: { colors: [a] }', 'f')).message, /template\.seed: .*quoted string/);
  });

  test('items are checked one by one and named by position: items[1].custom_id, a duplicate names both', () => {
    const bad = fileError(() => parseJobYaml('items:\n  - { custom_id: a, prompt: x }\n  - { custom_id: "no spaces", prompt: y }\n', 'f'));
    assert.equal(bad.where, 'items[1].custom_id');
    const dup = fileError(() => parseJobYaml('items:\n  - { custom_id: a, prompt: x }\n  - { custom_id: a, prompt: y }\n', 'f'));
    assert.equal(dup.message, 'f: items[1].custom_id: "a" is already the id of items[0]');
    assert.equal(fileError(() => parseJobYaml('items:\n  - { custom_id: a }\n', 'f')).where, 'items[0]');
    assert.equal(fileError(() => parseJobYaml('items:\n  - { custom_id: manifest, prompt: x }\n', 'f')).where, 'items[0].custom_id');
  });

  test('items may leave out the prompt when the template has one', () => {
    const spec = parseJobYaml('template: { prompt: a moon }\nitems:\n  - { custom_id: a, seed: 1 }\n', 'f');
    assert.deepEqual(spec.items, [{ custom_id: 'a', seed: '1' }]);
  });

  test('a file needs grid or items, not both; YAML syntax errors give the line', () => {
    assert.match(fileError(() => parseJobYaml('template: {}\n', 'f')).message, /needs grid: .* or items:/);
    assert.match(fileError(() => parseJobYaml('grid: { colors: [a] }\nitems: []\n', 'f')).message, /both grid: and items:/);
    const syntax = fileError(() => parseJobYaml('template:\n  steps: [1, 2\n', 'f'));
    assert.match(syntax.where, /^line \d+$/);
    assert.match(syntax.message, /not valid YAML/);
    assert.equal(fileError(() => parseJobYaml('grid: { colors: [] }', 'f')).where, 'grid');
  });

  test('a --template file may not carry items', () => {
    assert.equal(fileError(() => parseJobYaml('template: {}\ngrid: { colors: [a] }', 't.yaml', { itemsAllowed: false })).where, 'grid');
  });

  test('flags lay over the file\'s template; a size replaces an aspect and back', () => {
    const t = templateFromFlags({ steps: 8, format: 'jpeg', seed: '42', width: 512, height: 256 });
    assert.deepEqual(t, { width: 512, height: 256, steps: 8, output_format: 'JPEG', seed: '42' });
    assert.deepEqual(mergeTemplate({ aspect: '21:9', steps: 30, pipeline: 'p' }, t), { pipeline: 'p', width: 512, height: 256, steps: 8, output_format: 'JPEG', seed: '42' });
    assert.deepEqual(mergeTemplate({ width: 8, height: 8, steps: 3 }, { aspect: '1:1' }), { steps: 3, aspect: '1:1' });
    assert.equal(fileError(() => templateFromFlags({ format: 'gif' })).file, '--format');
  });
});

describe('JSONL item files', () => {
  test('each line is an item; blank lines are skipped and errors name the line and key', async () => {
    assert.deepEqual(parseItemLine('{"custom_id":"x","prompt":"p","seed":3}', 1, 'i.jsonl'), { custom_id: 'x', prompt: 'p', seed: '3' });
    assert.equal(parseItemLine('   ', 2, 'i.jsonl'), undefined);
    assert.equal(fileError(() => parseItemLine('{"custom_id":"x","prompt":5}', 12, 'i.jsonl')).message, 'i.jsonl: line 12: prompt: must be a string, not number 5');
    assert.match(fileError(() => parseItemLine('{"custom_id": "x",', 3, 'i.jsonl')).message, /^i\.jsonl: line 3: not valid JSON/);
    assert.equal(fileError(() => parseItemLine('{"custom_id":"x"}', 4, 'i.jsonl')).where, 'line 4');
    const err = await rejection(collect(jsonlItems(lines('{"custom_id":"a","prompt":"p"}', '', '{"custom_id":"b","prompt":"p","sede":1}'), 'i.jsonl')));
    assert.equal(err.message, 'i.jsonl: line 3: sede: unknown key (known: custom_id, prompt, planet, seed, negative_prompt)');
  });

  test('items are cut into chunks of at most 1000 with their offsets, the last one marked last', async () => {
    const items = Array.from({ length: 2500 }, (_, i) => ({ custom_id: `p-${i}`, prompt: 'a planet' }));
    const chunks = await collect(itemChunks(items, 'i.jsonl'));
    assert.deepEqual(chunks.map((c) => [c.offset, c.items.length, c.last]), [[0, 1000, false], [1000, 1000, false], [2000, 500, true]]);
    assert.equal(chunks[1]!.items[0]!.custom_id, 'p-1000');
  });

  test('a file of exactly one chunk is sent as one last chunk; an empty file is an error', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({ custom_id: `p-${i}`, prompt: 'x' }));
    assert.deepEqual((await collect(itemChunks(items, 'f'))).map((c) => [c.offset, c.items.length, c.last]), [[0, 1000, true]]);
    assert.match((await rejection(collect(itemChunks([], 'empty.jsonl')))).message, /^empty\.jsonl: has no items/);
  });

  test('a chunk also ends before it passes the byte limit, so long prompts never make an oversized message', async () => {
    const items = Array.from({ length: 10 }, (_, i) => ({ custom_id: `p-${i}`, prompt: 'x'.repeat(400) }));
    const chunks = await collect(itemChunks(items, 'f', { maxBytes: 1000 }));
    assert.deepEqual(chunks.map((c) => c.items.length), [2, 2, 2, 2, 2]);
    assert.deepEqual(chunks.map((c) => c.offset), [0, 2, 4, 6, 8]);
  });

  test('a file is read as a stream of lines into chunks (20,000 lines)', async () => {
    const file = path.join(dir, 'many.jsonl');
    fs.writeFileSync(file, Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ custom_id: `p-${i}`, planet: { color: 'blue' }, seed: i })).join('\n') + '\n');
    let count = 0;
    let last = -1;
    for await (const c of itemChunks(jsonlItems(fileLines(file), file), file)) {
      assert.equal(c.offset, count);
      count += c.items.length;
      last = c.last ? c.offset : last;
    }
    assert.equal(count, 20_000);
    assert.equal(last, 19_000);
  });
});

describe('the default job key', () => {
  test('is the same for the same file and template, and changes with either', async () => {
    const header = { template: { steps: 30, pipeline: 'p' }, name: 'n' };
    const a = await jobKeyOf(['abc'], header);
    assert.match(a, /^sha256-[0-9a-f]{64}$/);
    assert.equal(await jobKeyOf(['ab', 'c'], { name: 'n', template: { pipeline: 'p', steps: 30 } }), a, 'chunking and key order do not matter');
    assert.notEqual(await jobKeyOf(['abd'], header), a);
    assert.notEqual(await jobKeyOf(['abc'], { ...header, template: { steps: 31, pipeline: 'p' } }), a);
    assert.notEqual(await jobKeyOf(['abc'], { ...header, output_uri: 's3://b/p' }), a);
  });

  test('prepareSubmission fills it in, and --job-key or the file\'s job_key overrides it', async () => {
    const file = path.join(dir, 'g.yaml');
    fs.writeFileSync(file, GRID_YAML);
    const s1 = await prepareSubmission(file, {});
    const s2 = await prepareSubmission(file, {});
    assert.equal(s1.header.job_key, s2.header.job_key);
    assert.match(s1.description, /^a grid of 2 colors × 3 atmospheres × 1 moons × 1 skies × 2 seeds = 12 items$/);
    assert.notEqual((await prepareSubmission(file, { steps: 4 })).header.job_key, s1.header.job_key);
    assert.equal((await prepareSubmission(file, { jobKey: 'mine' })).header.job_key, 'mine');
    fs.writeFileSync(file, `${GRID_YAML}job_key: from-file\n`);
    assert.equal((await prepareSubmission(file, {})).header.job_key, 'from-file');
  });

  test('a JSONL submit takes its template from --template and flags; a YAML --template with items is refused', async () => {
    const items = path.join(dir, 'items.jsonl');
    fs.writeFileSync(items, '{"custom_id":"a","prompt":"p"}\n');
    const tpl = path.join(dir, 'tpl.yaml');
    fs.writeFileSync(tpl, 'name: batch\ntemplate: { pipeline: synthetic, steps: 3 }\nmax_attempts: 2\n');
    const s = await prepareSubmission(items, { template: tpl, steps: 5 });
    assert.deepEqual(s.header.template, { pipeline: 'synthetic', steps: 5 });
    assert.equal(s.header.name, 'batch');
    assert.equal(s.header.max_attempts, 2);
    assert.equal(s.jsonl, items);
    assert.equal((await rejection(prepareSubmission(path.join(dir, 'job.txt'), {}))).file, path.join(dir, 'job.txt'));
    assert.match((await rejection(prepareSubmission(path.join(dir, 'missing.jsonl'), {}))).message, /cannot be read: ENOENT/);
  });
});
