/**
 * Codecs for the TLS 1.3 handshake messages other than ClientHello
 * (RFC 9846 §4): ServerHello / HelloRetryRequest, EncryptedExtensions,
 * Certificate, CertificateVerify, Finished, NewSessionTicket, KeyUpdate, and
 * the server-side forms of the extensions that appear in them (key_share
 * server share and HRR selected_group, supported_versions selected_version,
 * pre_shared_key selected_identity, ALPN selected protocol).
 *
 * Decoders take the handshake *body* (no 4-byte header), reject trailing
 * bytes and truncation with {@link DecodeError}, and copy every slice they
 * return. Encoders return the body; wrap it with `encodeHandshake`.
 *
 * @module
 */
import { DecodeError, EchError, IllegalParameterError, InvalidArgumentError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { Writer, encode, encodeWith } from '../wire/writer.js';
import type { Extension } from './client-hello.js';
import { HELLO_RETRY_REQUEST_RANDOM } from './constants.js';
import { equalBytes } from '../wire/bytes.js';

const latin1 = new TextDecoder('latin1');

// ----------------------------------------------------------- extension blocks

/**
 * Read an `Extension extensions<0..2^16-1>` block. RFC 9846 §4.2: "There
 * MUST NOT be more than one extension of the same type in a given extension
 * block" → `illegal_parameter`.
 * @group TLS
 * @example
 * ```ts
 * const exts = readExtensionBlock(reader, 'EncryptedExtensions');
 * ```
 */
export function readExtensionBlock(r: Reader, what = 'extensions'): Extension[] {
  const v = r.vector16(what);
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (!v.empty) {
    const type = v.u16('extension type');
    const data = v.bytes16('extension_data');
    if (seen.has(type)) throw new IllegalParameterError(`duplicate extension 0x${type.toString(16).padStart(4, '0')} in ${what}`);
    seen.add(type);
    out.push({ type, data });
  }
  return out;
}

/**
 * Write an `Extension extensions<0..2^16-1>` block.
 * @group TLS
 * @example
 * ```ts
 * writeExtensionBlock(w, [{ type: ExtensionType.supported_versions, data }]);
 * ```
 */
export function writeExtensionBlock(w: Writer, extensions: readonly Extension[]): void {
  // The block's length is known up front: no closure for the vector.
  let n = 0;
  for (let i = 0; i < extensions.length; i++) {
    const len = extensions[i]!.data.length;
    if (len > 0xffff) throw new InvalidArgumentError(`vector of ${len} bytes exceeds its 16-bit length prefix`);
    n += 4 + len;
  }
  if (n > 0xffff) throw new InvalidArgumentError(`vector of ${n} bytes exceeds its 16-bit length prefix`);
  w.u16(n);
  for (let i = 0; i < extensions.length; i++) {
    const e = extensions[i]!;
    w.u16(e.type);
    w.bytes16(e.data);
  }
}

/**
 * A whole handshake message (RFC 9846 §4: msg_type, uint24 length, body)
 * whose body `write(w, value)` puts straight into the writer: one buffer,
 * where `encodeHandshake(type, encodeX(...))` builds the body and then
 * copies it behind a header.
 * @group TLS
 * @example
 * ```ts
 * const message = encodeHandshakeMessage(HandshakeType.encrypted_extensions, writeExtensionBlock, exts);
 * ```
 */
export function encodeHandshakeMessage<T>(type: number, write: (w: Writer, value: T) => void, value: T): Uint8Array {
  const out = encodeWith(write, value, 4);
  const n = out.length - 4;
  if (n > 0xffffff) throw new RangeError('handshake body too long');
  out[0] = type;
  out[1] = n >>> 16;
  out[2] = (n >>> 8) & 0xff;
  out[3] = n & 0xff;
  return out;
}

// ---------------------------------------------------------------- ServerHello

/**
 * A ServerHello or HelloRetryRequest (RFC 9846 §4.1.3, §4.1.4).
 *
 * ```
 * struct {
 *     ProtocolVersion legacy_version = 0x0303;
 *     Random random;
 *     opaque legacy_session_id_echo<0..32>;
 *     CipherSuite cipher_suite;
 *     uint8 legacy_compression_method = 0;
 *     Extension extensions<6..2^16-1>;
 * } ServerHello;
 * ```
 * @group TLS
 * @example
 * ```ts
 * const sh: ServerHello = decodeServerHello(message.body);
 * ```
 */
export interface ServerHello {
  legacyVersion: number;
  /** 32 bytes; {@link HELLO_RETRY_REQUEST_RANDOM} for a HelloRetryRequest. */
  random: Uint8Array;
  legacySessionIdEcho: Uint8Array;
  cipherSuite: number;
  legacyCompressionMethod: number;
  extensions: Extension[];
}

/**
 * Encode a ServerHello (or HelloRetryRequest) body.
 * @group TLS
 * @example
 * ```ts
 * const body = encodeServerHello({ legacyVersion: 0x0303, random, legacySessionIdEcho: sid,
 *   cipherSuite: 0x1301, legacyCompressionMethod: 0, extensions });
 * ```
 */
export function encodeServerHello(sh: ServerHello): Uint8Array {
  checkServerHello(sh);
  return encode((w) => writeServerHello(w, sh));
}

function checkServerHello(sh: ServerHello): void {
  if (sh.random.length !== 32) throw new RangeError('ServerHello.random must be 32 bytes');
  if (sh.legacySessionIdEcho.length > 32) throw new RangeError('legacy_session_id_echo longer than 32 bytes');
}

/**
 * Write a ServerHello (or HelloRetryRequest) body into an existing
 * {@link Writer} (see {@link encodeHandshakeMessage}).
 * @group TLS
 * @example
 * ```ts
 * const message = encodeHandshakeMessage(HandshakeType.server_hello, writeServerHello, sh);
 * ```
 */
export function writeServerHello(w: Writer, sh: ServerHello): void {
  checkServerHello(sh);
  w.u16(sh.legacyVersion);
  w.bytes(sh.random);
  w.bytes8(sh.legacySessionIdEcho);
  w.u16(sh.cipherSuite);
  w.u8(sh.legacyCompressionMethod);
  writeExtensionBlock(w, sh.extensions);
}

/**
 * Decode a ServerHello (or HelloRetryRequest) body.
 * @group TLS
 * @example
 * ```ts
 * const sh = decodeServerHello(message.body);
 * if (isHelloRetryRequest(sh)) { ... }
 * ```
 */
export function decodeServerHello(body: Uint8Array): ServerHello {
  const r = new Reader(body);
  const legacyVersion = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const sidLen = r.u8('legacy_session_id_echo');
  if (sidLen > 32) throw new DecodeError(`legacy_session_id_echo of ${sidLen} bytes exceeds 32`);
  const legacySessionIdEcho = r.bytes(sidLen, 'legacy_session_id_echo');
  const cipherSuite = r.u16('cipher_suite');
  const legacyCompressionMethod = r.u8('legacy_compression_method');
  const extensions = readExtensionBlock(r, 'ServerHello extensions');
  r.end('ServerHello');
  return { legacyVersion, random, legacySessionIdEcho, cipherSuite, legacyCompressionMethod, extensions };
}

/**
 * True when `sh.random` is the special HelloRetryRequest value
 * (RFC 9846 §4.1.3).
 * @group TLS
 * @example
 * ```ts
 * isHelloRetryRequest(decodeServerHello(body));
 * ```
 */
export function isHelloRetryRequest(sh: ServerHello): boolean {
  return equalBytes(sh.random, HELLO_RETRY_REQUEST_RANDOM);
}

// ------------------------------------------------------ EncryptedExtensions

/**
 * Encode EncryptedExtensions: `Extension extensions<0..2^16-1>`
 * (RFC 9846 §4.3.1).
 * @group TLS
 * @example
 * ```ts
 * encodeEncryptedExtensions([{ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpnSelected('h2') }]);
 * ```
 */
export function encodeEncryptedExtensions(extensions: readonly Extension[]): Uint8Array {
  return encode((w) => writeExtensionBlock(w, extensions));
}

/**
 * Decode EncryptedExtensions.
 * @group TLS
 * @example
 * ```ts
 * const exts = decodeEncryptedExtensions(message.body);
 * ```
 */
export function decodeEncryptedExtensions(body: Uint8Array): Extension[] {
  const r = new Reader(body);
  const exts = readExtensionBlock(r, 'EncryptedExtensions');
  r.end('EncryptedExtensions');
  return exts;
}

// --------------------------------------------------------------- Certificate

/**
 * One CertificateEntry (X.509 form) of a Certificate message.
 * @group TLS
 * @example
 * ```ts
 * const entry: CertificateEntry = { data: leafDer, extensions: [] };
 * ```
 */
export interface CertificateEntry {
  /** DER of one certificate (`cert_data<1..2^24-1>`). */
  data: Uint8Array;
  extensions: Extension[];
}

/**
 * A Certificate message (RFC 9846 §4.4.2).
 *
 * ```
 * struct {
 *     opaque certificate_request_context<0..2^8-1>;
 *     CertificateEntry certificate_list<0..2^24-1>;
 * } Certificate;
 * ```
 * @group TLS
 * @example
 * ```ts
 * const msg: CertificateMessage = { certificateRequestContext: new Uint8Array(0), entries: [entry] };
 * ```
 */
export interface CertificateMessage {
  certificateRequestContext: Uint8Array;
  entries: CertificateEntry[];
}

/**
 * Encode a Certificate message body.
 * @group TLS
 * @example
 * ```ts
 * encodeCertificate({ certificateRequestContext: new Uint8Array(0), entries: [{ data: der, extensions: [] }] });
 * ```
 */
export function encodeCertificate(c: CertificateMessage): Uint8Array {
  return encode((w) => {
    w.bytes8(c.certificateRequestContext);
    w.vector24((l) => {
      for (const e of c.entries) {
        if (e.data.length === 0) throw new RangeError('empty cert_data');
        l.bytes24(e.data);
        writeExtensionBlock(l, e.extensions);
      }
    });
  });
}

/**
 * Decode a Certificate message body.
 * @group TLS
 * @example
 * ```ts
 * const { entries } = decodeCertificate(message.body);
 * ```
 */
export function decodeCertificate(body: Uint8Array): CertificateMessage {
  const r = new Reader(body);
  const certificateRequestContext = r.bytes8('certificate_request_context');
  const list = r.vector24('certificate_list');
  r.end('Certificate');
  const entries: CertificateEntry[] = [];
  while (!list.empty) {
    const data = list.bytes24('cert_data');
    if (data.length === 0) throw new DecodeError('empty cert_data');
    entries.push({ data, extensions: readExtensionBlock(list, 'CertificateEntry extensions') });
  }
  return { certificateRequestContext, entries };
}

// ---------------------------------------------------------- CertificateVerify

/**
 * A CertificateVerify message (RFC 9846 §4.4.3):
 * `SignatureScheme algorithm; opaque signature<0..2^16-1>`.
 * @group TLS
 * @example
 * ```ts
 * const cv: CertificateVerify = { algorithm: SignatureScheme.ed25519, signature };
 * ```
 */
export interface CertificateVerify {
  algorithm: number;
  signature: Uint8Array;
}

/**
 * Encode a CertificateVerify body.
 * @group TLS
 * @example
 * ```ts
 * encodeCertificateVerify({ algorithm: SignatureScheme.ed25519, signature });
 * ```
 */
export function encodeCertificateVerify(cv: CertificateVerify): Uint8Array {
  return encode((w) => writeCertificateVerify(w, cv));
}

/**
 * Write a CertificateVerify body into an existing {@link Writer}.
 * @group TLS
 * @example
 * ```ts
 * encodeHandshakeMessage(HandshakeType.certificate_verify, writeCertificateVerify, { algorithm, signature });
 * ```
 */
export function writeCertificateVerify(w: Writer, cv: CertificateVerify): void {
  w.u16(cv.algorithm);
  w.bytes16(cv.signature);
}

/**
 * Decode a CertificateVerify body.
 * @group TLS
 * @example
 * ```ts
 * const { algorithm, signature } = decodeCertificateVerify(message.body);
 * ```
 */
export function decodeCertificateVerify(body: Uint8Array): CertificateVerify {
  const r = new Reader(body);
  const algorithm = r.u16('algorithm');
  const signature = r.bytes16('signature');
  r.end('CertificateVerify');
  return { algorithm, signature };
}

// ------------------------------------------------------------------ Finished

/**
 * Encode a Finished body: `opaque verify_data[Hash.length]`.
 * @group TLS
 * @example
 * ```ts
 * encodeFinished(verifyData);
 * ```
 */
export function encodeFinished(verifyData: Uint8Array): Uint8Array {
  return verifyData.slice();
}

/**
 * Decode a Finished body whose verify_data must be `hashLength` bytes
 * (RFC 9846 §4.4.4); any other length is `decode_error`.
 * @group TLS
 * @example
 * ```ts
 * const verifyData = decodeFinished(message.body, 32);
 * ```
 */
export function decodeFinished(body: Uint8Array, hashLength: number): Uint8Array {
  const r = new Reader(body);
  const v = r.bytes(hashLength, 'verify_data');
  r.end('Finished');
  return v;
}

// ----------------------------------------------------------- NewSessionTicket

/**
 * A NewSessionTicket (RFC 9846 §4.6.1).
 *
 * ```
 * struct {
 *     uint32 ticket_lifetime;
 *     uint32 ticket_age_add;
 *     opaque ticket_nonce<0..255>;
 *     opaque ticket<1..2^16-1>;
 *     Extension extensions<0..2^16-2>;
 * } NewSessionTicket;
 * ```
 * @group TLS
 * @example
 * ```ts
 * const nst: NewSessionTicket = decodeNewSessionTicket(message.body);
 * ```
 */
export interface NewSessionTicket {
  /** Seconds, at most 604800 (7 days). */
  lifetime: number;
  ageAdd: number;
  nonce: Uint8Array;
  ticket: Uint8Array;
  extensions: Extension[];
}

/**
 * Encode a NewSessionTicket body.
 * @group TLS
 * @example
 * ```ts
 * encodeNewSessionTicket({ lifetime: 7200, ageAdd, nonce, ticket, extensions: [] });
 * ```
 */
export function encodeNewSessionTicket(t: NewSessionTicket): Uint8Array {
  if (t.ticket.length === 0) throw new RangeError('empty ticket');
  return encode((w) => writeNewSessionTicket(w, t));
}

/**
 * Write a NewSessionTicket body into an existing {@link Writer}.
 * @group TLS
 * @example
 * ```ts
 * encodeHandshakeMessage(HandshakeType.new_session_ticket, writeNewSessionTicket, nst);
 * ```
 */
export function writeNewSessionTicket(w: Writer, t: NewSessionTicket): void {
  if (t.ticket.length === 0) throw new RangeError('empty ticket');
  w.u32(t.lifetime);
  w.u32(t.ageAdd);
  w.bytes8(t.nonce);
  w.bytes16(t.ticket);
  writeExtensionBlock(w, t.extensions);
}

/**
 * Decode a NewSessionTicket body. A lifetime above 604800 seconds is
 * `illegal_parameter` (RFC 9846 §4.6.1: "Servers MUST NOT use any value
 * greater than 604800 seconds").
 * @group TLS
 * @example
 * ```ts
 * const nst = decodeNewSessionTicket(message.body);
 * ```
 */
export function decodeNewSessionTicket(body: Uint8Array): NewSessionTicket {
  const r = new Reader(body);
  const lifetime = r.u32('ticket_lifetime');
  const ageAdd = r.u32('ticket_age_add');
  const nonce = r.bytes8('ticket_nonce');
  const ticket = r.bytes16('ticket');
  if (ticket.length === 0) throw new DecodeError('empty ticket');
  const extensions = readExtensionBlock(r, 'NewSessionTicket extensions');
  r.end('NewSessionTicket');
  if (lifetime > 604800) throw new IllegalParameterError('ticket_lifetime above 7 days');
  return { lifetime, ageAdd, nonce, ticket, extensions };
}

// ----------------------------------------------------------------- KeyUpdate

/**
 * KeyUpdateRequest values (RFC 9846 §4.6.3).
 * @group TLS
 * @example
 * ```ts
 * encodeKeyUpdate(KeyUpdateRequest.update_not_requested);
 * ```
 */
export const KeyUpdateRequest = {
  update_not_requested: 0,
  update_requested: 1,
} as const;
/** @group TLS */
export type KeyUpdateRequest = (typeof KeyUpdateRequest)[keyof typeof KeyUpdateRequest];

/**
 * Encode a KeyUpdate body.
 * @group TLS
 * @example
 * ```ts
 * encodeKeyUpdate(KeyUpdateRequest.update_requested);
 * ```
 */
export function encodeKeyUpdate(request: KeyUpdateRequest): Uint8Array {
  return Uint8Array.of(request);
}

/**
 * Decode a KeyUpdate body. RFC 9846 §4.6.3: "If an implementation receives
 * any other value, it MUST terminate the connection with an
 * "illegal_parameter" alert."
 * @group TLS
 * @example
 * ```ts
 * if (decodeKeyUpdate(body) === KeyUpdateRequest.update_requested) sendKeyUpdate();
 * ```
 */
export function decodeKeyUpdate(body: Uint8Array): KeyUpdateRequest {
  const r = new Reader(body);
  const v = r.u8('request_update');
  r.end('KeyUpdate');
  if (v !== 0 && v !== 1) throw new IllegalParameterError(`KeyUpdate request_update ${v}`);
  return v;
}

// --------------------------------------------- server-side extension bodies

/**
 * key_share in a ServerHello: one `KeyShareEntry server_share`
 * (RFC 9846 §4.2.8).
 * @group TLS
 * @example
 * ```ts
 * encodeKeyShareServer({ group: NamedGroup.x25519, keyExchange: pub });
 * ```
 */
export function encodeKeyShareServer(share: { group: number; keyExchange: Uint8Array }): Uint8Array {
  return encodeWith(writeKeyShareServer, share);
}

function writeKeyShareServer(w: Writer, share: { group: number; keyExchange: Uint8Array }): void {
  w.u16(share.group);
  w.bytes16(share.keyExchange);
}

/**
 * Decode the ServerHello key_share.
 * @group TLS
 * @example
 * ```ts
 * const { group, keyExchange } = decodeKeyShareServer(ext.data);
 * ```
 */
export function decodeKeyShareServer(data: Uint8Array): { group: number; keyExchange: Uint8Array } {
  const r = new Reader(data);
  const group = r.u16('NamedGroup');
  const keyExchange = r.bytes16('key_exchange');
  r.end('key_share');
  if (keyExchange.length === 0) throw new DecodeError('empty key_exchange');
  return { group, keyExchange };
}

/**
 * key_share in a HelloRetryRequest: `NamedGroup selected_group`.
 * @group TLS
 * @example
 * ```ts
 * encodeKeyShareHelloRetry(NamedGroup.secp256r1);
 * ```
 */
export function encodeKeyShareHelloRetry(group: number): Uint8Array {
  return u16Bytes(group);
}

/**
 * Decode the HelloRetryRequest key_share.
 * @group TLS
 * @example
 * ```ts
 * const group = decodeKeyShareHelloRetry(ext.data);
 * ```
 */
export function decodeKeyShareHelloRetry(data: Uint8Array): number {
  return singleU16(data, 'selected_group');
}

/**
 * supported_versions in a ServerHello/HRR: `ProtocolVersion selected_version`.
 * @group TLS
 * @example
 * ```ts
 * encodeSupportedVersionSelected(0x0304);
 * ```
 */
export function encodeSupportedVersionSelected(version: number): Uint8Array {
  return u16Bytes(version);
}

/**
 * Decode the ServerHello supported_versions.
 * @group TLS
 * @example
 * ```ts
 * decodeSupportedVersionSelected(ext.data); // 0x0304
 * ```
 */
export function decodeSupportedVersionSelected(data: Uint8Array): number {
  return singleU16(data, 'selected_version');
}

/**
 * pre_shared_key in a ServerHello: `uint16 selected_identity`.
 * @group TLS
 * @example
 * ```ts
 * encodePreSharedKeySelected(0);
 * ```
 */
export function encodePreSharedKeySelected(index: number): Uint8Array {
  return u16Bytes(index);
}

/**
 * Decode the ServerHello pre_shared_key.
 * @group TLS
 * @example
 * ```ts
 * decodePreSharedKeySelected(ext.data); // 0
 * ```
 */
export function decodePreSharedKeySelected(data: Uint8Array): number {
  return singleU16(data, 'selected_identity');
}

/**
 * ALPN in EncryptedExtensions: a protocol_name_list with exactly one name
 * (RFC 7301 §3.1).
 * @group TLS
 * @example
 * ```ts
 * encodeAlpnSelected('h2');
 * ```
 */
export function encodeAlpnSelected(protocol: string): Uint8Array {
  const b = Buffer.from(protocol, 'latin1');
  if (b.length === 0 || b.length > 255) throw new RangeError(`bad ALPN protocol name '${protocol}'`);
  // ProtocolNameList with one ProtocolName: u16 length, u8 length, name.
  const out = new Uint8Array(3 + b.length);
  out[0] = (b.length + 1) >>> 8;
  out[1] = (b.length + 1) & 0xff;
  out[2] = b.length;
  out.set(b, 3);
  return out;
}

/**
 * A big-endian uint16 as its own 2 bytes (the one-value extension bodies:
 * no writer, no closure), checked as {@link Writer.u16} checks.
 */
function u16Bytes(v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidArgumentError(`u16 out of range: ${v}`);
  return Uint8Array.of(v >>> 8, v & 0xff);
}

/**
 * Decode the server's ALPN: RFC 7301 §3.1 "the "ProtocolNameList" MUST
 * contain exactly one "ProtocolName"".
 * @group TLS
 * @example
 * ```ts
 * decodeAlpnSelected(ext.data); // 'h2'
 * ```
 */
export function decodeAlpnSelected(data: Uint8Array): string {
  const r = new Reader(data);
  const list = r.vector16('protocol_name_list');
  r.end('application_layer_protocol_negotiation');
  const name = list.bytes8('ProtocolName');
  if (name.length === 0) throw new DecodeError('empty ProtocolName');
  if (!list.empty) throw new EchError('ERR_ILLEGAL_PARAMETER', 'illegal_parameter', 'server ALPN lists more than one protocol');
  return latin1.decode(name);
}

/**
 * early_data in EncryptedExtensions / ClientHello: empty body.
 * In NewSessionTicket: `uint32 max_early_data_size`. Decodes the empty form.
 * @group TLS
 * @example
 * ```ts
 * decodeEmptyExtension(ext.data, 'early_data');
 * ```
 */
export function decodeEmptyExtension(data: Uint8Array, what: string): void {
  if (data.length !== 0) throw new DecodeError(`${what} extension must be empty`);
}

function singleU16(data: Uint8Array, what: string): number {
  const r = new Reader(data);
  const v = r.u16(what);
  r.end(what);
  return v;
}
