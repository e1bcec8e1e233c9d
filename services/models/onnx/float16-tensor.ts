/**
 * Where raw half bits (a Uint16Array, as float16.ts writes and reads them) meet ONNX Runtime's
 * float16 tensors, on runtimes with and without a global `Float16Array`. Every fp16 feed is made
 * with {@link halfTensor} and every fp16 output read with {@link halfBitsOf}, never by casting a
 * float16 tensor's `data`. (Test stand-ins for sessions build their outputs as the binding does:
 * `new Tensor('float16', halfBits, dims)`.)
 *
 * Why this is needed: where `globalThis.Float16Array` exists (Node ≥ 24), onnxruntime-common
 * stores a float16 tensor's data as a Float16Array — a view it makes over the Uint16Array it is
 * given, and the type it wraps every float16 output in. onnxruntime-node 1.30's binding measures a
 * Float16Array's byte length as 0 (node-addon-api's element-size table predates
 * napi_float16_array) and refuses the feed with `not enough space: expected N, got 0`
 * (microsoft/onnxruntime#32323). A Uint16Array under the tensor's `data` is what the binding reads
 * correctly on every runtime, and Float16Array element access would give values, not bits.
 */
import * as ort from 'onnxruntime-node';

/**
 * A float16 `ort.Tensor` over the half bits `bits` (no copy: the tensor and the caller share the
 * memory, so rewriting `bits` rewrites the feed). Its `data` is `bits` itself on every runtime,
 * which is what onnxruntime-node's binding reads when the tensor is fed.
 * onnxruntime-common throws if `dims` do not hold `bits.length` elements.
 */
export function halfTensor(bits: Uint16Array, dims: readonly number[]): ort.Tensor {
  const tensor = new ort.Tensor('float16', bits, dims);
  // An own property shadows the class's `data` getter, which would return onnxruntime-common's
  // Float16Array view over the same bytes; where there is no Float16Array it returns `bits` anyway.
  if (tensor.data !== bits) Object.defineProperty(tensor, 'data', { value: bits, enumerable: true });
  return tensor;
}

/**
 * The half bits of a float16 tensor: a Uint16Array over the same memory (no copy), whether ONNX
 * Runtime holds them as a Uint16Array (no Float16Array on the runtime) or as a Float16Array.
 * Throws TypeError if `t` is not a float16 tensor with its data on the CPU.
 */
export function halfBitsOf(t: ort.Tensor): Uint16Array {
  if (t.type !== 'float16') throw new TypeError(`expected a float16 tensor, got ${t.type}`);
  const data: unknown = t.data;
  if (data instanceof Uint16Array) return data;
  // A Float16Array (typed here by its shape: the project's TypeScript lib may not declare it).
  if (ArrayBuffer.isView(data) && (data as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT === 2) {
    return new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
  }
  throw new TypeError(`a float16 tensor's data is not 16-bit (${Object.prototype.toString.call(data)})`);
}
