import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PermissionDeniedError, UnauthenticatedError } from '../../services/common/errors.js';
import { authorize, grants, isPublicMethod, requiredRight, type Right } from '../../services/router/grpc-rights.js';
import type { TokenTable } from '../../services/router/token-file.js';

/** A reversible stand-in for the hash, so the table below reads as tokens. */
const hash = (token: string): string => `h(${token})`;
const table: TokenTable = new Map([
  ['h(gen)', { name: 'web', rights: new Set<Right>(['generate']) }],
  ['h(jobs)', { name: 'batch', rights: new Set<Right>(['jobs']) }],
  ['h(root)', { name: 'ops', rights: new Set<Right>(['admin']) }],
]);
const M = (name: string) => `/orrery.v1.ImageService/${name}`;

describe('grpc rights', () => {
  test('each method needs the narrowest right; unknown methods need admin', () => {
    assert.equal(requiredRight(M('Generate')), 'generate');
    assert.equal(requiredRight(M('GenerateStream')), 'generate');
    assert.equal(requiredRight(M('SubmitJob')), 'jobs');
    assert.equal(requiredRight(M('WatchJob')), 'jobs.read');
    assert.equal(requiredRight(M('ListModels')), 'authenticated');
    assert.equal(requiredRight('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'), 'reflection');
    assert.equal(requiredRight(M('SomeFutureMethod')), 'admin');
  });

  test('jobs includes jobs.read, admin includes everything, nothing else implies another right', () => {
    assert.ok(grants(new Set<Right>(['jobs']), 'jobs.read'));
    assert.ok(!grants(new Set<Right>(['jobs.read']), 'jobs'));
    assert.ok(!grants(new Set<Right>(['generate']), 'jobs.read'));
    for (const r of ['generate', 'jobs', 'jobs.read', 'reflection', 'admin'] as const) assert.ok(grants(new Set<Right>(['admin']), r));
    assert.ok(grants(new Set<Right>(['reflection']), 'authenticated'));
  });

  test('only grpc.health.v1 is public', () => {
    assert.ok(isPublicMethod('/grpc.health.v1.Health/Check'));
    assert.ok(isPublicMethod('/grpc.health.v1.Health/Watch'));
    assert.ok(!isPublicMethod(M('ListModels')));
  });

  test('no header, two headers, a non-Bearer header or an unknown token: UNAUTHENTICATED, client "unauthenticated"', () => {
    for (const [headers, why] of [[[], /needs a bearer token/], [['Bearer gen', 'Bearer gen'], /more than one/], [['Basic Z2Vu'], /not "Bearer <token>"/], [['Bearer nope'], /not valid/]] as const) {
      const d = authorize(table, M('Generate'), headers, hash);
      assert.equal(d.kind, 'deny');
      assert.equal(d.client, 'unauthenticated');
      assert.ok(d.kind === 'deny' && d.error instanceof UnauthenticatedError);
      assert.equal(d.error.code, 'ORRERY_ERR_UNAUTHENTICATED');
      assert.match(d.error.message, why);
    }
  });

  test('a known token without the right: PERMISSION_DENIED under its name, naming the right', () => {
    const d = authorize(table, M('SubmitJob'), ['Bearer gen'], hash);
    assert.ok(d.kind === 'deny' && d.error instanceof PermissionDeniedError);
    assert.equal(d.client, 'web');
    assert.equal(d.error.right, 'jobs');
    assert.equal(d.error.message, 'client "web" lacks the right "jobs" that /orrery.v1.ImageService/SubmitJob needs (it has: generate)');
  });

  test('a token with the right is allowed under its name; "bearer" in any case and trailing spaces are accepted', () => {
    assert.deepEqual(authorize(table, M('GetJob'), ['Bearer jobs'], hash), { kind: 'allow', client: 'batch' });
    assert.deepEqual(authorize(table, M('Generate'), ['bearer gen  '], hash), { kind: 'allow', client: 'web' });
    assert.deepEqual(authorize(table, M('SomeFutureMethod'), ['Bearer root'], hash), { kind: 'allow', client: 'ops' });
  });
});
