/**
 * The `ech-server serve` configuration file: JSON, validated before anything
 * listens, every error naming the field at fault. Relative paths are
 * resolved against the file's directory.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { EchError } from '../wire/alert.js';
import type { RouteMatch } from './routes.js';
import type { BackendSpec, BalancePolicy, HealthCheckOptions } from './pool.js';
import { type KeylessServeConfig, validateKeylessSection } from '../keyless/serve-config.js';
import { type RotationConfig, RotationConfigError, validateRotationConfig } from '../dns/rotation-config.js';
import { type FleetConfig, FleetConfigError, validateFleetSection } from '../fleet/config.js';

/**
 * A configuration error; `field` is a JSON path such as `routes[1].cert`.
 * @group Front end
 * @example
 * ```ts
 * try { await loadServeConfig('serve.json'); } catch (e) { if (e instanceof ServeConfigError) console.error(e.field); }
 * ```
 */
export class ServeConfigError extends EchError {
  /** The field at fault. */
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', 'internal_error', `${field}: ${message}`, options);
    this.name = 'ServeConfigError';
    this.field = field;
  }
}

/**
 * What a configured route does (exactly one per route).
 * @group Front end
 */
export type ServeAction =
  | { respond: 'ech-status' }
  | { passthrough: { host: string; port: number; forwardGrease?: boolean } }
  | { forward: { host: string; port: number } }
  | { forwardTls: { host: string; port: number; ca?: string; servername?: string } };

/**
 * A route of the serve configuration.
 * @group Front end
 */
export interface ServeRoute extends RouteMatch {
  /** Certificate chain file (PEM) for this name; required unless the action is passthrough. */
  cert?: string;
  /** Private key file (PEM); omitted in keyless mode, where the key server signs. */
  key?: string;
  action: ServeAction;
  /** Send a PROXY v2 header to the backend. */
  proxyProtocol: boolean;
  /** The backend pool when the action names a list (the action's host and port are its first). */
  backends?: BackendSpec[];
  /** Balance policy of the pool. */
  balance?: BalancePolicy;
  /** Active health checks of the pool. */
  healthCheck?: HealthCheckOptions;
}

/**
 * A validated serve configuration (absolute paths).
 * @group Front end
 */
export interface ServeConfig {
  listen: { host: string; port: number };
  /**
   * Directory of ECH PEM key files. In fleet mode it is optional (empty
   * when absent): the first leader imports it when etcd holds no keys.
   */
  keys: string;
  /** Certificate for the public name: rejected, GREASE and non-ECH connections to it (no key in keyless mode). */
  publicName: { cert: string; key?: string; respond: 'ech-status' };
  /** Key exchange groups in preference order: `x25519`, `secp256r1`. */
  groups?: string[];
  /** ALPN protocols offered; default `['http/1.1']`. */
  alpn: string[];
  routes: ServeRoute[];
  /** Try every ECH key whatever the config_id (RFC 9849 §7.1 method 2). */
  trialDecryption: boolean;
  /** Limits (ms, bytes, counts). */
  limits: { firstFlightTimeoutMs?: number; handshakeTimeoutMs?: number; maxClientHelloBytes?: number; maxConcurrentHandshakes?: number };
  /** Admin listener for /metrics and /healthz. */
  admin?: { host: string; port: number };
  /** How long SIGTERM waits for open connections, ms (default 10000). */
  drainTimeoutMs: number;
  /** Put inner names in logs (default false). */
  logInnerNames: boolean;
  /** `false`: refuse clients that offer only TLS 1.2 (`protocol_version`) instead of serving them through node:tls. */
  tls12?: false;
  /** Put the client's address and port in connection logs (default true). */
  logClientAddress: boolean;
  /**
   * Keyless mode (src/keyless): key servers hold the private keys; `keys`
   * may hold ECHCONFIG-only files and certificates may come without keys.
   */
  keyless?: KeylessServeConfig;
  /**
   * Key rotation inside the server (the key manager of src/keys/manager.ts):
   * new keys are made, published, promoted and retired in the `keys`
   * directory, and the running front end's key set follows.
   */
  rotation?: RotationConfig;
  /**
   * Load private key files (ECH key files in `keys`, certificate keys) even
   * when group or others may read them. Default false: such a file is
   * refused (`chmod 600` it).
   */
  allowInsecureKeyFilePermissions?: boolean;
  /**
   * Fleet mode (src/fleet, docs/fleet.md): ECH keys and ticket keys come
   * from etcd, shared by every front end; the elected leader runs
   * `rotation` (its `stateFile` is not used: the state lives in etcd).
   */
  fleet?: FleetConfig;
  /**
   * Worker processes sharing the listening port (src/front/workers.ts):
   * a count, or `'auto'` for `os.availableParallelism()`. Default 1: one
   * process, as before.
   */
  workers?: number | 'auto';
}

