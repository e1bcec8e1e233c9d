/**
 * SGM (Stability's generative-models / original LDM) UNet module names → diffusers names, in the
 * flattened form kohya LoRA files use (`.` → `_`). SDXL kohya files name UNet modules the SGM way,
 * e.g. `input_blocks_4_1_transformer_blocks_0_attn1_to_q` = diffusers
 * `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`.
 *
 * The block arithmetic is the LDM UNet's with two resnets per level (SD 1.x and SDXL both):
 * `input_blocks.n` (n ≥ 1) is level i = ⌊(n−1)/3⌋, slot j = (n−1) mod 3 (slot 2 is the
 * downsampler); `output_blocks.n` is level ⌊n/3⌋, slot n mod 3 (three resnets per up level);
 * inside a block, `.0` is the resnet and `.1` the transformer (or an up block's upsampler
 * `conv`). SDXL has no transformer at level 0, so its first one is `input_blocks_4_1`; the
 * tiny UNet's single transformer sits at level 0 (`input_blocks_1_1` ↔ `down_blocks.0.attentions.0`),
 * which this arithmetic maps like any other.
 */

/** ResBlock inner names (SGM → diffusers ResnetBlock2D). */
const RESNET_PARTS: ReadonlyArray<[string, string]> = [
  ['in_layers_0', 'norm1'], ['in_layers_2', 'conv1'], ['emb_layers_1', 'time_emb_proj'],
  ['out_layers_0', 'norm2'], ['out_layers_3', 'conv2'], ['skip_connection', 'conv_shortcut'],
];

/** Fixed top-level modules. */
const FIXED: Readonly<Record<string, string>> = {
  time_embed_0: 'time_embedding_linear_1', time_embed_2: 'time_embedding_linear_2',
  label_emb_0_0: 'add_embedding_linear_1', label_emb_0_2: 'add_embedding_linear_2',
  out_0: 'conv_norm_out', out_2: 'conv_out', input_blocks_0_0: 'conv_in',
};

function resnet(prefix: string, rest: string | undefined): string | undefined {
  if (rest === undefined) return prefix;
  for (const [sgm, diffusers] of RESNET_PARTS) {
    if (rest === sgm || rest.startsWith(`${sgm}_`)) return `${prefix}_${diffusers}${rest.slice(sgm.length)}`;
  }
  return undefined;
}

const join = (prefix: string, rest: string | undefined) => (rest === undefined ? prefix : `${prefix}_${rest}`);

/**
 * The flattened diffusers name of a flattened SGM UNet module name, or undefined when `stem` is
 * not an SGM name (a kohya file may use flattened diffusers names instead; those pass unchanged
 * through the caller's lookup).
 */
export function sgmToDiffusers(stem: string): string | undefined {
  if (FIXED[stem]) return FIXED[stem];
  let m = /^input_blocks_(\d+)_(\d+)(?:_(.+))?$/.exec(stem);
  if (m) {
    const n = Number(m[1]);
    const k = Number(m[2]);
    const rest = m[3];
    if (n === 0) return undefined;
    const level = Math.floor((n - 1) / 3);
    const slot = (n - 1) % 3;
    if (slot === 2) return k === 0 && (rest === 'op' || rest?.startsWith('op_')) ? `down_blocks_${level}_downsamplers_0_conv${rest.slice(2)}` : undefined;
    if (k === 0) return resnet(`down_blocks_${level}_resnets_${slot}`, rest);
    if (k === 1) return join(`down_blocks_${level}_attentions_${slot}`, rest);
    return undefined;
  }
  m = /^middle_block_(\d)(?:_(.+))?$/.exec(stem);
  if (m) {
    if (m[1] === '0') return resnet('mid_block_resnets_0', m[2]);
    if (m[1] === '1') return join('mid_block_attentions_0', m[2]);
    if (m[1] === '2') return resnet('mid_block_resnets_1', m[2]);
    return undefined;
  }
  m = /^output_blocks_(\d+)_(\d+)(?:_(.+))?$/.exec(stem);
  if (m) {
    const n = Number(m[1]);
    const k = Number(m[2]);
    const rest = m[3];
    const level = Math.floor(n / 3);
    const slot = n % 3;
    if (k === 0) return resnet(`up_blocks_${level}_resnets_${slot}`, rest);
    if (rest === 'conv') return `up_blocks_${level}_upsamplers_0_conv`;
    if (k === 1) return join(`up_blocks_${level}_attentions_${slot}`, rest);
    return undefined;
  }
  return undefined;
}

/** The inverse for names the writer of test LoRAs needs: flattened diffusers → flattened SGM. */
export function diffusersToSgm(flat: string): string | undefined {
  for (const [sgm, d] of Object.entries(FIXED)) if (d === flat) return sgm;
  const m = /^down_blocks_(\d+)_(resnets|attentions)_(\d+)(?:_(.+))?$/.exec(flat);
  if (!m) return undefined;
  const n = 3 * Number(m[1]) + Number(m[3]) + 1;
  if (m[2] === 'attentions') return join(`input_blocks_${n}_1`, m[4]);
  if (m[4] === undefined) return `input_blocks_${n}_0`;
  for (const [sgm, d] of RESNET_PARTS) {
    if (m[4] === d || m[4].startsWith(`${d}_`)) return `input_blocks_${n}_0_${sgm}${m[4].slice(d.length)}`;
  }
  return undefined;
}
