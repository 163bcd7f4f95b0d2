/**
 * `ech-server serve`: a {@link ServeConfig} turned into a running
 * {@link EchFrontEnd}, an optional admin listener (Prometheus `/metrics`,
 * `/healthz`), and live reload.
 *
 * @module
 */
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { EchError } from '../wire/alert.js';
import { loadEchKeyDirectory } from '../keys/files.js';
import { InsecureKeyFileError, readPrivateKeyFile } from '../keys/permissions.js';
import { ServeConfigError, type ServeConfig } from './config.js';
import { EchFrontEnd, type FrontEndOptions, type FrontEndRoute, type RouteAction } from './front-end.js';
import { listenAdmin } from './admin.js';
import { type LogSink, silent } from './log.js';
import type { KeylessClient } from '../keyless/client.js';
import { EchKeySet } from '../keys/key-set.js';
import type { EchConfig } from '../ech/config.js';
import { EchKeyManager } from '../keys/manager.js';
import { createPublisher } from '../dns/rotation-config.js';
import { startRotation } from './rotation.js';
import { FleetMember } from '../fleet/member.js';
import { readKekFile } from '../fleet/kek.js';
import { loadKeylessEchKeyDirectory } from '../keyless/files.js';
import { keylessClientFromConfig } from '../keyless/serve-config.js';

async function readPem(file: string, field: string, allowInsecure = false): Promise<string> {
  try {
    // A private key file is refused if group or others may read it.
    return await readPrivateKeyFile(file, { allowInsecureKeyFilePermissions: allowInsecure });
  } catch (e) {
    if (e instanceof InsecureKeyFileError) throw e;
    throw new ServeConfigError(field, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const groupNames: Record<string, string> = { x25519mlkem768: 'X25519MLKEM768', x25519: 'X25519', secp256r1: 'P-256' };

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
  const insecure = { allowInsecureKeyFilePermissions: config.allowInsecureKeyFilePermissions === true };
  let keys;
  try {
    // With rotation, the key manager owns the key set (and the directory).
    keys =
      managedKeys ??
      (keyless
        ? await loadKeylessEchKeyDirectory(config.keys, (c) => keyless.echPrivateKey(c), insecure)
        : await loadEchKeyDirectory(config.keys, insecure));
  } catch (e) {
    if (e instanceof InsecureKeyFileError) throw e;
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
        ...(r.key ? { key: await readPem(r.key, `${at}.key`, insecure.allowInsecureKeyFilePermissions) } : {}),
        ...(cert && !r.key && keyless ? { sign: await signer(cert, `${at}.cert`) } : {}),
        action,
        ...(r.backends ? { backends: r.backends } : {}),
        ...(r.balance ? { balance: r.balance } : {}),
        ...(r.healthCheck ? { healthCheck: r.healthCheck } : {}),
      };
    }),
  );
  const pnCert = await readPem(config.publicName.cert, 'publicName.cert');
  const publicName = config.publicName.key
    ? { key: await readPem(config.publicName.key, 'publicName.key', insecure.allowInsecureKeyFilePermissions), cert: pnCert }
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
    logClientAddress: config.logClientAddress,
  };
}

/**
 * A listener of `serve` that could not bind: `field` says which (`listen`
 * or `admin`); `code` is the operating system's (`EADDRINUSE`, ...).
 * @group Front end
 * @example
 * ```ts
 * try { await startServe(config); } catch (e) { if (e instanceof ServeListenError) console.error(e.field, e.code); }
 * ```
 */
export class ServeListenError extends Error {
  /** `listen` (the TLS port) or `admin`. */
  readonly field: 'listen' | 'admin';
  /** The errno code, e.g. `EADDRINUSE`. */
  readonly code: string;
  /** Always `listen`. */
  readonly syscall = 'listen';
  readonly address: string;
  readonly port: number;
  constructor(field: 'listen' | 'admin', address: { host: string; port: number }, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException)?.code ?? 'ERR_LISTEN';
    super(`${field}: cannot listen on ${address.host}:${address.port}: ${code}`, { cause });
    this.name = 'ServeListenError';
    this.field = field;
    this.code = code;
    this.address = address.host;
    this.port = address.port;
  }
}

/**
 * What {@link checkServeConfig} found: counts of what would be served.
 * @group Front end
 */
export interface ServeCheckReport {
  /** ECH keys loaded (0 when rotation will make the first one). */
  keys: number;
  /** Route server names, in order. */
  routes: string[];
  /** The ports that would be bound. */
  listen: string;
  admin: string | null;
}

/** The first certificate of a PEM chain, for its names. */
function leafOf(pem: string, field: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new ServeConfigError(field, `not a PEM certificate: ${(e as Error).message}`);
  }
}

