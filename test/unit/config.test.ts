import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { compileConfig, parseConfig, type ClusterConfig } from '../../services/common/config.js';
import { ConfigError } from '../../services/common/errors.js';
import { repoRoot } from '../support/repo-root.js';

const LOCAL_YAML = fs.readFileSync(path.join(repoRoot(), 'deploy/config/local.yaml'), 'utf8');

/** The smallest valid config: one deployment with a stage and one model. */
function minimal(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { deployments: { synthetic: { stage: 'synthetic', models: ['syn-a'] } }, ...over };
}

/** Asserts that compiling `raw` throws a ConfigError for `key` whose message names the key. */
function rejects(raw: unknown, key: string, messagePart?: RegExp): void {
  assert.throws(
    () => compileConfig(raw),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.code, 'ORRERY_ERR_CONFIG');
      assert.equal(err.key, key);
      assert.ok(err.message.startsWith(`config ${key}: `), `message should name ${key}: ${err.message}`);
      if (messagePart) assert.match(err.message, messagePart);
      return true;
    },
  );
}

describe('deploy/config/local.yaml', () => {
  test('compiles, with the product workflow planet-ultrawide as the default pipeline', () => {
    const c = parseConfig(LOCAL_YAML, 'local.yaml');
    assert.deepEqual(Object.keys(c.deployments).sort(), ['sdxl-base', 'sdxl-img2img', 'synthetic', 'upscaler']);
    assert.equal(c.defaultPipeline, 'planet-ultrawide');
    assert.equal(c.worker.heartbeatIntervalMs, 500);
    assert.equal(c.nats.url, 'nats://127.0.0.1:4222');
    assert.equal(c.nats.prefix, 'orrery');
    assert.equal(c.deployments['sdxl-base']!.maxBatchSize, 4, 'DESIGN §6: 4 images per UNet call');
    assert.deepEqual(c.deployments['sdxl-img2img']!.options, { mode: 'image-to-image' });
    assert.deepEqual(c.deployments.synthetic!.options, { fixed_ms: 40, per_item_ms: 10, load_ms: 200 });
  });

  test('planet-ultrawide is generate at the bucket → 2x → target → img2img 0.3 → 2x → target, 2520x1080 by default', () => {
    const p = parseConfig(LOCAL_YAML, 'local.yaml').pipelines['planet-ultrawide']!;
    assert.deepEqual(p.defaultSize, { width: 2520, height: 1080 });
    assert.deepEqual(p.stages.map((s) => [s.deployment, s.size]), [['sdxl-base', 'bucket'], ['upscaler', 'target'], ['sdxl-img2img', 'scaled'], ['upscaler', 'target']]);
    assert.equal(p.stages[2]!.params.strength, 0.3);
  });

  test('fills the defaults for keys it leaves unset', () => {
    const c = parseConfig(LOCAL_YAML, 'local.yaml');
    assert.equal(c.router.replicaTimeoutIntervals, 3);
    assert.equal(c.worker.metricsPort, 0);
    assert.equal(c.worker.drainTimeoutMs, 60_000);
    assert.equal(c.maxInlinePayloadBytes, 512 * 1024);
    assert.equal(c.deployments.upscaler!.replicas, 1);
    assert.equal(c.deployments.upscaler!.maxModelsPerReplica, 2);
    assert.equal(c.deployments.synthetic!.defaultSteps, 30);
    assert.equal(c.deployments.synthetic!.maxQueuedRequests, 1000);
    assert.equal(c.deployments.synthetic!.defaultGuidanceScale, 5);
  });

  test('reaches the synthetic deployment as an implicit one-stage pipeline', () => {
    const c = parseConfig(LOCAL_YAML, 'local.yaml');
    assert.deepEqual(c.pipelines.synthetic, { name: 'synthetic', stages: [{ deployment: 'synthetic', size: 'target', model: '', params: {} }] });
  });
});

