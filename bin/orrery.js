#!/usr/bin/env node
// The `orrery` command. The TypeScript sources compile to dist/ (`make build`).
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const main = path.join(__dirname, '..', 'dist', 'services', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  process.stderr.write('orrery: dist/ is missing; run `make build` (or `npm ci && npx tsc -p .`) first\n');
  process.exit(1);
}
require(main);
