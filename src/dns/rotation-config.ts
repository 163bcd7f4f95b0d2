/**
 * The `rotation` section of the server config: how often to make keys, the
 * DNS TTL, which names to publish for and how. {@link validateRotationConfig}
 * checks a parsed JSON value and names the field of every problem;
 * {@link createPublisher} turns the publisher settings into a publisher.
 *
 * @module
 */
import { InvalidArgumentError } from '../wire/alert.js';
import { publicNameProblem } from '../ech/config.js';
import { KemName } from '../keys/generate.js';
import type { EchClock, EchKeyManagerOptions, EchPublisher } from '../keys/manager.js';
import { FilePublisher } from './file-publisher.js';
import { PublishError } from './errors.js';
import { parseHttpsName } from './publisher.js';
import { Rfc2136Publisher } from './rfc2136.js';
import { parseDnsServer } from './transport.js';
import { TsigAlgorithm, tsigKey } from './tsig.js';

/**
 * Publisher settings: a DNS UPDATE (RFC 2136 + TSIG) or files.
 * @group DNS
 * @example
 * ```ts
 * const p: RotationPublisherConfig = {
 *   type: 'rfc2136', server: '192.0.2.53:53', zone: 'example.com',
 *   tsig: { name: 'ech-update.', secret: 'base64...', algorithm: 'hmac-sha256' },
 * };
 * ```
 */
export type RotationPublisherConfig =
  | {
      type: 'rfc2136';
      /** Primary server, `HOST[:PORT]`. */
      server: string;
      zone: string;
      tsig?: { name: string; secret: string; algorithm?: TsigAlgorithm };
      /** Make an HTTPS record for names that have none; default false. */
      createIfMissing?: boolean;
      /** ALPN of created records. */
      alpn?: string[];
      transport?: 'udp' | 'tcp';
      timeoutMs?: number;
      attempts?: number;
    }
  | {
      type: 'file';
      /** Writes `PREFIX.zone` and `PREFIX.json`. */
      prefix: string;
      alpn?: string[];
    };

/**
 * The `rotation` section. Durations in seconds.
 * @group DNS
 * @example
 * ```ts
 * const rotation: RotationConfig = {
 *   publicName: 'cover.example', period: 86400, ttl: 300,
 *   names: ['secret.example'], stateFile: '/var/lib/ech/rotation.json',
 *   publisher: { type: 'file', prefix: '/var/lib/ech/https' },
 * };
 * ```
 */
export interface RotationConfig {
  /** public_name of new keys. */
  publicName: string;
  /** Make a new key this often; default 86400. */
  period: number;
  /** TTL of the HTTPS records; default 300. */
  ttl: number;
  /** Extra decrypt time after withdrawal, beyond ttl; default 3600. */
  margin?: number;
  /** Delay between creating and publishing a key; default 0. */
  publishDelay?: number;
  /** Retry a failed publish after this long; default 60. */
  retryInterval?: number;
  /** KEM of new keys; default x25519. */
  kem?: KemName;
  /** maximum_name_length of new keys (0-255); default 0. */
  maximumNameLength?: number;
  /** `HOST` or `HOST:PORT`, one per HTTPS record. */
  names: string[];
  /** The manager's state file. */
  stateFile: string;
  publisher?: RotationPublisherConfig;
}

/**
 * A problem in the rotation config, naming the field (e.g.
 * `rotation.publisher.tsig.secret`).
 * @group DNS
 * @example
 * ```ts
 * try { validateRotationConfig(json.rotation); }
 * catch (e) { if (e instanceof RotationConfigError) console.error(e.field, e.message); }
 * ```
 */
export class RotationConfigError extends InvalidArgumentError {
  /** Dotted path of the offending field. */
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`${field}: ${problem}`);
    this.name = 'RotationConfigError';
    this.field = field;
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(o: Obj, path: string, allowed: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new RotationConfigError(`${path}.${k}`, `unknown field (known: ${allowed.join(', ')})`);
}

