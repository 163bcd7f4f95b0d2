/**
 * TLS 1.3 record layer (RFC 9846 §5): framing, AEAD record protection with
 * per-record nonces and sequence numbers, inner-plaintext padding removal,
 * size limits (`record_overflow`), the middlebox-compatibility
 * change_cipher_spec record, and alert encoding. Side-agnostic and
 * transport-free: bytes in, records out.
 *
 * @module
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { EchError, AlertDescription } from '../wire/alert.js';
import { ContentType, MAX_PLAINTEXT } from '../tls/constants.js';
import { MAX_CIPHERTEXT, RECORD_HEADER_LENGTH } from '../tls/record.js';
import { copyBytes } from '../wire/bytes.js';
import type { CipherSuiteParams } from './suites.js';
import type { TrafficKeys } from './key-schedule.js';

/**
 * Zero-length records accepted in a row before `unexpected_message`
 * (BoringSSL's kMaxEmptyRecords). Application data records may be empty
 * (RFC 9846 §5.1); handshake and alert records never.
 * @group Server
 * @example
 * ```ts
 * for (let i = 0; i <= MAX_EMPTY_RECORDS; i++) peer.send(emptyRecord()); // the last one: unexpected_message
 * ```
 */
export const MAX_EMPTY_RECORDS = 32;

const EMPTY = new Uint8Array(0);

/** `level || description` of each alert sent, by description (the level follows from it), made on first use. */
const ALERT_BODIES: Uint8Array[] = [];

/**
 * The per-record nonce, by IV length, rewritten for each record by every
 * RecordProtection: createCipheriv and createDecipheriv copy the IV they are
 * given, and the nonce is built and used in one synchronous step, so one
 * buffer serves all connections (RFC 9846 §5.3: iv_length is at least 8;
 * the AEADs of TLS 1.3 all use 12).
 */
const NONCES: Buffer[] = [];

/**
 * The additional data of the record being sealed or opened (RFC 9846 §5.2:
 * the 5-byte record header), rewritten for each record: `setAAD` feeds it
 * to the cipher at once, so one buffer serves every record and no view of
 * the record is made for it (a view is a ~100-byte heap object).
 */
const AAD = Buffer.alloc(RECORD_HEADER_LENGTH);

/**
 * The tag of the record being opened, by tag length, copied out of the
 * record: `setAuthTag` copies it into the cipher at once (as the nonce,
 * see NONCES), so no view of the record is made for it. Tags are not
 * secret (they travel in the clear).
 */
const TAGS: Buffer[] = [];

/**
 * Records whose content is at most this long are sealed from one joined
 * TLSInnerPlaintext (a copy that costs less than the cipher's extra output
 * buffer); longer ones are fed to the cipher in two parts without a copy.
 */
const JOIN_LIMIT = 2048;

/**
 * `type || zeros(padding)` ending TLSInnerPlaintext (RFC 9846 §5.2), for
 * records without padding (all of ours unless asked): one shared
 * read-only byte per content type, as the cipher copies its input.
 */
const TAIL_UNPADDED: readonly Uint8Array[] = Array.from({ length: 256 }, (_, t) => Uint8Array.of(t));

/**
 * AEAD protection of one direction (RFC 9846 §5.2, §5.3): the key, the
 * static IV and the 64-bit sequence number.
 * @group Server
 * @example
 * ```ts
 * const w = new RecordProtection(suite, trafficKeys(suite, secret));
 * const record = w.seal(ContentType.application_data, data);
 * ```
 */
export class RecordProtection {
  readonly suite: CipherSuiteParams;
  private readonly key: Uint8Array;
  private readonly iv: Uint8Array;
  /** A Number: exact up to 2^53, far beyond what one key protects (see `nonce`). */
  private seq = 0;
  /** The cipher options, one object per key rather than per record (the cipher only reads it). */
  private readonly options: { authTagLength: number };
  /**
   * Inner content type of the record last opened (see
   * {@link RecordProtection.openRecord}).
   * @internal
   */
  openedType = 0;

