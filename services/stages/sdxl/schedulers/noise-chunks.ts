/**
 * Fresh noise for stochastic steps without a latent-sized buffer per step: one fixed scratch
 * array per scheduler, filled chunk by chunk. Because a GaussianSource's fill is incremental,
 * k chunks draw exactly the numbers one latent-sized fill would, so results do not depend on
 * the chunk size. Steps run synchronously, so items of a batch can share the scratch.
 */
import type { GaussianSource } from '../gaussian-noise.js';

const CHUNK = 16_384;

export class NoiseChunks {
  private scratch: Float32Array | undefined;

  /** Calls `visit(offset, noise)` over consecutive chunks covering `length` standard normals. */
  forEach(source: GaussianSource, length: number, visit: (offset: number, noise: Float32Array) => void): void {
    const scratch = (this.scratch ??= new Float32Array(CHUNK));
    for (let off = 0; off < length; off += CHUNK) {
      const m = Math.min(CHUNK, length - off);
      const buf = m === CHUNK ? scratch : scratch.subarray(0, m);
      source.fill(buf);
      visit(off, buf);
    }
  }
}
