/**
 * The plain-HTTP admin listener shared by `serve` (one process or a
 * workers primary) and the key server: `GET /metrics` (Prometheus text) and
 * `GET /healthz`, anything else 404. It stays out of the TLS path.
 *
 * @module
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the admin listener serves.
 * @group Front end
 * @example
 * ```ts
 * const handlers: AdminHandlers = { metrics: () => fe.metrics.render(), health: () => ({ ok: !fe.draining, body: 'ok\n' }) };
 * ```
 */
export interface AdminHandlers {
  /** The `/metrics` text; a rejected promise answers 500. */
  metrics(): string | Promise<string>;
  /** `/healthz`: 200 when `ok`, else 503, with `body` (`contentType`, default text/plain). */
  health(): { ok: boolean; body: string; contentType?: string };
}

/**
 * Start the admin listener on `address`. Resolves with the server and its
 * bound port; rejects with the listen error (the caller closes what it had
 * opened and reports it).
 * @group Front end
 * @example
 * ```ts
 * const { server, port } = await listenAdmin({ host: '127.0.0.1', port: 9090 }, handlers);
 * ```
 */
export async function listenAdmin(address: { host: string; port: number }, handlers: AdminHandlers): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      Promise.resolve()
        .then(() => handlers.metrics())
        .then(
          (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
          () => res.writeHead(500).end(),
        );
    } else if (req.url === '/healthz') {
      const h = handlers.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': h.contentType ?? 'text/plain' }).end(h.body);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
