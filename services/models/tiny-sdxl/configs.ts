/**
 * The JSON files of the tiny bundle, key for key as `optimum-cli export onnx` writes them for
 * stabilityai/stable-diffusion-xl-base-1.0 (diffusers / transformers configs), with the tiny sizes
 * substituted. Values not sized by the tiny graphs (vocab, dropout, act names) stay SDXL's own.
 */
import { TINY_CLIP_BOS_ID, TINY_CLIP_EOS_ID, TINY_CLIP_VOCAB_SIZE } from '../tiny-vocab.js';
import { TINY_CROSS_ATTENTION_DIM, TINY_SDXL_DIMS as D } from './dims.js';

const DIFFUSERS_VERSION = '0.30.3';
const TRANSFORMERS_VERSION = '4.44.2';
/** SDXL's VAE scaling factor (latents × 0.13025 before the UNet, ÷ before the decoder). */
export const SDXL_SCALING_FACTOR = 0.13025;

export function modelIndex(): object {
  return {
    _class_name: 'StableDiffusionXLPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    feature_extractor: [null, null],
    force_zeros_for_empty_prompt: true,
    image_encoder: [null, null],
    scheduler: ['diffusers', 'EulerDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    tokenizer_2: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
  };
}

/** SDXL base's scheduler_config.json, unchanged. */
export function schedulerConfig(): object {
  return {
    _class_name: 'EulerDiscreteScheduler',
    _diffusers_version: DIFFUSERS_VERSION,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    clip_sample: false,
    final_sigmas_type: 'zero',
    interpolation_type: 'linear',
    num_train_timesteps: 1000,
    prediction_type: 'epsilon',
    rescale_betas_zero_snr: false,
    sample_max_value: 1.0,
    set_alpha_to_one: false,
    sigma_max: null,
    sigma_min: null,
    skip_prk_steps: true,
    steps_offset: 1,
    timestep_spacing: 'leading',
    timestep_type: 'discrete',
    trained_betas: null,
    use_karras_sigmas: false,
  };
}

type Dtype = 'float32' | 'float16';

export function textEncoderConfig(which: 1 | 2, dtype: Dtype): object {
  const one = which === 1;
  const hidden = one ? D.hiddenSize1 : D.hiddenSize2;
  return {
    _name_or_path: 'stabilityai/stable-diffusion-xl-base-1.0',
    architectures: [one ? 'CLIPTextModel' : 'CLIPTextModelWithProjection'],
    attention_dropout: 0.0,
    bos_token_id: TINY_CLIP_BOS_ID,
    dropout: 0.0,
    eos_token_id: TINY_CLIP_EOS_ID,
    hidden_act: one ? 'quick_gelu' : 'gelu',
    hidden_size: hidden,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: hidden,
    layer_norm_eps: 1e-5,
    max_position_embeddings: D.maxPositions,
    model_type: 'clip_text_model',
    num_attention_heads: 1,
    num_hidden_layers: one ? D.layers1 : D.layers2,
    output_hidden_states: true,
    pad_token_id: 1,
    projection_dim: one ? hidden : D.projectionDim,
    torch_dtype: dtype,
    transformers_version: TRANSFORMERS_VERSION,
    vocab_size: TINY_CLIP_VOCAB_SIZE,
  };
}

export function unetConfig(): object {
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: 'silu',
    addition_embed_type: 'text_time',
    addition_embed_type_num_heads: 64,
    addition_time_embed_dim: D.additionTimeEmbedDim,
    attention_head_dim: [D.unetHeads],
    attention_type: 'default',
    block_out_channels: [D.unetChannels],
    center_input_sample: false,
    class_embed_type: null,
    class_embeddings_concat: false,
    conv_in_kernel: 3,
    conv_out_kernel: 3,
    cross_attention_dim: TINY_CROSS_ATTENTION_DIM,
    cross_attention_norm: null,
    down_block_types: ['CrossAttnDownBlock2D'],
    downsample_padding: 1,
    dual_cross_attention: false,
    encoder_hid_dim: null,
    encoder_hid_dim_type: null,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: D.latentChannels,
    layers_per_block: 1,
    mid_block_only_cross_attention: null,
    mid_block_scale_factor: 1,
    mid_block_type: null,
    norm_eps: 1e-5,
    norm_num_groups: D.unetGroups,
    num_attention_heads: null,
    num_class_embeds: null,
    only_cross_attention: false,
    out_channels: D.latentChannels,
    projection_class_embeddings_input_dim: D.projectionDim + 6 * D.additionTimeEmbedDim,
    resnet_out_scale_factor: 1.0,
    resnet_skip_time_act: false,
    resnet_time_scale_shift: 'default',
    reverse_transformer_layers_per_block: null,
    sample_size: 128,
    time_cond_proj_dim: null,
    time_embedding_act_fn: null,
    time_embedding_dim: D.timeEmbedDim,
    time_embedding_type: 'positional',
    timestep_post_act: null,
    transformer_layers_per_block: [1],
    up_block_types: [],
    upcast_attention: null,
    use_linear_projection: true,
  };
}

/** AutoencoderKL config (vae_decoder/ and vae_encoder/ both carry it, as Optimum writes them). */
export function vaeConfig(): object {
  return {
    _class_name: 'AutoencoderKL',
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: 'silu',
    block_out_channels: [4, 4, 4, 4],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    force_upcast: true,
    in_channels: 3,
    latent_channels: D.latentChannels,
    latents_mean: null,
    latents_std: null,
    layers_per_block: 1,
    mid_block_add_attention: true,
    norm_num_groups: 4,
    out_channels: 3,
    sample_size: 1024,
    scaling_factor: SDXL_SCALING_FACTOR,
    shift_factor: null,
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    use_post_quant_conv: true,
    use_quant_conv: true,
  };
}

const added = (content: string) => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });

/** special_tokens_map.json: tokenizer/ pads with `<|endoftext|>`, tokenizer_2/ with `!`. */
export function specialTokensMap(which: 1 | 2): object {
  return {
    bos_token: added('<|startoftext|>'),
    eos_token: added('<|endoftext|>'),
    pad_token: which === 1 ? '<|endoftext|>' : '!',
    unk_token: added('<|endoftext|>'),
  };
}

/**
 * tokenizer_config.json as transformers saves an SDXL export's folders: `added_tokens_decoder` lists
 * the special tokens by id, tokenizer_2/ also its pad token `!` (id 0), which makes transformers
 * split every `!` of a prompt out (clip-tokenizer.ts). `ids`: where BOS/EOS sit in the vocabulary
 * (the tiny one by default; 49406/49407 in the real one).
 */
export function tokenizerConfig(which: 1 | 2, ids: { readonly bos: number; readonly eos: number } = { bos: TINY_CLIP_BOS_ID, eos: TINY_CLIP_EOS_ID }): object {
  const pad = which === 1 ? '<|endoftext|>' : '!';
  return {
    add_prefix_space: false,
    added_tokens_decoder: {
      ...(which === 2 ? { '0': { ...added('!'), normalized: false, special: true } } : {}),
      [String(ids.bos)]: { ...added('<|startoftext|>'), special: true },
      [String(ids.eos)]: { ...added('<|endoftext|>'), special: true },
    },
    bos_token: '<|startoftext|>',
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: '<|endoftext|>',
    errors: 'replace',
    model_max_length: D.maxPositions,
    pad_token: pad,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: '<|endoftext|>',
  };
}
