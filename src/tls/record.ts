/**
 * TLSPlaintext record framing and handshake message reassembly
 * (RFC 9846 §5.1, §4). A ClientHello may span several records, and records
 * may arrive split across TCP reads; {@link HandshakeReassembler} takes
 * fragments in any split and yields whole handshake messages.
 *
 * @module
 */
import { DecodeError, EchError } from '../wire/alert.js';
import { ContentType, MAX_PLAINTEXT } from './constants.js';

const EMPTY = new Uint8Array(0);

/**
 * One record as read off the wire.
 * @group TLS
 */
export interface TlsRecord {
  /** ContentType. */
  type: number;
  /** legacy_record_version. */
  version: number;
  /** The fragment (a view into the input; copy to keep). */
  fragment: Uint8Array;
}

/** Size of a record header. @group TLS */
export const RECORD_HEADER_LENGTH = 5;

/**
 * Largest record body accepted: 2^14 + 256 for ciphertext (RFC 9846 §5.2).
 * @group TLS
 */
export const MAX_CIPHERTEXT = MAX_PLAINTEXT + 256;

/**
 * Try to read one record from `buf` at `offset`.
 * Returns `undefined` when more bytes are needed.
 * Throws {@link DecodeError} for a record that is not TLS and `record_overflow`
 * for one longer than `maxFragment`.
 * @group TLS
 * @example
 * ```ts
 * const rec = readRecord(buf, 0);
 * if (rec) console.log(rec.record.type, rec.next);
 * ```
 */
export function readRecord(
  buf: Uint8Array,
  offset: number,
  maxFragment: number = MAX_CIPHERTEXT,
): { record: TlsRecord; next: number } | undefined {
  if (buf.length - offset < RECORD_HEADER_LENGTH) return undefined;
  const type = buf[offset]!;
  const version = (buf[offset + 1]! << 8) | buf[offset + 2]!;
  const length = (buf[offset + 3]! << 8) | buf[offset + 4]!;
  if (type < 20 || type > 24 || buf[offset + 1] !== 0x03) {
    throw new DecodeError(`not a TLS record (type ${type}, version 0x${version.toString(16)})`);
  }
  if (length > maxFragment) {
    throw new EchError('ERR_PROTOCOL', 'record_overflow', `record of ${length} bytes exceeds ${maxFragment}`);
  }
  if (buf.length - offset - RECORD_HEADER_LENGTH < length) return undefined;
  const start = offset + RECORD_HEADER_LENGTH;
  return { record: { type, version, fragment: buf.subarray(start, start + length) }, next: start + length };
}

/**
 * Frame `body` as one or more records of `type`, each at most `maxFragment`
 * bytes.
 * @group TLS
 * @example
 * ```ts
 * const wire = writeRecords(ContentType.handshake, clientHelloMessage);
 * ```
 */
export function writeRecords(
  type: number,
  body: Uint8Array,
  version = 0x0303,
  maxFragment: number = MAX_PLAINTEXT,
): Uint8Array {
  const n = Math.max(1, Math.ceil(body.length / maxFragment));
  const out = new Uint8Array(body.length + n * RECORD_HEADER_LENGTH);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const chunk = body.subarray(i * maxFragment, Math.min(body.length, (i + 1) * maxFragment));
    out[o] = type;
    out[o + 1] = version >> 8;
    out[o + 2] = version & 0xff;
    out[o + 3] = chunk.length >> 8;
    out[o + 4] = chunk.length & 0xff;
    out.set(chunk, o + 5);
    o += 5 + chunk.length;
  }
  return out;
}

/**
 * A whole handshake message.
 * @group TLS
 */
export interface HandshakeMessage {
  /** HandshakeType. */
  type: number;
  /** Body without the 4-byte header. */
  body: Uint8Array;
  /** The whole message, header included (what the transcript hashes). */
  raw: Uint8Array;
}

/**
 * Encode a handshake message: type, u24 length, body.
 * @group TLS
 * @example
 * ```ts
 * const msg = encodeHandshake(HandshakeType.client_hello, body);
 * ```
 */
