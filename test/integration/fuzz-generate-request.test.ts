/**
 * Mutation fuzzing of GenerateRequest against a real router and synthetic replicas: 1,000 valid
 * requests mutated field-wise and byte-wise (test/support/generate-request-fuzz.ts), sent as raw
 * bytes. Every answer is OK or a non-INTERNAL status naming a field (INTERNAL only for bytes that
 * are not protobuf at all); afterwards the router and its replicas are SERVING and no process
 * logged an escaped error. bench/fuzz.bench.ts runs 20,000 cases.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { checkHealth, healthClient } from '../../services/cli/client.js';
import { fuzzCases } from '../support/generate-request-fuzz.js';
import { ESCAPED_ERROR, runFuzz, type FuzzOutcome } from '../support/fuzz-runner.js';
import { lcg } from '../support/rng.js';
import { startCluster, testConfig, type TestCluster } from './harness.js';

const CASES = 1000;
/** GenerateStream shares Generate's edge; a sample of the random cases checks its answers too. */
const STREAM_CASES = 200;
const SEED = 20261207;

/** The cluster the fuzz cases are aimed at: one fast synthetic deployment with two replicas. */
export function fuzzClusterConfig(): Record<string, unknown> {
  return testConfig({ synthetic: { stage: 'synthetic', models: ['syn-a', 'syn-b'], replicas: 2, max_batch_size: 8, options: {} } });
}

describe('mutation fuzzing of GenerateRequest', () => {
  let c: TestCluster;
  let outcomes: FuzzOutcome[] = [];
  let streamOutcomes: FuzzOutcome[] = [];
  before(async () => {
    c = await startCluster(fuzzClusterConfig());
    const cases = fuzzCases(CASES, lcg(SEED));
    outcomes = await runFuzz(c.cluster.grpcAddress, cases, { concurrency: 8, deadlineMs: 30_000 });
    streamOutcomes = await runFuzz(c.cluster.grpcAddress, cases.slice(-STREAM_CASES), { concurrency: 8, deadlineMs: 30_000, method: 'GenerateStream' });
  });
  after(() => c?.stop());

  test(`answers each of ${CASES} mutated requests OK or with a non-INTERNAL status naming a field (INTERNAL only for undecodable bytes)`, () => {
    const failed = outcomes.filter((o) => !o.pass);
    const show = failed.slice(0, 10).map((o) => `#${o.index} ${o.mutation}: ${o.code} "${o.details.slice(0, 160)}" (${o.why})`).join('\n');
    assert.equal(outcomes.length, CASES);
    assert.equal(failed.length, 0, `${failed.length} bad answers (seed ${SEED}):\n${show}`);
  });

  test(`answers ${STREAM_CASES} of them on GenerateStream by the same rule`, () => {
    const failed = streamOutcomes.filter((o) => !o.pass);
    const show = failed.slice(0, 10).map((o) => `#${o.index} ${o.mutation}: ${o.code} "${o.details.slice(0, 160)}" (${o.why})`).join('\n');
    assert.equal(streamOutcomes.length, STREAM_CASES);
    assert.equal(failed.length, 0, `${failed.length} bad answers (seed ${SEED}):\n${show}`);
  });

  test('GenerateStream answers an invalid request at once with INVALID_ARGUMENT and its error-code trailer (not at the deadline)', async () => {
    const started = Date.now();
    const err = await new Promise<ServiceError>((resolve, reject) => {
      const call = c.client.GenerateStream({ prompt: 'a planet', width: 7, height: 8 }, new Metadata(), { deadline: Date.now() + 20_000 });
      call.on('data', () => undefined);
      call.on('error', resolve);
      call.on('end', () => reject(new Error('the stream ended without an error')));
    });
    assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
    assert.match(err.details, /^width: 7 is not a multiple of 8/);
    assert.equal(err.metadata.get('orrery-error-code')[0], 'ORRERY_ERR_INVALID_ARGUMENT');
    assert.ok(Date.now() - started < 10_000, 'answered well before the 20 s deadline');
  });

  test('the mix exercises success, field errors and undecodable bytes', () => {
    assert.ok(outcomes.filter((o) => o.code === status.OK).length >= 50, 'some mutated requests are still valid and succeed');
    assert.ok(outcomes.filter((o) => o.code === status.INVALID_ARGUMENT).length >= 200, 'many are INVALID_ARGUMENT');
    assert.ok(outcomes.filter((o) => !o.decodable).length >= 20, 'some bytes are not protobuf at all');
  });

  test('the router and every deployment stay SERVING', async () => {
    const health = healthClient(c.cluster.grpcAddress);
    try {
      for (const service of ['', 'orrery.v1.ImageService', 'synthetic']) assert.equal(await checkHealth(health, service), 'SERVING', service || '(server)');
    } finally {
      health.close();
    }
    assert.equal(c.cluster.router?.exitCode, null, 'the router is running');
    assert.equal(c.cluster.replicas.length, 2);
    for (const r of c.cluster.replicas) assert.equal(r.child.exitCode, null, `replica ${r.id} is running`);
  });

  test('no process logged an unhandled rejection, uncaught exception or crash', () => {
    const lines = fs.readFileSync(c.logFile, 'utf8').split('\n').filter((l) => ESCAPED_ERROR.test(l));
    assert.deepEqual(lines.slice(0, 5), []);
  });
});
