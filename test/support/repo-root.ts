/** Where the repository's files are, from test/ and from dist/test/ alike. */
import path from 'node:path';
import { packageRoot } from '../../services/common/package-root.js';

/** The repository root (the folder holding package.json beside proto/). */
export const repoRoot = (): string => packageRoot();

/** A path inside the repository. */
export const repoPath = (...parts: string[]): string => path.join(packageRoot(), ...parts);
