/**
 * The `fleet` section of the serve configuration: where etcd is, the key
 * prefix the fleet shares, this member's name and the KEK file.
 * {@link validateFleetSection} checks a parsed JSON value and names the
 * field of every problem.
 *
 * @module
 */
import { InvalidArgumentError } from '../wire/alert.js';

/**
 * How to reach etcd. `ca`/`cert`/`key` are PEM files (TLS to etcd, client
 * certificate), `username`/`password` etcd's own authentication.
 * @group Fleet
 * @example
 * ```ts
 * const etcd: FleetEtcdConfig = { endpoints: ['https://10.0.0.1:2379'], ca: '/etc/ech-server/etcd-ca.pem' };
 * ```
 */
export interface FleetEtcdConfig {
  endpoints: string[];
  ca?: string;
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
}

/**
 * The validated `fleet` section (absolute paths). Durations in seconds.
 * @group Fleet
 * @example
 * ```ts
 * const fleet: FleetConfig = {
 *   etcd: { endpoints: ['http://127.0.0.1:2379'] }, prefix: '/ech-server/prod',
 *   member: 'fe-a', kekFile: '/etc/ech-server/fleet.kek', leaseTtl: 10, ticketPeriod: 3600,
 * };
 * ```
 */
export interface FleetConfig {
  etcd: FleetEtcdConfig;
  /** etcd key prefix the fleet shares (no trailing slash). */
  prefix: string;
  /** This member's name, unique in the fleet. */
  member: string;
  /** Local KEK file (mode 0600), the same in every member. */
  kekFile: string;
  /**
   * TTL of this member's lease (member record, leader election); default
   * 10. A member that stops is forgotten, and a leader replaced, after it.
   */
  leaseTtl: number;
  /** A new session-ticket key this often; default 3600. */
  ticketPeriod: number;
}

/**
 * A `fleet` section error; `field` is a JSON path such as `fleet.etcd.endpoints[0]`.
 * @group Fleet
 * @example
 * ```ts
 * try { validateFleetSection(raw, resolve); } catch (e) { if (e instanceof FleetConfigError) console.error(e.field); }
 * ```
 */
export class FleetConfigError extends InvalidArgumentError {
  /** The field at fault. */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'FleetConfigError';
    this.field = field;
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function only(o: Obj, at: string, allowed: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new FleetConfigError(`${at}.${k}`, 'is not a known field');
}

function str(o: Obj, at: string, k: string, required: boolean): string | undefined {
  const v = o[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new FleetConfigError(`${at}.${k}`, v === undefined ? 'is required' : 'must be a non-empty string');
  return v;
}

function secs(o: Obj, at: string, k: string, dflt: number, min: number): number {
  const v = o[k];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new FleetConfigError(`${at}.${k}`, `must be a whole number of seconds >= ${min}`);
  return v;
}

/**
 * Validate a parsed `fleet` section; `path` resolves relative file names.
 * @group Fleet
 * @example
 * ```ts
 * const fleet = validateFleetSection(raw.fleet, (p) => resolve(baseDir, p));
 * ```
 */
export function validateFleetSection(value: unknown, path: (p: string) => string, at = 'fleet'): FleetConfig {
  if (!isObj(value)) throw new FleetConfigError(at, 'must be an object { "etcd": {...}, "prefix", "member", "kekFile" }');
  only(value, at, ['etcd', 'prefix', 'member', 'kekFile', 'leaseTtl', 'ticketPeriod']);
  const e = value['etcd'];
  if (!isObj(e)) throw new FleetConfigError(`${at}.etcd`, e === undefined ? 'is required' : 'must be an object { "endpoints": [...] }');
  only(e, `${at}.etcd`, ['endpoints', 'ca', 'cert', 'key', 'username', 'password']);
  const eps = e['endpoints'];
  if (!Array.isArray(eps) || eps.length === 0) throw new FleetConfigError(`${at}.etcd.endpoints`, 'must be a non-empty list of URLs');
  const endpoints = eps.map((x, i) => {
    let u: URL | undefined;
    try {
      u = typeof x === 'string' ? new URL(x) : undefined;
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || !u.port) {
      throw new FleetConfigError(`${at}.etcd.endpoints[${i}]`, `must be an http:// or https:// URL with a port, such as "http://127.0.0.1:2379"`);
    }
    return x as string;
  });
  const etcd: FleetEtcdConfig = { endpoints };
  for (const k of ['ca', 'cert', 'key'] as const) {
    const v = str(e, `${at}.etcd`, k, false);
    if (v) etcd[k] = path(v);
  }
  if ((etcd.cert === undefined) !== (etcd.key === undefined)) throw new FleetConfigError(`${at}.etcd.${etcd.cert ? 'key' : 'cert'}`, 'cert and key go together');
  if ((etcd.cert || etcd.key) && !etcd.ca) throw new FleetConfigError(`${at}.etcd.ca`, 'is required with a client certificate');
  const username = str(e, `${at}.etcd`, 'username', false);
  const password = str(e, `${at}.etcd`, 'password', false);
  if ((username === undefined) !== (password === undefined)) throw new FleetConfigError(`${at}.etcd.${username ? 'password' : 'username'}`, 'username and password go together');
  if (username) Object.assign(etcd, { username, password });
  const prefix = str(value, at, 'prefix', true)!;
  if (!/^\/[A-Za-z0-9._\-/]*[A-Za-z0-9._-]$/.test(prefix) || prefix.includes('//')) {
    throw new FleetConfigError(`${at}.prefix`, `'${prefix}' must start with '/', not end with '/', and use letters, digits, '.', '_', '-'`);
  }
  const member = str(value, at, 'member', true)!;
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(member)) throw new FleetConfigError(`${at}.member`, `'${member}' must be 1-64 letters, digits, '.', '_', '-'`);
  return {
    etcd,
    prefix,
    member,
    kekFile: path(str(value, at, 'kekFile', true)!),
    leaseTtl: secs(value, at, 'leaseTtl', 10, 2),
    ticketPeriod: secs(value, at, 'ticketPeriod', 3600, 1),
  };
}
