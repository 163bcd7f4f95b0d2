/**
 * Codecs for the ClientHello extensions this library reads or writes
 * (RFC 9846 §4.2, RFC 6066 §3, RFC 7301, RFC 9849 §5). Each decoder takes
 * the `extension_data` bytes, consumes all of them, and throws
 * {@link DecodeError} on malformed input.
 *
 * @module
 */
import { DecodeError, IllegalParameterError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { Writer, encode } from '../wire/writer.js';
import { copyBytes } from '../wire/bytes.js';
import { EchClientHelloType } from './constants.js';

/*
 * The decoders below read a well-formed extension by offsets, with no
 * Reader objects and no copies of what they turn into numbers or strings
 * (each Reader, view or copy is a heap object; a handshake decodes a dozen
 * extensions, some twice). Anything they do not accept as well formed is
 * decoded again by the Reader-based code, which throws the error it always
 * threw (or returns what it always returned): the fast path never decides
 * an error.
 */

/**
 * `data[start, end)` as a latin1 string, as `TextDecoder('latin1')` (which
 * is windows-1252) decodes it. ASCII, the usual case, goes through
 * Buffer's own latin1 slice, which needs no view of `data`.
 */
function latin1Text(data: Uint8Array, start: number, end: number): string {
  if (latin1Slice !== undefined) {
    let ascii = true;
    for (let i = start; i < end; i++) if (data[i]! >= 0x80) ascii = false;
    if (ascii) return latin1Slice.call(data, start, end);
  }
  return latin1.decode(data.subarray(start, end));
}

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

function u16List(data: Uint8Array, what: string, min: number, max: number, prefix: 1 | 2): number[] {
  return u16ListIn(data, 0, data.length, what, min, max, prefix);
}

/** {@link u16List} of `data[start, end)`, read in place. */
function u16ListIn(data: Uint8Array, start: number, end: number, what: string, min: number, max: number, prefix: 1 | 2): number[] {
  const n = end - start;
  if (n >= prefix) {
    const len = prefix === 1 ? data[start]! : (data[start]! << 8) | data[start + 1]!;
    if (len === n - prefix && len >= min && len <= max && len % 2 === 0) {
      const out = new Array<number>(len >>> 1);
      for (let i = 0, p = start + prefix; p < end; i++, p += 2) out[i] = (data[p]! << 8) | data[p + 1]!;
      return out;
    }
  }
  return u16ListReader(rangeOf(data, start, end), what, min, max, prefix);
}

/** `data[start, end)`: `data` itself when that is all of it, else a view. */
function rangeOf(data: Uint8Array, start: number, end: number): Uint8Array {
  return start === 0 && end === data.length ? data : data.subarray(start, end);
}

function u16ListReader(data: Uint8Array, what: string, min: number, max: number, prefix: 1 | 2): number[] {
  const r = new Reader(data);
  const v = prefix === 1 ? r.vector8(what) : r.vector16(what);
  r.end(what);
  if (v.remaining < min || v.remaining > max || v.remaining % 2 !== 0) {
    throw new DecodeError(`${what}: bad length ${v.remaining}`);
  }
  const out: number[] = [];
  while (!v.empty) out.push(v.u16());
  return out;
}

function encodeU16List(list: readonly number[], prefix: 1 | 2): Uint8Array {
  return encode((w) => {
    const body = (b: Writer) => {
      for (const x of list) b.u16(x);
    };
    if (prefix === 1) w.vector8(body);
    else w.vector16(body);
  });
}

const latin1 = new TextDecoder('latin1');

// ---------------------------------------------------------------- server_name

/**
 * Decode a ClientHello `server_name` extension (RFC 6066 §3) and return the
 * host name, or `undefined` if the list holds no host_name entry.
 *
 * ```
 * struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
 * struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
 * ```
 * @group TLS
 * @example
 * ```ts
 * decodeServerName(ext.data); // 'secret.example'
 * ```
 */
export function decodeServerName(data: Uint8Array): string | undefined {
  return decodeServerNameIn(data, 0, data.length);
}

/**
 * {@link decodeServerName} of the extension data at `data[start, end)`,
 * read in place (no view of it unless it is malformed).
 * @internal
 * @group TLS
 * @example
 * ```ts
 * decodeServerNameIn(body, scan.sniAt, scan.sniAt + scan.sniLen); // 'secret.example'
 * ```
 */
export function decodeServerNameIn(data: Uint8Array, start: number, end: number): string | undefined {
  if (end - start > 2 && ((data[start]! << 8) | data[start + 1]!) === end - start - 2) {
    let host: string | undefined;
    let p = start + 2;
    let ok = true;
    while (ok && p < end) {
      if (end - p < 3) {
        ok = false;
        break;
      }
      const type = data[p]!;
      const len = (data[p + 1]! << 8) | data[p + 2]!;
      p += 3;
      if (end - p < len) {
        ok = false;
        break;
      }
      if (type === 0) {
        if (host !== undefined || len === 0) {
          ok = false;
          break;
        }
        for (let i = p; i < p + len; i++) if (data[i]! <= 0x20 || data[i]! >= 0x7f) ok = false;
        if (ok) host = latin1Text(data, p, p + len);
      }
      p += len;
    }
    if (ok && p === end) return host;
  }
  return decodeServerNameReader(rangeOf(data, start, end));
}

function decodeServerNameReader(data: Uint8Array): string | undefined {
  const r = new Reader(data);
  const list = r.vector16('server_name_list');
  r.end('server_name');
  if (list.empty) throw new DecodeError('empty server_name_list');
  let host: string | undefined;
  while (!list.empty) {
    const type = list.u8('name_type');
    const name = list.vector16('HostName');
    if (type !== 0) continue;
    // RFC 6066 §3: "The ServerNameList MUST NOT contain more than one name of
    // the same name_type."
    if (host !== undefined) throw new IllegalParameterError('two host_name entries in server_name');
    if (name.empty) throw new DecodeError('empty HostName');
    const bytes = name.rest();
    for (const b of bytes) {
      // RFC 6066 §3: HostName is "the fully qualified DNS hostname ... in
      // ASCII"; control characters, spaces and non-ASCII bytes are refused.
      if (b <= 0x20 || b >= 0x7f) throw new DecodeError('HostName is not a printable ASCII string');
    }
    host = latin1.decode(bytes);
  }
  return host;
}

/**
 * Encode a `server_name` extension with one host_name.
 * @group TLS
 * @example
 * ```ts
 * const data = encodeServerName('public.example');
 * ```
 */
export function encodeServerName(host: string): Uint8Array {
  const name = Buffer.from(host, 'latin1');
  return encode((w) =>
    w.vector16((l) => {
      l.u8(0);
      l.bytes16(name);
    }),
  );
}

// ----------------------------------------------------------------------- ALPN

/**
 * Decode an ALPN extension (RFC 7301 §3.1): `ProtocolName protocol_name_list<2..2^16-1>`,
 * each name `<1..2^8-1>`.
 * @group TLS
 * @example
 * ```ts
 * decodeAlpn(ext.data); // ['h2', 'http/1.1']
 * ```
 */
export function decodeAlpn(data: Uint8Array): string[] {
  return decodeAlpnIn(data, 0, data.length);
}

/**
 * {@link decodeAlpn} of the extension data at `data[start, end)`, read in
 * place (no view of it unless it is malformed).
 * @internal
 * @group TLS
 * @example
 * ```ts
 * decodeAlpnIn(body, scan.alpnAt, scan.alpnAt + scan.alpnLen); // ['h2', 'http/1.1']
 * ```
 */
export function decodeAlpnIn(data: Uint8Array, start: number, end: number): string[] {
  if (end - start > 2 && ((data[start]! << 8) | data[start + 1]!) === end - start - 2) {
    // One pass to check and count, one to build an array of the right size.
    let count = 0;
    let p = start + 2;
    while (p < end && data[p]! > 0 && data[p]! < end - p) {
      p += 1 + data[p]!;
      count++;
    }
    if (p === end) {
      const out = new Array<string>(count);
      p = start + 2;
      for (let i = 0; i < count; i++) {
        const len = data[p]!;
        out[i] = latin1Text(data, p + 1, p + 1 + len);
        p += 1 + len;
      }
      return out;
    }
  }
  return decodeAlpnReader(rangeOf(data, start, end));
}

function decodeAlpnReader(data: Uint8Array): string[] {
  const r = new Reader(data);
  const list = r.vector16('protocol_name_list');
  r.end('application_layer_protocol_negotiation');
  if (list.empty) throw new DecodeError('empty protocol_name_list');
  const out: string[] = [];
  while (!list.empty) {
    const n = list.bytes8('ProtocolName');
    // RFC 7301 §3.1: "Empty strings MUST NOT be included".
    if (n.length === 0) throw new DecodeError('empty ProtocolName');
    out.push(latin1.decode(n));
  }
  return out;
}

/**
 * Encode an ALPN extension.
 * @group TLS
 * @example
 * ```ts
 * encodeAlpn(['h2', 'http/1.1']);
 * ```
 */
export function encodeAlpn(protocols: readonly string[]): Uint8Array {
  return encode((w) =>
    w.vector16((l) => {
      for (const p of protocols) {
        const b = Buffer.from(p, 'latin1');
        if (b.length === 0 || b.length > 255) throw new RangeError(`bad ALPN protocol name '${p}'`);
        l.bytes8(b);
      }
    }),
  );
}

// ------------------------------------------------------------ lists of u16

/**
 * Decode a ClientHello `supported_versions` extension:
 * `ProtocolVersion versions<2..254>`.
 * @group TLS
 * @example
 * ```ts
 * decodeSupportedVersions(ext.data); // [0x0304, 0x0303]
 * ```
 */
export function decodeSupportedVersions(data: Uint8Array): number[] {
  return u16List(data, 'supported_versions', 2, 254, 1);
}

/**
 * {@link decodeSupportedVersions} of the extension data at
 * `data[start, end)`, read in place (no view of it unless it is malformed).
 * @internal
 * @group TLS
 * @example
 * ```ts
 * decodeSupportedVersionsIn(body, scan.versionsAt, scan.versionsAt + scan.versionsLen); // [0x0304]
 * ```
 */
export function decodeSupportedVersionsIn(data: Uint8Array, start: number, end: number): number[] {
  return u16ListIn(data, start, end, 'supported_versions', 2, 254, 1);
}

/**
 * Encode a ClientHello `supported_versions` extension.
 * @group TLS
 * @example
 * ```ts
 * encodeSupportedVersions([0x0304]);
 * ```
 */
export function encodeSupportedVersions(versions: readonly number[]): Uint8Array {
  return encodeU16List(versions, 1);
}

/**
 * Decode `supported_groups`: `NamedGroup named_group_list<2..2^16-1>`.
 * @group TLS
 * @example
 * ```ts
 * decodeSupportedGroups(ext.data); // [0x001d, 0x0017]
 * ```
 */
export function decodeSupportedGroups(data: Uint8Array): number[] {
  return u16List(data, 'supported_groups', 2, 0xfffe, 2);
}

/**
 * Encode `supported_groups`.
 * @group TLS
 * @example
 * ```ts
 * encodeSupportedGroups([NamedGroup.x25519]);
 * ```
 */
export function encodeSupportedGroups(groups: readonly number[]): Uint8Array {
  return encodeU16List(groups, 2);
}

/**
 * Decode `signature_algorithms` (and `signature_algorithms_cert`):
 * `SignatureScheme supported_signature_algorithms<2..2^16-2>`.
 * @group TLS
 * @example
 * ```ts
 * decodeSignatureAlgorithms(ext.data);
 * ```
 */
export function decodeSignatureAlgorithms(data: Uint8Array): number[] {
  return u16List(data, 'signature_algorithms', 2, 0xfffe, 2);
}

/**
 * Encode `signature_algorithms`.
 * @group TLS
 * @example
 * ```ts
 * encodeSignatureAlgorithms([SignatureScheme.ecdsa_secp256r1_sha256]);
 * ```
 */
export function encodeSignatureAlgorithms(schemes: readonly number[]): Uint8Array {
  return encodeU16List(schemes, 2);
}

/**
 * Decode `psk_key_exchange_modes`: `PskKeyExchangeMode ke_modes<1..255>`.
 * @group TLS
 * @example
 * ```ts
 * decodePskKeyExchangeModes(ext.data); // [1]
 * ```
 */
export function decodePskKeyExchangeModes(data: Uint8Array): number[] {
  const n = data.length;
  if (n > 1 && data[0] === n - 1) {
    const out = new Array<number>(n - 1);
    for (let i = 1; i < n; i++) out[i - 1] = data[i]!;
    return out;
  }
  const r = new Reader(data);
  const v = r.vector8('ke_modes');
  r.end('psk_key_exchange_modes');
  if (v.empty) throw new DecodeError('empty ke_modes');
  const out: number[] = [];
  while (!v.empty) out.push(v.u8());
  return out;
}

/**
 * Encode `psk_key_exchange_modes`.
 * @group TLS
 * @example
 * ```ts
 * encodePskKeyExchangeModes([PskKeyExchangeMode.psk_dhe_ke]);
 * ```
 */
export function encodePskKeyExchangeModes(modes: readonly number[]): Uint8Array {
  return encode((w) =>
    w.vector8((v) => {
      for (const m of modes) v.u8(m);
    }),
  );
}

// ------------------------------------------------------------------ key_share

/**
 * One KeyShareEntry (RFC 9846 §4.2.8).
 * @group TLS
 */
export interface KeyShareEntry {
  group: number;
  keyExchange: Uint8Array;
}

/**
 * Decode a ClientHello `key_share`: `KeyShareEntry client_shares<0..2^16-1>`.
 * A group offered twice is `illegal_parameter` (RFC 9846 §4.2.8: "Clients
 * MUST NOT offer multiple KeyShareEntry values for the same group").
 * @group TLS
 * @example
 * ```ts
 * decodeKeyShareClient(ext.data)[0].group;
 * ```
 */
export function decodeKeyShareClient(data: Uint8Array): KeyShareEntry[] {
  const n = data.length;
  if (n >= 2 && ((data[0]! << 8) | data[1]!) === n - 2) {
    // One pass to check and count, one to build.
    let count = 0;
    let p = 2;
    let ok = true;
    while (ok && p < n) {
      if (n - p < 4) {
        ok = false;
        break;
      }
      const group = (data[p]! << 8) | data[p + 1]!;
      const len = (data[p + 2]! << 8) | data[p + 3]!;
      if (len === 0 || n - p - 4 < len) {
        ok = false;
        break;
      }
      for (let q = 2; q < p; q += 4 + ((data[q + 2]! << 8) | data[q + 3]!)) {
        if (((data[q]! << 8) | data[q + 1]!) === group) ok = false;
      }
      p += 4 + len;
      count++;
    }
    if (ok && p === n) {
      const out = new Array<KeyShareEntry>(count);
      p = 2;
      for (let i = 0; i < count; i++) {
        const len = (data[p + 2]! << 8) | data[p + 3]!;
        out[i] = { group: (data[p]! << 8) | data[p + 1]!, keyExchange: copyBytes(data, p + 4, p + 4 + len) };
        p += 4 + len;
      }
      return out;
    }
  }
  const r = new Reader(data);
  const v = r.vector16('client_shares');
  r.end('key_share');
  const out: KeyShareEntry[] = [];
  while (!v.empty) {
    const group = v.u16('NamedGroup');
    const keyExchange = v.bytes16('key_exchange');
    if (keyExchange.length === 0) throw new DecodeError('empty key_exchange');
    for (const e of out) if (e.group === group) throw new IllegalParameterError(`key_share offers group 0x${group.toString(16)} twice`);
    out.push({ group, keyExchange });
  }
  return out;
}

/**
 * Encode a ClientHello `key_share`.
 * @group TLS
 * @example
 * ```ts
 * encodeKeyShareClient([{ group: NamedGroup.x25519, keyExchange: pub }]);
 * ```
 */
export function encodeKeyShareClient(shares: readonly KeyShareEntry[]): Uint8Array {
  return encode((w) =>
    w.vector16((v) => {
      for (const s of shares) {
        v.u16(s.group);
        v.bytes16(s.keyExchange);
      }
    }),
  );
}

// ------------------------------------------------------------- pre_shared_key

/**
 * A PskIdentity (RFC 9846 §4.2.11).
 * @group TLS
 */
export interface PskIdentity {
  identity: Uint8Array;
  obfuscatedTicketAge: number;
}

/**
 * A ClientHello `pre_shared_key` extension: `OfferedPsks`.
 * @group TLS
 */
export interface OfferedPsks {
  identities: PskIdentity[];
  binders: Uint8Array[];
}

/**
 * Decode a ClientHello `pre_shared_key` extension.
 *
 * ```
 * struct { PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1>; } OfferedPsks;
 * opaque PskBinderEntry<32..255>;
 * ```
 * @group TLS
 * @example
 * ```ts
 * const { identities, binders } = decodeOfferedPsks(ext.data);
 * ```
 */
export function decodeOfferedPsks(data: Uint8Array): OfferedPsks {
  const r = new Reader(data);
  const ids = r.vector16('identities');
  const bs = r.vector16('binders');
  r.end('pre_shared_key');
  const identities: PskIdentity[] = [];
  while (!ids.empty) {
    const identity = ids.bytes16('identity');
    if (identity.length === 0) throw new DecodeError('empty PSK identity');
    identities.push({ identity, obfuscatedTicketAge: ids.u32('obfuscated_ticket_age') });
  }
  const binders: Uint8Array[] = [];
  while (!bs.empty) {
    const b = bs.bytes8('PskBinderEntry');
    if (b.length < 32) throw new DecodeError('PSK binder shorter than 32 bytes');
    binders.push(b);
  }
  if (identities.length === 0) throw new DecodeError('no PSK identities');
  // RFC 9846 §4.2.11: "Clients MUST NOT send more binders than identities
  // and vice versa"; the server checks the counts match.
  if (binders.length !== identities.length) {
    throw new IllegalParameterError('pre_shared_key: number of binders differs from number of identities');
  }
  return { identities, binders };
}

/**
 * Encode a ClientHello `pre_shared_key` extension.
 * @group TLS
 * @example
 * ```ts
 * encodeOfferedPsks({ identities: [{ identity, obfuscatedTicketAge }], binders: [binder] });
 * ```
 */
export function encodeOfferedPsks(psks: OfferedPsks): Uint8Array {
  return encode((w) => {
    w.vector16((v) => {
      for (const id of psks.identities) {
        v.bytes16(id.identity);
        v.u32(id.obfuscatedTicketAge);
      }
    });
    w.vector16((v) => {
      for (const b of psks.binders) v.bytes8(b);
    });
  });
}

/**
 * Length of the encoded `binders` vector (its 2-byte length prefix included)
 * of an OfferedPsks: how many bytes at the end of the ClientHello the binder
 * computation leaves out (RFC 9846 §4.2.11.2).
 * @group TLS
 * @example
 * ```ts
 * const truncated = clientHelloMessage.subarray(0, clientHelloMessage.length - pskBindersLength(ext.data));
 * ```
 */
export function pskBindersLength(data: Uint8Array): number {
  const r = new Reader(data);
  r.vector16('identities');
  const at = r.offset;
  r.vector16('binders');
  return r.offset - at;
}

// --------------------------------------------------------------------- cookie

/**
 * Decode a `cookie` extension: `opaque cookie<1..2^16-1>`.
 * @group TLS
 * @example
 * ```ts
 * decodeCookie(ext.data);
 * ```
 */
export function decodeCookie(data: Uint8Array): Uint8Array {
  const r = new Reader(data);
  const c = r.bytes16('cookie');
  r.end('cookie');
  if (c.length === 0) throw new DecodeError('empty cookie');
  return c;
}

/**
 * Encode a `cookie` extension.
 * @group TLS
 * @example
 * ```ts
 * encodeCookie(cookie);
 * ```
 */
export function encodeCookie(cookie: Uint8Array): Uint8Array {
  return encode((w) => w.bytes16(cookie));
}

// ----------------------------------------------------- encrypted_client_hello

/**
 * The `outer` variant of ECHClientHello (RFC 9849 §5).
 * @group ECH
 */
export interface EchOuterExtension {
  type: 'outer';
  kdfId: number;
  aeadId: number;
  configId: number;
  enc: Uint8Array;
  payload: Uint8Array;
  /** Offset of `payload` within the extension data. */
  payloadOffset: number;
}

/**
 * The `inner` variant of ECHClientHello (RFC 9849 §5): empty.
 * @group ECH
 */
export interface EchInnerExtension {
  type: 'inner';
}

/**
 * Either variant of ECHClientHello.
 * @group ECH
 */
export type EchClientHelloExtension = EchOuterExtension | EchInnerExtension;

/**
 * Decode the ClientHello `encrypted_client_hello` extension (RFC 9849 §5).
 *
 * ```
 * struct {
 *    ECHClientHelloType type;
 *    select (ECHClientHello.type) {
 *        case outer: HpkeSymmetricCipherSuite cipher_suite; uint8 config_id;
 *                    opaque enc<0..2^16-1>; opaque payload<1..2^16-1>;
 *        case inner: Empty;
 *    };
 * } ECHClientHello;
 * ```
 * @group ECH
 * @example
 * ```ts
 * const ech = decodeEchClientHello(ext.data);
 * if (ech.type === 'outer') console.log(ech.configId);
 * ```
 */
export function decodeEchClientHello(data: Uint8Array): EchClientHelloExtension {
  const r = new Reader(data);
  const type = r.u8('ECHClientHelloType');
  if (type === EchClientHelloType.inner) {
    r.end('inner ECHClientHello');
    return { type: 'inner' };
  }
  if (type !== EchClientHelloType.outer) {
    // RFC 9849 §7: "If ECHClientHello.type is not a valid ECHClientHelloType,
    // then the server MUST abort with an "illegal_parameter" alert."
    throw new IllegalParameterError(`unknown ECHClientHelloType ${type}`);
  }
  const kdfId = r.u16('kdf_id');
  const aeadId = r.u16('aead_id');
  const configId = r.u8('config_id');
  const enc = r.bytes16('enc');
  const plen = r.u16('payload');
  const payloadOffset = r.offset;
  const payload = r.bytes(plen, 'payload');
  if (payload.length === 0) throw new DecodeError('empty ECH payload');
  r.end('outer ECHClientHello');
  return { type: 'outer', kdfId, aeadId, configId, enc, payload, payloadOffset };
}

/**
 * Encode an ECHClientHello.
 * @group ECH
 * @example
 * ```ts
 * encodeEchClientHello({ type: 'inner' }); // Uint8Array [1]
 * ```
 */
export function encodeEchClientHello(
  ech: EchInnerExtension | Omit<EchOuterExtension, 'payloadOffset'>,
): Uint8Array {
  if (ech.type === 'inner') return new Uint8Array([EchClientHelloType.inner]);
  return encode((w) => {
    w.u8(EchClientHelloType.outer);
    w.u16(ech.kdfId);
    w.u16(ech.aeadId);
    w.u8(ech.configId);
    w.bytes16(ech.enc);
    w.bytes16(ech.payload);
  });
}

/**
 * Decode `ech_outer_extensions` (RFC 9849 §5.1):
 * `ExtensionType OuterExtensions<2..254>`.
 * @group ECH
 * @example
 * ```ts
 * decodeEchOuterExtensions(ext.data); // [10, 13, 51]
 * ```
 */
export function decodeEchOuterExtensions(data: Uint8Array): number[] {
  return u16List(data, 'OuterExtensions', 2, 254, 1);
}

/**
 * Encode `ech_outer_extensions`.
 * @group ECH
 * @example
 * ```ts
 * encodeEchOuterExtensions([ExtensionType.key_share]);
 * ```
 */
export function encodeEchOuterExtensions(types: readonly number[]): Uint8Array {
  return encodeU16List(types, 1);
}
