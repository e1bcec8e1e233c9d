/** Quantized variants: written next to the base, checked against it by PSNR, served by id. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { quantizeBundle, QuantizeRefusedError } from '../../services/models/quantize/quantize-bundle.js';
import { writeTinySdxlBundle } from '../../services/models/tiny-sdxl.js';
import { loadStage } from '../../services/stages/registry.js';

describe('orrery models quantize (int8)', () => {
  let repo: string;
  before(async () => {
    repo = fs.mkdtempSync(path.join(os.tmpdir(), 'orrery-quant-'));
    await writeTinySdxlBundle(path.join(repo, 'tiny-sdxl'), { dtype: 'float32', timestep: 'float-scalar', vaeEncoderOutput: 'latent_parameters', externalData: true });
  });
  after(() => fs.rmSync(repo, { recursive: true, force: true }));

  test('refuses a variant whose image error exceeds the bound, giving the measured PSNR, and writes nothing', async () => {
    await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: 'int8', minPsnrDb: 200 }), (err: unknown) => {
      assert.ok(err instanceof QuantizeRefusedError);
      assert.match(err.message, /tiny-sdxl@int8 refused: its image differs from tiny-sdxl's by PSNR \d+\.\d\d dB, below the bound of 200 dB/);
      assert.ok(Number.isFinite(err.psnrDb), 'int8 weights change the image a little');
      return true;
    });
    assert.deepEqual(fs.readdirSync(repo), ['tiny-sdxl']);
  });

  test('writes <base>@int8 with quarter-size MatMul weights within the bound, and the stage serves it by id', async () => {
    const r = await quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: 'int8', minPsnrDb: 25 });
    assert.equal(r.dir, path.join(repo, 'tiny-sdxl@int8'));
    assert.ok(r.matmulsQuantized >= 100, `${r.matmulsQuantized} MatMul weights quantized`);
    assert.ok(r.bytesAfter < r.bytesBefore * 0.6, `${r.bytesAfter} vs ${r.bytesBefore} bytes`);
    assert.ok(r.psnrDb >= 25, `PSNR ${r.psnrDb}`);
    const m = await loadStage('sdxl').load('tiny-sdxl@int8', { options: {}, modelRepository: repo });
    await m.dispose();
  });

  test('fp16 and q4 are refused as not implemented', async () => {
    await assert.rejects(quantizeBundle({ repository: repo, base: 'tiny-sdxl', variant: 'q4', minPsnrDb: 20 }), /variant q4: not implemented yet/);
  });
});