  constructor(suite: CipherSuiteParams, keys: TrafficKeys) {
    if (keys.iv.length < 8) throw new RangeError(`IV of ${keys.iv.length} bytes`);
    this.suite = suite;
    this.key = keys.key;
    this.iv = keys.iv;
    this.options = { authTagLength: suite.tagLength };
  }

  /** Records protected so far with this key. */
  get sequenceNumber(): bigint {
    return BigInt(this.seq);
  }

  private nonce(): Buffer {
    // RFC 9846 §5.3: the 64-bit sequence number, left-padded to iv_length,
    // XORed with the static IV. "If a TLS implementation would need to wrap a
    // sequence number, it MUST either rekey or terminate the connection."
    // NOTE: we terminate at 2^53 - 1 records (the server rekeys every 2^24).
    if (this.seq >= Number.MAX_SAFE_INTEGER) {
      throw new EchError('ERR_PROTOCOL', 'internal_error', 'record sequence number would wrap');
    }
    const len = this.iv.length;
    // The shared buffer, read by the cipher before anything else runs (see NONCES).
    const n = (NONCES[len] ??= Buffer.alloc(len));
    n.set(this.iv);
    const seq = this.seq++;
    n.writeUInt32BE((n.readUInt32BE(len - 4) ^ seq) >>> 0, len - 4);
    n.writeUInt32BE((n.readUInt32BE(len - 8) ^ Math.floor(seq / 0x100000000)) >>> 0, len - 8);
    return n;
  }

  /**
   * Step the sequence number back after a failed {@link RecordProtection.open}
   * whose record is being skipped (rejected 0-RTT, RFC 9846 §4.2.10).
   */
  rewind(): void {
    if (this.seq > 0) this.seq--;
  }

  /**
   * Protect one record: TLSInnerPlaintext = content || type || zeros(padding),
   * sent as opaque_type application_data with legacy version 0x0303.
   */
  seal(type: number, content: Uint8Array, padding = 0): Uint8Array {
    if (content.length > MAX_PLAINTEXT) throw new RangeError('record content longer than 2^14');
    const innerLen = content.length + 1 + padding;
    const length = innerLen + this.suite.tagLength;
    if (length > MAX_CIPHERTEXT) throw new RangeError('protected record too long');
    // The record is built in place: header (the AAD), then ciphertext and tag.
    const out = new Uint8Array(RECORD_HEADER_LENGTH + length);
    out[0] = ContentType.application_data;
    out[1] = 0x03;
    out[2] = 0x03;
    out[3] = length >> 8;
    out[4] = length & 0xff;
    const c = createCipheriv(this.suite.aead, this.key, this.nonce(), this.options as never);
    // The header again, in the shared AAD buffer: no view of `out` for it.
    AAD[0] = ContentType.application_data;
    AAD[1] = 0x03;
    AAD[2] = 0x03;
    AAD[3] = length >> 8;
    AAD[4] = length & 0xff;
    (c as unknown as { setAAD(b: Uint8Array): void }).setAAD(AAD);
    let part: Buffer;
    let o = RECORD_HEADER_LENGTH;
    if (content.length <= JOIN_LIMIT) {
      // A short record: TLSInnerPlaintext (content || type || zeros, the
      // zeros already there) is laid out where its ciphertext goes and fed
      // in one update, one output buffer fewer from the cipher.
      out.set(content, o);
      out[o + content.length] = type;
      part = c.update(out.subarray(o, o + innerLen));
    } else {
      // A long one: fed in two parts, the content as it is (no copy into a
      // joined buffer) and then type || zeros(padding); the AEADs are
      // stream ciphers, but every output is placed at its running offset,
      // so the result holds whatever split the cipher returns.
      let tail = padding === 0 ? TAIL_UNPADDED[type] : undefined;
      if (!tail) {
        tail = new Uint8Array(1 + padding);
        tail[0] = type;
      }
      part = c.update(content);
      out.set(part, o);
      o += part.length;
      part = c.update(tail);
    }
    out.set(part, o);
    o += part.length;
    part = c.final();
    out.set(part, o);
    o += part.length;
    const tag = (c as unknown as { getAuthTag(): Buffer }).getAuthTag();
    out.set(tag, o);
    return out;
  }

