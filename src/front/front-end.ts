/**
 * The client-facing front end behind `ech-server serve`: one listener, the
 * ECH key set, a certificate per route, and routing of each terminated
 * connection by the name the handshake ran on (the inner name when ECH was
 * accepted, else the outer one).
 *
 * @module
 */
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { EchError } from '../wire/alert.js';
import type { EchKeySet } from '../keys/key-set.js';
import { loadEchKeyDirectory } from '../keys/files.js';
import { EchServer } from '../tls13/server.js';
import type { TlsSocket } from '../tls13/socket.js';
import { createEchHook } from '../tls13/ech-hook.js';
import { ServeConfigError, type ServeConfig, type ServeRoute } from './config.js';
import { echStatusHandler } from './ech-status.js';
import { RoutingTable } from './routes.js';

/**
 * A running front end.
 * @group Front end
 */
export interface FrontEnd {
  server: EchServer;
  host: string;
  port: number;
  /** The key set in use (replace with {@link FrontEnd.setKeys}). */
  readonly keys: EchKeySet;
  /** Swap the ECH key set: new handshakes use it, live ones are unaffected. */
  setKeys(keys: EchKeySet): void;
  /** Stop accepting and close every connection. */
  close(): Promise<void>;
}

async function readPem(file: string, field: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new ServeConfigError(field, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const groupNames: Record<string, string> = { x25519: 'X25519', secp256r1: 'P-256' };

/**
 * Start the front end of a {@link ServeConfig}. Everything is loaded and
 * checked before the port is opened; errors name the field at fault.
 * @group Front end
 * @example
 * ```ts
 * const fe = await startFrontEnd(await loadServeConfig('serve.json'));
 * console.log(`listening on ${fe.host}:${fe.port}`);
 * ```
 */
export async function startFrontEnd(config: ServeConfig): Promise<FrontEnd> {
  let keys: EchKeySet;
  try {
    keys = await loadEchKeyDirectory(config.keys);
  } catch (e) {
    throw new ServeConfigError('keys', (e as Error).message);
  }
  const publicKeyPem = await readPem(config.publicName.key, 'publicName.key');
  const publicCertPem = await readPem(config.publicName.cert, 'publicName.cert');
  const certificates = await Promise.all(
    config.routes.map(async (r, i) => ({
      key: await readPem(r.key, `routes[${i}].key`),
      cert: await readPem(r.cert, `routes[${i}].cert`),
    })),
  );
  let server: EchServer;
  try {
    server = new EchServer({
      key: publicKeyPem,
      cert: publicCertPem,
      certificates,
      ALPNProtocols: config.alpn,
      ...(config.groups ? { ecdhCurve: config.groups.map((g) => groupNames[g]).join(':') } : {}),
      onClientHello: createEchHook({ keys: () => keys, trialDecryption: config.trialDecryption }),
    });
  } catch (e) {
    if (e instanceof EchError) throw new ServeConfigError('publicName', e.message);
    throw e;
  }

  const publicSite = keys.retryConfigs()[0]?.publicName ?? 'public name';
  const apps = new Map<ServeRoute | 'public', http.Server>();
  const appFor = (route: ServeRoute | 'public'): http.Server => {
    let app = apps.get(route);
    if (!app) {
      app = http.createServer(echStatusHandler(route === 'public' ? publicSite : route.serverName));
      app.on('clientError', (_err, socket) => socket.destroy());
      apps.set(route, app);
    }
    return app;
  };
  const table = new RoutingTable<ServeRoute>(config.routes);
  const live = new Set<TlsSocket>();
  server.on('secureConnection', (socket: TlsSocket) => {
    live.add(socket);
    socket.once('close', () => live.delete(socket));
    // An error after the handshake (e.g. the client's ech_required alert)
    // ends that connection only.
    socket.on('error', () => socket.destroy());
    const route = table.lookup(socket.servername, socket.alpnProtocol) ?? 'public';
    appFor(route).emit('connection', socket);
  });
  server.on('tlsClientError', () => undefined);

  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', rej);
      res();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    server,
    host: addr.address,
    port: addr.port,
    get keys() {
      return keys;
    },
    setKeys(next: EchKeySet) {
      keys = next;
    },
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        for (const s of live) s.destroy();
        for (const app of apps.values()) app.closeAllConnections();
      }),
  };
}
