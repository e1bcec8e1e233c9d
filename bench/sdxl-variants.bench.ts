/**
 * SDXL variants on the tiny bundle (CPU): fp32 / fp16 / int8 / q4 as `orrery models quantize`
 * writes them (bundle and UNet bytes, UNet session load time, time per UNet call, UNet output error
 * and final-image PSNR against fp32), and a LoRA fused vs unfused (per UNet call). The tiny UNet
 * is ~100 k parameters whose time goes to 3×3 convolutions over the latents, so the figures show
 * each mechanism's relative costs on this machine, not SDXL's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { fuseLoraIntoBundle } from '../services/models/lora/fused-bundle.js';
import { addUnfusedLoraBranches } from '../services/models/lora/unfused-branch.js';
import { halfToFloat32, float32ToHalf } from '../services/models/onnx/float16.js';
import { halfBitsOf, halfTensor } from '../services/models/onnx/float16-tensor.js';
import { decodeModel, encodeModel } from '../services/models/onnx/onnx-model.js';
import { quantizeBundle, type QuantizeReport } from '../services/models/quantize/quantize-bundle.js';
import { imagePsnr } from '../services/stages/sdxl/image-psnr.js';
import { quantizeMatMulWeightsQ4 } from '../services/models/quantize/quantize-q4.js';
import { randomValues } from '../services/models/tiny-sdxl/net.js';
import { writeTinyLora } from '../services/models/tiny-sdxl/tiny-lora.js';
import { writeTinySdxlBundle } from '../services/models/tiny-sdxl.js';
import type { BenchResult } from './lib/types.js';

const CALLS = 20;
const LOADS = 6;
/** The bounds the checks hold each variant to (the integration tests use the same ones). */
const MIN_PSNR_DB = { fp16: 45, int8: 30, q4: 22 } as const;

type Dtype = 'float32' | 'float16';

/** The 21:9 bucket's latents (1536x640 → 80x192), classifier-free guidance batch 2, as float32. */
function unetInputs(): Record<string, { data: Float32Array; dims: number[] }> {
  const f = (name: string, dims: number[], std = 1) => ({ data: randomValues(3, name, dims.reduce((a, d) => a * d, 1), std), dims });
  return { sample: f('s', [2, 4, 80, 192]), timestep: { data: Float32Array.of(500), dims: [] }, encoder_hidden_states: f('e', [2, 77, 96]), text_embeds: f('t', [2, 48]), time_ids: f('i', [2, 6], 300) };
}

function feeds(dtype: Dtype): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(unetInputs()).map(([k, v]) => [k, dtype === 'float16' ? halfTensor(float32ToHalf(v.data), v.dims) : new Tensor('float32', v.data, v.dims)]));
}

