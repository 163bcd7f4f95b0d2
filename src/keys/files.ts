/**
 * Reading and writing ECH key files (RFC 9934 PEM) and key directories.
 * Private key files are written with mode 0600 and never logged.
 *
 * @module
 */
import { chmod, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EchError } from '../wire/alert.js';
import { equalBytes } from '../wire/bytes.js';
import { type EchConfig, decodeEchConfigList, encodeEchConfigList } from '../ech/config.js';
import { kemPrivateKeyFromPkcs8, kemPrivateKeyToPkcs8, loadKemPrivateKey } from '../crypto/kem.js';
import { formatEchPem, parseEchPem } from './pem.js';
import { type EchKey, EchKeySet } from './key-set.js';
import { InsecureKeyFileError, type KeyFileOptions, readPrivateKeyFile } from './permissions.js';

function fileError(message: string, cause?: unknown): EchError {
  return new EchError('ERR_KEY_FILE', 'internal_error', message, cause === undefined ? undefined : { cause });
}

/**
 * Parse an ECH PEM key file's text into an {@link EchKey}. RFC 9934 §3:
 * "When a private key is present, the ECHConfigList MUST contain an ECHConfig
 * that matches the private key"; that config is the key's.
 * @group Keys
 * @example
 * ```ts
 * const key = parseEchKeyFile(text, 'ech.pem');
 * ```
 */
export function parseEchKeyFile(text: string, source = 'key file'): EchKey {
  let pem;
  try {
    pem = parseEchPem(text);
  } catch (e) {
    throw fileError(`${source}: ${(e as Error).message}`, e);
  }
  if (!pem.privateKeyPkcs8) throw fileError(`${source}: no PRIVATE KEY block (a server needs the private key)`);
  let configs: EchConfig[];
  try {
    configs = decodeEchConfigList(pem.echConfigList).configs;
  } catch (e) {
    throw fileError(`${source}: the ECHCONFIG block is not a valid ECHConfigList: ${(e as Error).message}`, e);
  }
  let priv;
  try {
    const { kem, privateKey } = kemPrivateKeyFromPkcs8(pem.privateKeyPkcs8);
    priv = loadKemPrivateKey(kem, privateKey);
  } catch (e) {
    throw fileError(`${source}: the PRIVATE KEY block is not a usable HPKE KEM key: ${(e as Error).message}`, e);
  }
  const config = configs.find((c) => c.kemId === priv.kem && equalBytes(c.publicKey, priv.publicKey));
  if (!config) throw fileError(`${source}: no ECHConfig in the file matches its private key`);
  return { config, privateKey: priv, retry: true, source };
}

/**
 * Read one ECH PEM key file. A file that group or others may read is
 * refused with {@link InsecureKeyFileError} (`chmod 600` it), unless
 * `options.allowInsecureKeyFilePermissions`.
 * @group Keys
 * @example
 * ```ts
 * const key = await readEchKeyFile('/etc/ech/cover.pem');
 * ```
 */
export async function readEchKeyFile(path: string, options: KeyFileOptions = {}): Promise<EchKey> {
  return parseEchKeyFile(await readKeyText(path, options), path);
}

async function readKeyText(path: string, options: KeyFileOptions): Promise<string> {
  try {
    return await readPrivateKeyFile(path, options);
  } catch (e) {
    if (e instanceof InsecureKeyFileError) throw e;
    throw fileError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
  }
}

/**
 * Format an ECH PEM key file: PKCS#8 private key, then the ECHConfigList
 * holding this key's config.
 * @group Keys
 * @example
 * ```ts
 * const text = formatEchKeyFile(key.config, key.privateKeyRaw);
 * ```
 */
export function formatEchKeyFile(config: EchConfig, privateKeyRaw: Uint8Array): string {
  return formatEchPem({
    privateKeyPkcs8: kemPrivateKeyToPkcs8(config.kemId, privateKeyRaw),
    echConfigList: encodeEchConfigList([config]),
  });
}

/**
 * Write an ECH PEM key file with mode 0600 (atomically: a temporary file in
 * the same directory, then a rename).
 * @group Keys
 * @example
 * ```ts
 * await writeEchKeyFile('/etc/ech/cover.pem', key.config, key.privateKeyRaw);
 * ```
 */
export async function writeEchKeyFile(path: string, config: EchConfig, privateKeyRaw: Uint8Array): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, formatEchKeyFile(config, privateKeyRaw), { mode: 0o600, flag: 'wx' });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/**
 * Load every `*.pem` ECH key file of a directory into an {@link EchKeySet},
 * in file-name order. Files named `*.retired.pem` still decrypt but are not
 * sent as retry_configs. A key file that group or others may read is
 * refused with {@link InsecureKeyFileError}, unless
 * `options.allowInsecureKeyFilePermissions`.
 * @group Keys
 * @example
 * ```ts
 * const keys = await loadEchKeyDirectory('/etc/ech');
 * ```
 */
export async function loadEchKeyDirectory(dir: string, options: KeyFileOptions = {}): Promise<EchKeySet> {
  return loadKeyDirectoryWith(dir, (text, path) => [parseEchKeyFile(text, path)], options);
}

/**
 * Load every `*.pem` file of a directory, in file-name order, with `parse`
 * turning one file's text into keys (local keys, or keys whose private half
 * is elsewhere). Keys from `*.retired.pem` files still decrypt but are not
 * sent as retry_configs. An empty directory is an error. A file holding a
 * private key that group or others may read is refused with
 * {@link InsecureKeyFileError} unless `options.allowInsecureKeyFilePermissions`
 * (files without a private key, e.g. keyless ECHCONFIG-only ones, are not checked).
 * @group Keys
 * @example
 * ```ts
 * const keys = await loadKeyDirectoryWith('/etc/ech', (text, path) => [parseEchKeyFile(text, path)]);
 * ```
 */
export async function loadKeyDirectoryWith(
  dir: string,
  parse: (text: string, path: string) => EchKey[],
  options: KeyFileOptions = {},
): Promise<EchKeySet> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.pem')).sort();
  } catch (e) {
    throw fileError(`cannot read key directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
  }
  const set = new EchKeySet();
  for (const n of names) {
    const path = join(dir, n);
    for (const key of parse(await readKeyText(path, options), path)) {
      key.retry = !n.endsWith('.retired.pem');
      set.add(key);
    }
  }
  if (set.size === 0) throw fileError(`no ECH key files (*.pem) in ${dir}`);
  return set;
}

/**
 * Create a directory for key files (mode 0700) if it does not exist.
 * @group Keys
 * @example
 * ```ts
 * await ensureKeyDirectory('/etc/ech');
 * ```
 */
export async function ensureKeyDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}