export function encodeHandshake(type: number, body: Uint8Array): Uint8Array {
  if (body.length > 0xffffff) throw new RangeError('handshake body too long');
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = body.length >>> 16;
  out[2] = (body.length >>> 8) & 0xff;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

/**
 * Joins handshake-record fragments into whole handshake messages
 * (RFC 9846 §5.1: messages may be coalesced into one record or fragmented
 * across several). Enforces a per-message size cap.
 * @group TLS
 * @example
 * ```ts
 * const hs = new HandshakeReassembler(64 * 1024);
 * hs.push(record.fragment);
 * for (let m = hs.next(); m; m = hs.next()) handle(m);
 * ```
 */
export class HandshakeReassembler {
  private buf: Uint8Array = EMPTY;
  private readonly maxMessage: number;

  /** @param maxMessage largest handshake body accepted (default 64 KiB) */
  constructor(maxMessage = 65536) {
    this.maxMessage = maxMessage;
  }

  /** Bytes buffered that do not yet form a whole message. */
  get pending(): number {
    return this.buf.length;
  }

  /** Append a handshake record's fragment. */
  push(fragment: Uint8Array): void {
    if (fragment.length === 0) {
      // RFC 9846 §5.1: "Implementations MUST NOT send zero-length fragments
      // of Handshake types".
      throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'zero-length handshake fragment');
    }
    const next = new Uint8Array(this.buf.length + fragment.length);
    next.set(this.buf);
    next.set(fragment, this.buf.length);
    this.buf = next;
    if (this.buf.length >= 4) {
      const len = (this.buf[1]! << 16) | (this.buf[2]! << 8) | this.buf[3]!;
      if (len > this.maxMessage) {
        throw new DecodeError(`handshake message of ${len} bytes exceeds the ${this.maxMessage}-byte limit`);
      }
    }
  }

  /** Next whole message, or `undefined` if more bytes are needed. */
  next(): HandshakeMessage | undefined {
    if (this.buf.length < 4) return undefined;
    const len = (this.buf[1]! << 16) | (this.buf[2]! << 8) | this.buf[3]!;
    if (len > this.maxMessage) {
      throw new DecodeError(`handshake message of ${len} bytes exceeds the ${this.maxMessage}-byte limit`);
    }
    if (this.buf.length < 4 + len) return undefined;
    // `buf` is ours (push builds a new array): the message that fills it
    // is handed over without a copy.
    if (this.buf.length === 4 + len) {
      const raw = this.buf;
      this.buf = EMPTY;
      return { type: raw[0]!, body: raw.subarray(4), raw };
    }
    const raw = this.buf.slice(0, 4 + len);
    this.buf = this.buf.slice(4 + len);
    return { type: raw[0]!, body: raw.subarray(4), raw };
  }
}

/**
 * Read the first handshake message (normally a ClientHello) from the raw bytes
 * of a connection's first flight. Returns `undefined` when more bytes are
 * needed; throws {@link DecodeError} for non-TLS or non-handshake records.
 * `change_cipher_spec` records before the message are not allowed here.
 * @group TLS
 * @example
 * ```ts
 * const first = readFirstHandshakeMessage(bytesSoFar);
 * if (first) decodeClientHello(first.message.body);
 * ```
 */
export function readFirstHandshakeMessage(
  buf: Uint8Array,
  maxMessage = 65536,
): { message: HandshakeMessage; consumed: number } | undefined {
  // The usual first flight: one handshake record holding exactly one whole
  // message of at most maxMessage bytes, copied out at once (what the
  // reassembler below makes of it, without its objects and views). Any
  // other shape, and every error, is the general path's.
  if (buf.length >= RECORD_HEADER_LENGTH + 4 && buf[0] === ContentType.handshake && buf[1] === 0x03) {
    const length = (buf[3]! << 8) | buf[4]!;
    const len = (buf[6]! << 16) | (buf[7]! << 8) | buf[8]!;
    if (length <= MAX_PLAINTEXT && len + 4 === length && len <= maxMessage && buf.length >= RECORD_HEADER_LENGTH + length) {
      const raw = new Uint8Array(length);
      raw.set(new Uint8Array(buf.buffer, buf.byteOffset + RECORD_HEADER_LENGTH, length));
      return { message: { type: raw[0]!, body: raw.subarray(4), raw }, consumed: RECORD_HEADER_LENGTH + length };
    }
  }
  const hs = new HandshakeReassembler(maxMessage);
  let off = 0;
  for (;;) {
    const rec = readRecord(buf, off, MAX_PLAINTEXT);
    if (!rec) return undefined;
    if (rec.record.type !== ContentType.handshake) {
      throw new EchError(
        'ERR_UNEXPECTED_MESSAGE',
        'unexpected_message',
        `expected a handshake record, got content type ${rec.record.type}`,
      );
    }
    hs.push(rec.record.fragment);
    off = rec.next;
    const m = hs.next();
    if (m) {
      if (hs.pending !== 0) {
        // RFC 9846 §5.1: a ClientHello must not share a record with the
        // next message across a key change; nothing may follow it here.
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'data after the first handshake message');
      }
      return { message: m, consumed: off };
    }
  }
}
