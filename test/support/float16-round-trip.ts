/**
 * One float16 round trip through a real ONNX Runtime session, shared by the in-process test and
 * the child process the same test starts on a runtime without `Float16Array`
 * (test/unit/float16-tensor.test.ts), so both runtimes run exactly this code.
 */
import { InferenceSession } from 'onnxruntime-node';
import { halfBitsOf, halfTensor } from '../../services/models/onnx/float16-tensor.js';
import { GraphBuilder } from '../../services/models/onnx/onnx-model.js';

/** What came back: the Identity output's half bits, and the Cast-to-float output's values. */
export interface HalfRoundTrip {
  readonly runtimeHasFloat16Array: boolean;
  /** The class of the Identity output's `data` as ONNX Runtime returned it. */
  readonly outputDataClass: string;
  readonly identityBits: number[];
  /** The bits of Cast(x, to = FLOAT) (float32 bits: JSON keeps them exactly, −0, ±Inf and NaN too). */
  readonly castFloatBits: number[];
}

/**
 * Feeds `bits` (half bits) to a model with outputs `y = Identity(x)` (FLOAT16) and
 * `z = Cast(x, to = FLOAT)`, built with the project's GraphBuilder. The feed is a view at a
 * non-zero offset of a larger array, as the denoising loop's sample rows are.
 */
export async function roundTripHalves(bits: readonly number[]): Promise<HalfRoundTrip> {
  const n = bits.length;
  const model = new GraphBuilder('float16-round-trip')
    .addInput('x', 'FLOAT16', [n])
    .addNode('Identity', ['x'], ['y'])
    .addNode('Cast', ['x'], ['z'], { to: 1 /* FLOAT */ })
    .addOutput('y', 'FLOAT16', [n])
    .addOutput('z', 'FLOAT', [n]);
  const session = await InferenceSession.create(model.toBytes(17));
  try {
    const backing = new Uint16Array(n + 3).fill(0xffff);
    const feed = backing.subarray(3);
    feed.set(bits);
    const out = await session.run({ x: halfTensor(feed, [n]) });
    const y = out['y']!;
    return {
      runtimeHasFloat16Array: typeof (globalThis as { Float16Array?: unknown }).Float16Array === 'function',
      outputDataClass: y.data.constructor.name,
      identityBits: [...halfBitsOf(y)],
      castFloatBits: [...new Uint32Array(Float32Array.from(out['z']!.data as Float32Array).buffer)],
    };
  } finally {
    await session.release();
  }
}
