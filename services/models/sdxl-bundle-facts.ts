/**
 * The interface facts of an Optimum SDXL export, checked against each ONNX Runtime session's
 * input/output metadata (names, element types, ranks, and the sizes the configs fix wherever the
 * model declares them as numbers; symbolic axes are not trusted — Optimum even names
 * `text_embeds`' projection axis "sequence_length").
 *
 * Pure functions of (layout, metadata): each returns what the pipeline needs to know or throws
 * {@link SdxlBundleError} naming the file, the tensor, what was expected and what was found.
 */
import type { InferenceSession } from 'onnxruntime-node';
import { SdxlBundleError, type BundleLayout, type ComponentFiles } from './sdxl-bundle-layout.js';

export type FloatType = 'float32' | 'float16';
export type TimestepInput = { readonly type: 'float32' | 'float16' | 'int64'; readonly scalar: boolean };
export type VaeEncoderOutput = 'latent_parameters' | 'latent_sample';

/** The part of an InferenceSession these checks read. */
export interface SessionMetadata {
  readonly inputMetadata: readonly InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly InferenceSession.ValueMetadata[];
}

type Tensor = InferenceSession.ValueMetadata & { readonly isTensor: true };
type Kind = 'input' | 'output';

class Checker {
  readonly file: string;
  constructor(private readonly layout: BundleLayout, component: ComponentFiles, private readonly s: SessionMetadata) {
    this.file = `${component.name}/model.onnx`;
  }

  fail(why: string): never {
    throw new SdxlBundleError(this.layout.dir, this.file, why);
  }

  private list(kind: Kind): readonly InferenceSession.ValueMetadata[] {
    return kind === 'input' ? this.s.inputMetadata : this.s.outputMetadata;
  }

  has(kind: Kind, name: string): boolean {
    return this.list(kind).some((m) => m.name === name);
  }

  /** The named tensor; `expected` lists the export's names for the error message. */
  tensor(kind: Kind, name: string, expected: readonly string[]): Tensor {
    const m = this.list(kind).find((v) => v.name === name);
    if (!m) {
      const found = this.list(kind).map((v) => v.name).join(', ') || 'none';
      this.fail(`missing ${kind} "${name}" (an Optimum SDXL export's ${kind}s are ${expected.join(', ')}; this model has ${found})`);
    }
    if (!m.isTensor) this.fail(`${kind} "${name}" is not a tensor`);
    return m;
  }

  type(kind: Kind, t: Tensor, allowed: readonly string[]): void {
    if (!allowed.includes(t.type)) this.fail(`${kind} "${t.name}" is ${t.type}; expected ${allowed.join(' or ')}`);
  }

  /** A float tensor; when `dtype` is known it must match (one float type per bundle). */
  float(kind: Kind, t: Tensor, dtype: FloatType | undefined): FloatType {
    this.type(kind, t, ['float32', 'float16']);
    if (dtype && t.type !== dtype) {
      this.fail(`${kind} "${t.name}" is ${t.type}, but the bundle's other models use ${dtype} (an export uses one float type throughout)`);
    }
    return t.type as FloatType;
  }

  rank(kind: Kind, t: Tensor, n: number, shape: string): void {
    if (t.shape.length !== n) this.fail(`${kind} "${t.name}" has rank ${t.shape.length} [${t.shape.join(', ')}]; expected ${shape}`);
  }

  /** Checks a declared size when it is a number; symbolic axes pass. */
  dim(kind: Kind, t: Tensor, axis: number, expected: number, source: string): void {
    const d = t.shape[axis];
    if (typeof d === 'number' && d !== expected) this.fail(`${kind} "${t.name}" axis ${axis} is ${d}; expected ${expected} (${source})`);
  }
}

/** text_encoder (which = 1) or text_encoder_2 (which = 2); returns the float type of its outputs. */
export function checkTextEncoder(layout: BundleLayout, which: 1 | 2, s: SessionMetadata, dtype?: FloatType): FloatType {
  const comp = which === 1 ? layout.textEncoder : layout.textEncoder2;
  const c = new Checker(layout, comp, s);
  const hidden = which === 1 ? layout.hiddenSize1 : layout.hiddenSize2;
  const source = `${comp.name}/config.json hidden_size`;
  const ids = c.tensor('input', 'input_ids', ['input_ids']);
  c.type('input', ids, ['int64']);
  c.rank('input', ids, 2, '[batch_size, sequence_length]');
  const outs = which === 1 ? ['last_hidden_state', 'pooler_output', 'hidden_states.0…N'] : ['text_embeds', 'last_hidden_state', 'hidden_states.0…N'];
  const last = c.tensor('output', 'last_hidden_state', outs);
  const ft = c.float('output', last, dtype);
  c.rank('output', last, 3, '[batch_size, sequence_length, hidden_size]');
  c.dim('output', last, 2, hidden, source);
  if (which === 1) c.float('output', c.tensor('output', 'pooler_output', outs), ft);
  else {
    const te = c.tensor('output', 'text_embeds', outs);
    c.float('output', te, ft);
    c.rank('output', te, 2, '[batch_size, projection_dim]');
    c.dim('output', te, 1, layout.pooledSize, 'text_encoder_2/config.json projection_dim');
  }
  // SDXL conditions on the penultimate hidden state, so at least hidden_states.0 and .1 must exist.
  let n = 0;
  while (c.has('output', `hidden_states.${n}`)) {
    const h = c.tensor('output', `hidden_states.${n}`, outs);
    c.float('output', h, ft);
    c.dim('output', h, 2, hidden, source);
    n++;
  }
  if (n < 2) c.fail(`has ${n} "hidden_states.N" outputs; SDXL needs the penultimate one (export with output_hidden_states, as Optimum does)`);
  return ft;
}