describe('compileConfig: defaults', () => {
  // The documented defaults, all in one place: what a config naming only a deployment gets.
  test('fills every documented default for a config naming only one deployment', () => {
    const c = compileConfig(minimal());
    assert.deepEqual(c.nats, { url: 'nats://127.0.0.1:4222', prefix: 'orrery', auth: {} });
    assert.deepEqual(c.router, { grpcPort: 50051, metricsPort: 9464, replicaTimeoutIntervals: 3, maxRequestBytesInFlight: 536_870_912, reflection: true });
    assert.deepEqual(c.worker, { heartbeatIntervalMs: 1000, metricsPort: 0, drainTimeoutMs: 60_000 });
    assert.equal(c.maxInlinePayloadBytes, 524_288);
    assert.equal(c.modelRepository, './models');
    assert.deepEqual(c.deployments.synthetic, {
      name: 'synthetic',
      stage: 'synthetic',
      models: ['syn-a'],
      replicas: 1,
      maxBatchSize: 4,
      batchWaitTimeoutMs: 10,
      maxOngoingBatches: 2,
      maxQueuedRequests: 1000,
      maxModelsPerReplica: 2,
      preloadModels: ['syn-a'],
      affinityWaitMs: 1000,
      spillBacklogBatches: 3,
      defaultSteps: 30,
      defaultGuidanceScale: 5,
      options: {},
      batching: 'request',
      maxWaitingImages: 1,
    });
  });

  test('defaults default_pipeline to the first declared pipeline', () => {
    const c = compileConfig(minimal({
      deployments: { a: { stage: 'synthetic', models: ['m'] }, b: { stage: 'synthetic', models: ['m'] } },
      pipelines: { second: { stages: [{ deployment: 'b' }] }, first: { stages: [{ deployment: 'a' }] } },
    }));
    assert.equal(c.defaultPipeline, 'second');
  });

  test('defaults default_pipeline to the first deployment when no pipeline is declared', () => {
    const c = compileConfig({ deployments: { b: { stage: 'synthetic', models: ['m'] }, a: { stage: 'synthetic', models: ['m'] } } });
    assert.equal(c.defaultPipeline, 'b');
  });

  test('makes every deployment a one-stage pipeline of the same name', () => {
    const c = compileConfig({ deployments: { a: { stage: 'synthetic', models: ['m'] }, b: { stage: 'texture', models: ['t'] } } });
    assert.deepEqual(Object.keys(c.pipelines).sort(), ['a', 'b']);
    for (const name of ['a', 'b']) assert.deepEqual(c.pipelines[name], { name, stages: [{ deployment: name, size: 'target', model: '', params: {} }] });
  });

  test('keeps a declared pipeline that shares a deployment\'s name instead of the implicit one', () => {
    const c = compileConfig(minimal({ pipelines: { synthetic: { stages: [{ deployment: 'synthetic', model: 'syn-a', params: { scale: 2 } }, { deployment: 'synthetic' }] } } }));
    assert.equal(c.pipelines.synthetic!.stages.length, 2);
    assert.deepEqual(c.pipelines.synthetic!.stages[0], { deployment: 'synthetic', size: 'target', model: 'syn-a', params: { scale: 2 } });
    assert.equal(c.pipelines.synthetic!.stages[1]!.size, 'scaled', 'later stages keep their input size (× params.scale) by default');
  });

  test('reads a pipeline default_size and stage sizes, naming a bad one', () => {
    const c = compileConfig(minimal({ pipelines: { p: { default_size: '2520x1080', stages: [{ deployment: 'synthetic', size: 'bucket' }] } } }));
    assert.deepEqual(c.pipelines.p!.defaultSize, { width: 2520, height: 1080 });
    assert.equal(c.pipelines.p!.stages[0]!.size, 'bucket');
    rejects(minimal({ pipelines: { p: { default_size: '2521x1080', stages: [{ deployment: 'synthetic' }] } } }), 'pipelines.p.default_size', /multiples of 8/);
    rejects(minimal({ pipelines: { p: { stages: [{ deployment: 'synthetic', size: 'huge' }] } } }), 'pipelines.p.stages[0].size', /target, bucket or scaled/);
  });

  test('treats an empty YAML document as an empty config (and so asks for deployments)', () => {
    assert.throws(() => parseConfig('', 'empty.yaml'), (err: unknown) => err instanceof ConfigError && err.key === 'deployments');
  });
});