interface UnetTiming {
  /** Median session creation time. */
  readonly loadMs: number;
  /** Median time per call (after one warm-up call). */
  readonly callMs: number;
  /** out_sample of the fixed inputs, as float32. */
  readonly out: Float32Array;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Times UNet models one after another, each alone (ONNX Runtime's intra-op threads spin for a while
 * after a run, so interleaving sessions would bill each model for the previous one's spinning), in
 * two passes, forward and backward, pooling the samples: whichever model comes first in a pass
 * runs on a cooler machine state, and the second pass evens that out.
 */
async function timeUnets(models: ReadonlyArray<{ file: string; dtype: Dtype }>): Promise<UnetTiming[]> {
  const options = { graphOptimizationLevel: 'all' } as const;
  const loads = models.map(() => [] as number[]);
  const calls = models.map(() => [] as number[]);
  const outs: Float32Array[] = [];
  const order = models.map((_, i) => i);
  for (const pass of [order, [...order].reverse()]) {
    for (const i of pass) {
      const m = models[i]!;
      for (let l = 0; l < Math.ceil(LOADS / 2); l++) {
        const t0 = performance.now();
        await (await InferenceSession.create(m.file, options)).release();
        loads[i]!.push(performance.now() - t0);
      }
      const s = await InferenceSession.create(m.file, options);
      const input = feeds(m.dtype);
      const y = (await s.run(input))['out_sample']!;
      outs[i] = y.type === 'float16' ? halfToFloat32(halfBitsOf(y)) : Float32Array.from(y.data as Float32Array);
      for (let c = 0; c < CALLS / 2; c++) {
        const c0 = performance.now();
        await s.run(input);
        calls[i]!.push(performance.now() - c0);
      }
      await s.release();
    }
  }
  return models.map((_, i) => ({ loadMs: median(loads[i]!), callMs: median(calls[i]!), out: outs[i]! }));
}

/**
 * RMS(out − ref) / RMS(ref − sample): the tiny UNet returns `sample + ε-part`, so the error is
 * measured against the part the weights compute, not the skip.
 */
function unetError(out: Float32Array, ref: Float32Array, sample: Float32Array): number {
  let se = 0;
  let ss = 0;
  for (let i = 0; i < ref.length; i++) {
    se += (out[i]! - ref[i]!) ** 2;
    ss += (ref[i]! - sample[i]!) ** 2;
  }
  return Math.sqrt(se / ss);
}

const dirBytes = (dir: string) => fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).reduce((n, e) => n + fs.statSync(path.join(e.parentPath, e.name)).size, 0);

export async function run(): Promise<BenchResult> {
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-bench-variants-'));
  try {
    const base = path.join(repo, 'tiny-sdxl');
    await writeTinySdxlBundle(base, { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });

    // Variants, each through the real command path (written, rendered and PSNR-checked).
    const reports: Record<'fp16' | 'int8' | 'q4', QuantizeReport> = {} as never;
    const writeMs: Record<string, number> = {};
    for (const v of ['fp16', 'int8', 'q4'] as const) {
      const t0 = performance.now();
      reports[v] = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: v, minPsnrDb: 0 }, imagePsnr);
      writeMs[v] = performance.now() - t0;
    }
    const sample = unetInputs()['sample']!.data;
    const variants = [
      { name: 'fp32', dir: base, dtype: 'float32' as Dtype },
      { name: 'fp16', dir: reports.fp16.dir, dtype: 'float16' as Dtype },
      { name: 'int8', dir: reports.int8.dir, dtype: 'float32' as Dtype },
      { name: 'q4', dir: reports.q4.dir, dtype: 'float32' as Dtype },
    ];
    // The LoRA models (fused into the weights vs explicit low-rank branches) are timed with them.
    const loraFile = path.join(repo, 'loras', 'bench.safetensors');
    const modules = writeTinyLora(loraFile, { format: 'kohya', seed: 9 });
    const t0 = performance.now();
    const fused = fuseLoraIntoBundle(base, loraFile, { scale: 1, unmatched: 'error', outDir: path.join(repo, 'fused') });
    const fuseMs = performance.now() - t0;
    const unfusedModel = decodeModel(fs.readFileSync(path.join(base, 'unet', 'model.onnx')));
    addUnfusedLoraBranches(unfusedModel, modules.filter((m) => m.component === 'unet'));
    // Beside the base UNet: its initializers point at model.onnx_data there.
    const unfusedFile = path.join(base, 'unet', 'unfused.onnx');
    fs.writeFileSync(unfusedFile, encodeModel(unfusedModel));
    const measured = await timeUnets([
      ...variants.map((v) => ({ file: path.join(v.dir, 'unet', 'model.onnx'), dtype: v.dtype })),
      { file: fused.modelPaths.unet!, dtype: 'float32' }, { file: unfusedFile, dtype: 'float32' },
    ]);
    fs.rmSync(unfusedFile);
    const timings: Record<string, UnetTiming> = Object.fromEntries(variants.map((v, i) => [v.name, measured[i]!]));
    const withFused = measured[variants.length]!;
    const withUnfused = measured[variants.length + 1]!;
    const rows = variants.map((v) => {
      const t = timings[v.name]!;
      const r = v.name === 'fp32' ? undefined : reports[v.name as 'fp16' | 'int8' | 'q4'];
      return {
        variant: v.name, bundleBytes: dirBytes(v.dir), unetBytes: dirBytes(path.join(v.dir, 'unet')), loadMs: t.loadMs, callMs: t.callMs,
        unetError: v.name === 'fp32' ? 0 : unetError(t.out, timings['fp32']!.out, sample), psnrDb: r?.psnrDb ?? Infinity,
      };
    });