function str(o: Obj, path: string, k: string, required: true): string;
function str(o: Obj, path: string, k: string, required?: false): string | undefined;
function str(o: Obj, path: string, k: string, required = false): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) throw new RotationConfigError(`${path}.${k}`, 'is required');
    return undefined;
  }
  if (typeof v !== 'string' || v === '') throw new RotationConfigError(`${path}.${k}`, 'must be a non-empty string');
  return v;
}

function num(o: Obj, path: string, k: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new RotationConfigError(`${path}.${k}`, `must be a whole number from ${min} to ${max}`);
  return v;
}

function bool(o: Obj, path: string, k: string): boolean | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new RotationConfigError(`${path}.${k}`, 'must be true or false');
  return v;
}

function strings(o: Obj, path: string, k: string): string[] | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) throw new RotationConfigError(`${path}.${k}`, 'must be a list of non-empty strings');
  return v as string[];
}

function check<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PublishError || e instanceof InvalidArgumentError) throw new RotationConfigError(path, e.message);
    throw e;
  }
}

function validatePublisher(v: unknown, path: string): RotationPublisherConfig {
  if (!isObj(v)) throw new RotationConfigError(path, 'must be an object');
  const type = str(v, path, 'type', true);
  if (type === 'file') {
    only(v, path, ['type', 'prefix', 'alpn']);
    const alpn = strings(v, path, 'alpn');
    return { type, prefix: str(v, path, 'prefix', true), ...(alpn ? { alpn } : {}) };
  }
  if (type !== 'rfc2136') throw new RotationConfigError(`${path}.type`, "must be 'rfc2136' or 'file'");
  only(v, path, ['type', 'server', 'zone', 'tsig', 'createIfMissing', 'alpn', 'transport', 'timeoutMs', 'attempts']);
  const server = str(v, path, 'server', true);
  check(`${path}.server`, () => parseDnsServer(server));
  const zone = str(v, path, 'zone', true);
  check(`${path}.zone`, () => parseHttpsName(zone.replace(/\.$/, '')));
  const out: RotationPublisherConfig = { type, server, zone };
  if (v['tsig'] !== undefined) {
    const tp = `${path}.tsig`;
    const t = v['tsig'];
    if (!isObj(t)) throw new RotationConfigError(tp, 'must be an object with name and secret');
    only(t, tp, ['name', 'secret', 'algorithm']);
    const name = str(t, tp, 'name', true);
    const secret = str(t, tp, 'secret', true);
    const algorithm = str(t, tp, 'algorithm');
    if (algorithm !== undefined && !(algorithm in TsigAlgorithm)) throw new RotationConfigError(`${tp}.algorithm`, `must be one of ${Object.keys(TsigAlgorithm).join(', ')}`);
    check(`${tp}.secret`, () => tsigKey(name, secret, (algorithm ?? 'hmac-sha256') as TsigAlgorithm));
    out.tsig = { name, secret, ...(algorithm ? { algorithm: algorithm as TsigAlgorithm } : {}) };
  }
  const cim = bool(v, path, 'createIfMissing');
  if (cim !== undefined) out.createIfMissing = cim;
  const alpn = strings(v, path, 'alpn');
  if (alpn) out.alpn = alpn;
  const transport = str(v, path, 'transport');
  if (transport !== undefined) {
    if (transport !== 'udp' && transport !== 'tcp') throw new RotationConfigError(`${path}.transport`, "must be 'udp' or 'tcp'");
    out.transport = transport;
  }
  const timeoutMs = num(v, path, 'timeoutMs', 1, 600_000);
  if (timeoutMs !== undefined) out.timeoutMs = timeoutMs;
  const attempts = num(v, path, 'attempts', 1, 20);
  if (attempts !== undefined) out.attempts = attempts;
  return out;
}

/**
 * Check a parsed `rotation` section and fill in defaults. Every problem is a
 * {@link RotationConfigError} naming its field.
 * @group DNS
 * @example
 * ```ts
 * const rotation = validateRotationConfig(JSON.parse(text).rotation);
 * ```
 */
