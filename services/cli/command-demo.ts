/**
 * `orrery demo` (what `make demo` runs): the main job on the embedded local default — start a
 * local cluster, run the planet-ultrawide pipeline for a few structured planet prompts, write the
 * 2520x1080 images to a folder, print where they are and the images/s, stop the cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { prepareLocalModels } from '../models/local-models.js';
import { generateToFolder } from './command-generate.js';
import { LocalCluster } from './local-cluster.js';
import { loadConfig } from './load-config.js';

/** The demo's planets: the product's structured attributes, colour → atmosphere → moons → sky. */
const PLANETS = [
  { color: 'deep blue', atmosphere: 'frosted cloudy zones', moons: 'no moons', sky: 'distant stars dark sky' },
  { color: 'burnt orange', atmosphere: 'magma cracks and ash storms', moons: 'two small moons', sky: 'red nebula sky' },
  { color: 'pale green', atmosphere: 'thin hazy rings', moons: 'one icy moon', sky: 'milky way sky' },
  { color: 'violet', atmosphere: 'swirling auroras', moons: 'three moons', sky: 'ethereal purple nebula' },
];

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('Start a local cluster (embedded default config), run the planet-ultrawide pipeline for four planets into a folder, report images/s, stop.')
    .option('--config <file>', 'cluster config YAML (default: the embedded local config)')
    .option('--out <dir>', 'output folder', './out')
    .option('--per-planet <n>', 'images per planet', (v) => Number(v), 1)
    .addHelpText('after', '\nOn the embedded config the SDXL stages run the tiny SDXL-shaped bundle: the images are smooth\nnoise carried through the real pipeline (upscaled by real ESRGAN weights), not planets.')
    .action(async (o: { config?: string; out: string; perPlanet: number }) => {
      const loaded = loadConfig(o.config);
      process.stdout.write(`orrery demo: model repository ${loaded.config.modelRepository}\n`);
      for (const line of await prepareLocalModels(loaded.config)) process.stdout.write(`orrery demo: made ${line}\n`);
      fs.mkdirSync(o.out, { recursive: true });
      const logFile = path.join(o.out, 'cluster.log');
      const logFd = fs.openSync(logFile, 'w');
      process.stdout.write(`orrery demo: starting nats-server, the router and the replicas (logs: ${logFile})\n`);
      const cluster = await LocalCluster.start({ loaded, grpcPort: 0, logs: logFd });
      try {
        process.stdout.write(`orrery demo: cluster ready at grpc=${cluster.grpcAddress} metrics=${cluster.metricsUrl}\n`);
        let files = 0;
        let seconds = 0;
        for (const [i, planet] of PLANETS.entries()) {
          const res = await generateToFolder({
            addr: cluster.grpcAddress, ...planet, extra: ['realistic', 'ethereal'], count: o.perPlanet, requests: 1, seed: String(1000 + i * 100),
            aspect: '21:9', format: 'png', out: o.out, timeoutMs: 900_000,
          });
          files += res.files.length;
          seconds += res.seconds;
          process.stdout.write(`  ${planet.color} planet: ${res.files.map((f) => path.basename(f)).join(', ')}\n`);
        }
        process.stdout.write(`orrery demo: ${files} images (21:9, generated at 1536x640, finished at 2520x1080) in ${seconds.toFixed(2)} s = ${(files / seconds).toFixed(3)} images/s, written to ${path.resolve(o.out)}\n`);
      } finally {
        await cluster.stop();
        fs.closeSync(logFd);
      }
    });
}