describe('compileConfig: frozen result', () => {
  test('freezes the compiled config deeply, so assignment throws in strict mode', () => {
    const c = compileConfig(minimal({ pipelines: { p: { stages: [{ deployment: 'synthetic', params: { scale: 2 } }] } } }));
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.router));
    assert.ok(Object.isFrozen(c.deployments.synthetic));
    assert.ok(Object.isFrozen(c.deployments.synthetic!.models));
    assert.ok(Object.isFrozen(c.pipelines.p!.stages[0]!.params));
    const mutable = c as unknown as { router: { grpcPort: number }; defaultPipeline: string; deployments: Record<string, { models: string[] }> };
    assert.throws(() => { mutable.router.grpcPort = 1; }, TypeError);
    assert.throws(() => { mutable.defaultPipeline = 'x'; }, TypeError);
    assert.throws(() => { mutable.deployments.synthetic!.models.push('x'); }, TypeError);
    assert.throws(() => { (c.deployments as Record<string, unknown>).extra = {}; }, TypeError);
    assert.equal(c.router.grpcPort, 50051);
  });

  test('does not share the models list with the input', () => {
    const raw = minimal();
    const c: ClusterConfig = compileConfig(raw);
    ((raw.deployments as Record<string, { models: string[] }>).synthetic!.models).push('late');
    assert.deepEqual(c.deployments.synthetic!.models, ['syn-a']);
  });
});

