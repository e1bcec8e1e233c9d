/**
 * Who may call what on the router's gRPC port: the rights a bearer token can hold, the right each
 * method needs, and the decision for one call. Pure (CONVENTIONS §2): grpc-auth.ts does the I/O.
 */
import { PermissionDeniedError, UnauthenticatedError } from '../common/errors.js';
import type { TokenTable } from './token-file.js';

/**
 * The rights a token can hold. `jobs` includes `jobs.read`; `admin` includes every right and
 * any method not listed below.
 */
export const RIGHTS = ['generate', 'jobs', 'jobs.read', 'reflection', 'admin'] as const;
export type Right = (typeof RIGHTS)[number];

const IMAGE_SERVICE = '/orrery.v1.ImageService/';

/** The right each method needs; `authenticated`: any valid token. */
const METHOD_RIGHTS: Readonly<Record<string, Right | 'authenticated'>> = {
  [`${IMAGE_SERVICE}Generate`]: 'generate',
  [`${IMAGE_SERVICE}GenerateStream`]: 'generate',
  [`${IMAGE_SERVICE}ListModels`]: 'authenticated',
  [`${IMAGE_SERVICE}SubmitJob`]: 'jobs',
  [`${IMAGE_SERVICE}AddJobItems`]: 'jobs',
  [`${IMAGE_SERVICE}CancelJob`]: 'jobs',
  [`${IMAGE_SERVICE}RetryJob`]: 'jobs',
  [`${IMAGE_SERVICE}DeleteJob`]: 'jobs',
  [`${IMAGE_SERVICE}GetJob`]: 'jobs.read',
  [`${IMAGE_SERVICE}WatchJob`]: 'jobs.read',
  [`${IMAGE_SERVICE}ListJobs`]: 'jobs.read',
  [`${IMAGE_SERVICE}ListJobItems`]: 'jobs.read',
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': 'reflection',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': 'reflection',
};

/** grpc.health.v1 answers everyone, with or without a token: probes (kubelet, load balancers) carry none. */
export const isPublicMethod = (method: string): boolean => method.startsWith('/grpc.health.v1.Health/');

/** The right `method` needs (`admin` for methods not in the table). */
export function requiredRight(method: string): Right | 'authenticated' {
  return METHOD_RIGHTS[method] ?? 'admin';
}

/** Whether holding `rights` grants `needed`. */
export function grants(rights: ReadonlySet<Right>, needed: Right | 'authenticated'): boolean {
  if (needed === 'authenticated' || rights.has('admin') || rights.has(needed)) return true;
  return needed === 'jobs.read' && rights.has('jobs');
}

export type AuthDecision =
  | { readonly kind: 'allow'; readonly client: string }
  | { readonly kind: 'deny'; readonly client: string; readonly error: UnauthenticatedError | PermissionDeniedError };

/** The client name metrics and logs use for calls that presented no valid token. */
export const UNAUTHENTICATED_CLIENT = 'unauthenticated';

/**
 * The decision for a call of `method` carrying `authorization` (the metadata values, normally
 * one) against `tokens`; `hash` turns a presented token into the table's key.
 */
export function authorize(tokens: TokenTable, method: string, authorization: readonly string[], hash: (token: string) => string): AuthDecision {
  const deny = (why: string): AuthDecision => ({ kind: 'deny', client: UNAUTHENTICATED_CLIENT, error: new UnauthenticatedError(why) });
  if (authorization.length === 0) return deny(`${method} needs a bearer token: send metadata "authorization: Bearer <token>" (orrery CLI: --token-file)`);
  if (authorization.length > 1) return deny('more than one authorization header');
  const m = /^Bearer +(\S+)\s*$/i.exec(authorization[0]!);
  if (!m) return deny('the authorization header is not "Bearer <token>"');
  const entry = tokens.get(hash(m[1]!));
  if (!entry) return deny('the bearer token is not valid (unknown, revoked or mistyped)');
  const needed = requiredRight(method);
  if (!grants(entry.rights, needed)) return { kind: 'deny', client: entry.name, error: new PermissionDeniedError(entry.name, needed, method, [...entry.rights]) };
  return { kind: 'allow', client: entry.name };
}
