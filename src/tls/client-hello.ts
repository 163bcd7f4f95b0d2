/**
 * ClientHello codec (RFC 9846 §4.1.2). Unknown extensions are kept
 * byte-exact, in order; duplicate extension types are rejected.
 *
 * @module
 */
import { DecodeError, IllegalParameterError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { copyBytes } from '../wire/bytes.js';
import { Writer } from '../wire/writer.js';
import { HandshakeType } from './constants.js';

/**
 * One extension: its type and its opaque `extension_data`.
 * @group TLS
 */
export interface Extension {
  /** ExtensionType code point. */
  type: number;
  /** The extension_data bytes. */
  data: Uint8Array;
}

/**
 * A decoded ClientHello.
 *
 * ```
 * struct {
 *     ProtocolVersion legacy_version = 0x0303;
 *     Random random;
 *     opaque legacy_session_id<0..32>;
 *     CipherSuite cipher_suites<2..2^16-2>;
 *     opaque legacy_compression_methods<1..2^8-1>;
 *     Extension extensions<8..2^16-1>;
 * } ClientHello;
 * ```
 * @group TLS
 */
export interface ClientHello {
  legacyVersion: number;
  /** 32 bytes. */
  random: Uint8Array;
  /** 0 to 32 bytes. */
  legacySessionId: Uint8Array;
  cipherSuites: number[];
  legacyCompressionMethods: Uint8Array;
  extensions: Extension[];
}

/**
 * A ClientHello together with where each extension's data sits in the encoded
 * body, as needed to build ClientHelloOuterAAD (RFC 9849 §5.2).
 * @group TLS
 */
export interface ParsedClientHello extends ClientHello {
  /** The body the offsets refer to (a private copy of the input). */
  raw: Uint8Array;
  /** `extensionOffsets[i]` is the offset of `extensions[i].data` in `raw`. */
  extensionOffsets: number[];
}

/**
 * Decode a ClientHello handshake body (without the 4-byte handshake header).
 * Throws {@link DecodeError} on malformed input and
 * {@link IllegalParameterError} on a duplicated extension
 * (RFC 9846 §4.2: "There MUST NOT be more than one extension of the same
 * type in a given extension block").
 * @group TLS
 * @example
 * ```ts
 * const ch = decodeClientHello(message.body);
 * const sni = findExtension(ch.extensions, ExtensionType.server_name);
 * ```
 */
export function decodeClientHello(body: Uint8Array): ParsedClientHello {
  // One copy of the input; every field is a view into it, so nothing
  // aliases the caller's (possibly reused) network buffer.
  return parseClientHelloOwned(copyBytes(body));
}

/** Extension count up to which duplicates are found by a linear look (see parseClientHelloOwned). */
const LINEAR_DUPLICATE_CHECK = 32;

/**
 * {@link decodeClientHello} without the copy: the result's fields are views
 * into `raw`, which the caller must own and never modify afterwards.
 * @group TLS
 * @example
 * ```ts
 * const ch = parseClientHelloOwned(freshlyBuiltBytes);
 * ```
 */
export function parseClientHelloOwned(raw: Uint8Array): ParsedClientHello {
  return walkClientHello(raw, true)!;
}

/**
 * Check a ClientHello body as {@link parseClientHelloOwned} would, with the
 * same errors in the same order, without building the result (no views, no
 * extension objects): for a caller that may never need the decoded form.
 * @group TLS
 * @example
 * ```ts
 * checkClientHello(body); // throws DecodeError / IllegalParameterError like decodeClientHello
 * ```
 */
export function checkClientHello(body: Uint8Array): void {
  walkClientHello(body, false);
}

/** Whether an extension of `type` sits in raw[start, end) (whole, already walked extensions). */
function hasExtensionBetween(raw: Uint8Array, start: number, end: number, type: number): boolean {
  for (let o = start; o < end; o += 4 + ((raw[o + 2]! << 8) | raw[o + 3]!)) {
    if (((raw[o]! << 8) | raw[o + 1]!) === type) return true;
  }
  return false;
}

function walkClientHello(raw: Uint8Array, build: boolean): ParsedClientHello | undefined {
  const fast = walkWellFormed(raw, build);
  return fast === null ? walkWithReader(raw, build) : fast;
}

/**
 * {@link walkClientHello} of a well-formed ClientHello of up to
 * LINEAR_DUPLICATE_CHECK extensions, by offsets: no Reader objects, and the
 * arrays made at their final size (a decode builds three). `null` for
 * anything else (malformed, a duplicate, many extensions), which
 * `walkWithReader` then walks and rejects with its own error: this path
 * never decides an error.
 */
function walkWellFormed(raw: Uint8Array, build: boolean): ParsedClientHello | undefined | null {
  const n = raw.length;
  // legacy_version, random, legacy_session_id<0..32>
  if (n < 35) return null;
  const sid = raw[34]!;
  if (sid > 32) return null;
  const sidAt = 35;
  let p = sidAt + sid;
  // cipher_suites<2..2^16-2>
  if (n - p < 2) return null;
  const cs = (raw[p]! << 8) | raw[p + 1]!;
  if (cs < 2 || cs % 2 !== 0) return null;
  const csAt = p + 2;
  p = csAt + cs;
  // legacy_compression_methods<1..2^8-1>
  if (n - p < 1) return null;
  const cm = raw[p]!;
  if (cm < 1) return null;
  const cmAt = p + 1;
  p = cmAt + cm;
  // Extension extensions<8..2^16-1>, ending the hello.
  if (n - p < 2) return null;
  const first = p + 2;
  if (first + ((raw[p]! << 8) | raw[p + 1]!) !== n) return null;
  let count = 0;
  for (p = first; p < n; count++) {
    if (count === LINEAR_DUPLICATE_CHECK || n - p < 4) return null;
    const type = (raw[p]! << 8) | raw[p + 1]!;
    const len = (raw[p + 2]! << 8) | raw[p + 3]!;
    if (n - p - 4 < len || hasExtensionBetween(raw, first, p, type)) return null;
    p += 4 + len;
  }
  if (!build) return undefined;
  const cipherSuites = new Array<number>(cs >>> 1);
  for (let i = 0, q = csAt; i < cipherSuites.length; i++, q += 2) cipherSuites[i] = (raw[q]! << 8) | raw[q + 1]!;
  const extensions = new Array<Extension>(count);
  const extensionOffsets = new Array<number>(count);
  p = first;
  for (let i = 0; i < count; i++) {
    const at = p + 4;
    const len = (raw[p + 2]! << 8) | raw[p + 3]!;
    extensions[i] = { type: (raw[p]! << 8) | raw[p + 1]!, data: raw.subarray(at, at + len) };
    extensionOffsets[i] = at;
    p = at + len;
  }
  return {
    legacyVersion: (raw[0]! << 8) | raw[1]!,
    random: raw.subarray(2, 34),
    legacySessionId: raw.subarray(sidAt, sidAt + sid),
    cipherSuites,
    legacyCompressionMethods: raw.subarray(cmAt, cmAt + cm),
    extensions,
    raw,
    extensionOffsets,
  };
}

function walkWithReader(raw: Uint8Array, build: boolean): ParsedClientHello | undefined {
  const r = new Reader(raw);
  const legacyVersion = r.u16('legacy_version');
  const randomAt = r.offset;
  r.skip(32, 'random');
  const sid = r.u8('legacy_session_id');
  if (sid > 32) throw new DecodeError(`legacy_session_id of ${sid} bytes exceeds 32`);
  const sidAt = r.offset;
  r.skip(sid, 'legacy_session_id');
  const cs = r.vector16('cipher_suites');
  if (cs.remaining < 2 || cs.remaining % 2 !== 0) throw new DecodeError('cipher_suites length must be even and non-zero');
  const cipherSuites: number[] = [];
  if (build) while (!cs.empty) cipherSuites.push(cs.u16());
  const cm = r.u8('legacy_compression_methods');
  if (cm < 1) throw new DecodeError('empty legacy_compression_methods');
  const cmAt = r.offset;
  r.skip(cm, 'legacy_compression_methods');
  const extensions: Extension[] = [];
  const extensionOffsets: number[] = [];
  // RFC 9846 §4.1.2: `Extension extensions<8..2^16-1>` — a TLS 1.3
  // ClientHello always has the block (a hello without it is pre-TLS 1.2 and
  // of no use to this library), so its absence is a decode error.
  const ex = r.vector16('extensions');
  const first = ex.offset;
  // Duplicates: a linear look back over the extensions so far (no
  // allocation; a hello has ~10-20), a Set past LINEAR_DUPLICATE_CHECK so a
  // hostile hello of thousands of empty extensions stays linear.
  let seen: Set<number> | undefined;
  let count = 0;
  while (!ex.empty) {
    const entry = ex.offset;
    const type = ex.u16('extension type');
    const len = ex.u16('extension length');
    const at = ex.offset;
    ex.skip(len, 'extension_data');
    let duplicate: boolean;
    if (count < LINEAR_DUPLICATE_CHECK) {
      duplicate = hasExtensionBetween(raw, first, entry, type);
    } else {
      if (!seen) {
        seen = new Set<number>();
        for (let o = first; o < entry; o += 4 + ((raw[o + 2]! << 8) | raw[o + 3]!)) seen.add((raw[o]! << 8) | raw[o + 1]!);
      }
      duplicate = seen.has(type);
      seen.add(type);
    }
    if (duplicate) throw new IllegalParameterError(`duplicate extension 0x${type.toString(16).padStart(4, '0')}`);
    count++;
    if (build) {
      extensions.push({ type, data: raw.subarray(at, at + len) });
      extensionOffsets.push(at);
    }
  }
  r.end('ClientHello');
  if (!build) return undefined;
  return {
    legacyVersion,
    random: raw.subarray(randomAt, randomAt + 32),
    legacySessionId: raw.subarray(sidAt, sidAt + sid),
    cipherSuites,
    legacyCompressionMethods: raw.subarray(cmAt, cmAt + cm),
    extensions,
    raw,
    extensionOffsets,
  };
}

/**
 * Encode a ClientHello body (without the handshake header). Extensions are
 * written in the given order, byte-exact.
 * @group TLS
 * @example
 * ```ts
 * const body = encodeClientHello(ch);
 * const message = encodeHandshake(HandshakeType.client_hello, body);
 * ```
 */
export function encodeClientHello(ch: ClientHello): Uint8Array {
  const w = new Writer(512);
  writeClientHello(w, ch);
  return w.finish();
}

/**
 * Write a ClientHello body into an existing {@link Writer}.
 * @group TLS
 * @example
 * ```ts
 * writeClientHello(w, ch);
 * ```
 */
export function writeClientHello(w: Writer, ch: ClientHello): void {
  if (ch.random.length !== 32) throw new RangeError('random must be 32 bytes');
  if (ch.legacySessionId.length > 32) throw new RangeError('legacy_session_id longer than 32 bytes');
  w.u16(ch.legacyVersion);
  w.bytes(ch.random);
  w.bytes8(ch.legacySessionId);
  w.vector16((v) => {
    for (const s of ch.cipherSuites) v.u16(s);
  });
  w.bytes8(ch.legacyCompressionMethods);
  w.vector16((v) => {
    for (const e of ch.extensions) {
      v.u16(e.type);
      v.bytes16(e.data);
    }
  });
}

/**
 * Encode a whole ClientHello handshake message (header included).
 * @group TLS
 * @example
 * ```ts
 * const msg = encodeClientHelloMessage(ch);
 * ```
 */
export function encodeClientHelloMessage(ch: ClientHello): Uint8Array {
  const w = new Writer(512);
  w.u8(HandshakeType.client_hello);
  w.vector24((b) => writeClientHello(b, ch));
  return w.finish();
}

/**
 * The first extension of `type`, if any.
 * @group TLS
 * @example
 * ```ts
 * findExtension(ch.extensions, ExtensionType.encrypted_client_hello);
 * ```
 */
export function findExtension(extensions: readonly Extension[], type: number): Extension | undefined {
  // Indexed: no iterator object on a path run several times per ClientHello.
  for (let i = 0; i < extensions.length; i++) if (extensions[i]!.type === type) return extensions[i];
  return undefined;
}

/**
 * Index of the first extension of `type`, or -1.
 * @group TLS
 * @example
 * ```ts
 * const i = indexOfExtension(ch.extensions, ExtensionType.pre_shared_key);
 * ```
 */
export function indexOfExtension(extensions: readonly Extension[], type: number): number {
  for (let i = 0; i < extensions.length; i++) if (extensions[i]!.type === type) return i;
  return -1;
}
