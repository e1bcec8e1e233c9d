/**
 * The tiny bundle's sizes next to SDXL base 1.0's. Only the sizes shrink: names, ranks, dtypes and
 * dynamic axes are the export's. Code that consumes a bundle reads these from the configs and
 * the sessions, never from here.
 */
export const TINY_SDXL_DIMS = {
  /** text_encoder hidden size (SDXL: 768) and layers (12, so `hidden_states.0..12`, as SDXL). */
  hiddenSize1: 32,
  layers1: 12,
  /** text_encoder_2 hidden size (SDXL: 1280) and layers (32, so `hidden_states.0..32`, as SDXL). */
  hiddenSize2: 64,
  layers2: 32,
  /** text_encoder_2 projection_dim, the size of `text_embeds` (SDXL: 1280; differs from hiddenSize2 here on purpose). */
  projectionDim: 48,
  /** Token positions (SDXL: 77, the same). */
  maxPositions: 77,
  /** UNet block_out_channels[0] (SDXL: 320), its attention heads (SDXL's first cross-attn block: 10 of 64). */
  unetChannels: 32,
  unetHeads: 2,
  /** norm_num_groups (SDXL: 32 groups of 10 channels; here 8 of 4). */
  unetGroups: 8,
  /** time_embedding width (SDXL: 1280 = 4 × 320). */
  timeEmbedDim: 128,
  /** addition_time_embed_dim: sinusoid width per time_id (SDXL: 256). */
  additionTimeEmbedDim: 8,
  /** Latent channels (SDXL: 4, the same) and the VAE's spatial factor (8, the same). */
  latentChannels: 4,
  vaeScaleFactor: 8,
} as const;

/** UNet cross_attention_dim = hiddenSize1 + hiddenSize2 (SDXL: 2048). */
export const TINY_CROSS_ATTENTION_DIM = TINY_SDXL_DIMS.hiddenSize1 + TINY_SDXL_DIMS.hiddenSize2;
