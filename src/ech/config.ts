/**
 * ECHConfig and ECHConfigList (RFC 9849 §4).
 *
 * ```
 * struct { HpkeKdfId kdf_id; HpkeAeadId aead_id; } HpkeSymmetricCipherSuite;
 * struct {
 *     uint8 config_id;
 *     HpkeKemId kem_id;
 *     HpkePublicKey public_key;                         // <1..2^16-1>
 *     HpkeSymmetricCipherSuite cipher_suites<4..2^16-4>;
 * } HpkeKeyConfig;
 * struct { ECHConfigExtensionType type; opaque data<0..2^16-1>; } ECHConfigExtension;
 * struct {
 *     HpkeKeyConfig key_config;
 *     uint8 maximum_name_length;
 *     opaque public_name<1..255>;
 *     ECHConfigExtension extensions<0..2^16-1>;
 * } ECHConfigContents;
 * struct { uint16 version; uint16 length; select (version) { case 0xfe0d: ECHConfigContents contents; } } ECHConfig;
 * ECHConfig ECHConfigList<4..2^16-1>;
 * ```
 *
 * @module
 */
import { DecodeError, InvalidArgumentError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { copyBytes } from '../wire/bytes.js';
import { Writer, encode } from '../wire/writer.js';
import type { Extension } from '../tls/client-hello.js';

/**
 * The ECHConfig version this library speaks: the `encrypted_client_hello`
 * code point.
 * @group ECH
 */
export const ECH_VERSION = 0xfe0d;

/**
 * An HPKE KDF/AEAD pair.
 * @group ECH
 */
export interface HpkeSymmetricCipherSuite {
  kdfId: number;
  aeadId: number;
}

/**
 * A decoded ECHConfig of version 0xfe0d.
 * @group ECH
 */
export interface EchConfig {
  /** Always {@link ECH_VERSION}. */
  version: number;
  configId: number;
  kemId: number;
  publicKey: Uint8Array;
  cipherSuites: HpkeSymmetricCipherSuite[];
  maximumNameLength: number;
  publicName: string;
  extensions: Extension[];
  /**
   * The serialized ECHConfig (version, length and contents): what HPKE's
   * `info` is built from ("tls ech" || 0x00 || ECHConfig).
   */
  raw: Uint8Array;
}

/**
 * An ECHConfig entry skipped while decoding a list, and why.
 * @group ECH
 */
export interface SkippedEchConfig {
  version: number;
  reason: 'unknown-version' | 'unsupported-mandatory-extension';
  raw: Uint8Array;
}

/**
 * The fields of an ECHConfig to encode (`raw` is computed).
 * @group ECH
 */
export type EchConfigFields = Omit<EchConfig, 'raw' | 'version'> & { version?: number };

const ascii = new TextDecoder('latin1');

/**
 * Whether `name` is a valid ECHConfig public_name: a host name in preferred
 * name syntax, not an IPv4 literal (RFC 9849 §6.1.7). Returns the reason it is
 * not, or `undefined` if it is valid.
 * @group ECH
 * @example
 * ```ts
 * publicNameProblem('cover.example'); // undefined
 * publicNameProblem('192.0.2.1');     // 'looks like an IPv4 address'
 * ```
 */
export function publicNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'empty';
  if (name.length > 255) return 'longer than 255 octets';
  // RFC 9849 §6.1.7: "the sequence does not begin or end with an ASCII dot"
  if (name.startsWith('.') || name.endsWith('.')) return 'begins or ends with a dot';
  const labels = name.split('.');
  for (const l of labels) {
    // "all labels are at most 63 octets", LDH labels (RFC 5890 §2.3.1)
    if (l.length === 0) return 'has an empty label';
    if (l.length > 63) return `label '${l.slice(0, 16)}…' is longer than 63 octets`;
    if (!/^[A-Za-z0-9-]+$/.test(l)) return `label '${l}' is not letters, digits and hyphens`;
    if (l.startsWith('-') || l.endsWith('-')) return `label '${l}' begins or ends with a hyphen`;
  }
  const last = labels[labels.length - 1]!;
  // "the final LDH label either consists of all ASCII digits ... or is "0x" or
  // "0X" followed by some, possibly empty, sequence of ASCII hexadecimal
  // digits" -> may be read as an IPv4 literal.
  if (/^[0-9]+$/.test(last) || /^0[xX][0-9A-Fa-f]*$/.test(last)) return 'looks like an IPv4 address';
  return undefined;
}