const UNET_INPUTS = ['sample', 'timestep', 'encoder_hidden_states', 'text_embeds', 'time_ids'];

/** The UNet: its float type must be `dtype`; returns the kind of timestep it takes. */
export function checkUnet(layout: BundleLayout, s: SessionMetadata, dtype: FloatType): TimestepInput {
  const c = new Checker(layout, layout.unet, s);
  const sample = c.tensor('input', 'sample', UNET_INPUTS);
  c.float('input', sample, dtype);
  c.rank('input', sample, 4, '[batch_size, channels, height, width]');
  c.dim('input', sample, 1, layout.latentChannels, 'unet/config.json in_channels');
  const t = c.tensor('input', 'timestep', UNET_INPUTS);
  c.type('input', t, ['float32', 'float16', 'int64']);
  if (t.shape.length > 1) c.fail(`input "timestep" has rank ${t.shape.length}; expected a scalar [] (newer exports) or [steps] (older exports)`);
  const ehs = c.tensor('input', 'encoder_hidden_states', UNET_INPUTS);
  c.float('input', ehs, dtype);
  c.rank('input', ehs, 3, '[batch_size, sequence_length, cross_attention_dim]');
  c.dim('input', ehs, 2, layout.crossAttentionDim, 'unet/config.json cross_attention_dim');
  const te = c.tensor('input', 'text_embeds', UNET_INPUTS);
  c.float('input', te, dtype);
  c.rank('input', te, 2, '[batch_size, projection_dim]');
  c.dim('input', te, 1, layout.pooledSize, 'text_encoder_2/config.json projection_dim');
  const ids = c.tensor('input', 'time_ids', UNET_INPUTS);
  c.float('input', ids, dtype);
  c.rank('input', ids, 2, '[batch_size, 6]');
  c.dim('input', ids, 1, 6, 'SDXL micro-conditioning: orig_h, orig_w, crop_top, crop_left, target_h, target_w');
  const out = c.tensor('output', 'out_sample', ['out_sample']);
  c.float('output', out, dtype);
  c.rank('output', out, 4, '[batch_size, channels, height, width]');
  c.dim('output', out, 1, layout.latentChannels, 'unet/config.json in_channels');
  return { type: t.type as TimestepInput['type'], scalar: t.shape.length === 0 };
}

/** vae_decoder: latent_sample [B, C, h, w] → sample [B, 3, H, W]. */
export function checkVaeDecoder(layout: BundleLayout, s: SessionMetadata, dtype: FloatType): void {
  const c = new Checker(layout, layout.vaeDecoder, s);
  const z = c.tensor('input', 'latent_sample', ['latent_sample']);
  c.float('input', z, dtype);
  c.rank('input', z, 4, '[batch_size, latent_channels, latent_height, latent_width]');
  c.dim('input', z, 1, layout.latentChannels, 'vae_decoder/config.json latent_channels');
  const x = c.tensor('output', 'sample', ['sample']);
  c.float('output', x, dtype);
  c.rank('output', x, 4, '[batch_size, 3, height, width]');
  c.dim('output', x, 1, 3, 'RGB');
}

/** vae_encoder: sample [B, 3, H, W] → latent_parameters [B, 2C, h, w] or latent_sample [B, C, h, w]. */
export function checkVaeEncoder(layout: BundleLayout, component: ComponentFiles, s: SessionMetadata, dtype: FloatType): VaeEncoderOutput {
  const c = new Checker(layout, component, s);
  const x = c.tensor('input', 'sample', ['sample']);
  c.float('input', x, dtype);
  c.rank('input', x, 4, '[batch_size, 3, height, width]');
  c.dim('input', x, 1, 3, 'RGB');
  const kind: VaeEncoderOutput = c.has('output', 'latent_parameters') || !c.has('output', 'latent_sample') ? 'latent_parameters' : 'latent_sample';
  const out = c.tensor('output', kind, ['latent_parameters (newer exports)', 'latent_sample (older exports)']);
  c.float('output', out, dtype);
  c.rank('output', out, 4, '[batch_size, channels, height, width]');
  const channels = kind === 'latent_parameters' ? 2 * layout.latentChannels : layout.latentChannels;
  c.dim('output', out, 1, channels, kind === 'latent_parameters' ? 'mean ‖ logvar: 2 × latent_channels' : 'latent_channels');
  return kind;
}
