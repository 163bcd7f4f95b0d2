/**
 * A validating, allocation-free scan of a ClientHello body: the same
 * structural checks as {@link decodeClientHello} (every length prefix, the
 * extension block, no duplicate extension types), reporting only where two
 * extensions sit. It lets the ECH reject path (GREASE, unknown config_id:
 * most of what an attacker can send) answer without building objects.
 *
 * It reads offsets by hand rather than through the wire `Reader` for that
 * reason: a Reader is an object per vector, and this path is held to
 * reject_over_x25519 <= 0.05 by `npm run bench` (a Reader in the ECH
 * extension check alone measured 3-12% slower there). Every offset is checked
 * against its bound before it is read; `decodeClientHello`, on the Reader,
 * is its cross-check (test/scan.test.ts).
 *
 * @module
 */
import { DecodeError, IllegalParameterError } from '../wire/alert.js';

/**
 * Every extension of a scanned ClientHello, in order: type, offset of its
 * data and its length (parallel arrays, `count` entries used). Reusable
 * across scans.
 * @group TLS
 */
export class ExtensionList {
  count = 0;
  types: Uint16Array;
  at: Int32Array;
  len: Int32Array;
  constructor(capacity = 64) {
    this.types = new Uint16Array(capacity);
    this.at = new Int32Array(capacity);
    this.len = new Int32Array(capacity);
  }
  /** A copy holding the same entries. */
  clone(): ExtensionList {
    const c = new ExtensionList(Math.max(1, this.count));
    c.types.set(this.types.subarray(0, this.count));
    c.at.set(this.at.subarray(0, this.count));
    c.len.set(this.len.subarray(0, this.count));
    c.count = this.count;
    return c;
  }

  /** Append one entry, growing the arrays when full. */
  push(type: number, at: number, len: number): void {
    if (this.count === this.types.length) {
      const grow = <T extends Uint16Array | Int32Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.types = grow(this.types, (n) => new Uint16Array(n));
      this.at = grow(this.at, (n) => new Int32Array(n));
      this.len = grow(this.len, (n) => new Int32Array(n));
    }
    this.types[this.count] = type;
    this.at[this.count] = at;
    this.len[this.count] = len;
    this.count++;
  }
}

/**
 * Where the looked-for extensions' data sit in the body (`-1` when absent).
 * @group TLS
 */
export interface ClientHelloScan {
  /** Offset and length of the `encrypted_client_hello` extension data. */
  echAt: number;
  echLen: number;
  /** Offset and length of the `server_name` extension data. */
  sniAt: number;
  sniLen: number;
  /** Offset of an `ech_outer_extensions` extension's data, or -1. */
  outerExtensionsAt: number;
  /** Offset and length of the ALPN extension data. */
  alpnAt: number;
  alpnLen: number;
  /** Offset and length of the `supported_versions` extension data. */
  versionsAt: number;
  versionsLen: number;
  /** Offset of the cipher_suites vector (its length prefix). */
  cipherSuitesAt: number;
  /** Offset of the extensions vector (its length prefix). */
  extensionsAt: number;
}

const seen = new Uint16Array(128);

/**
 * Scan a ClientHello body (no handshake header). Throws
 * {@link DecodeError} / {@link IllegalParameterError} exactly where
 * `decodeClientHello` would.
 * @group TLS
 * @example
 * ```ts
 * const s = scanClientHello(body);
 * if (s.echAt >= 0) console.log(body[s.echAt]); // ECHClientHello.type
 * ```
 */
export function scanClientHello(b: Uint8Array, list?: ExtensionList): ClientHelloScan {
  const n = b.length;
  let p = 2 + 32;
  if (n < p + 1) throw new DecodeError('truncated ClientHello');
  const sid = b[p]!;
  if (sid > 32) throw new DecodeError(`legacy_session_id of ${sid} bytes exceeds 32`);
  p += 1 + sid;
  const cipherSuitesAt = p;
  if (n < p + 2) throw new DecodeError('truncated cipher_suites');
  const cs = (b[p]! << 8) | b[p + 1]!;
  if (cs < 2 || cs % 2 !== 0) throw new DecodeError('cipher_suites length must be even and non-zero');
  p += 2 + cs;
  if (n < p + 1) throw new DecodeError('truncated legacy_compression_methods');
  const cm = b[p]!;
  if (cm < 1) throw new DecodeError('empty legacy_compression_methods');
  p += 1 + cm;
  if (n < p + 2) throw new DecodeError('truncated extensions');
  const extensionsAt = p;
  const extLen = (b[p]! << 8) | b[p + 1]!;
  p += 2;
  const end = p + extLen;
  if (end > n) throw new DecodeError('truncated extensions');
  if (end < n) throw new DecodeError(`${n - end} trailing bytes after ClientHello`);
  const out: ClientHelloScan = {
    echAt: -1,
    echLen: 0,
    sniAt: -1,
    sniLen: 0,
    outerExtensionsAt: -1,
    alpnAt: -1,
    alpnLen: 0,
    versionsAt: -1,
    versionsLen: 0,
    cipherSuitesAt,
    extensionsAt,
  };
  if (list) list.count = 0;
  let count = 0;
  let overflow: Set<number> | undefined;
  while (p < end) {
    if (end - p < 4) throw new DecodeError('truncated extension header');
    const type = (b[p]! << 8) | b[p + 1]!;
    const len = (b[p + 2]! << 8) | b[p + 3]!;
    p += 4;
    if (end - p < len) throw new DecodeError('truncated extension_data');
    // RFC 9846 §4.2: "There MUST NOT be more than one extension of the
    // same type in a given extension block."
    if (count < seen.length) {
      for (let i = 0; i < count; i++) {
        if (seen[i] === type) throw new IllegalParameterError(`duplicate extension 0x${type.toString(16).padStart(4, '0')}`);
      }
      seen[count] = type;
    } else {
      overflow ??= new Set(seen);
      if (overflow.has(type)) throw new IllegalParameterError(`duplicate extension 0x${type.toString(16).padStart(4, '0')}`);
      overflow.add(type);
    }
    count++;
    list?.push(type, p, len);
    if (type === 0xfe0d) {
      out.echAt = p;
      out.echLen = len;
    } else if (type === 0x0000) {
      out.sniAt = p;
      out.sniLen = len;
    } else if (type === 0xfd00) {
      out.outerExtensionsAt = p;
    } else if (type === 0x0010) {
      out.alpnAt = p;
      out.alpnLen = len;
    } else if (type === 0x002b) {
      out.versionsAt = p;
      out.versionsLen = len;
    }
    p += len;
  }
  return out;
}
