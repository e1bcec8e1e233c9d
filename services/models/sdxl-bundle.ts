/**
 * Loading an SDXL bundle (an Optimum ONNX export, or the tiny bundle shaped like one) from the
 * model repository: {@link resolveBundleDir} maps a base model id to its folder,
 * {@link inspectSdxlBundle} checks the files, {@link openSdxlBundle} creates the five ONNX Runtime
 * sessions and checks each one's inputs and outputs against the export's facts.
 *
 * Sessions are created from file paths, one after another in pipeline order: ONNX Runtime finds
 * external data (`unet/model.onnx_data`) next to the model, and a bad text encoder fails the load
 * before the multi-gigabyte UNet is read. With `optimized_model_cache_dir` they go through the
 * optimized-model cache (optimized-model-cache.ts), except LoRA-fused components (written at
 * each load); a per-row-timestep UNet (a cached rewrite) goes through it too.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { ModelNotFoundError } from '../common/errors.js';
import {
  checkTextEncoder, checkUnet, checkVaeDecoder, checkVaeEncoder,
  type FloatType, type TimestepInput, type VaeEncoderOutput,
} from './sdxl-bundle-facts.js';
import { inspectSdxlBundle, SdxlBundleError, type BundleLayout, type ComponentFiles } from './sdxl-bundle-layout.js';
import { probeVaeScale } from './sdxl-bundle-probe.js';
import { createCachedSession, type SessionLoadReport } from './optimized-model-cache.js';
import type { SessionOptions } from './session-options.js';
import { unetTimestepPerRow } from './unet-timestep-per-row.js';

export { inspectSdxlBundle, SdxlBundleError, type BundleLayout, type ComponentFiles } from './sdxl-bundle-layout.js';
export type { FloatType, TimestepInput, VaeEncoderOutput } from './sdxl-bundle-facts.js';
export type { SessionOptions } from './session-options.js';
export type { SessionLoadReport } from './optimized-model-cache.js';

/** A plain folder name: no separators, no leading dot (so never `.` or `..`). */
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * The bundle folder of base model `baseId` under `repoDir`. Throws ModelNotFoundError if the id is
 * not a plain name (the caller's grammar should already have refused it) or no such folder exists.
 */
export function resolveBundleDir(repoDir: string, baseId: string): string {
  if (!PLAIN_NAME.test(baseId)) throw new ModelNotFoundError(baseId, 'not a plain bundle name (letters, digits, ".", "_", "-"; no leading dot)');
  const dir = path.join(repoDir, baseId);
  if (!(fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory() ?? false)) {
    throw new ModelNotFoundError(baseId, `no bundle folder ${dir} in the model repository`);
  }
  return dir;
}

/** An open SDXL bundle: sessions plus what the pipeline must know about them. */
export interface SdxlBundle {
  readonly dir: string;
  readonly layout: BundleLayout;
  readonly textEncoder: InferenceSession;
  readonly textEncoder2: InferenceSession;
  readonly unet: InferenceSession;
  readonly vaeDecoder: InferenceSession;
  /** Absent when the bundle has no vae_encoder/ (img2img then fails with a clear error). */
  readonly vaeEncoder?: InferenceSession;
  /** The float type of every model's float inputs and outputs. */
  readonly dtype: FloatType;
  /** The UNet's `timestep`: a float scalar (newer exports) or int64 [steps] (older ones). */
  readonly timestepInput: TimestepInput;
  /**
   * The UNet takes one timestep per row (`[batch]`, each row's value used): rows at different
   * steps may share a call. False for scalar exports unless the per-row rewrite
   * (per-row-timestep-unet.ts) is loaded in place of `unet`, as continuous batching does.
   */
  readonly timestepPerRow: boolean;
  /** The vae_encoder output ('latent_parameters' when there is no encoder). */
  readonly vaeEncoderOutput: VaeEncoderOutput;
  readonly scalingFactor: number;
  readonly forceZerosForEmptyPrompt: boolean;
  readonly hiddenSize1: number;
  readonly hiddenSize2: number;
  readonly pooledSize: number;
  readonly latentChannels: number;
  readonly tokenizerDirs: { readonly 1: string; readonly 2: string };
  readonly schedulerConfigJson: unknown;
  /** Bytes of the model files (model.onnx + external data): the cache's cost of keeping it loaded. */
  readonly sizeBytes: number;
  /** How each session was created (optimized-model cache outcome and time), in load order. */
  readonly sessionLoads: readonly SessionLoadReport[];
  /** Releases every session. Safe to call once. */
  dispose(): Promise<void>;
}

async function createSession(layout: BundleLayout, c: ComponentFiles, options: SessionOptions, overrides: OpenOverrides): Promise<{ session: InferenceSession; report: SessionLoadReport }> {
  const fused = overrides.modelPaths?.[c.name];
  try {
    // A fused override is written anew at every load: caching it would only fill the disk.
    if (fused) return await createCachedSession({ path: fused }, options, { bypass: `${c.name}: a LoRA-fused model, written at each load` });
    return await createCachedSession({ path: overrides.cachedModelPaths?.[c.name] ?? c.model }, options);
  } catch (err) {
    const hint = c.externalData ? '' : `; if the export keeps its weights in ${c.name}/model.onnx_data, that file must sit next to it`;
    throw new SdxlBundleError(layout.dir, `${c.name}/model.onnx`, `ONNX Runtime could not load it: ${(err as Error).message}${hint}`, { cause: err });
  }
}

async function releaseAll(sessions: readonly InferenceSession[]): Promise<void> {
  await Promise.allSettled(sessions.map((s) => s.release()));
}

/** Replacements for a bundle's files. */
export interface OpenOverrides {
  /**
   * Component folder name (`unet`, `text_encoder`, …) → the model file to load instead of
   * `<dir>/<name>/model.onnx`, written anew at each load (a fused LoRA's models): loaded without
   * the optimized-model cache. Wins over {@link cachedModelPaths}.
   */
  readonly modelPaths?: Readonly<Record<string, string | undefined>>;
  /**
   * Component folder name → a replacement that stays on disk between loads (the per-row-timestep
   * UNet of per-row-timestep-unet.ts, in its content-keyed entry): loaded through the
   * optimized-model cache like the bundle's own files.
   */
  readonly cachedModelPaths?: Readonly<Record<string, string | undefined>>;
}

/**
 * Inspects the bundle in `dir`, creates its sessions with `sessionOptions` and validates them.
 * Throws SdxlBundleError (ORRERY_ERR_MODEL_LOAD_FAILED) naming the file; sessions created before
 * a failure are released.
 */
export async function openSdxlBundle(dir: string, sessionOptions: SessionOptions, overrides: OpenOverrides = {}): Promise<SdxlBundle> {
  const layout = inspectSdxlBundle(dir);
  const opened: InferenceSession[] = [];
  const sessionLoads: SessionLoadReport[] = [];
  const open = async (c: ComponentFiles) => {
    const { session, report } = await createSession(layout, c, sessionOptions, overrides);
    opened.push(session);
    sessionLoads.push(report);
    return session;
  };
  try {
    const textEncoder = await open(layout.textEncoder);
    const dtype = checkTextEncoder(layout, 1, textEncoder);
    const textEncoder2 = await open(layout.textEncoder2);
    checkTextEncoder(layout, 2, textEncoder2, dtype);
    const unet = await open(layout.unet);
    const timestepInput = checkUnet(layout, unet, dtype);
    const timestepPerRow = unetTimestepPerRow(overrides.modelPaths?.['unet'] ?? overrides.cachedModelPaths?.['unet'] ?? layout.unet.model, timestepInput);
    const vaeDecoder = await open(layout.vaeDecoder);
    checkVaeDecoder(layout, vaeDecoder, dtype);
    let vaeEncoder: InferenceSession | undefined;
    let vaeEncoderOutput: VaeEncoderOutput = 'latent_parameters';
    if (layout.vaeEncoder) {
      vaeEncoder = await open(layout.vaeEncoder);
      vaeEncoderOutput = checkVaeEncoder(layout, layout.vaeEncoder, vaeEncoder, dtype);
    }
    await probeVaeScale(layout, dtype, vaeDecoder, vaeEncoder ? { session: vaeEncoder, output: vaeEncoderOutput } : undefined);
    let disposed = false;
    return {
      dir: layout.dir, layout, textEncoder, textEncoder2, unet, vaeDecoder, ...(vaeEncoder ? { vaeEncoder } : {}),
      dtype, timestepInput, timestepPerRow, vaeEncoderOutput,
      scalingFactor: layout.scalingFactor, forceZerosForEmptyPrompt: layout.forceZerosForEmptyPrompt,
      hiddenSize1: layout.hiddenSize1, hiddenSize2: layout.hiddenSize2, pooledSize: layout.pooledSize,
      latentChannels: layout.latentChannels, tokenizerDirs: layout.tokenizerDirs,
      schedulerConfigJson: layout.schedulerConfigJson, sizeBytes: layout.sizeBytes, sessionLoads,
      async dispose() {
        if (disposed) return;
        disposed = true;
        await releaseAll(opened);
      },
    };
  } catch (err) {
    await releaseAll(opened);
    throw err;
  }
}