/** True when `cert` covers `name` (exact or one-label wildcard; a `*.x` route is covered by a `*.x` certificate). */
function covers(cert: X509Certificate, name: string): boolean {
  const probe = name.startsWith('*.') ? `ech-check-probe.${name.slice(2)}` : name;
  return cert.checkHost(probe.replace(/\.$/, ''), { wildcards: true, singleLabelSubdomains: false }) !== undefined;
}

/**
 * `ech-server serve --check`: do everything {@link startServe} does before
 * listening — read every file, load the ECH keys and certificates, check
 * each private key against its certificate — and also that each
 * certificate covers its route's server name and the public-name
 * certificate covers the keys' public_name. Binds nothing; in keyless mode
 * the key-server client is made (its credentials checked) and closed at
 * once, without waiting for a key server. Throws a {@link ServeConfigError} naming the field at fault.
 * @group Front end
 * @example
 * ```ts
 * await checkServeConfig(await loadServeConfig('serve.json')); // throws on the first fault
 * ```
 */
export async function checkServeConfig(config: ServeConfig): Promise<ServeCheckReport> {
  const keyless = config.keyless ? await keylessClientFromConfig(config.keyless, silent, (f, m) => new ServeConfigError(f, m)) : undefined;
  try {
    let managed: EchKeySet | undefined;
    if (config.rotation) {
      // The key manager makes the first key when the directory is empty.
      try {
        managed = await loadEchKeyDirectory(config.keys);
      } catch (e) {
        if (!(e instanceof EchError && /no ECH key files/.test(e.message))) throw new ServeConfigError('keys', e instanceof Error ? e.message : String(e));
        managed = new EchKeySet();
      }
    }
    const options = await frontEndOptionsFromConfig(config, silent, keyless, managed);
    try {
      new EchFrontEnd(options); // compiles: parses certificates, checks each key against its certificate
    } catch (e) {
      throw e instanceof ServeConfigError ? e : new ServeConfigError('routes', (e as Error).message);
    }
    for (const [i, r] of config.routes.entries()) {
      const pem = options.routes[i]!.cert;
      if (!pem) continue;
      if (!covers(leafOf(pem, `routes[${i}].cert`), r.serverName)) throw new ServeConfigError(`routes[${i}].cert`, `${r.cert} does not cover ${r.serverName}`);
    }
    const pn = leafOf(options.publicName.cert as string, 'publicName.cert');
    for (const c of options.keys.retryConfigs()) {
      if (!covers(pn, c.publicName)) throw new ServeConfigError('publicName.cert', `${config.publicName.cert} does not cover ${c.publicName}, the public_name of ECH config ${c.configId}`);
    }
    const hp = (a: { host: string; port: number }) => `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
    return { keys: options.keys.size, routes: config.routes.map((r) => r.serverName), listen: hp(config.listen), admin: config.admin ? hp(config.admin) : null };
  } finally {
    keyless?.close();
  }
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
  /** The /metrics text: the front end's metrics, then the key-server client's in keyless mode and the fleet's. */
  metricsText(): string;
  /**
   * Apply a new configuration (keys, certificates, routes); the listen
   * address cannot change. Given a function (e.g. one reading the config
   * file), its failure is a failed reload too. A failed reload is logged
   * (`reload_failed`), counted (`ech_reloads_total{result="error"}`),
   * rethrown, and the running configuration stays.
   */
  reload(config: ServeConfig | (() => Promise<ServeConfig>)): Promise<void>;
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
 * file loaded and every option checked. If a port cannot be bound (the TLS
 * port or the admin port) nothing is left listening or running and a
 * {@link ServeListenError} is thrown.
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
  let keyless = config.keyless
    ? await keylessClientFromConfig(config.keyless, log, (f, m) => new ServeConfigError(f, m), {
        allowInsecureKeyFilePermissions: config.allowInsecureKeyFilePermissions === true,
      })
    : undefined;
  let keylessSection = JSON.stringify(config.keyless ?? null);
  // Rotation: the key manager makes, publishes, promotes and retires keys in
  // the key directory; each new key set goes to the running front end.
  let manager: EchKeyManager | undefined;
  // Fleet mode: keys and ticket keys come from etcd; the elected leader
  // runs the rotation (src/fleet).
  let fleet: FleetMember | undefined;
  if (config.fleet) {
    try {
      fleet = await startFleet(config, log, keyless);
    } catch (e) {
      keyless?.close();
      throw e;
    }
  } else if (config.rotation) {
    try {
      manager = await startRotation(config, log);
    } catch (e) {
      keyless?.close();
      throw e;
    }
  }
  try {
    fe = new EchFrontEnd(
      withFleetTickets(
        {
          ...(await frontEndOptionsFromConfig(config, log, keyless, fleet?.keySet ?? manager?.keySet ?? shared?.keys?.())),
          ...(shared?.ticketKeys ? { tls: { ticketKeys: shared.ticketKeys } } : {}),
        },
        fleet,
      ),
    );
  } catch (e) {
    keyless?.close();
    await manager?.stop();
    await fleet?.close();
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
  fleet?.on('keys', (keys: EchKeySet) => fe.update({ keys }));
  fleet?.on('tickets', () => fe.update(withFleetTickets({}, fleet)));
  const stopAll = async () => {
    await manager?.stop();
    await fleet?.close();
    keyless?.close();
  };
  let addr: { host: string; port: number };
  try {
    addr = await fe.listen(config.listen.port, config.listen.host);
  } catch (e) {
    await stopAll();
    throw new ServeListenError('listen', config.listen, e);
  }
  const metricsText = () => fe.metrics.render() + (keyless ? keyless.renderMetrics() : '') + (fleet ? fleet.renderMetrics() : '');
  let admin: http.Server | undefined;
  let adminPort: number | undefined;
  if (config.admin) {
    try {
      ({ server: admin, port: adminPort } = await listenAdmin(config.admin, {
        metrics: metricsText,
        health: () => {
          const ok = !fe.draining;
          // Fleet mode: still 200 while etcd is away (keys are local), with the detail.
          return { ok, body: `${ok ? 'ok' : 'draining'}\n${fleet ? `fleet ${JSON.stringify(fleet.health())}\n` : ''}` };
        },
      }));
    } catch (e) {
      // The TLS port is already open: close it, so that a failed start
      // leaves nothing listening.
      await fe.close();
      await stopAll();
      throw new ServeListenError('admin', config.admin, e);
    }
    log({ event: 'admin_listening', port: adminPort });
  }
  return {
    frontEnd: fe,
    host: addr.host,
    port: addr.port,
    adminPort,
    metricsText,
    async reload(source: ServeConfig | (() => Promise<ServeConfig>)) {
      try {
        const next = typeof source === 'function' ? await source() : source;
        const section = JSON.stringify(next.keyless ?? null);
        let client = keyless;
        if (section !== keylessSection) {
          client = next.keyless
            ? await keylessClientFromConfig(next.keyless, log, (f, m) => new ServeConfigError(f, m), {
                allowInsecureKeyFilePermissions: next.allowInsecureKeyFilePermissions === true,
              })
            : undefined;
        }
        try {
          fe.update(withFleetTickets(await frontEndOptionsFromConfig(next, log, client, fleet?.keySet ?? manager?.keySet ?? shared?.keys?.()), fleet));
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
      await fleet?.close();
      await fe.close(config.drainTimeoutMs);
      keyless?.close();
      if (admin) {
        admin.closeAllConnections();
        await new Promise<void>((res) => admin!.close(() => res()));
      }
    },
  };
}

/** Join the fleet a config's `fleet` section names; resolves once its keys are loaded. */
async function startFleet(config: ServeConfig, log: LogSink, keyless: KeylessClient | undefined): Promise<FleetMember> {
  const f = config.fleet!;
  let kek;
  try {
    kek = await readKekFile(f.kekFile);
  } catch (e) {
    throw new ServeConfigError('fleet.kekFile', (e as Error).message);
  }
  const r = config.rotation;
  const publisher = r ? createPublisher(r) : undefined;
  // As without a fleet: wrong DNS credentials fail at start (every member
  // checks, since any of them may become the leader).
  try {
    await publisher?.check?.();
  } catch (e) {
    const err = e as Error & { code?: string };
    throw new ServeConfigError('rotation.publisher', `the publisher check failed: ${err.code ? `${err.code}: ` : ''}${err.message}`);
  }
  const member = new FleetMember({
    config: f,
    kek,
    ...(config.keys ? { importDirectory: config.keys } : {}),
    ...(r
      ? {
          rotation: {
            publicName: r.publicName,
            period: r.period,
            ttl: r.ttl,
            names: r.names,
            ...(r.kem ? { kem: r.kem } : {}),
            ...(r.maximumNameLength !== undefined ? { maximumNameLength: r.maximumNameLength } : {}),
            ...(r.margin !== undefined ? { margin: r.margin } : {}),
            ...(r.publishDelay !== undefined ? { publishDelay: r.publishDelay } : {}),
            ...(r.retryInterval !== undefined ? { retryInterval: r.retryInterval } : {}),
          },
        }
      : {}),
    ...(publisher ? { publisher } : {}),
    ...(keyless ? { privateKeyFor: (c: EchConfig) => keyless.echPrivateKey(c) } : {}),
    log,
  });
  try {
    await member.start();
  } catch (e) {
    const err = e as Error & { code?: string };
    throw new ServeConfigError(err.code === 'ERR_FLEET_KEK' ? 'fleet.kekFile' : 'fleet', err.message);
  }
  return member;
}

/** Front-end options with the fleet's ticket keys, when there are any. */
function withFleetTickets<T extends Partial<FrontEndOptions>>(options: T, fleet: FleetMember | undefined): T {
  if (!fleet || fleet.ticketSecrets.length === 0) return options;
  return { ...options, tls: { ...options.tls, ticketKeys: fleet.ticketSecrets } };
}
