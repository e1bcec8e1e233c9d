/**
 * How Orrery's CLI clients reach several routers and ride out the loss of one: a gRPC service
 * config (the JSON documented in the README, "Several routers") with a retry policy for
 * UNAVAILABLE — what a caller of a router that died, was restarted or is draining gets — and
 * round-robin balancing over every address the target resolves to, plus the target syntax for a
 * static list of routers (no load balancer in front).
 */
import { ConfigError } from '../common/errors.js';

/**
 * Retry UNAVAILABLE up to 5 attempts in all, waiting a random time up to 0.1 s, 0.2 s, 0.4 s,
 * 0.8 s before each retry (gRPC's exponential backoff with full jitter). A retried Generate may
 * run its images a second time on another router (the first router's batch may have run before
 * it died); seeds make the result the same, and the caller gets one answer.
 */
export const RETRY_SERVICE_CONFIG = Object.freeze({
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [{
    name: [{ service: 'orrery.v1.ImageService' }],
    retryPolicy: { maxAttempts: 5, initialBackoff: '0.1s', maxBackoff: '2s', backoffMultiplier: 2, retryableStatusCodes: ['UNAVAILABLE'] },
  }],
});

/** Channel options that apply {@link RETRY_SERVICE_CONFIG} (grpc-js honours `grpc.service_config`). */
export const RETRYING_CHANNEL_OPTIONS = Object.freeze({ 'grpc.service_config': JSON.stringify(RETRY_SERVICE_CONFIG) });

const IPV4_PORT = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/;

/**
 * The gRPC target for `addresses`: one `host:port` as is (DNS, so a Kubernetes Service name works);
 * several comma-separated IPv4 `ip:port` as grpc-js's static `ipv4:a,b` list.
 * @throws ConfigError naming `--addr` for a list that is not all IPv4 `ip:port`.
 */
export function grpcTarget(addresses: string): string {
  const list = addresses.split(',').map((a) => a.trim()).filter((a) => a.length > 0);
  if (list.length <= 1) return list[0] ?? addresses;
  const bad = list.find((a) => !IPV4_PORT.test(a));
  if (bad !== undefined) throw new ConfigError('--addr', `a list of routers must be IPv4 ip:port addresses (for host names, put them behind one DNS name), got "${bad}"`);
  return `ipv4:${list.join(',')}`;
}