describe('compileConfig: errors name the key', () => {
  test('rejects max_batch_size 0', () => rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], max_batch_size: 0 } } }), 'deployments.synthetic.max_batch_size', /integer in \[1, 1024\], got 0/));
  test('reads max_model_bytes_per_replica (unlimited when absent)', () => {
    const c = compileConfig(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], max_model_bytes_per_replica: 24 * 1024 ** 3 } } }));
    assert.equal(c.deployments.synthetic!.maxModelBytesPerReplica, 24 * 1024 ** 3);
    assert.equal(compileConfig(minimal()).deployments.synthetic!.maxModelBytesPerReplica, undefined);
  });
  for (const bad of [0, -1, 1.5, '24Gi']) {
    test(`rejects max_model_bytes_per_replica ${JSON.stringify(bad)}, naming the key`, () =>
      rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], max_model_bytes_per_replica: bad } } }), 'deployments.synthetic.max_model_bytes_per_replica', /must be an integer in \[1, /));
  }
  for (const [i, bad] of [[0, '../etc'], [0, 'Base'], [1, 'base@fp64']] as const) {
    test(`rejects the model id ${JSON.stringify(bad)}, naming the list entry and the grammar`, () =>
      rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: i === 0 ? [bad] : ['ok', bad] } } }), `deployments.synthetic.models[${i}]`, /is not a model id/));
  }
  test('reads preload_models (default: the first model; [] loads on first use)', () => {
    const dep = (extra: object) => compileConfig(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['a', 'b', 'c'], ...extra } } })).deployments.synthetic!;
    assert.deepEqual(dep({}).preloadModels, ['a']);
    assert.deepEqual(dep({ preload_models: [] }).preloadModels, []);
    assert.deepEqual(dep({ preload_models: ['b', 'a', 'b'] }).preloadModels, ['b', 'a']);
  });
  test('rejects a preload model the deployment does not serve, naming the entry', () =>
    rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['a', 'b'], preload_models: ['a', 'x'] } } }), 'deployments.synthetic.preload_models[1]', /one of the deployment's models \(a, b\), got "x"/));
  test('rejects preload_models that is not a list', () =>
    rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['a'], preload_models: 'a' } } }), 'deployments.synthetic.preload_models', /must be a list/));
  test('rejects more preload models than a replica may hold', () =>
    rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['a', 'b', 'c'], max_models_per_replica: 2, preload_models: ['a', 'b', 'c'] } } }), 'deployments.synthetic.preload_models', /lists 3 models but max_models_per_replica is 2/));
  test('reads batching: continuous for the stages that step (sdxl, synthetic)', () => {
    for (const stage of ['sdxl', 'synthetic']) {
      const c = compileConfig({ deployments: { d: { stage, models: ['m'], batching: 'continuous' } } });
      assert.equal(c.deployments.d!.batching, 'continuous');
    }
    assert.equal(compileConfig({ deployments: { d: { stage: 'upscaler', models: ['m'], batching: 'request' } } }).deployments.d!.batching, 'request');
  });
  test('rejects batching: continuous for a stage that runs whole batches, naming the key', () =>
    rejects({ deployments: { up: { stage: 'upscaler', models: ['m'], batching: 'continuous' } } }, 'deployments.up.batching', /needs a stage that steps \(sdxl, synthetic\); stage upscaler/));
  test('reads max_waiting_images (default 1) and rejects a negative one, naming the key', () => {
    assert.equal(compileConfig({ deployments: { d: { stage: 'synthetic', models: ['m'], batching: 'continuous', max_waiting_images: 3 } } }).deployments.d!.maxWaitingImages, 3);
    rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], max_waiting_images: -1 } } }), 'deployments.synthetic.max_waiting_images', /./);
  });
  test('rejects an unknown batching mode, naming the key', () =>
    rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], batching: 'iteration' } } }), 'deployments.synthetic.batching', /must be request or continuous, got "iteration"/));
  test('rejects a fractional replica count', () => rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], replicas: 1.5 } } }), 'deployments.synthetic.replicas'));
  test('rejects a string where a number belongs', () => rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], max_queued_requests: '10' } } }), 'deployments.synthetic.max_queued_requests'));
  test('rejects a negative batch wait', () => rejects(minimal({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], batch_wait_timeout_ms: -1 } } }), 'deployments.synthetic.batch_wait_timeout_ms', /number ≥ 0/));
  test('rejects an unknown top-level key', () => rejects(minimal({ deployment: {} }), 'deployment', /unknown key/));
  test('rejects an unknown deployment key', () => rejects({ deployments: { synthetic: { stage: 'synthetic', models: ['m'], max_batch: 4 } } }, 'deployments.synthetic.max_batch', /unknown key \(allowed: stage, models/));
  test('rejects an unknown nats key', () => rejects(minimal({ nats: { server: 'x' } }), 'nats.server', /unknown key/));
  test('rejects an unknown router key', () => rejects(minimal({ router: { port: 1 } }), 'router.port', /unknown key/));
  test('rejects an unknown worker key', () => rejects(minimal({ worker: { heartbeat_ms: 1 } }), 'worker.heartbeat_ms', /unknown key/));
  test('rejects an unknown pipeline key', () => rejects(minimal({ pipelines: { p: { stages: [{ deployment: 'synthetic' }], extra: 1 } } }), 'pipelines.p.extra', /unknown key/));
  test('rejects an unknown pipeline stage key', () => rejects(minimal({ pipelines: { p: { stages: [{ deployment: 'synthetic', modle: 'x' }] } } }), 'pipelines.p.stages[0].modle', /unknown key/));
  test('rejects a deployment without a stage', () => rejects({ deployments: { synthetic: { models: ['m'] } } }, 'deployments.synthetic.stage', /is required/));
  test('rejects a deployment with an empty models list', () => rejects({ deployments: { synthetic: { stage: 'synthetic', models: [] } } }, 'deployments.synthetic.models', /non-empty list/));
  test('rejects a deployment without models', () => rejects({ deployments: { synthetic: { stage: 'synthetic' } } }, 'deployments.synthetic.models'));
  test('rejects a deployment with an empty model id', () => rejects({ deployments: { synthetic: { stage: 'synthetic', models: ['a', ''] } } }, 'deployments.synthetic.models'));
  test('rejects a deployment name with upper-case letters', () => rejects({ deployments: { Synthetic: { stage: 'synthetic', models: ['m'] } } }, 'deployments.Synthetic', /lower-case/));
  test('rejects a deployment that is not a mapping', () => rejects({ deployments: { synthetic: ['x'] } }, 'deployments.synthetic', /mapping/));
  test('rejects a config with no deployments', () => rejects({ deployments: {} }, 'deployments', /at least one deployment/));
  test('rejects a config whose deployments is not a mapping', () => rejects({ deployments: ['a'] }, 'deployments', /mapping/));
  test('rejects a pipeline naming an unknown deployment', () => rejects(minimal({ pipelines: { p: { stages: [{ deployment: 'synthetic' }, { deployment: 'upscale' }] } } }), 'pipelines.p.stages[1].deployment', /unknown deployment "upscale" \(known: synthetic\)/));
  test('rejects a pipeline with no stages', () => rejects(minimal({ pipelines: { p: { stages: [] } } }), 'pipelines.p.stages', /non-empty list/));
  test('rejects a pipeline stage that is not a mapping', () => rejects(minimal({ pipelines: { p: { stages: ['synthetic'] } } }), 'pipelines.p.stages[0]', /mapping/));
  test('rejects a bad pipeline name', () => rejects(minimal({ pipelines: { 'my_pipe': { stages: [{ deployment: 'synthetic' }] } } }), 'pipelines.my_pipe', /lower-case/));
  test('rejects a default_pipeline that names no pipeline', () => rejects(minimal({ default_pipeline: 'nope' }), 'default_pipeline', /unknown pipeline "nope"/));
  test('rejects a NATS prefix that is not subject tokens', () => rejects(minimal({ nats: { prefix: 'a..b' } }), 'nats.prefix'));
  test('rejects a NATS prefix with a wildcard', () => rejects(minimal({ nats: { prefix: 'orrery.*' } }), 'nats.prefix'));
  test('rejects a replica timeout below two intervals', () => rejects(minimal({ router: { replica_timeout_intervals: 1 } }), 'router.replica_timeout_intervals', /\[2, 100\]/));
  test('rejects a heartbeat interval below 20 ms', () => rejects(minimal({ worker: { heartbeat_interval_ms: 10 } }), 'worker.heartbeat_interval_ms'));
  test('rejects a gRPC port above 65535', () => rejects(minimal({ router: { grpc_port: 70000 } }), 'router.grpc_port'));
  test('rejects a root that is not a mapping', () => rejects(['a'], '(root)', /mapping/));
  test('rejects a nats section that is not a mapping', () => rejects(minimal({ nats: 'nats://x' }), 'nats', /mapping/));

  // Top-level scalars are read with path '' and so are named `.key`, not `key` (see report).
  test('names a bad top-level scalar by its bare key', () => {
    rejects(minimal({ max_inline_payload_bytes: 1 }), 'max_inline_payload_bytes');
    rejects(minimal({ default_pipeline: 7 }), 'default_pipeline');
    rejects(minimal({ model_repository: 7 }), 'model_repository');
  });
});

