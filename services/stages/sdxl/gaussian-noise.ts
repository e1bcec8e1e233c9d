/**
 * Seeded standard normals, identical on every machine: a request's image depends only on its
 * seed, never on the host, the batch it rode in, or Math.random.
 *
 * Generator: the 64-bit seed goes through splitmix64 to fill the 128-bit state of xoshiro128**
 * (Blackman & Vigna), whose 32-bit outputs are pure integer arithmetic (Math.imul, shifts).
 * Two outputs make one 53-bit uniform double; Marsaglia's polar method turns pairs of uniforms
 * into pairs of normals in float64, rounded to float32 on store. The only non-exact operation
 * is Math.log, which V8 computes with its own fdlibm port rather than the platform libm.
 *
 * One source per image: the k-th number a source yields is fixed by (seed, k), and `fill` is
 * incremental (fill(100) twice == fill(200)), so the same seed gives the same noise alone or
 * inside any batch.
 */

export interface GaussianSource {
  /** Writes the next `out.length` standard normals of this source's stream into `out`. */
  fill(out: Float32Array): void;
}

const MASK64 = (1n << 64n) - 1n;

/** splitmix64's output for the given (already advanced) state. */
function splitmix64(state: bigint): bigint {
  let z = state & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

const TWO_POW_26 = 67_108_864;
const TWO_POW_53 = 9_007_199_254_740_992;

class PolarGaussian implements GaussianSource {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare = 0;
  private hasSpare = false;

  constructor(seed: bigint) {
    const gamma = 0x9e3779b97f4a7c15n;
    const base = BigInt.asUintN(64, seed);
    const a = splitmix64(base + gamma);
    const b = splitmix64(base + 2n * gamma);
    // splitmix64 is a bijection on its state, so a and b are never both zero: the state is valid.
    this.s0 = Number(a >> 32n) >>> 0;
    this.s1 = Number(a & 0xffffffffn) >>> 0;
    this.s2 = Number(b >> 32n) >>> 0;
    this.s3 = Number(b & 0xffffffffn) >>> 0;
  }

  /** xoshiro128**: the next 32-bit output. */
  private next(): number {
    const s1 = this.s1;
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** A uniform double in [0, 1) with 53 random bits. */
  private uniform(): number {
    return ((this.next() >>> 5) * TWO_POW_26 + (this.next() >>> 6)) / TWO_POW_53;
  }

  fill(out: Float32Array): void {
    for (let i = 0; i < out.length; i++) {
      if (this.hasSpare) {
        out[i] = this.spare;
        this.hasSpare = false;
        continue;
      }
      let u: number;
      let v: number;
      let s: number;
      do {
        u = 2 * this.uniform() - 1;
        v = 2 * this.uniform() - 1;
        s = u * u + v * v;
      } while (s >= 1 || s === 0);
      const m = Math.sqrt((-2 * Math.log(s)) / s);
      out[i] = u * m;
      this.spare = v * m;
      this.hasSpare = true;
    }
  }
}

/**
 * Standard normals from a seed taken modulo 2^64 (negative seeds wrap, two's complement).
 * Create one per image; the source is stateful and advances with every `fill`.
 */
export function gaussianSource(seed: bigint): GaussianSource {
  return new PolarGaussian(seed);
}