/**
 * Whether an ECHConfigExtensionType is mandatory (high bit set, RFC 9849 §4.2).
 * @group ECH
 * @example
 * ```ts
 * isMandatoryConfigExtension(0x8001); // true
 * ```
 */
export function isMandatoryConfigExtension(type: number): boolean {
  return (type & 0x8000) !== 0;
}

function decodeContents(r: Reader, raw: Uint8Array): EchConfig {
  const configId = r.u8('config_id');
  const kemId = r.u16('kem_id');
  const publicKey = r.bytes16('public_key');
  if (publicKey.length === 0) throw new DecodeError('empty ECHConfig public_key');
  const cs = r.vector16('cipher_suites');
  if (cs.remaining < 4 || cs.remaining % 4 !== 0) throw new DecodeError('cipher_suites length must be a non-zero multiple of 4');
  const cipherSuites: HpkeSymmetricCipherSuite[] = [];
  while (!cs.empty) cipherSuites.push({ kdfId: cs.u16('kdf_id'), aeadId: cs.u16('aead_id') });
  const maximumNameLength = r.u8('maximum_name_length');
  const pn = r.bytes8('public_name');
  if (pn.length === 0) throw new DecodeError('empty public_name');
  const exts = r.vector16('extensions');
  const extensions: Extension[] = [];
  const seen = new Set<number>();
  while (!exts.empty) {
    const type = exts.u16('ECHConfigExtensionType');
    const data = exts.bytes16('ECHConfigExtension data');
    // RFC 9849 §4.2: "there MUST NOT be more than one extension of the same
    // type in the extensions block".
    if (seen.has(type)) throw new DecodeError(`duplicate ECHConfig extension 0x${type.toString(16)}`);
    seen.add(type);
    extensions.push({ type, data });
  }
  r.end('ECHConfigContents');
  return {
    version: ECH_VERSION,
    configId,
    kemId,
    publicKey,
    cipherSuites,
    maximumNameLength,
    publicName: ascii.decode(pn),
    extensions,
    raw,
  };
}

/**
 * Decode exactly one ECHConfig of version 0xfe0d (the whole input).
 * @group ECH
 * @example
 * ```ts
 * const config = decodeEchConfig(bytes);
 * console.log(config.publicName, config.configId);
 * ```
 */
export function decodeEchConfig(bytes: Uint8Array): EchConfig {
  const r = new Reader(bytes);
  const version = r.u16('ECHConfig.version');
  const body = r.vector16('ECHConfig.contents');
  r.end('ECHConfig');
  if (version !== ECH_VERSION) throw new DecodeError(`unsupported ECHConfig version 0x${version.toString(16)}`);
  return decodeContents(body, copyBytes(bytes));
}

/**
 * Result of decoding an ECHConfigList.
 * @group ECH
 */
export interface DecodedEchConfigList {
  /** Configs this library can use, in list order (decreasing preference). */
  configs: EchConfig[];
  /** Entries skipped as RFC 9849 §4 requires (unknown version, unsupported mandatory extension). */
  skipped: SkippedEchConfig[];
}