    // Where q4's image error comes from: one model quantized at a time.
    const q4OneModel: Record<string, number> = {};
    for (const c of ['text_encoder', 'text_encoder_2', 'unet']) {
      const id = `tiny-sdxl-q4-${c.replace(/_/g, '-')}`;
      fs.cpSync(base, path.join(repo, id), { recursive: true });
      const dir = path.join(repo, id, c);
      const model = decodeModel(fs.readFileSync(path.join(dir, 'model.onnx')));
      quantizeMatMulWeightsQ4(model, dir);
      fs.rmSync(path.join(dir, 'model.onnx_data'), { force: true });
      fs.writeFileSync(path.join(dir, 'model.onnx'), encodeModel(model));
      q4OneModel[c] = await imagePsnr(repo, 'tiny-sdxl', repo, id);
      fs.rmSync(path.join(repo, id), { recursive: true });
    }

    // What ONNX Runtime makes of each UNet on this CPU: the op counts of the graph it runs.
    const opsOf = (file: string) => {
      const counts: Record<string, number> = {};
      for (const n of decodeModel(fs.readFileSync(file)).graph!.node!) counts[n.op_type!] = (counts[n.op_type!] ?? 0) + 1;
      return counts;
    };
    const ortOps: Record<string, { inFile: Record<string, number>; run: Record<string, number> }> = {};
    for (const v of variants) {
      const file = path.join(v.dir, 'unet', 'model.onnx');
      const optimizedFile = path.join(repo, `unet-${v.name}-optimized.onnx`);
      await (await InferenceSession.create(file, { graphOptimizationLevel: 'all', optimizedModelFilePath: optimizedFile, logSeverityLevel: 3 })).release();
      ortOps[v.name] = { inFile: opsOf(file), run: opsOf(optimizedFile) };
    }
    const op = (v: string, name: string, where: 'inFile' | 'run' = 'run') => ortOps[v]![where][name] ?? 0;

    const plain = timings['fp32']!;

