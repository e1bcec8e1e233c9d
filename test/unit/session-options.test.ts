import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../services/common/errors.js';
import { parseSessionOptions, toOrtSessionOptions } from '../../services/models/session-options.js';

describe('session options', () => {
  test('defaults to the CPU provider, ORT-chosen threads and full graph optimization', () => {
    const o = parseSessionOptions({ unrelated: 1 });
    assert.deepEqual(o, { executionProvider: 'cpu', deviceId: 0, intraOpThreads: 0, graphOptimizationLevel: 'all' });
    assert.deepEqual(toOrtSessionOptions(o), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  });

  test('maps GPU providers with their device id and CPU as the last fallback', () => {
    const trt = toOrtSessionOptions(parseSessionOptions({ execution_provider: 'tensorrt', device_id: 2, intra_op_threads: 4, graph_optimization_level: 'basic' }));
    assert.deepEqual(trt, {
      executionProviders: [{ name: 'tensorrt', deviceId: 2 }, { name: 'cuda', deviceId: 2 }, 'cpu'],
      graphOptimizationLevel: 'basic',
      intraOpNumThreads: 4,
    });
    assert.deepEqual(toOrtSessionOptions({ executionProvider: 'cuda' }).executionProviders, [{ name: 'cuda', deviceId: 0 }, 'cpu']);
  });

  test('reads optimized_model_cache_dir, which ONNX Runtime never sees; empty means no cache', () => {
    const o = parseSessionOptions({ optimized_model_cache_dir: '/models/.optimized' });
    assert.equal(o.optimizedModelCacheDir, '/models/.optimized');
    assert.deepEqual(toOrtSessionOptions(o), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    assert.equal('optimizedModelCacheDir' in parseSessionOptions({ optimized_model_cache_dir: '' }), false);
  });

  test('rejects bad values with a ConfigError naming the option', () => {
    for (const [key, value] of [['execution_provider', 'rocm'], ['device_id', -1], ['intra_op_threads', 1.5], ['graph_optimization_level', 'max'], ['optimized_model_cache_dir', 7]] as const) {
      assert.throws(() => parseSessionOptions({ [key]: value }), (err: unknown) => err instanceof ConfigError && err.key === `options.${key}`);
    }
  });
});