  /**
   * Deprotect one record (`header` is the 5-byte record header, the AAD).
   * Returns the inner content type and content with padding removed.
   * Throws `bad_record_mac` if the AEAD fails, `record_overflow` if the inner
   * plaintext exceeds 2^14 + 1 bytes, and `unexpected_message` if it is all
   * padding.
   */
  open(header: Uint8Array, fragment: Uint8Array): { type: number; content: Uint8Array } {
    const content = this.deprotect(header, fragment, 0, fragment.length);
    return { type: this.openedType, content };
  }

  /**
   * {@link RecordProtection.open} of the record whose header starts at
   * `buf[at]` and whose fragment is the `length` bytes after it, read in
   * place: returns the content and leaves the inner content type in
   * {@link RecordProtection.openedType}. One view of the record (the
   * ciphertext given to the cipher) instead of four, and no result object.
   * @internal
   */
  openRecord(buf: Uint8Array, at: number, length: number): Uint8Array {
    for (let k = 0; k < RECORD_HEADER_LENGTH; k++) AAD[k] = buf[at + k]!;
    return this.deprotect(AAD, buf, at + RECORD_HEADER_LENGTH, length);
  }

  /** Deprotect the fragment `buf[start, start + length)` with additional data `aad` (see open). */
  private deprotect(aad: Uint8Array, buf: Uint8Array, start: number, length: number): Uint8Array {
    const tagLen = this.suite.tagLength;
    // RFC 9846 §5.2: "The length MUST NOT exceed 2^14 + 256 bytes. An
    // endpoint that receives a record that exceeds this length MUST terminate
    // the connection with a "record_overflow" alert."
    if (length > MAX_CIPHERTEXT) {
      throw new EchError('ERR_PROTOCOL', 'record_overflow', `protected record of ${length} bytes`);
    }
    if (length < tagLen + 1) {
      // Too short to hold a tag and the content type: cannot authenticate.
      throw new EchError('ERR_DECRYPT', 'bad_record_mac', 'protected record shorter than its tag');
    }
    const nonce = this.nonce();
    const split = start + length - tagLen;
    const tag = (TAGS[tagLen] ??= Buffer.alloc(tagLen));
    for (let k = 0; k < tagLen; k++) tag[k] = buf[split + k]!;
    let inner: Buffer;
    try {
      const d = createDecipheriv(this.suite.aead, this.key, nonce, this.options as never);
      (d as unknown as { setAAD(b: Uint8Array): void }).setAAD(aad);
      (d as unknown as { setAuthTag(b: Uint8Array): void }).setAuthTag(tag);
      const a = d.update(buf.subarray(start, split));
      const b = d.final();
      inner = b.length ? Buffer.concat([a, b]) : a;
    } catch (cause) {
      // RFC 9846 §5.2: "If the decryption fails, the receiver MUST
      // terminate the connection with a "bad_record_mac" alert."
      throw new EchError('ERR_DECRYPT', 'bad_record_mac', 'record failed to deprotect', { cause });
    }
    // RFC 9846 §5.2: "The length MUST NOT exceed 2^14 + 1 octets ... An
    // endpoint that receives a record that exceeds this length MUST terminate
    // the connection with a "record_overflow" alert."
    if (inner.length > MAX_PLAINTEXT + 1) {
      throw new EchError('ERR_PROTOCOL', 'record_overflow', `inner plaintext of ${inner.length} bytes`);
    }
    // §5.4: scan back over the zero padding to the content type.
    let i = inner.length - 1;
    while (i >= 0 && inner[i] === 0) i--;
    if (i < 0) {
      // §5.4: "If a receiving implementation does not find a non-zero octet in
      // the cleartext, it MUST terminate the connection with an
      // "unexpected_message" alert."
      throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'protected record is all padding');
    }
    this.openedType = inner[i]!;
    return new Uint8Array(inner.buffer, inner.byteOffset, i);
  }
}

/**
 * One record after deprotection.
 * @group Server
 * @example
 * ```ts
 * const rec: PlainRecord | undefined = recordLayer.next();
 * ```
 */
