/**
 * `ech-server serve`: a {@link ServeConfig} turned into a running
 * {@link EchFrontEnd}, an optional admin listener (Prometheus `/metrics`,
 * `/healthz`), and live reload.
 *
 * @module
 */
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { EchError } from '../wire/alert.js';
import { loadEchKeyDirectory } from '../keys/files.js';
import { ServeConfigError, type ServeConfig } from './config.js';
import { EchFrontEnd, type FrontEndOptions, type FrontEndRoute, type RouteAction } from './front-end.js';
import { type LogSink, silent } from './log.js';

async function readPem(file: string, field: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new ServeConfigError(field, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const groupNames: Record<string, string> = { x25519: 'X25519', secp256r1: 'P-256' };

/**
 * Load everything a {@link ServeConfig} names (keys, certificates, CA files)
 * into {@link FrontEndOptions}. Errors name the field at fault.
 * @group Front end
 * @example
 * ```ts
 * const options = await frontEndOptionsFromConfig(await loadServeConfig('serve.json'));
 * ```
 */
export async function frontEndOptionsFromConfig(config: ServeConfig, log: LogSink = silent): Promise<FrontEndOptions> {
  let keys;
  try {
    keys = await loadEchKeyDirectory(config.keys);
  } catch (e) {
    throw new ServeConfigError('keys', (e as Error).message);
  }
  const routes: FrontEndRoute[] = await Promise.all(
    config.routes.map(async (r, i): Promise<FrontEndRoute> => {
      const at = `routes[${i}]`;
      let action: RouteAction;
      const a = r.action;
      if ('respond' in a) action = a;
      else if ('passthrough' in a) action = { passthrough: { ...a.passthrough, proxyProtocol: r.proxyProtocol } };
      else if ('forward' in a) action = { forward: { ...a.forward, proxyProtocol: r.proxyProtocol } };
      else {
        const { ca, ...rest } = a.forwardTls;
        action = { forwardTls: { ...rest, ...(ca ? { ca: await readPem(ca, `${at}.forwardTls.ca`) } : {}), proxyProtocol: r.proxyProtocol } };
      }
      return {
        serverName: r.serverName,
        ...(r.alpn ? { alpn: r.alpn } : {}),
        ...(r.cert ? { cert: await readPem(r.cert, `${at}.cert`) } : {}),
        ...(r.key ? { key: await readPem(r.key, `${at}.key`) } : {}),
        action,
      };
    }),
  );
  return {
    keys,
    publicName: { key: await readPem(config.publicName.key, 'publicName.key'), cert: await readPem(config.publicName.cert, 'publicName.cert') },
    routes,
    ALPNProtocols: config.alpn,
    ...(config.groups ? { ecdhCurve: config.groups.map((g) => groupNames[g]).join(':') } : {}),
    trialDecryption: config.trialDecryption,
    limits: config.limits,
    log,
    logInnerNames: config.logInnerNames,
  };
}

/**
 * A running `serve`.
 * @group Front end
 */
export interface RunningServe {
  frontEnd: EchFrontEnd;
  host: string;
  port: number;
  /** The admin listener's port, when configured. */
  adminPort: number | undefined;
  /** Apply a new configuration (keys, certificates, routes); the listen address cannot change. */
  reload(config: ServeConfig): Promise<void>;
  /** Drain and stop. */
  close(): Promise<void>;
}

/**
 * Start a front end from a {@link ServeConfig}. Nothing listens until every
 * file loaded and every option checked.
 * @group Front end
 * @example
 * ```ts
 * const running = await startServe(await loadServeConfig('serve.json'), jsonLines());
 * process.on('SIGHUP', async () => running.reload(await loadServeConfig('serve.json')));
 * ```
 */
export async function startServe(config: ServeConfig, log: LogSink = silent): Promise<RunningServe> {
  let fe: EchFrontEnd;
  try {
    fe = new EchFrontEnd(await frontEndOptionsFromConfig(config, log));
  } catch (e) {
    if (e instanceof ServeConfigError || !(e instanceof EchError)) throw e;
    throw new ServeConfigError('publicName', e.message);
  }
  const addr = await fe.listen(config.listen.port, config.listen.host);
  let admin: http.Server | undefined;
  let adminPort: number | undefined;
  if (config.admin) {
    admin = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(fe.metrics.render());
      } else if (req.url === '/healthz') {
        const ok = !fe.draining;
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(ok ? 'ok\n' : 'draining\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((res, rej) => {
      admin!.once('error', rej);
      admin!.listen(config.admin!.port, config.admin!.host, () => res());
    });
    adminPort = (admin.address() as AddressInfo).port;
    log({ event: 'admin_listening', port: adminPort });
  }
  return {
    frontEnd: fe,
    host: addr.host,
    port: addr.port,
    adminPort,
    async reload(next: ServeConfig) {
      try {
        fe.update(await frontEndOptionsFromConfig(next, log));
        fe.metrics.reload(true);
        log({ event: 'reloaded', keys: fe.keys.size, routes: next.routes.length });
      } catch (e) {
        fe.metrics.reload(false);
        log({ event: 'reload_failed', error: (e as Error).message });
        throw e;
      }
    },
    async close() {
      await fe.close(config.drainTimeoutMs);
      if (admin) {
        admin.closeAllConnections();
        await new Promise<void>((res) => admin!.close(() => res()));
      }
    },
  };
}
