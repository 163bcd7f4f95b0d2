/**
 * The three TLS 1.3 cipher suites this engine speaks (RFC 9846 §B.4) and
 * their parameters, with parsing of Node-style `ciphers` strings.
 *
 * @module
 */
import type { HashName } from '../crypto/hkdf.js';
import { InvalidArgumentError } from '../wire/alert.js';
import { CipherSuite } from '../tls/constants.js';

/**
 * Parameters of one TLS 1.3 cipher suite.
 * @group Server
 * @example
 * ```ts
 * const suite: CipherSuiteParams = suiteById(CipherSuite.TLS_AES_128_GCM_SHA256)!;
 * ```
 */
export interface CipherSuiteParams {
  /** Code point. */
  readonly id: number;
  /** IANA / OpenSSL name, e.g. `TLS_AES_128_GCM_SHA256`. */
  readonly name: string;
  /** HKDF / transcript hash. */
  readonly hash: HashName;
  /** node:crypto AEAD name. */
  readonly aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  /** AEAD key length. */
  readonly keyLength: number;
  /** AEAD nonce length (always 12 here). */
  readonly ivLength: number;
  /** AEAD tag length (always 16 here). */
  readonly tagLength: number;
}

/**
 * Every supported suite, in the default server preference order.
 * @group Server
 * @example
 * ```ts
 * SUITES.map((s) => s.name);
 * ```
 */
export const SUITES: readonly CipherSuiteParams[] = [
  {
    id: CipherSuite.TLS_AES_128_GCM_SHA256,
    name: 'TLS_AES_128_GCM_SHA256',
    hash: 'sha256',
    aead: 'aes-128-gcm',
    keyLength: 16,
    ivLength: 12,
    tagLength: 16,
  },
  {
    id: CipherSuite.TLS_AES_256_GCM_SHA384,
    name: 'TLS_AES_256_GCM_SHA384',
    hash: 'sha384',
    aead: 'aes-256-gcm',
    keyLength: 32,
    ivLength: 12,
    tagLength: 16,
  },
  {
    id: CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
    name: 'TLS_CHACHA20_POLY1305_SHA256',
    hash: 'sha256',
    aead: 'chacha20-poly1305',
    keyLength: 32,
    ivLength: 12,
    tagLength: 16,
  },
];

/**
 * The parameters of suite `id`, or `undefined` if unsupported.
 * @group Server
 * @example
 * ```ts
 * suiteById(0x1301)?.name; // 'TLS_AES_128_GCM_SHA256'
 * ```
 */
export function suiteById(id: number): CipherSuiteParams | undefined {
  return SUITES.find((s) => s.id === id);
}

/**
 * Parse a Node/OpenSSL-style cipher list (`'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256'`),
 * keeping the TLS 1.3 suites in order and ignoring TLS 1.2 names (Node's
 * `ciphers` option mixes both). Throws if no TLS 1.3 suite remains.
 * `undefined` gives every suite.
 * @group Server
 * @example
 * ```ts
 * parseCipherList('TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES128-GCM-SHA256'); // [chacha]
 * ```
 */
export function parseCipherList(ciphers: string | undefined): CipherSuiteParams[] {
  if (ciphers === undefined || ciphers.trim() === '') return [...SUITES];
  const out: CipherSuiteParams[] = [];
  for (const raw of ciphers.split(/[:,\s]+/)) {
    const s = SUITES.find((x) => x.name === raw.trim());
    if (s && !out.includes(s)) out.push(s);
  }
  if (out.length === 0) throw new InvalidArgumentError(`no TLS 1.3 cipher suite in '${ciphers}'`);
  return out;
}