/**
 * Decode an ECHConfigList. Entries of unknown versions are skipped (RFC 9849
 * §4: "Clients MUST ignore any ECHConfig structure with a version they do not
 * support"), as are configs with a mandatory extension this library does not
 * support (§4.2). Malformed entries, trailing bytes and an empty list are
 * {@link DecodeError}s.
 * @group ECH
 * @example
 * ```ts
 * const { configs } = decodeEchConfigList(fromBase64(echConfigListB64));
 * ```
 */
export function decodeEchConfigList(bytes: Uint8Array): DecodedEchConfigList {
  const r = new Reader(bytes);
  const list = r.vector16('ECHConfigList');
  r.end('ECHConfigList');
  if (list.remaining < 4) throw new DecodeError('ECHConfigList shorter than 4 bytes');
  const configs: EchConfig[] = [];
  const skipped: SkippedEchConfig[] = [];
  while (!list.empty) {
    const start = list.offset;
    const version = list.u16('ECHConfig.version');
    const body = list.vector16('ECHConfig.contents');
    const raw = copyBytes(bytes, start, list.offset);
    if (version !== ECH_VERSION) {
      skipped.push({ version, reason: 'unknown-version', raw });
      continue;
    }
    const config = decodeContents(body, raw);
    if (config.extensions.some((e) => isMandatoryConfigExtension(e.type))) {
      skipped.push({ version, reason: 'unsupported-mandatory-extension', raw });
      continue;
    }
    configs.push(config);
  }
  return { configs, skipped };
}

/**
 * Encode one ECHConfig. Validates field ranges and the public name.
 * @group ECH
 * @example
 * ```ts
 * const raw = encodeEchConfig({ configId: 7, kemId: 0x20, publicKey, cipherSuites: [{ kdfId: 1, aeadId: 1 }],
 *   maximumNameLength: 0, publicName: 'cover.example', extensions: [] });
 * ```
 */
export function encodeEchConfig(fields: EchConfigFields): Uint8Array {
  const problem = publicNameProblem(fields.publicName);
  if (problem) throw new InvalidArgumentError(`invalid public_name '${fields.publicName}': ${problem}`);
  if (fields.cipherSuites.length === 0) throw new InvalidArgumentError('an ECHConfig needs at least one cipher suite');
  if (fields.publicKey.length === 0) throw new InvalidArgumentError('empty public key');
  const w = new Writer(128);
  w.u16(fields.version ?? ECH_VERSION);
  w.vector16((c) => {
    c.u8(fields.configId);
    c.u16(fields.kemId);
    c.bytes16(fields.publicKey);
    c.vector16((s) => {
      for (const cs of fields.cipherSuites) s.u16(cs.kdfId).u16(cs.aeadId);
    });
    c.u8(fields.maximumNameLength);
    c.bytes8(Buffer.from(fields.publicName, 'latin1'));
    c.vector16((e) => {
      for (const x of fields.extensions) e.u16(x.type).bytes16(x.data);
    });
  });
  return w.finish();
}

/**
 * Build an {@link EchConfig} (with its `raw` encoding) from fields.
 * @group ECH
 * @example
 * ```ts
 * const config = makeEchConfig({ configId, kemId, publicKey, cipherSuites, maximumNameLength: 0, publicName, extensions: [] });
 * ```
 */
export function makeEchConfig(fields: EchConfigFields): EchConfig {
  return decodeEchConfig(encodeEchConfig(fields));
}

/**
 * Encode an ECHConfigList from configs (decoded, or already-serialized
 * ECHConfig bytes, which are copied as they are).
 * @group ECH
 * @example
 * ```ts
 * const list = encodeEchConfigList([config]);
 * ```
 */
export function encodeEchConfigList(configs: ReadonlyArray<EchConfig | Uint8Array>): Uint8Array {
  if (configs.length === 0) throw new InvalidArgumentError('an ECHConfigList needs at least one ECHConfig');
  return encode((w) =>
    w.vector16((l) => {
      for (const c of configs) l.bytes(c instanceof Uint8Array ? c : c.raw);
    }),
  );
}
