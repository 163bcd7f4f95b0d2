/**
 * The `ech-server keyserver` configuration file: JSON, validated before
 * anything listens, every error naming its field. Relative paths are
 * resolved against the file's directory.
 *
 * ```json
 * {
 *   "listen": "127.0.0.1:7443",
 *   "cert": "keyserver.pem", "key": "keyserver.key",
 *   "ca": "front-ends-ca.pem",
 *   "echKeys": "./ech-keys",
 *   "tlsKeys": [{ "cert": "alpha.pem", "key": "alpha.key" }],
 *   "clients": [{ "name": "edge-1.example", "ech": ["cover.example"], "tls": ["alpha.example"], "ratePerSecond": 1000 }],
 *   "auditLog": "audit.jsonl"
 * }
 * ```
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { EchError } from '../wire/alert.js';
import { loadEchKeyDirectory } from '../keys/files.js';
import { InsecureKeyFileError, readPrivateKeyFile } from '../keys/permissions.js';
import { ServerCertificate } from '../keys/certificates.js';
import type { LogSink } from '../log/log.js';
import type { KeyServerOptions, KeylessClientPolicy } from './server.js';

/**
 * A configuration error of the key server; `field` is a JSON path such as
 * `clients[0].ech[1]`.
 * @group Keyless
 * @example
 * ```ts
 * try { await loadKeyServerConfig('ks.json'); } catch (e) { if (e instanceof KeyServerConfigError) console.error(e.field); }
 * ```
 */
export class KeyServerConfigError extends EchError {
  /** The field at fault. */
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_CONFIG', 'internal_error', `${field}: ${message}`);
    this.name = 'KeyServerConfigError';
    this.field = field;
  }
}

/**
 * A validated key server configuration (absolute paths).
 * @group Keyless
 * @example
 * ```ts
 * const c: KeyServerConfig = await loadKeyServerConfig('/etc/ech-keyserver.json');
 * ```
 */