    const row = (name: string) => rows.find((r) => r.variant === name)!;
    const unetOf = (name: string) => row(name).unetBytes;
    const mb = (n: number) => (n / 1e6).toFixed(2);
    return {
      name: 'sdxl-variants',
      title: 'SDXL variants on the tiny bundle: fp32 / fp16 / int8 / q4, and fused vs unfused LoRA',
      checks: [
        ...(['fp16', 'int8', 'q4'] as const).map((v) => ({ name: `${v} variant PSNR vs fp32`, measured: Number(reports[v].psnrDb.toFixed(2)), unit: 'dB', target: `≥ ${MIN_PSNR_DB[v]}`, pass: reports[v].psnrDb >= MIN_PSNR_DB[v] })),
        { name: 'UNet bytes q4 / int8 / fp32', measured: Number((unetOf('q4') / unetOf('fp32')).toFixed(3)), unit: '× fp32', target: 'q4 < int8 < fp32', pass: unetOf('q4') < unetOf('int8') && unetOf('int8') < unetOf('fp32'), note: `int8 is ${(unetOf('int8') / unetOf('fp32')).toFixed(3)} × fp32` },
        { name: 'fused LoRA UNet call vs base', measured: Number((withFused.callMs / plain.callMs).toFixed(3)), unit: '×', target: '≈ 1 (fusion is free per step)', pass: withFused.callMs / plain.callMs < 1.15 },
      ],
      tables: [
        {
          title: `Variants: UNet batch 2 at 80×192 latents (CPU, graph optimization "all"; two passes, forward and backward: session load median of ${LOADS}, call median of ${CALLS})`,
          columns: ['variant', 'bundle bytes', 'unet bytes', 'UNet session load ms', 'ms per UNet call (= per step)', 'UNet ε error vs fp32 (rel. RMS)', 'final image PSNR vs fp32 (dB)'],
          rows: rows.map((r) => [r.variant, r.bundleBytes, r.unetBytes, r.loadMs.toFixed(1), r.callMs.toFixed(2), r.variant === 'fp32' ? '—' : r.unetError.toExponential(2), r.variant === 'fp32' ? '—' : r.psnrDb.toFixed(2)]),
          note: 'PSNR: the image `orrery models quantize` renders to check a variant (fixed prompt, seed 42, 8 Euler steps, 128×64) against the fp32 image. UNet ε error: RMS of the output difference over RMS of the UNet output minus its input skip (the part the weights compute).',
        },
        {
          title: `LoRA: UNet call, batch 2 at 80×192 latents (median of ${CALLS}, CPU)`,
          columns: ['model', 'ms per call'],
          rows: [['base (fp32)', plain.callMs.toFixed(2)], ['LoRA fused', withFused.callMs.toFixed(2)], ['LoRA unfused (low-rank branches)', withUnfused.callMs.toFixed(2)]],
        },
      ],
      notes: [
        `Sizes: fp16 ${mb(row('fp16').bundleBytes)} MB, int8 ${mb(row('int8').bundleBytes)} MB, q4 ${mb(row('q4').bundleBytes)} MB against fp32 ${mb(row('fp32').bundleBytes)} MB. int8 and q4 rewrite only MatMul weights (${reports.q4.tensorsRewritten} of them, ≥ 1024 elements); the token embeddings (a Gather), convolutions and norms stay float32, which is why the bundles shrink by less than 4× / 8×. fp16 halves every float tensor of all five models.`,
        `q4 (MatMulNBits, blocks of 32, asymmetric) has 16 levels per block: its image error is the largest. One model at a time, q4 gives PSNR ${q4OneModel['text_encoder']!.toFixed(1)} dB (text_encoder), ${q4OneModel['text_encoder_2']!.toFixed(1)} dB (text_encoder_2, 32 random-weight layers) and ${q4OneModel['unet']!.toFixed(1)} dB (unet).`,
        `Per UNet call, fp16 takes ${(row('fp16').callMs / row('fp32').callMs).toFixed(2)}×, int8 ${(row('int8').callMs / row('fp32').callMs).toFixed(2)}× and q4 ${(row('q4').callMs / row('fp32').callMs).toFixed(2)}× the fp32 time here (a few percent is noise on this machine). Why fp16 is not faster and q4 barely differs: fp16: ONNX Runtime's CPU provider has float16 kernels for few ops on x86, so it wraps the others in Casts to float32 and back: the fp16 UNet file has ${op('fp16', 'Cast', 'inFile')} Cast nodes, the graph ONNX Runtime runs has ${op('fp16', 'Cast')}, so every step converts its activations back and forth. int8 and q4: ONNX Runtime runs both as MatMulNBits (it fuses int8's DequantizeLinear → MatMul into an 8-bit MatMulNBits at load: ${op('int8', 'DequantizeLinear', 'inFile')} DequantizeLinear in the file, ${op('int8', 'MatMulNBits')} MatMulNBits run; q4 runs ${op('q4', 'MatMulNBits')}). They save weight bytes and memory bandwidth, which matters for SDXL's 2.6 G-parameter UNet, but this UNet's MatMuls are tiny (K, N ≤ 256) and its time goes to 3×3 convolutions over 80×192 latents, which no variant changes. On a GPU, fp16 is the fast variant; on CPU the variants buy size, not speed.`,
        `Writing each variant (copy, rewrite, render both images, compare) took fp16 ${writeMs['fp16']!.toFixed(0)} ms, int8 ${writeMs['int8']!.toFixed(0)} ms, q4 ${writeMs['q4']!.toFixed(0)} ms. Fusing the ${fused.matched}-module LoRA into the three models took ${fuseMs.toFixed(0)} ms; the unfused branches cost ${((withUnfused.callMs / withFused.callMs - 1) * 100).toFixed(0)}% per UNet call here.`,
      ],
      data: { variants: rows, writeMs, reports, q4OneModel, ortOps, lora: { fuseMs, plainCallMs: plain.callMs, fusedCallMs: withFused.callMs, unfusedCallMs: withUnfused.callMs, matched: fused.matched } },
    };
  } finally {
    fs.rmSync(repo, { recursive: true, force: true });
  }
}