export function validateRotationConfig(value: unknown, path = 'rotation'): RotationConfig {
  if (!isObj(value)) throw new RotationConfigError(path, 'must be an object');
  only(value, path, ['publicName', 'period', 'ttl', 'margin', 'publishDelay', 'retryInterval', 'kem', 'maximumNameLength', 'names', 'stateFile', 'publisher']);
  const publicName = str(value, path, 'publicName', true);
  const problem = publicNameProblem(publicName);
  if (problem) throw new RotationConfigError(`${path}.publicName`, problem);
  const period = num(value, path, 'period', 1) ?? 86400;
  const ttl = num(value, path, 'ttl', 0, 2 ** 31 - 1) ?? 300;
  const out: RotationConfig = { publicName, period, ttl, names: [], stateFile: str(value, path, 'stateFile', true) };
  for (const k of ['margin', 'publishDelay', 'retryInterval'] as const) {
    const n = num(value, path, k, k === 'retryInterval' ? 1 : 0);
    if (n !== undefined) out[k] = n;
  }
  const kem = str(value, path, 'kem');
  if (kem !== undefined) {
    if (!(kem in KemName)) throw new RotationConfigError(`${path}.kem`, `must be one of ${Object.keys(KemName).join(', ')}`);
    out.kem = kem as KemName;
  }
  const mnl = num(value, path, 'maximumNameLength', 0, 255);
  if (mnl !== undefined) out.maximumNameLength = mnl;
  const names = strings(value, path, 'names') ?? [];
  names.forEach((n, i) => check(`${path}.names[${i}]`, () => parseHttpsName(n)));
  out.names = names;
  if (value['publisher'] !== undefined) {
    out.publisher = validatePublisher(value['publisher'], `${path}.publisher`);
    if (!names.length) throw new RotationConfigError(`${path}.names`, 'a publisher needs at least one name');
  }
  return out;
}

/**
 * Make the publisher a validated config describes (or `undefined`).
 * @group DNS
 * @example
 * ```ts
 * const publisher = createPublisher(validateRotationConfig(json.rotation));
 * ```
 */
export function createPublisher(config: RotationConfig): EchPublisher | undefined {
  const p = config.publisher;
  if (!p) return undefined;
  if (p.type === 'file') return new FilePublisher({ prefix: p.prefix, ttl: config.ttl, ...(p.alpn ? { alpn: p.alpn } : {}) });
  return new Rfc2136Publisher({
    server: p.server,
    zone: p.zone,
    ttl: config.ttl,
    ...(p.tsig ? { tsig: tsigKey(p.tsig.name, p.tsig.secret, p.tsig.algorithm ?? 'hmac-sha256') } : {}),
    ...(p.createIfMissing ? { createIfMissing: p.alpn ? { alpn: p.alpn } : true } : {}),
    ...(p.transport ? { transport: p.transport } : {}),
    ...(p.timeoutMs !== undefined ? { timeoutMs: p.timeoutMs } : {}),
    ...(p.attempts !== undefined ? { attempts: p.attempts } : {}),
  });
}

/**
 * The {@link ech-server/keys!EchKeyManager} options a validated `rotation` section describes,
 * with its publisher, for the key directory the server loads.
 * @group DNS
 * @example
 * ```ts
 * const rotation = validateRotationConfig(json.rotation);
 * const manager = await EchKeyManager.open(keyManagerOptions(rotation, json.keys.directory));
 * ```
 */
export function keyManagerOptions(config: RotationConfig, keyDirectory: string, clock?: EchClock): EchKeyManagerOptions {
  const publisher = createPublisher(config);
  return {
    keyDirectory,
    stateFile: config.stateFile,
    publicName: config.publicName,
    names: config.names,
    period: config.period,
    ttl: config.ttl,
    ...(config.margin !== undefined ? { margin: config.margin } : {}),
    ...(config.publishDelay !== undefined ? { publishDelay: config.publishDelay } : {}),
    ...(config.retryInterval !== undefined ? { retryInterval: config.retryInterval } : {}),
    ...(config.kem ? { kem: config.kem } : {}),
    ...(config.maximumNameLength !== undefined ? { maximumNameLength: config.maximumNameLength } : {}),
    ...(publisher ? { publisher } : {}),
    ...(clock ? { clock } : {}),
  };
}