export interface KeyServerConfig {
  listen: { host: string; port: number };
  /** The key server's own certificate chain and key (files). */
  cert: string;
  key: string;
  /** CA file that front-end client certificates must chain to. */
  ca: string;
  /** ECH key directory (RFC 9934 files with private keys). */
  echKeys?: string;
  /** Certificates and their private keys (files). */
  tlsKeys: Array<{ cert: string; key: string }>;
  clients: KeylessClientPolicy[];
  /** Audit log file (JSON lines, appended, mode 0600); default stderr. */
  auditLog?: string;
  idleTimeoutMs?: number;
  /** Plain HTTP listener for `GET /metrics` and `GET /healthz`; optional. */
  admin?: { host: string; port: number };
  /**
   * Load private key files (`key`, `tlsKeys[].key`, the `echKeys` files) even
   * when group or others may read them. Default false: such a file is
   * refused (`chmod 600` it).
   */
  allowInsecureKeyFilePermissions?: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const fail = (f: string, m: string) => new KeyServerConfigError(f, m);

function known(o: Obj, keys: string[], at: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw fail(at ? `${at}.${k}` : k, 'is not a known field');
}

function str(o: Obj, k: string, field: string, required = true): string | undefined {
  const v = o[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw fail(field, v === undefined ? 'is required' : 'must be a non-empty string');
  return v;
}

function positive(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw fail(field, 'must be a positive number');
  return v;
}

/**
 * Validate a parsed key server configuration.
 * @group Keyless
 * @example
 * ```ts
 * const config = validateKeyServerConfig(JSON.parse(text), '/etc/ech');
 * ```
 */
export function validateKeyServerConfig(raw: unknown, baseDir: string): KeyServerConfig {
  if (!isObj(raw)) throw fail('(root)', 'must be a JSON object');
  known(raw, ['listen', 'cert', 'key', 'ca', 'echKeys', 'tlsKeys', 'clients', 'auditLog', 'idleTimeoutMs', 'admin', 'allowInsecureKeyFilePermissions'], '');
  const insecure = raw['allowInsecureKeyFilePermissions'];
  if (insecure !== undefined && typeof insecure !== 'boolean') throw fail('allowInsecureKeyFilePermissions', 'must be true or false');
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const hostPort = (field: string) => {
    const l = raw[field];
    const m = typeof l === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(l) : null;
    if (!m) throw fail(field, typeof l === 'string' ? `'${l}' is not "host:port"` : 'must be "host:port"');
    if (Number(m[3]) > 65535) throw fail(field, `port ${m[3]} is out of range`);
    return { host: m[1] ?? m[2]!, port: Number(m[3]) };
  };
  const listen = hostPort('listen');
  const admin = raw['admin'] === undefined ? undefined : hostPort('admin');
  const echKeys = str(raw, 'echKeys', 'echKeys', false);
  const t = raw['tlsKeys'] ?? [];
  if (!Array.isArray(t)) throw fail('tlsKeys', 'must be a list of { "cert": file, "key": file }');
  const tlsKeys = t.map((x, i) => {
    const at = `tlsKeys[${i}]`;
    if (!isObj(x)) throw fail(at, 'must be { "cert": file, "key": file }');
    known(x, ['cert', 'key'], at);
    return { cert: path(str(x, 'cert', `${at}.cert`)!), key: path(str(x, 'key', `${at}.key`)!) };
  });
  if (!echKeys && tlsKeys.length === 0) throw fail('echKeys', 'is required when tlsKeys is empty (a key server with no keys)');
  const c = raw['clients'];
  if (!Array.isArray(c) || c.length === 0) throw fail('clients', c === undefined ? 'is required' : 'must be a non-empty list');
  const names = new Set<string>();
  const clients = c.map((x, i): KeylessClientPolicy => {
    const at = `clients[${i}]`;
    if (!isObj(x)) throw fail(at, 'must be an object');
    known(x, ['name', 'ech', 'tls', 'keyIds', 'ratePerSecond', 'burst'], at);
    const name = str(x, 'name', `${at}.name`)!.toLowerCase();
    if (names.has(name)) throw fail(`${at}.name`, `duplicates an earlier client '${name}'`);
    names.add(name);
    const p: KeylessClientPolicy = { name };
    if (x['ech'] !== undefined) {
      const e = x['ech'];
      if (!Array.isArray(e)) throw fail(`${at}.ech`, 'must be a list of config_ids (0-255), public names or "*"');
      e.forEach((v, j) => {
        const ok = (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 255) || (typeof v === 'string' && v.length > 0);
        if (!ok) throw fail(`${at}.ech[${j}]`, 'must be a config_id (0-255), a public name or "*"');
      });
      p.ech = e as Array<number | string>;
    }
    if (x['tls'] !== undefined) {
      const e = x['tls'];
      if (!Array.isArray(e) || e.some((v) => typeof v !== 'string' || v.length === 0)) throw fail(`${at}.tls`, 'must be a list of certificate names or "*"');
      p.tls = e as string[];
    }
    if (x['keyIds'] !== undefined) {
      const e = x['keyIds'];
      if (!Array.isArray(e)) throw fail(`${at}.keyIds`, 'must be a list of 64-digit hex key ids');
      e.forEach((v, j) => {
        if (typeof v !== 'string' || !/^[0-9a-fA-F]{64}$/.test(v)) throw fail(`${at}.keyIds[${j}]`, 'must be a 64-digit hex key id');
      });
      p.keyIds = e as string[];
    }
    const rate = positive(x['ratePerSecond'], `${at}.ratePerSecond`);
    const burst = positive(x['burst'], `${at}.burst`);
    if (rate !== undefined) p.ratePerSecond = rate;
    if (burst !== undefined) {
      if (burst < 1) throw fail(`${at}.burst`, 'must be at least 1');
      p.burst = burst;
    }
    return p;
  });
  const audit = str(raw, 'auditLog', 'auditLog', false);
  const idle = positive(raw['idleTimeoutMs'], 'idleTimeoutMs');
  return {
    listen,
    cert: path(str(raw, 'cert', 'cert')!),
    key: path(str(raw, 'key', 'key')!),
    ca: path(str(raw, 'ca', 'ca')!),
    ...(echKeys ? { echKeys: path(echKeys) } : {}),
    tlsKeys,
    clients,
    ...(audit ? { auditLog: path(audit) } : {}),
    ...(idle ? { idleTimeoutMs: idle } : {}),
    ...(admin ? { admin } : {}),
    ...(insecure === true ? { allowInsecureKeyFilePermissions: true } : {}),
  };
}

/**
 * Read and validate a key server configuration file.
 * @group Keyless
 * @example
 * ```ts
 * const config = await loadKeyServerConfig('./keyserver.json');
 * ```
 */
export async function loadKeyServerConfig(file: string): Promise<KeyServerConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw fail('(file)', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw fail('(file)', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  return validateKeyServerConfig(raw, dirname(resolve(file)));
}

async function readText(file: string, field: string, allowInsecure?: boolean): Promise<string> {
  try {
    // Private key files are refused if group or others may read them.
    return await readPrivateKeyFile(file, { allowInsecureKeyFilePermissions: allowInsecure === true });
  } catch (e) {
    if (e instanceof InsecureKeyFileError) throw e;
    throw fail(field, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * Load the files a {@link KeyServerConfig} names into {@link KeyServerOptions}
 * (without the log sinks). Errors name the field at fault; key material is
 * never put in a message.
 * @group Keyless
 * @example
 * ```ts
 * const ks = new KeyServer({ ...(await keyServerOptionsFromConfig(config)), audit, log });
 * ```
 */
export async function keyServerOptionsFromConfig(config: KeyServerConfig): Promise<Omit<KeyServerOptions, 'audit' | 'log'>> {
  let echKeys;
  if (config.echKeys) {
    try {
      echKeys = await loadEchKeyDirectory(config.echKeys, { allowInsecureKeyFilePermissions: config.allowInsecureKeyFilePermissions === true });
    } catch (e) {
      if (e instanceof InsecureKeyFileError) throw e;
      throw fail('echKeys', (e as Error).message);
    }
  }
  const tlsKeys: ServerCertificate[] = [];
  for (const [i, t] of config.tlsKeys.entries()) {
    const cert = await readText(t.cert, `tlsKeys[${i}].cert`);
    const key = await readText(t.key, `tlsKeys[${i}].key`, config.allowInsecureKeyFilePermissions);
    try {
      tlsKeys.push(ServerCertificate.from({ cert, key }));
    } catch (e) {
      throw fail(`tlsKeys[${i}]`, (e as Error).message);
    }
  }
  return {
    cert: await readText(config.cert, 'cert'),
    key: await readText(config.key, 'key', config.allowInsecureKeyFilePermissions),
    ca: await readText(config.ca, 'ca'),
    ...(echKeys ? { echKeys } : {}),
    tlsKeys,
    clients: config.clients,
    ...(config.idleTimeoutMs ? { idleTimeoutMs: config.idleTimeoutMs } : {}),
  };
}

/**
 * A log sink appending JSON lines to a file opened with mode 0600, or to
 * stderr for `undefined`.
 * @group Keyless
 * @example
 * ```ts
 * const audit = await auditSink('/var/log/ech-keyserver/audit.jsonl');
 * ```
 */
export async function auditSink(file: string | undefined): Promise<{ sink: LogSink; close(): Promise<void> }> {
  if (!file) {
    return { sink: (e) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`), close: async () => undefined };
  }
  const { createWriteStream } = await import('node:fs');
  const stream = createWriteStream(file, { flags: 'a', mode: 0o600 });
  await new Promise<void>((res, rej) => {
    stream.once('open', () => res());
    stream.once('error', (e) => rej(fail('auditLog', `cannot open ${file}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
  });
  return {
    sink: (e) => void stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`),
    close: () => new Promise<void>((res) => stream.end(() => res())),
  };
}
