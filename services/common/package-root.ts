/** Locating files shipped with the package (proto/, deploy/config/) from both services/ and dist/services/. */
import fs from 'node:fs';
import path from 'node:path';

let cached: string | undefined;

/** The directory holding Orrery's package.json. */
export function packageRoot(): string {
  if (cached) return cached;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && fs.existsSync(path.join(dir, 'proto'))) return (cached = dir);
    if (path.dirname(dir) === dir) throw new Error(`Orrery's package root (package.json beside proto/) not found above ${__dirname}`);
  }
}