export interface PlainRecord {
  /** The real content type (inner type for protected records). */
  type: number;
  content: Uint8Array;
  /** True if the record was protected. */
  protected: boolean;
}

/**
 * Bidirectional record layer: buffers incoming bytes, yields deprotected
 * records, and frames/protects outgoing ones. Handshake logic installs keys
 * with {@link RecordLayer.setReadKeys} / {@link RecordLayer.setWriteKeys}.
 * @group Server
 * @example
 * ```ts
 * const rl = new RecordLayer();
 * rl.push(bytesFromSocket);
 * for (let r = rl.next(); r; r = rl.next()) handle(r);
 * socket.write(rl.encode(ContentType.handshake, serverHello));
 * ```
 */
export class RecordLayer {
  private input: Uint8Array = EMPTY;
  private inputStart = 0;
  /** False while `input` is the caller's buffer (see `detach`). */
  private owned = true;
  private reader: RecordProtection | undefined;
  private writer: RecordProtection | undefined;
  /** Whether an unprotected change_cipher_spec may still be dropped. */
  private ccsAllowed = false;
  private ccsDropped = false;
  /** Whether an unprotected alert is still understood once read keys are set. */
  private plainAlertsAllowed = true;
  /** Zero-length records received in a row. */
  private emptyRun = 0;
  /** Bytes of undecryptable (rejected 0-RTT) records still allowed to be skipped. */
  private skipBudget = 0;

  /** True once read keys are installed. */
  get readProtected(): boolean {
    return this.reader !== undefined;
  }

  /** True once write keys are installed. */
  get writeProtected(): boolean {
    return this.writer !== undefined;
  }

  /** Number of records sent under the current write key. */
  get writeSequence(): bigint {
    return this.writer?.sequenceNumber ?? 0n;
  }

  /** Number of records received under the current read key. */
  get readSequence(): bigint {
    return this.reader?.sequenceNumber ?? 0n;
  }

  /** Bytes buffered and not yet consumed as records. */
  get buffered(): number {
    return this.input.length - this.inputStart;
  }

  /** Install the keys that protect incoming records from now on. */
  setReadKeys(suite: CipherSuiteParams, keys: TrafficKeys): void {
    this.reader = new RecordProtection(suite, keys);
  }

  /** Install the keys that protect outgoing records from now on. */
  setWriteKeys(suite: CipherSuiteParams, keys: TrafficKeys): void {
    this.writer = new RecordProtection(suite, keys);
  }

  /**
   * Allow or forbid dropping an unprotected `change_cipher_spec` record
   * (RFC 9846 §5: allowed after the first ClientHello and before the
   * peer's Finished). One is dropped; a second is `unexpected_message`.
   */
  allowChangeCipherSpec(allowed: boolean): void {
    this.ccsAllowed = allowed && !this.ccsDropped;
  }

  /**
   * The peer's Finished was received (RFC 9846 §5): from now on every record
   * must be protected. A change_cipher_spec record "after the peer's Finished
   * message ... MUST be treated as an unexpected record type", and so is an
   * unprotected alert (the peer has had its handshake keys since it sent
   * Finished): both abort with `unexpected_message`, where accepting a
   * forged clear-text close_notify would let an on-path attacker truncate the
   * connection.
   */
  peerFinished(): void {
    this.ccsAllowed = false;
    this.ccsDropped = true;
    this.plainAlertsAllowed = false;
  }

  /**
   * After rejecting 0-RTT, skip up to `bytes` of records that fail to
   * deprotect with the handshake key (RFC 9846 §4.2.10).
   */
  skipUndecryptable(bytes: number): void {
    this.skipBudget = bytes;
  }

