/**
 * float16 tensors at the ONNX Runtime boundary (services/models/onnx/float16-tensor.ts), through
 * real sessions, on this runtime and on one without a global Float16Array (a child process of the
 * same Node with V8's `--no-js-float16array`, where the runtime has one to turn off).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { fromHalf } from '../../services/models/onnx/float16.js';
import { halfBitsOf, halfTensor } from '../../services/models/onnx/float16-tensor.js';
import { GraphBuilder } from '../../services/models/onnx/onnx-model.js';
import { roundTripHalves, type HalfRoundTrip } from '../support/float16-round-trip.js';

/** ±0, 1, −2, the largest finite half, the smallest and largest subnormals, ±Inf, NaN, ≈1/3. */
const HALVES = [0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00, 0x3555];
/** Their float32 values' bits (the NaN as a Float32Array stores it). */
const FLOAT_BITS = [...new Uint32Array(Float32Array.from(HALVES, fromHalf).buffer)];
const hasFloat16Array = typeof (globalThis as { Float16Array?: unknown }).Float16Array === 'function';

function assertRoundTrip(r: HalfRoundTrip, withFloat16Array: boolean): void {
  assert.equal(r.runtimeHasFloat16Array, withFloat16Array);
  // What ONNX Runtime hands back differs by runtime; the bits read through halfBitsOf do not.
  assert.equal(r.outputDataClass, withFloat16Array ? 'Float16Array' : 'Uint16Array');
  assert.deepEqual(r.identityBits, HALVES);
  assert.deepEqual(r.castFloatBits, FLOAT_BITS);
}

describe('float16 tensors at the ONNX Runtime boundary', () => {
  test(`feeds half bits to a real session and reads the same bits back (this runtime ${hasFloat16Array ? 'has' : 'has no'} Float16Array)`, async () => {
    assertRoundTrip(await roundTripHalves(HALVES), hasFloat16Array);
  });

  test('gives the same bits and values on a runtime without Float16Array', {
    skip: hasFloat16Array ? false : 'this runtime has no Float16Array: the test above is that case',
  }, async () => {
    const helper = path.join(__dirname, '../support/float16-round-trip.js');
    const script = `require(${JSON.stringify(helper)}).roundTripHalves(${JSON.stringify(HALVES)})`
      + '.then((r) => process.stdout.write(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });';
    const { stdout } = await promisify(execFile)(process.execPath, ['--no-js-float16array', '-e', script]);
    assertRoundTrip(JSON.parse(stdout) as HalfRoundTrip, false);
  });

  test('feeds the caller\'s memory without a copy and reads outputs as views', async () => {
    const model = new GraphBuilder('neg')
      .addInput('x', 'FLOAT16', [2])
      .addNode('Neg', ['x'], ['y'])
      .addOutput('y', 'FLOAT16', [2]);
    const session = await InferenceSession.create(model.toBytes(17));
    try {
      const bits = Uint16Array.of(0x3c00, 0x4000);
      const feed = halfTensor(bits, [2]);
      assert.equal(feed.data, bits);
      assert.deepEqual([...halfBitsOf((await session.run({ x: feed }))['y']!)], [0xbc00, 0xc000]);
      bits[1] = 0x4200; // 3: the same tensor now feeds the new value
      const y = (await session.run({ x: feed }))['y']!;
      const out = halfBitsOf(y);
      assert.deepEqual([...out], [0xbc00, 0xc200]);
      assert.equal(out.buffer, (y.data as Uint16Array).buffer);
    } finally {
      await session.release();
    }
  });

  test('refuses to read half bits from a tensor that is not float16', () => {
    assert.throws(() => halfBitsOf(new Tensor('float32', Float32Array.of(1), [1])), { name: 'TypeError', message: 'expected a float16 tensor, got float32' });
  });
});