const GROUPS = new Set(['x25519mlkem768', 'x25519', 'secp256r1']);
type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, k: string, field: string, required = true): string | undefined {
  const v = o[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new ServeConfigError(field, required && v === undefined ? 'is required' : 'must be a non-empty string');
  return v;
}

function unknownKeys(o: Obj, allowed: string[], at: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new ServeConfigError(at ? `${at}.${k}` : k, 'is not a known field');
}

function hostPort(v: unknown, field: string): { host: string; port: number } {
  if (typeof v !== 'string') throw new ServeConfigError(field, 'must be "host:port"');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  if (!m) throw new ServeConfigError(field, `'${v}' is not "host:port"`);
  const port = Number(m[3]);
  if (port > 65535) throw new ServeConfigError(field, `port ${port} is out of range`);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * A backend address, or a pool: "host:port", or a non-empty list of
 * "host:port" and { "to": "host:port", "weight": n }.
 */
function backendList(v: unknown, field: string): { first: { host: string; port: number }; backends?: BackendSpec[] } {
  if (!Array.isArray(v)) return { first: hostPort(v, field) };
  if (v.length === 0) throw new ServeConfigError(field, 'must name at least one backend');
  const backends = v.map((b, i): BackendSpec => {
    const at = `${field}[${i}]`;
    if (!isObj(b)) return hostPort(b, at);
    unknownKeys(b, ['to', 'weight'], at);
    const weight = positive(b, 'weight', `${at}.weight`);
    return { ...hostPort(b['to'], `${at}.to`), ...(weight ? { weight } : {}) };
  });
  const seen = new Set<string>();
  backends.forEach((b, i) => {
    const k = `${b.host}:${b.port}`;
    if (seen.has(k)) throw new ServeConfigError(`${field}[${i}]`, `duplicates backend ${k}`);
    seen.add(k);
  });
  return { first: { host: backends[0]!.host, port: backends[0]!.port }, backends };
}

const BALANCE = ['round-robin', 'least-connections', 'client-hash'];

function positive(o: Obj, k: string, field: string): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ServeConfigError(field, 'must be a positive whole number');
  return v;
}

/**
 * Validate a parsed serve configuration. `baseDir` resolves relative paths.
 * @group Front end
 * @example
 * ```ts
 * const config = validateServeConfig(JSON.parse(text), '/etc/ech-server');
 * ```
 */
export function validateServeConfig(raw: unknown, baseDir: string): ServeConfig {
  if (!isObj(raw)) throw new ServeConfigError('(root)', 'must be a JSON object');
  unknownKeys(raw, ['listen', 'keys', 'publicName', 'groups', 'alpn', 'routes', 'trialDecryption', 'limits', 'admin', 'drainTimeoutMs', 'logInnerNames', 'keyless', 'rotation', 'tls12', 'logClientAddress', 'allowInsecureKeyFilePermissions', 'fleet', 'workers'], '');
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  let fleet: FleetConfig | undefined;
  if (raw['fleet'] !== undefined) {
    try {
      fleet = validateFleetSection(raw['fleet'], path);
    } catch (e) {
      if (e instanceof FleetConfigError) throw new ServeConfigError(e.field, e.message.replace(/^[^:]*: /, ''));
      throw e;
    }
  }
  let rotation: RotationConfig | undefined;
  if (raw['rotation'] !== undefined) {
    try {
      // Fleet mode keeps the rotation state in etcd: no state file needed.
      const r = raw['rotation'];
      rotation = validateRotationConfig(fleet && isObj(r) && r['stateFile'] === undefined ? { ...r, stateFile: '(etcd)' } : r, 'rotation');
    } catch (e) {
      if (e instanceof RotationConfigError) throw new ServeConfigError(e.field, e.message.replace(/^[^:]*: /, ''));
      throw e;
    }
    if (raw['keyless'] !== undefined) throw new ServeConfigError('rotation', 'cannot be combined with keyless (rotation makes private keys here)');
    rotation.stateFile = path(rotation.stateFile);
    if (rotation.publisher?.type === 'file') rotation.publisher.prefix = path(rotation.publisher.prefix);
  }
  const keyless = raw['keyless'] === undefined ? undefined : validateKeylessSection(raw['keyless'], path, (f, m) => new ServeConfigError(f, m));
  const listen = hostPort(raw['listen'], 'listen');
  const keysDir = str(raw, 'keys', 'keys', !fleet);
  const keys = keysDir ? path(keysDir) : '';
  const pn = raw['publicName'];
  if (!isObj(pn)) throw new ServeConfigError('publicName', 'must be an object { "cert": file, "key": file }');
  unknownKeys(pn, ['cert', 'key', 'respond'], 'publicName');
  if (pn['respond'] !== undefined && pn['respond'] !== 'ech-status') throw new ServeConfigError('publicName.respond', 'must be "ech-status"');
  const pnKey = str(pn, 'key', 'publicName.key', !keyless);
  const publicName = { cert: path(str(pn, 'cert', 'publicName.cert')!), ...(pnKey ? { key: path(pnKey) } : {}), respond: 'ech-status' as const };
  let groups: string[] | undefined;
  if (raw['groups'] !== undefined) {
    const g = raw['groups'];
    if (!Array.isArray(g) || g.length === 0) throw new ServeConfigError('groups', 'must be a non-empty list');
    g.forEach((x, i) => {
      if (typeof x !== 'string' || !GROUPS.has(x)) throw new ServeConfigError(`groups[${i}]`, `must be one of ${[...GROUPS].join(', ')}`);
    });
    groups = g as string[];
  }
  let alpn = ['http/1.1'];
  if (raw['alpn'] !== undefined) {
    const a = raw['alpn'];
    if (!Array.isArray(a) || a.length === 0 || a.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 255)) {
      throw new ServeConfigError('alpn', 'must be a non-empty list of protocol names');
    }
    alpn = a as string[];
  }
  const r = raw['routes'] ?? [];
  if (!Array.isArray(r)) throw new ServeConfigError('routes', 'must be a list');
  const seen = new Set<string>();
  const routes = r.map((x, i): ServeRoute => {
    const at = `routes[${i}]`;
    if (!isObj(x)) throw new ServeConfigError(at, 'must be an object');
    unknownKeys(x, ['serverName', 'alpn', 'cert', 'key', 'respond', 'passthrough', 'forward', 'forwardTls', 'proxyProtocol', 'forwardGrease', 'balance', 'healthCheck'], at);
    const serverName = str(x, 'serverName', `${at}.serverName`)!;
    if (!/^(\*\.)?([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+\.?$/.test(serverName)) throw new ServeConfigError(`${at}.serverName`, `'${serverName}' is not a host name or *.wildcard`);
    let ra: string[] | undefined;
    if (x['alpn'] !== undefined) {
      if (!Array.isArray(x['alpn']) || x['alpn'].some((p) => typeof p !== 'string')) throw new ServeConfigError(`${at}.alpn`, 'must be a list of protocol names');
      ra = x['alpn'] as string[];
    }
    const dupKey = `${serverName.toLowerCase()}|${(ra ?? []).join(',')}`;
    if (seen.has(dupKey)) throw new ServeConfigError(`${at}.serverName`, `duplicates an earlier route for '${serverName}'`);
    seen.add(dupKey);
    const actions = ['respond', 'passthrough', 'forward', 'forwardTls'].filter((k) => x[k] !== undefined);
    if (actions.length !== 1) {
      throw new ServeConfigError(at, actions.length === 0 ? 'needs one of respond, passthrough, forward, forwardTls (respond: "ech-status" for the built-in page)' : `has several actions (${actions.join(', ')})`);
    }
    if (x['forwardGrease'] !== undefined && x['passthrough'] === undefined) throw new ServeConfigError(`${at}.forwardGrease`, 'only applies to passthrough routes');
    let action: ServeAction;
    let pool: BackendSpec[] | undefined;
    if (x['respond'] !== undefined) {
      if (x['respond'] !== 'ech-status') throw new ServeConfigError(`${at}.respond`, 'must be "ech-status"');
      action = { respond: 'ech-status' };
    } else if (x['passthrough'] !== undefined) {
      const fg = x['forwardGrease'];
      if (fg !== undefined && typeof fg !== 'boolean') throw new ServeConfigError(`${at}.forwardGrease`, 'must be true or false');
      const to = backendList(x['passthrough'], `${at}.passthrough`);
      pool = to.backends;
      action = { passthrough: { ...to.first, ...(fg === true ? { forwardGrease: true } : {}) } };
    } else if (x['forward'] !== undefined) {
      const to = backendList(x['forward'], `${at}.forward`);
      pool = to.backends;
      action = { forward: to.first };
    } else {
      const f = x['forwardTls'];
      if (!isObj(f)) throw new ServeConfigError(`${at}.forwardTls`, 'must be an object { "to": "host:port", "ca": file, "servername": name }');
      unknownKeys(f, ['to', 'ca', 'servername'], `${at}.forwardTls`);
      const ca = str(f, 'ca', `${at}.forwardTls.ca`, false);
      const sn = str(f, 'servername', `${at}.forwardTls.servername`, false);
      const to = backendList(f['to'], `${at}.forwardTls.to`);
      pool = to.backends;
      action = { forwardTls: { ...to.first, ...(ca ? { ca: path(ca) } : {}), ...(sn ? { servername: sn } : {}) } };
    }
    const balance = x['balance'];
    if (balance !== undefined && (x['respond'] !== undefined || typeof balance !== 'string' || !BALANCE.includes(balance))) {
      throw new ServeConfigError(`${at}.balance`, x['respond'] !== undefined ? 'only applies to routes with backends' : `must be one of ${BALANCE.join(', ')}`);
    }
    let healthCheck: HealthCheckOptions | undefined;
    const hc = x['healthCheck'];
    if (hc !== undefined) {
      if (x['respond'] !== undefined) throw new ServeConfigError(`${at}.healthCheck`, 'only applies to routes with backends');
      if (!isObj(hc)) throw new ServeConfigError(`${at}.healthCheck`, 'must be an object { "intervalMs", "timeoutMs", "fall", "rise" }');
      unknownKeys(hc, ['intervalMs', 'timeoutMs', 'fall', 'rise'], `${at}.healthCheck`);
      healthCheck = {};
      for (const k of ['intervalMs', 'timeoutMs', 'fall', 'rise'] as const) {
        const n = positive(hc, k, `${at}.healthCheck.${k}`);
        if (n !== undefined) healthCheck[k] = n;
      }
    }
    const terminates = !('passthrough' in action);
    const cert = str(x, 'cert', `${at}.cert`, terminates);
    const key = str(x, 'key', `${at}.key`, terminates && !keyless);
    const pp = x['proxyProtocol'];
    if (pp !== undefined && typeof pp !== 'boolean') throw new ServeConfigError(`${at}.proxyProtocol`, 'must be true or false');
    return {
      serverName,
      ...(ra ? { alpn: ra } : {}),
      ...(cert ? { cert: path(cert) } : {}),
      ...(key ? { key: path(key) } : {}),
      action,
      proxyProtocol: pp === true,
      ...(pool ? { backends: pool } : {}),
      ...(balance !== undefined ? { balance: balance as BalancePolicy } : {}),
      ...(healthCheck ? { healthCheck } : {}),
    };
  });
  const td = raw['trialDecryption'];
  if (td !== undefined && typeof td !== 'boolean') throw new ServeConfigError('trialDecryption', 'must be true or false');
  const limits: ServeConfig['limits'] = {};
  if (raw['limits'] !== undefined) {
    const l = raw['limits'];
    if (!isObj(l)) throw new ServeConfigError('limits', 'must be an object');
    unknownKeys(l, ['firstFlightTimeoutMs', 'handshakeTimeoutMs', 'maxClientHelloBytes', 'maxConcurrentHandshakes'], 'limits');
    for (const k of ['firstFlightTimeoutMs', 'handshakeTimeoutMs', 'maxClientHelloBytes', 'maxConcurrentHandshakes'] as const) {
      const v = positive(l, k, `limits.${k}`);
      if (v !== undefined) limits[k] = v;
    }
  }
  const admin = raw['admin'] === undefined ? undefined : hostPort(raw['admin'], 'admin');
  const drain = positive(raw, 'drainTimeoutMs', 'drainTimeoutMs') ?? 10_000;
  const insecure = raw['allowInsecureKeyFilePermissions'];
  if (insecure !== undefined && typeof insecure !== 'boolean') throw new ServeConfigError('allowInsecureKeyFilePermissions', 'must be true or false');
  const lin = raw['logInnerNames'];
  if (lin !== undefined && typeof lin !== 'boolean') throw new ServeConfigError('logInnerNames', 'must be true or false');
  const t12 = raw['tls12'];
  if (t12 !== undefined && typeof t12 !== 'boolean') throw new ServeConfigError('tls12', 'must be true or false');
  const lca = raw['logClientAddress'];
  if (lca !== undefined && typeof lca !== 'boolean') throw new ServeConfigError('logClientAddress', 'must be true or false');
  const workers = raw['workers'];
  if (workers !== undefined && workers !== 'auto' && !(Number.isInteger(workers) && (workers as number) >= 1 && (workers as number) <= 1024))
    throw new ServeConfigError('workers', 'must be "auto" or a whole number from 1 to 1024');
  // Each fleet member is one process with its own etcd lease and member
  // record; a member of several workers is not built yet.
  if (fleet && workers !== undefined && workers !== 1) throw new ServeConfigError('workers', 'cannot be combined with fleet yet: run one serve process per fleet member');
  return {
    listen,
    keys,
    publicName,
    ...(groups ? { groups } : {}),
    alpn,
    routes,
    trialDecryption: td === true,
    limits,
    ...(admin ? { admin } : {}),
    drainTimeoutMs: drain,
    logInnerNames: lin === true,
    logClientAddress: lca !== false,
    ...(keyless ? { keyless } : {}),
    ...(rotation ? { rotation } : {}),
    ...(t12 === false ? { tls12: false as const } : {}),
    ...(insecure === true ? { allowInsecureKeyFilePermissions: true } : {}),
    ...(fleet ? { fleet } : {}),
    ...(workers !== undefined ? { workers: workers as number | 'auto' } : {}),
  };
}

/**
 * Read and validate a serve configuration file.
 * @group Front end
 * @example
 * ```ts
 * const config = await loadServeConfig('./serve.json');
 * ```
 */
export async function loadServeConfig(file: string): Promise<ServeConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ServeConfigError('(file)', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ServeConfigError('(file)', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  return validateServeConfig(raw, dirname(resolve(file)));
}
