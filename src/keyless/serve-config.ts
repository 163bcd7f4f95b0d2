/**
 * The `keyless` section of the `ech-server serve` configuration: where the
 * key servers are and how the front end authenticates to them. With it, the
 * key directory may hold ECHCONFIG-only files and routes (and the public
 * name) may give a certificate without a key: the key server signs.
 *
 * ```json
 * "keyless": {
 *   "servers": ["10.0.0.5:7443", { "address": "10.0.1.5:7443", "serverName": "keys2.customer.example" }],
 *   "serverName": "keys.customer.example",
 *   "cert": "edge.pem", "key": "edge.key", "ca": "keyserver-ca.pem",
 *   "timeoutMs": 1000, "connectionsPerServer": 2, "reconnectMinMs": 100, "reconnectMaxMs": 5000
 * }
 * ```
 *
 * @module
 */
import { InsecureKeyFileError, type KeyFileOptions, readPrivateKeyFile } from '../keys/permissions.js';
import type { LogSink } from '../log/log.js';
import { KeylessClient, type KeyServerAddress } from './client.js';

/**
 * A validated `keyless` section (absolute paths).
 * @group Keyless
 * @example
 * ```ts
 * const k: KeylessServeConfig = { servers: [{ host: '127.0.0.1', port: 7443 }], cert: '/etc/edge.pem', key: '/etc/edge.key', ca: '/etc/ks-ca.pem' };
 * ```
 */
export interface KeylessServeConfig {
  servers: KeyServerAddress[];
  /** The front end's client certificate chain, key and the key servers' CA (files). */
  cert: string;
  key: string;
  ca: string;
  timeoutMs?: number;
  connectionsPerServer?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function hostPort(v: unknown, field: string, fail: (f: string, m: string) => Error): { host: string; port: number } {
  if (typeof v !== 'string') throw fail(field, 'must be "host:port"');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  if (!m) throw fail(field, `'${v}' is not "host:port"`);
  const port = Number(m[3]);
  if (port === 0 || port > 65535) throw fail(field, `port ${port} is out of range`);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * Validate the `keyless` section; `fail(field, message)` builds the error
 * (a `ServeConfigError` naming e.g. `keyless.servers[1]`), `path` resolves
 * relative file names.
 * @group Keyless
 * @example
 * ```ts
 * const k = validateKeylessSection(raw.keyless, (p) => resolve(dir, p), (f, m) => new ServeConfigError(f, m));
 * ```
 */
export function validateKeylessSection(raw: unknown, path: (p: string) => string, fail: (field: string, message: string) => Error): KeylessServeConfig {
  const at = 'keyless';
  if (!isObj(raw)) throw fail(at, 'must be an object { "servers": [...], "cert": file, "key": file, "ca": file }');
  const known = ['servers', 'serverName', 'cert', 'key', 'ca', 'timeoutMs', 'connectionsPerServer', 'reconnectMinMs', 'reconnectMaxMs'];
  for (const k of Object.keys(raw)) if (!known.includes(k)) throw fail(`${at}.${k}`, 'is not a known field');
  const file = (k: string): string => {
    const v = raw[k];
    if (v === undefined) throw fail(`${at}.${k}`, 'is required');
    if (typeof v !== 'string' || v.length === 0) throw fail(`${at}.${k}`, 'must be a non-empty string');
    return path(v);
  };
  const name = (v: unknown, field: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !/^([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+$/.test(v)) throw fail(field, 'must be a host name');
    return v;
  };
  const defaultName = name(raw['serverName'], `${at}.serverName`);
  const s = raw['servers'];
  if (!Array.isArray(s) || s.length === 0) throw fail(`${at}.servers`, s === undefined ? 'is required' : 'must be a non-empty list of "host:port" (or { "address", "serverName" })');
  if (s.length > 16) throw fail(`${at}.servers`, 'lists more than 16 key servers');
  const servers = s.map((x, i): KeyServerAddress => {
    const f = `${at}.servers[${i}]`;
    if (typeof x === 'string') return { ...hostPort(x, f, fail), ...(defaultName ? { serverName: defaultName } : {}) };
    if (!isObj(x)) throw fail(f, 'must be "host:port" or { "address": "host:port", "serverName": name }');
    for (const k of Object.keys(x)) if (k !== 'address' && k !== 'serverName') throw fail(`${f}.${k}`, 'is not a known field');
    const sn = name(x['serverName'], `${f}.serverName`) ?? defaultName;
    return { ...hostPort(x['address'], `${f}.address`, fail), ...(sn ? { serverName: sn } : {}) };
  });
  const out: KeylessServeConfig = { servers, cert: file('cert'), key: file('key'), ca: file('ca') };
  for (const k of ['timeoutMs', 'connectionsPerServer', 'reconnectMinMs', 'reconnectMaxMs'] as const) {
    const v = raw[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw fail(`${at}.${k}`, 'must be a positive whole number');
    if (k === 'connectionsPerServer' && v > 16) throw fail(`${at}.${k}`, 'must be at most 16');
    out[k] = v;
  }
  if ((out.reconnectMinMs ?? 100) > (out.reconnectMaxMs ?? 5000)) throw fail(`${at}.reconnectMinMs`, 'must not exceed reconnectMaxMs');
  return out;
}

/**
 * Read the section's files and start a {@link KeylessClient}. `fail` builds
 * an error naming the field whose file cannot be read. The client key file
 * is refused if group or others may read it, unless
 * `options.allowInsecureKeyFilePermissions`.
 * @group Keyless
 * @example
 * ```ts
 * const client = await keylessClientFromConfig(config.keyless, log, (f, m) => new ServeConfigError(f, m));
 * ```
 */
export async function keylessClientFromConfig(
  k: KeylessServeConfig,
  log: LogSink,
  fail: (field: string, message: string) => Error,
  options: KeyFileOptions = {},
): Promise<KeylessClient> {
  const read = async (file: string, field: string): Promise<string> => {
    try {
      return await readPrivateKeyFile(file, options);
    } catch (e) {
      if (e instanceof InsecureKeyFileError) throw e;
      throw fail(`keyless.${field}`, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const [cert, key, ca] = [await read(k.cert, 'cert'), await read(k.key, 'key'), await read(k.ca, 'ca')];
  try {
    return new KeylessClient({
      servers: k.servers,
      cert,
      key,
      ca,
      ...(k.timeoutMs ? { timeoutMs: k.timeoutMs } : {}),
      ...(k.connectionsPerServer ? { connectionsPerServer: k.connectionsPerServer } : {}),
      ...(k.reconnectMinMs ? { reconnectMinMs: k.reconnectMinMs } : {}),
      ...(k.reconnectMaxMs ? { reconnectMaxMs: k.reconnectMaxMs } : {}),
      log,
    });
  } catch (e) {
    throw fail('keyless', `unusable client credentials: ${(e as Error).message}`);
  }
}
