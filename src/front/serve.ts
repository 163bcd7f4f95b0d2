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
import type { KeylessClient } from '../keyless/client.js';
import type { EchKeySet } from '../keys/key-set.js';
import { EchKeyManager } from '../keys/manager.js';
import { keyManagerOptions } from '../dns/rotation-config.js';
import { loadKeylessEchKeyDirectory } from '../keyless/files.js';
import { keylessClientFromConfig } from '../keyless/serve-config.js';

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
 * into {@link FrontEndOptions}. Errors name the field at fault. In keyless
 * mode (`config.keyless`), `keyless` is the running key-server client:
 * ECHCONFIG-only key files decapsulate through it and certificates without
 * a key sign through it.
 * @group Front end
 * @example
 * ```ts
 * const options = await frontEndOptionsFromConfig(await loadServeConfig('serve.json'));
 * ```
 */
export async function frontEndOptionsFromConfig(
  config: ServeConfig,
  log: LogSink = silent,
  keyless?: KeylessClient,
  managedKeys?: EchKeySet,
): Promise<FrontEndOptions> {
  if (config.keyless && !keyless) throw new ServeConfigError('keyless', 'needs a key server client (startServe makes one)');
  let keys;
  try {
    // With rotation, the key manager owns the key set (and the directory).
    keys =
      managedKeys ??
      (keyless ? await loadKeylessEchKeyDirectory(config.keys, (c) => keyless.echPrivateKey(c)) : await loadEchKeyDirectory(config.keys));
  } catch (e) {
    throw new ServeConfigError('keys', (e as Error).message);
  }
  const signer = async (cert: string, field: string) => {
    try {
      return keyless!.signer(cert);
    } catch (e) {
      throw new ServeConfigError(field, `not a certificate: ${(e as Error).message}`);
    }
  };
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
      const cert = r.cert ? await readPem(r.cert, `${at}.cert`) : undefined;
      return {
        serverName: r.serverName,
        ...(r.alpn ? { alpn: r.alpn } : {}),
        ...(cert ? { cert } : {}),
        ...(r.key ? { key: await readPem(r.key, `${at}.key`) } : {}),
        ...(cert && !r.key && keyless ? { sign: await signer(cert, `${at}.cert`) } : {}),
        action,
      };
    }),
  );
  const pnCert = await readPem(config.publicName.cert, 'publicName.cert');
  const publicName = config.publicName.key
    ? { key: await readPem(config.publicName.key, 'publicName.key'), cert: pnCert }
    : { cert: pnCert, sign: await signer(pnCert, 'publicName.cert') };
  return {
    keys,
    publicName,
    routes,
    ALPNProtocols: config.alpn,
    ...(config.groups ? { ecdhCurve: config.groups.map((g) => groupNames[g]).join(':') } : {}),
    trialDecryption: config.trialDecryption,
    limits: config.limits,
    log,
    logInnerNames: config.logInnerNames,
    ...(config.tls12 === false ? { tls12: false } : {}),
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
  /** The /metrics text: the front end's metrics, then the key-server client's in keyless mode. */
  metricsText(): string;
  /** Apply a new configuration (keys, certificates, routes); the listen address cannot change. */
  reload(config: ServeConfig): Promise<void>;
  /** Drain and stop. */
  close(): Promise<void>;
}

/**
 * What a worker of a multi-process `serve` (src/front/workers.ts) takes from
 * its primary instead of loading or making it itself.
 * @group Front end
 */
export interface SharedMaterial {
  /** The ECH key set in use now (called at start and at each reload). */
  keys?: () => EchKeySet;
  /** Node-style `ticketKeys` secret (48 bytes) shared by every worker. */
  ticketKeys?: Uint8Array;
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
export async function startServe(config: ServeConfig, log: LogSink = silent, shared?: SharedMaterial): Promise<RunningServe> {
  let fe: EchFrontEnd;
  // Keyless mode: one client for the life of the process (reloads keep it
  // unless the keyless section changed).
  let keyless = config.keyless ? await keylessClientFromConfig(config.keyless, log, (f, m) => new ServeConfigError(f, m)) : undefined;
  let keylessSection = JSON.stringify(config.keyless ?? null);
  // Rotation: the key manager makes, publishes, promotes and retires keys in
  // the key directory; each new key set goes to the running front end.
  let manager: EchKeyManager | undefined;
  if (config.rotation) {
    manager = await EchKeyManager.open(keyManagerOptions(config.rotation, config.keys));
    // Fail loudly at start on wrong credentials (a TSIG-signed SOA query),
    // not silently at the next rotation a period later.
    try {
      await manager.check();
    } catch (e) {
      keyless?.close();
      const err = e as Error & { code?: string };
      throw new ServeConfigError('rotation.publisher', `the publisher check failed: ${err.code ? `${err.code}: ` : ''}${err.message}`);
    }
    manager.on('publishError', (e: Error) => log({ event: 'publish_failed', error: e.message }));
    manager.on('stepError', (e: Error) => log({ event: 'rotation_step_failed', error: e.message }));
    const first = await manager.start();
    log({ event: 'rotation_started', created: first.created, error: first.error ? String(first.error) : undefined });
  }
  try {
    fe = new EchFrontEnd({
      ...(await frontEndOptionsFromConfig(config, log, keyless, manager?.keySet ?? shared?.keys?.())),
      ...(shared?.ticketKeys ? { tls: { ticketKeys: shared.ticketKeys } } : {}),
    });
  } catch (e) {
    keyless?.close();
    await manager?.stop();
    if (e instanceof ServeConfigError || !(e instanceof EchError)) throw e;
    throw new ServeConfigError('publicName', e.message);
  }
  if (keyless) {
    // Not required to start: handshakes fail fast until a key server answers.
    await keyless.ready().catch(() => log({ event: 'keyless_not_ready', servers: keyless!.status() }));
  }
  manager?.on('keys', (keys: EchKeySet) => {
    fe.update({ keys });
    log({ event: 'keys_rotated', keys: keys.size, retry: keys.retryConfigs().map((c) => c.configId) });
  });
  const addr = await fe.listen(config.listen.port, config.listen.host);
  const metricsText = () => fe.metrics.render() + (keyless ? keyless.renderMetrics() : '');
  let admin: http.Server | undefined;
  let adminPort: number | undefined;
  if (config.admin) {
    admin = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(metricsText());
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
    metricsText,
    async reload(next: ServeConfig) {
      try {
        const section = JSON.stringify(next.keyless ?? null);
        let client = keyless;
        if (section !== keylessSection) client = next.keyless ? await keylessClientFromConfig(next.keyless, log, (f, m) => new ServeConfigError(f, m)) : undefined;
        try {
          fe.update(await frontEndOptionsFromConfig(next, log, client, manager?.keySet ?? shared?.keys?.()));
        } catch (e) {
          if (client !== keyless) client?.close();
          throw e;
        }
        if (client !== keyless) {
          // Handshakes still in flight may use the old client for a moment.
          const old = keyless;
          if (old) setTimeout(() => old.close(), 30_000).unref();
          keyless = client;
          keylessSection = section;
        }
        fe.metrics.reload(true);
        log({ event: 'reloaded', keys: fe.keys.size, routes: next.routes.length });
      } catch (e) {
        fe.metrics.reload(false);
        log({ event: 'reload_failed', error: (e as Error).message });
        throw e;
      }
    },
    async close() {
      await manager?.stop();
      await fe.close(config.drainTimeoutMs);
      keyless?.close();
      if (admin) {
        admin.closeAllConnections();
        await new Promise<void>((res) => admin!.close(() => res()));
      }
    },
  };
}