describe('parseConfig', () => {
  test('turns a YAML syntax error into a ConfigError naming the source', () => {
    assert.throws(
      () => parseConfig('deployments:\n  a: [unclosed\n', 'bad.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'ORRERY_ERR_CONFIG');
        assert.equal(err.key, 'bad.yaml');
        assert.match(err.message, /^config bad\.yaml: is not valid YAML: /);
        return true;
      },
    );
  });

  test('rejects duplicate keys as invalid YAML', () => {
    assert.throws(
      () => parseConfig('deployments:\n  a: {stage: synthetic, models: [m]}\n  a: {stage: synthetic, models: [m]}\n', 'dup.yaml'),
      (err: unknown) => err instanceof ConfigError && err.key === 'dup.yaml' && /not valid YAML/.test(err.message),
    );
  });

  test('compiles a YAML document through the same rules', () => {
    assert.throws(
      () => parseConfig('deployments:\n  synthetic:\n    stage: synthetic\n    models: [m]\n    max_batch_size: 0\n'),
      (err: unknown) => err instanceof ConfigError && err.key === 'deployments.synthetic.max_batch_size',
    );
  });
});

describe('jobs: completion window and retention', () => {
  test('default to a 24-hour window and 7 days of retention; hours may be fractions, 0 turns them off', () => {
    const d = compileConfig(minimal()).jobs;
    assert.equal(d.defaultCompletionWindowMs, 24 * 3_600_000);
    assert.equal(d.retentionMs, 168 * 3_600_000);
    const c = compileConfig(minimal({ jobs: { default_completion_window_h: 0, retention_h: 0.001 } })).jobs;
    assert.equal(c.defaultCompletionWindowMs, 0);
    assert.equal(c.retentionMs, 3600);
  });

  test('a negative or absurd value is refused naming the key', () => {
    rejects(minimal({ jobs: { retention_h: -1 } }), 'jobs.retention_h', /≥ 0/);
    rejects(minimal({ jobs: { default_completion_window_h: 1e9 } }), 'jobs.default_completion_window_h', /at most 87600/);
  });
});
