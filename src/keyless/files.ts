/**
 * Key directories for a keyless front end: RFC 9934 PEM files that hold
 * only the ECHCONFIG block (zero private keys, which RFC 9934 §3 allows).
 * Each config in such a file becomes a key whose private half is a
 * {@link KeylessClient}'s remote key. A file that does carry a PRIVATE KEY
 * is loaded as a local key, so a directory may mix both.
 *
 * @module
 */
import { EchError } from '../wire/alert.js';
import { decodeEchConfigList } from '../ech/config.js';
import { formatEchPem, parseEchPem } from '../keys/pem.js';
import { loadKeyDirectoryWith, parseEchKeyFile } from '../keys/files.js';
import type { KeyFileOptions } from '../keys/permissions.js';
import { encodeEchConfigList, type EchConfig } from '../ech/config.js';
import { type EchKey, type EchPrivateKey, EchKeySet } from '../keys/key-set.js';

function fileError(message: string, cause?: unknown): EchError {
  return new EchError('ERR_KEY_FILE', 'internal_error', message, cause === undefined ? undefined : { cause });
}

/**
 * Parse an ECH PEM file for a keyless front end: one key per ECHConfig
 * (remote, through `remote(config)`) when the file has no private key,
 * else the file's local key.
 * @group Keyless
 * @example
 * ```ts
 * const keys = parseKeylessEchKeyFile(text, 'cover.pem', (c) => client.echPrivateKey(c));
 * ```
 */
export function parseKeylessEchKeyFile(text: string, source: string, remote: (config: EchConfig) => EchPrivateKey): EchKey[] {
  let pem;
  try {
    pem = parseEchPem(text);
  } catch (e) {
    throw fileError(`${source}: ${(e as Error).message}`, e);
  }
  if (pem.privateKeyPkcs8) return [parseEchKeyFile(text, source)];
  let configs: EchConfig[];
  try {
    configs = decodeEchConfigList(pem.echConfigList).configs;
  } catch (e) {
    throw fileError(`${source}: the ECHCONFIG block is not a valid ECHConfigList: ${(e as Error).message}`, e);
  }
  if (configs.length === 0) throw fileError(`${source}: the ECHConfigList holds no config this server understands`);
  return configs.map((config) => ({ config, privateKey: remote(config), retry: true, source }));
}

/**
 * Load every `*.pem` of a key directory for a keyless front end, in
 * file-name order; `*.retired.pem` files still decrypt but are not sent as
 * retry_configs (as {@link ech-server/keys!loadEchKeyDirectory}). A file that holds a private
 * key is refused if group or others may read it, unless
 * `options.allowInsecureKeyFilePermissions`.
 * @group Keyless
 * @example
 * ```ts
 * const keys = await loadKeylessEchKeyDirectory('/etc/ech-public', (c) => client.echPrivateKey(c));
 * ```
 */
export async function loadKeylessEchKeyDirectory(
  dir: string,
  remote: (config: EchConfig) => EchPrivateKey,
  options: KeyFileOptions = {},
): Promise<EchKeySet> {
  return loadKeyDirectoryWith(dir, (text, path) => parseKeylessEchKeyFile(text, path, remote), options);
}

/**
 * The public file for a keyless front end: the ECHCONFIG block alone
 * (RFC 9934 with zero private keys). Public; mode is the caller's choice.
 * @group Keyless
 * @example
 * ```ts
 * await writeFile('/etc/ech-public/cover.pem', formatPublicEchFile([key.config]));
 * ```
 */
export function formatPublicEchFile(configs: readonly EchConfig[]): string {
  return formatEchPem({ echConfigList: encodeEchConfigList([...configs]) });
}