  /**
   * Append bytes read from the transport. With nothing buffered the bytes
   * are not copied: the layer reads `data` in place until
   * {@link RecordLayer.detach}.
   */
  push(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.inputStart >= this.input.length) {
      this.input = data;
      this.inputStart = 0;
      this.owned = false;
      return;
    }
    const rest = this.input.subarray(this.inputStart);
    const next = new Uint8Array(rest.length + data.length);
    next.set(rest, 0);
    next.set(data, rest.length);
    this.input = next;
    this.inputStart = 0;
    this.owned = true;
  }

  /**
   * Stop referring to the caller's bytes: the part of an incomplete record
   * still buffered is copied (the caller may reuse its buffer).
   */
  detach(): void {
    if (this.inputStart >= this.input.length) {
      this.input = EMPTY;
      this.inputStart = 0;
    } else if (this.inputStart > 0 || !this.owned) {
      this.input = this.input.slice(this.inputStart);
      this.inputStart = 0;
    }
    this.owned = true;
  }

  /** Bytes not yet consumed, then forget them (used to hand over a stream). */
  takeBuffered(): Uint8Array {
    const out = this.input.slice(this.inputStart);
    this.input = EMPTY;
    this.inputStart = 0;
    this.owned = true;
    return out;
  }

  /**
   * The next whole record, deprotected; `undefined` if more bytes are needed.
   * Dropped change_cipher_spec and skipped 0-RTT records are consumed
   * silently.
   */
  next(): PlainRecord | undefined {
    for (;;) {
      const buf = this.input;
      const off = this.inputStart;
      if (buf.length - off < RECORD_HEADER_LENGTH) return undefined;
      const type = buf[off]!;
      const length = (buf[off + 3]! << 8) | buf[off + 4]!;
      // RFC 9846 §5: "If a TLS implementation receives an unexpected record
      // type, it MUST terminate the connection with an "unexpected_message"
      // alert."
      if (type < ContentType.change_cipher_spec || type > ContentType.application_data) {
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `unknown record content type ${type}`);
      }
      const limit = this.reader && type === ContentType.application_data ? MAX_CIPHERTEXT : MAX_PLAINTEXT;
      // RFC 9846 §5.1 / §5.2: lengths above 2^14 (plaintext) or
      // 2^14 + 256 (ciphertext) MUST be answered with "record_overflow".
      if (length > limit) {
        throw new EchError('ERR_PROTOCOL', 'record_overflow', `record of ${length} bytes exceeds ${limit}`);
      }
      if (buf.length - off - RECORD_HEADER_LENGTH < length) return undefined;
      // The fragment is read in place (no views of the record): protected
      // ones by openRecord, unprotected ones copied out.
      const start = off + RECORD_HEADER_LENGTH;
      this.inputStart = start + length;

      if (type === ContentType.change_cipher_spec) {
        // RFC 9846 §5: an unprotected change_cipher_spec consisting of the
        // single byte 0x01 between the first ClientHello and the peer's
        // Finished "MUST simply [be dropped]"; any other value → abort with
        // "unexpected_message".
        if (!this.ccsAllowed || length !== 1 || buf[start] !== 0x01) {
          throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'unexpected change_cipher_spec record');
        }
        this.ccsAllowed = false;
        this.ccsDropped = true;
        continue;
      }
      if (!this.reader) {
        // RFC 9846 §5.1: "Application Data messages MUST NOT be written
        // to the wire unprotected".
        if (type === ContentType.application_data) {
          if (this.skipBudget >= length) {
            this.skipBudget -= length;
            continue;
          }
          throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'application data before keys were established');
        }
        return this.plain(type, copyBytes(buf, start, start + length), false);
      }
      // RFC 9846 §5.2: protected records always travel as opaque_type
      // application_data. NOTE: during the handshake an alert may still
      // arrive in the clear from a peer that failed before it switched to its
      // handshake keys (OpenSSL clients send certificate alerts that way);
      // after the peer's Finished it cannot, see peerFinished().
      if (type !== ContentType.application_data) {
        if (type === ContentType.alert && this.plainAlertsAllowed) return this.plain(type, copyBytes(buf, start, start + length), false);
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `unprotected record of type ${type} after keys were established`);
      }
      if (this.skipBudget > 0) {
        // RFC 9846 §4.2.10: skip records that fail to deprotect (rejected
        // early data), up to max_early_data_size.
        let content: Uint8Array;
        try {
          content = this.reader.openRecord(buf, off, length);
        } catch (e) {
          if (e instanceof EchError && e.alert === 'bad_record_mac' && this.skipBudget >= length) {
            this.skipBudget -= length;
            this.reader.rewind();
            continue;
          }
          throw e;
        }
        this.skipBudget = 0;
        return this.plain(this.reader.openedType, content, true);
      }
      const content = this.reader.openRecord(buf, off, length);
      return this.plain(this.reader.openedType, content, true);
    }
  }

  /** Checks shared by every record handed up (protected or not); `content` is the caller's to keep (a copy when unprotected). */
  private plain(type: number, content: Uint8Array, isProtected: boolean): PlainRecord {
    if (isProtected && type !== ContentType.handshake && type !== ContentType.alert && type !== ContentType.application_data) {
      // RFC 9846 §5: "An implementation which ... receives a protected
      // change_cipher_spec record MUST abort the handshake with an
      // "unexpected_message" alert"; any other inner type is an unexpected
      // record type ("MUST terminate the connection with an
      // "unexpected_message" alert").
      throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `protected record of content type ${type}`);
    }
    if (content.length === 0) {
      // RFC 9846 §5.4: "Implementations MUST NOT send Handshake and Alert
      // records that have a zero-length TLSInnerPlaintext.content; if such a
      // message is received, the receiving implementation MUST terminate the
      // connection with an "unexpected_message" alert." (§5.1 says the same
      // of zero-length Handshake fragments in the clear.)
      if (type !== ContentType.application_data) {
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `zero-length record of content type ${type}`);
      }
      // §5.1: zero-length application data "MAY be sent" as cover traffic,
      // but a run of them costs a decryption each and moves nothing: like
      // BoringSSL, allow MAX_EMPTY_RECORDS in a row, then "unexpected_message".
      if (++this.emptyRun > MAX_EMPTY_RECORDS) {
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `more than ${MAX_EMPTY_RECORDS} empty records in a row`);
      }
    } else {
      this.emptyRun = 0;
    }
    return { type, content, protected: isProtected };
  }

  /**
   * Frame (and protect, once write keys are installed) `content` as records
   * of `type`, each holding at most `maxFragment` bytes; protected records
   * get `padding` zero bytes of record padding (RFC 9846 §5.4).
   */
  encode(type: number, content: Uint8Array, maxFragment: number = MAX_PLAINTEXT, padding = 0): Uint8Array {
    // One record (every handshake flight and most writes): no list, no view.
    if (content.length <= maxFragment) return this.record(type, content, padding);
    const chunks: Uint8Array[] = [];
    let total = 0;
    const n = Math.max(1, Math.ceil(content.length / maxFragment));
    for (let i = 0; i < n; i++) {
      const part = content.subarray(i * maxFragment, Math.min(content.length, (i + 1) * maxFragment));
      const rec = this.record(type, part, padding);
      chunks.push(rec);
      total += rec.length;
    }
    if (chunks.length === 1) return chunks[0]!;
    const out = new Uint8Array(total);
    let o = 0;
    for (const c of chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }

  /** One record of `part` (at most one fragment), protected once write keys are installed. */
  private record(type: number, part: Uint8Array, padding: number): Uint8Array {
    if (this.writer) return this.writer.seal(type, part, padding);
    const rec = new Uint8Array(RECORD_HEADER_LENGTH + part.length);
    rec[0] = type;
    rec[1] = 0x03;
    rec[2] = 0x03;
    rec[3] = part.length >> 8;
    rec[4] = part.length & 0xff;
    rec.set(part, RECORD_HEADER_LENGTH);
    return rec;
  }

  /** An alert record (fatal unless `close_notify` / `user_canceled`). */
  encodeAlert(alert: AlertDescription): Uint8Array {
    const code = AlertDescription[alert];
    const level = alert === 'close_notify' || alert === 'user_canceled' ? 1 : 2;
    // The alert body, shared and never written to: the record copies it.
    const body = (ALERT_BODIES[code] ??= Uint8Array.of(level, code));
    return this.encode(ContentType.alert, body);
  }

  /** The unprotected middlebox-compatibility change_cipher_spec record. */
  static changeCipherSpec(): Uint8Array {
    return Uint8Array.of(ContentType.change_cipher_spec, 0x03, 0x03, 0x00, 0x01, 0x01);
  }
}
