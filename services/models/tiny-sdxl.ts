/**
 * The tiny SDXL-shaped test bundle (see services/models/README.md, "The tiny SDXL bundle"):
 * {@link writeTinySdxlBundle} writes it; {@link TINY_SDXL_DIMS} records its sizes.
 */
export {
  writeTinySdxlBundle, TINY_SDXL_DEFAULT_SEED,
  type TinySdxlOptions, type TinySdxlBundleInfo, type WrittenFile,
} from './tiny-sdxl/index.js';
export { TINY_SDXL_DIMS, TINY_CROSS_ATTENTION_DIM } from './tiny-sdxl/dims.js';
export { SDXL_SCALING_FACTOR } from './tiny-sdxl/configs.js';
