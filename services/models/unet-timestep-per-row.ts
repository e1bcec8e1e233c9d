/**
 * Whether a loaded UNet takes one timestep per row: its `timestep` input is `[batch]` and the graph
 * uses each row's value (the check of onnx/per-row-timestep.ts). The bundle reports it as
 * `timestepPerRow`, so a step loop that mixes rows at different steps knows whether it may.
 */
import fs from 'node:fs';
import { decodeModel } from './onnx/onnx-model.js';
import { perRowTimestep, PerRowTimestepError } from './onnx/per-row-timestep.js';
import type { TimestepInput } from './sdxl-bundle-facts.js';

/**
 * True when the UNet at `modelPath` (whose session reported `input`) takes per-row timesteps. A
 * scalar input answers false without reading the file; a `[steps]` input reads and checks the
 * graph (model.onnx only: external weights are not read). A graph the check refuses answers false.
 */
export function unetTimestepPerRow(modelPath: string, input: TimestepInput): boolean {
  if (input.scalar) return false;
  try {
    return perRowTimestep(decodeModel(fs.readFileSync(modelPath))).alreadyPerRow;
  } catch (err) {
    if (err instanceof PerRowTimestepError) return false;
    throw err;
  }
}
