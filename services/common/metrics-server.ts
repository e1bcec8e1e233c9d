/** A tiny HTTP server exposing a prom-client registry at /metrics (and /healthz for probes). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `registry` on `host:port` (port 0 picks a free one). `healthy()` decides /healthz:
 * 200 when true, 503 otherwise.
 */
export async function startMetricsServer(registry: Registry, port: number, host = '0.0.0.0', healthy: () => boolean = () => true): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
    } else if (req.url === '/healthz') {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503);
      res.end(ok ? 'ok' : 'not ready');
    } else {
      res.writeHead(404);
      res.end('not found: try /metrics or /healthz');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address() as AddressInfo;
  const shownHost = host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    port: addr.port,
    url: `http://${shownHost}:${addr.port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
