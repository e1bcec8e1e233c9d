// ESLint flat config for the whole repository, run by `make lint` from the repository root:
//   tools/lint/node_modules/.bin/eslint --config tools/lint/eslint.config.mjs .
// It lives here, beside its own package.json, because the project compiles with TypeScript 7
// (native, no JS compiler API) and typescript-eslint needs a JS TypeScript (5.x/6.0): the lint
// toolchain installs TypeScript 6.0 in tools/lint only. Type information comes from the root
// tsconfig.json, so the rules see the same program `tsc` builds.
import js from '@eslint/js';
import stylistic from '@stylistic/eslint-plugin';
import tseslint from 'typescript-eslint';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { layerRules } from './layers.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export default tseslint.config(
  {
    // dist/ (and any .dist-* a developer builds into) is tsc output; node_modules the packages and
    // the lint toolchain; out/ and models/ what the demo writes.
    ignores: ['dist/**', '.*/**', '**/node_modules/**', 'out/**', 'models/**', 'bench/results/**', 'helm/**', 'deploy/**'],
  },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: repoRoot },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // The habits issue 15 asks the tooling to enforce.
      // node:test's describe/it/test return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }],
      }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // `typeof import('./x.js')` stays allowed: it types the lazy `require()`s below.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-control-regex': 'error',
      // The package compiles to CommonJS, so a `require()` in the source is always a deliberate,
      // synchronous lazy load (stages/registry.ts loads a stage's onnxruntime-node or sharp only
      // when a process runs it); static imports stay the rule everywhere else.
      '@typescript-eslint/no-require-imports': 'off',
      // Passing on a caught `unknown` (a promise's rejection reason) is not inventing a non-Error.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      // An async method that implements a Promise-returning interface without awaiting (stage stubs,
      // sink fakes in tests) is fine; a missing await that matters shows up as a floating promise.
      '@typescript-eslint/require-await': 'off',
      // tsc (noUnusedLocals/noUnusedParameters) already reports these, with `_` for intended ones.
      '@typescript-eslint/no-unused-vars': 'off',
    },
  },
  {
    // Plain JavaScript (bin/orrery.js): CommonJS on Node, no type information.
    files: ['**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended],
    languageOptions: {
      globals: { require: 'readonly', module: 'writable', __dirname: 'readonly', process: 'readonly', console: 'readonly' },
    },
  },
  // Formatting. Prettier would rewrite most files of a tree several people edit at once; these
  // @stylistic rules describe the style the tree already has (2-space indent, single quotes,
  // semicolons, trailing commas in multi-line literals, long lines allowed), so a misformatted
  // line fails lint without churning the rest.
  {
    files: ['**/*.ts', '**/*.js', '**/*.mjs'],
    plugins: { '@stylistic': stylistic },
    rules: {
      '@stylistic/indent': ['error', 2, { SwitchCase: 1, flatTernaryExpressions: false, offsetTernaryExpressions: true, ignoredNodes: ['TemplateLiteral *'] }],
      '@stylistic/quotes': ['error', 'single', { avoidEscape: true, allowTemplateLiterals: 'always' }],
      '@stylistic/semi': ['error', 'always'],
      '@stylistic/comma-dangle': ['error', 'always-multiline'],
      '@stylistic/eol-last': 'error',
      '@stylistic/no-trailing-spaces': 'error',
      '@stylistic/no-multiple-empty-lines': ['error', { max: 1, maxEOF: 0, maxBOF: 0 }],
      '@stylistic/brace-style': ['error', '1tbs', { allowSingleLine: true }],
      '@stylistic/keyword-spacing': 'error',
      '@stylistic/space-infix-ops': 'error',
      '@stylistic/space-before-blocks': 'error',
      // `{ a }` and `[a]`. These two are deprecated in favour of `list-style`, which also dictates
      // line breaks between items (a thousand reports on the tree's packed multi-line literals).
      '@stylistic/object-curly-spacing': ['error', 'always'],
      '@stylistic/array-bracket-spacing': ['error', 'never'],
      '@stylistic/comma-spacing': 'error',
      '@stylistic/key-spacing': 'error',
      '@stylistic/semi-spacing': 'error',
      '@stylistic/arrow-parens': ['error', 'always'],
      '@stylistic/arrow-spacing': 'error',
      '@stylistic/no-tabs': 'error',
      '@stylistic/member-delimiter-style': 'error',
      '@stylistic/type-annotation-spacing': 'error',
    },
  },
  ...layerRules,
);
