// The layering rule of services/, checked by ESLint (rule `orrery/layers`, run by `make lint`).
//
//   common  <  models  <  stages  <  worker        cli on top: may import anything
//   common  <  router                              bench/ and test/ may import anything
//
// A file may import its own layer and the layers below it, never one above or beside it: the
// router never loads models/, stages/ or worker/ (so neither onnxruntime-node nor sharp), and
// common/ depends on nothing of ours. A custom rule rather than `no-restricted-imports` because it
// resolves each specifier against the importing file (no guessing from `../` patterns) and also
// sees dynamic `import()`, `require()`, `export … from` and `import('…').Type`, which
// `no-restricted-imports` does not.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const servicesDir = path.join(repoRoot, 'services');

/** For each layer, the layers its files may import (its own included). */
export const ALLOWED = Object.freeze({
  common: ['common'],
  models: ['common', 'models'],
  stages: ['common', 'models', 'stages'],
  worker: ['common', 'models', 'stages', 'worker'],
  router: ['common', 'router'],
  cli: ['common', 'models', 'stages', 'worker', 'router', 'cli'],
});

/** npm packages a layer must not load (the router and common stay free of native inference code). */
export const FORBIDDEN_PACKAGES = Object.freeze({
  common: ['onnxruntime-node', 'onnxruntime-common', 'sharp'],
  router: ['onnxruntime-node', 'onnxruntime-common', 'sharp'],
});

/** The services/ layer an absolute path lies in, 'outside' for a path outside services/, or undefined for an unknown folder. */
function layerOf(file) {
  const rel = path.relative(servicesDir, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return 'outside';
  const top = rel.split(path.sep)[0];
  return Object.hasOwn(ALLOWED, top) ? top : undefined;
}

/** The package name of a bare specifier (`@scope/name/sub` → `@scope/name`). */
function packageName(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const layersRule = {
  meta: {
    type: 'problem',
    docs: { description: 'services/ layers import only downwards (tools/lint/layers.mjs)' },
    schema: [],
    messages: {
      upward: '{{from}}/ must not import {{to}}/ ("{{specifier}}"): layers are common < models < stages < worker, common < router, cli on top. Move the shared piece down a layer.',
      outside: 'services/{{from}}/ must not import "{{specifier}}" outside services/.',
      unknown: 'services/{{folder}}/ is not a known layer: add it to tools/lint/layers.mjs.',
      package: '{{from}}/ must not load the package "{{specifier}}" (native inference code stays in models/, stages/ and worker/).',
    },
  },
  create(context) {
    const file = context.filename;
    const from = layerOf(file);
    if (from === 'outside') return {};
    if (from === undefined) {
      return {
        Program(node) {
          context.report({ node, messageId: 'unknown', data: { folder: path.relative(servicesDir, file).split(path.sep)[0] } });
        },
      };
    }
    const check = (node, specifier) => {
      if (typeof specifier !== 'string') return;
      if (!specifier.startsWith('.')) {
        if (specifier.startsWith('node:')) return;
        if ((FORBIDDEN_PACKAGES[from] ?? []).includes(packageName(specifier))) context.report({ node, messageId: 'package', data: { from, specifier } });
        return;
      }
      const to = layerOf(path.resolve(path.dirname(file), specifier));
      if (to === 'outside') context.report({ node, messageId: 'outside', data: { from, specifier } });
      else if (to !== undefined && !ALLOWED[from].includes(to)) context.report({ node, messageId: 'upward', data: { from, to, specifier } });
    };
    const literal = (node) => (node?.type === 'Literal' ? node.value : node?.type === 'TemplateLiteral' && node.expressions.length === 0 ? node.quasis[0].value.cooked : undefined);
    return {
      ImportDeclaration: (node) => check(node.source, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node.source, node.source.value),
      ExportAllDeclaration: (node) => check(node.source, node.source.value),
      ImportExpression: (node) => check(node.source, literal(node.source)),
      TSImportType: (node) => check(node, literal(node.argument?.literal ?? node.argument)),
      TSExternalModuleReference: (node) => check(node.expression, literal(node.expression)),
      CallExpression: (node) => {
        if (node.callee.type === 'Identifier' && node.callee.name === 'require' && node.arguments.length === 1) check(node.arguments[0], literal(node.arguments[0]));
      },
    };
  },
};

/** Flat-config entries that turn the rule on for services/. */
export const layerRules = [
  {
    files: ['services/**/*.ts'],
    plugins: { orrery: { rules: { layers: layersRule } } },
    rules: { 'orrery/layers': 'error' },
  },
];
