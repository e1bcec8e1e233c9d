/**
 * The public gRPC definitions (orrery.v1.ImageService and grpc.health.v1.Health), loaded once at
 * run time with proto-loader (CONVENTIONS §9: no generated code) for every side that speaks them:
 * the router serves them, the CLI, tests and benchmarks call them. The one cast from proto-loader's
 * untyped package object to a service constructor lives here.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { protoDir } from './wire.js';

/**
 * How messages look in JavaScript on every side: proto field names (snake_case), 64-bit integers
 * as decimal strings, enums as their names, defaults filled in, `oneof` names set.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({ keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });

/** The public API's .proto file. */
export function imageServiceProtoPath(): string {
  return path.join(protoDir(), 'orrery/v1/image_service.proto');
}

let imageService: grpc.ServiceClientConstructor | undefined;
let health: grpc.ServiceClientConstructor | undefined;

/** Looks up a service constructor by its full name in a loaded package definition. */
function serviceAt(def: protoLoader.PackageDefinition, fullName: string): grpc.ServiceClientConstructor {
  let node: unknown = grpc.loadPackageDefinition(def);
  for (const part of fullName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function' || !('service' in node)) throw new Error(`gRPC service ${fullName} is not in its .proto file`);
  return node as grpc.ServiceClientConstructor;
}

/** orrery.v1.ImageService: `.service` for a server, `new (address, credentials, options)` for a client. */
export function imageServiceDefinition(): grpc.ServiceClientConstructor {
  imageService ??= serviceAt(protoLoader.loadSync(imageServiceProtoPath(), { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] }), 'orrery.v1.ImageService');
  return imageService;
}

/** grpc.health.v1.Health, for clients (the server side is grpc-health-check's). */
export function healthServiceDefinition(): grpc.ServiceClientConstructor {
  health ??= serviceAt(protoLoader.loadSync(healthProtoPath, PROTO_LOADER_OPTIONS), 'grpc.health.v1.Health');
  return health;
}

/** Both services' definitions as server reflection describes them (so grpcurl can call Health too). */
export function reflectionDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync([imageServiceProtoPath(), healthProtoPath], { keepCase: true, includeDirs: [protoDir()] });
}
