/**
 * HKDF (RFC 5869) and the TLS 1.3 labelled derivations built on it
 * (RFC 9846 §7.1): HKDF-Expand-Label, Derive-Secret, and an incremental
 * transcript hash. Used by the TLS 1.3 key schedule and by the ECH accept
 * confirmation (RFC 9849 §7.2), which is why it lives below both.
 *
 * Everything here is synchronous and uses `node:crypto` hashes, so the same
 * code serves SHA-256 and SHA-384 suites. HMAC is built on the one-shot
 * `crypto.hash()` (`HmacScratch` of `hpke-hmac.ts`, RFC 2104) rather than
 * `createHmac`: an Hmac object costs more to set up than the hashing itself,
 * and a full handshake computes about twenty HMACs.
 *
 * @module
 */
import * as nodeCrypto from 'node:crypto';
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../wire/alert.js';
import { HmacScratch } from './hpke-hmac.js';

/**
 * Hash functions used by TLS 1.3 cipher suites.
 * @group Crypto
 * @example
 * ```ts
 * const h: HashName = suite.hash; // 'sha256' | 'sha384'
 * ```
 */
export type HashName = 'sha256' | 'sha384';

/**
 * Output length in bytes of a {@link HashName}.
 * @group Crypto
 * @example
 * ```ts
 * hashLength('sha384'); // 48
 * ```
 */
export function hashLength(hash: HashName): number {
  return hash === 'sha256' ? 32 : 48;
}

/**
 * One-shot hash of the concatenation of `parts`.
 * @group Crypto
 * @example
 * ```ts
 * const empty = hashBytes('sha256', new Uint8Array(0));
 * ```
 */
export function hashBytes(hash: HashName, ...parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return hashView(hash, parts[0]!);
  const h = createHash(hash);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

// crypto.hash() exists from Node 20.12 / 21.7.
const oneShot = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;

/** The first `length` bytes of a binary (latin1) string, in a fresh Uint8Array (not a view of Buffer's pool). */
function fromBinary(s: string, length = s.length): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// HMAC state of this module, apart from the HPKE one: each call sets its
// key and finishes before returning (synchronous, never across an await).
const SCRATCH: { readonly [H in HashName]: HmacScratch } = { sha256: new HmacScratch('sha256'), sha384: new HmacScratch('sha384') };

/**
 * HMAC of `data` under `key`.
 * @group Crypto
 * @example
 * ```ts
 * const tag = hmac('sha256', finishedKey, transcriptHash);
 * ```
 */
export function hmac(hash: HashName, key: Uint8Array, data: Uint8Array): Uint8Array {
  const h = SCRATCH[hash];
  h.setKey(key);
  const buf = messageBuffer(h.block + data.length);
  buf.set(data, h.block);
  return fromBinary(h.mac(buf));
}

/**
 * Message buffers of the HMACs (headroom ‖ message), one per length, reused:
 * a buffer is filled and hashed in one synchronous call, never kept. A
 * handshake's key schedule uses a dozen lengths (its labels, with an empty
 * or a hash-long context), each several times, so a Buffer object per HMAC
 * (~20 per handshake) is saved; the map is bounded (emptied when full)
 * since exporter labels and contexts come from callers.
 */
const MESSAGE_BUFFERS = new Map<number, Buffer>();
const MESSAGE_BUFFERS_MAX = 64;

function messageBuffer(length: number): Buffer {
  let b = MESSAGE_BUFFERS.get(length);
  if (b === undefined) {
    b = Buffer.allocUnsafeSlow(length);
    // Full (lengths of callers' exporter labels and contexts): start over,
    // so the key schedule's lengths come back at once.
    if (MESSAGE_BUFFERS.size >= MESSAGE_BUFFERS_MAX) MESSAGE_BUFFERS.clear();
    MESSAGE_BUFFERS.set(length, b);
  }
  return b;
}

/**
 * HKDF-Extract(salt, IKM) (RFC 5869 §2.2). An empty salt means a string of
 * `HashLen` zeros, per RFC 5869; TLS passes zeros explicitly anyway.
 * @group Crypto
 * @example
 * ```ts
 * const earlySecret = hkdfExtract('sha256', new Uint8Array(0), new Uint8Array(32));
 * ```
 */
export function hkdfExtract(hash: HashName, salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  // HMAC pads its key with zeros to a block: an empty salt and HashLen zeros are the same key.
  return hmac(hash, salt, ikm);
}

/**
 * HKDF-Expand(PRK, info, L) (RFC 5869 §2.3).
 * @group Crypto
 * @example
 * ```ts
 * const okm = hkdfExpand('sha256', prk, info, 16);
 * ```
 */
export function hkdfExpand(hash: HashName, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const h = SCRATCH[hash];
  checkExpandLength(h, length);
  const buf = messageBuffer(h.block + info.length + 1);
  buf.set(info, h.block);
  return expand(h, prk, buf, length);
}

function checkExpandLength(h: HmacScratch, length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > 255 * h.size) {
    throw new InvalidArgumentError(`HKDF-Expand length ${length} out of range`);
  }
}

/**
 * HKDF-Expand with `first` = headroom ‖ info ‖ one spare byte (for the
 * counter): T(1) = HMAC(PRK, info ‖ 0x01), T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i).
 */
function expand(h: HmacScratch, prk: Uint8Array | string, first: Buffer, length: number): Uint8Array {
  h.setKey(prk);
  first[first.length - 1] = 1;
  let t = h.mac(first);
  if (length <= h.size) return fromBinary(t, length);
  const out = new Uint8Array(length);
  const infoLen = first.length - 1 - h.block;
  const next = Buffer.allocUnsafe(h.block + h.size + infoLen + 1);
  first.copy(next, h.block + h.size, h.block, h.block + infoLen);
  let o = 0;
  for (let i = 2; ; i++) {
    for (let j = 0; j < h.size && o < length; j++) out[o++] = t.charCodeAt(j);
    if (o >= length) return out;
    next.write(t, h.block, 'latin1');
    next[next.length - 1] = i;
    t = h.mac(next);
  }
}

const TLS13_PREFIX = new TextEncoder().encode('tls13 ');

/**
 * The HkdfLabel structure of RFC 9846 §7.1:
 * `uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255>`.
 * @group Crypto
 * @example
 * ```ts
 * const info = encodeHkdfLabel(16, 'key', new Uint8Array(0));
 * ```
 */
export function encodeHkdfLabel(length: number, label: string | Uint8Array, context: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfLabelBuffer(0, length, label, context, 0));
}

/**
 * `opaque label<7..255>` of string labels already encoded: length byte ‖
 * "tls13 " ‖ Label. A handshake uses a dozen fixed labels ("key", "iv",
 * "c hs traffic", ...), each several times; the cache is bounded because
 * exporter labels come from callers.
 */
const labelCache = new Map<string, Uint8Array>();
const LABEL_CACHE_MAX = 64;

function encodedLabel(label: string): Uint8Array {
  let l = labelCache.get(label);
  if (l === undefined) {
    const labelLen = Buffer.byteLength(label, 'utf8');
    const fullLen = TLS13_PREFIX.length + labelLen;
    if (fullLen > 255) throw new InvalidArgumentError('HKDF label longer than 255 bytes');
    l = new Uint8Array(1 + fullLen);
    l[0] = fullLen;
    l.set(TLS13_PREFIX, 1);
    Buffer.from(l.buffer, l.byteOffset, l.byteLength).write(label, 1 + TLS13_PREFIX.length, 'utf8');
    if (labelCache.size < LABEL_CACHE_MAX) labelCache.set(label, l);
  }
  return l;
}

/**
 * `head` spare bytes ‖ HkdfLabel ‖ `tail` spare bytes: in a new buffer, or
 * (`scratch`) in the reused message buffer of that length (filled and hashed
 * at once by the caller).
 */
function hkdfLabelBuffer(head: number, length: number, label: string | Uint8Array, context: Uint8Array, tail: number, scratch = false): Buffer {
  let encoded: Uint8Array | undefined;
  let fullLen: number;
  if (typeof label === 'string') {
    encoded = encodedLabel(label);
    fullLen = encoded.length - 1;
  } else {
    fullLen = TLS13_PREFIX.length + label.length;
    if (fullLen > 255) throw new InvalidArgumentError('HKDF label longer than 255 bytes');
  }
  if (context.length > 255) throw new InvalidArgumentError('HKDF context longer than 255 bytes');
  if (length > 0xffff) throw new InvalidArgumentError('HKDF label length out of range');
  const size = head + 2 + 1 + fullLen + 1 + context.length + tail;
  const out = scratch ? messageBuffer(size) : Buffer.allocUnsafe(size);
  let o = head;
  out[o++] = length >>> 8;
  out[o++] = length & 0xff;
  if (encoded !== undefined) {
    out.set(encoded, o);
    o += encoded.length;
  } else {
    out[o++] = fullLen;
    out.set(TLS13_PREFIX, o);
    o += TLS13_PREFIX.length;
    out.set(label as Uint8Array, o);
    o += (label as Uint8Array).length;
  }
  out[o++] = context.length;
  out.set(context, o);
  return out;
}

/**
 * HKDF-Expand-Label(Secret, Label, Context, Length) (RFC 9846 §7.1). The
 * `"tls13 "` prefix is added here; pass the bare label (`"key"`,
 * `"ech accept confirmation"`).
 * @group Crypto
 * @example
 * ```ts
 * // RFC 9849 §7.2 accept confirmation:
 * const prk = hkdfExtract('sha256', new Uint8Array(0), innerRandom);
 * const confirm = hkdfExpandLabel('sha256', prk, 'ech accept confirmation', transcriptHash, 8);
 * ```
 */
export function hkdfExpandLabel(
  hash: HashName,
  secret: Uint8Array,
  label: string | Uint8Array,
  context: Uint8Array,
  length: number,
): Uint8Array {
  const h = SCRATCH[hash];
  checkExpandLength(h, length);
  // The HkdfLabel is written once, behind the HMAC headroom, with the counter byte after it.
  return expand(h, secret, hkdfLabelBuffer(h.block, length, label, context, 1, true), length);
}

/**
 * HKDF-Expand-Label(HKDF-Extract(salt, IKM), Label, Context, Length): the
 * pseudorandom key is passed from one to the other as the HMAC's binary
 * string, never made into an array (the ECH acceptance signals, RFC 9849
 * §7.2, use it once).
 * @internal
 * @group Crypto
 * @example
 * ```ts
 * const confirm = hkdfExtractExpandLabel('sha256', zeros, innerRandom, 'ech accept confirmation', transcriptHash, 8);
 * ```
 */
export function hkdfExtractExpandLabel(
  hash: HashName,
  salt: Uint8Array,
  ikm: Uint8Array,
  label: string | Uint8Array,
  context: Uint8Array,
  length: number,
): Uint8Array {
  const h = SCRATCH[hash];
  checkExpandLength(h, length);
  h.setKey(salt);
  const buf = messageBuffer(h.block + ikm.length);
  buf.set(ikm, h.block);
  const prk = h.mac(buf);
  return expand(h, prk, hkdfLabelBuffer(h.block, length, label, context, 1, true), length);
}

/**
 * Derive-Secret(Secret, Label, Messages) = HKDF-Expand-Label(Secret, Label,
 * Transcript-Hash(Messages), Hash.length) (RFC 9846 §7.1). Takes the
 * transcript hash already computed.
 * @group Crypto
 * @example
 * ```ts
 * const cHs = deriveSecret('sha256', handshakeSecret, 'c hs traffic', transcript.digest());
 * ```
 */
export function deriveSecret(hash: HashName, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Uint8Array {
  return hkdfExpandLabel(hash, secret, label, transcriptHash, hashLength(hash));
}

/**
 * Running transcript hash over handshake messages (RFC 9846 §4.4.1).
 * {@link Transcript.digest} does not finish anything, so the hash can be read
 * at every step. Before the cipher suite is known, buffer messages with a
 * `Transcript` per candidate hash or use {@link Transcript.fromMessages}.
 *
 * The messages are kept as bytes and each digest is one `crypto.hash()` over
 * them (a handshake's transcript is one to two KiB, a few microseconds of
 * SHA-2): a running `node:crypto` Hash would need a native `copy()` per
 * digest, and every native object is freed by a weak callback inside the
 * garbage collector's pause (measured in `serve`: the largest part of a
 * scavenge's time, see docs/performance.md).
 * @group Crypto
 * @example
 * ```ts
 * const t = new Transcript('sha256');
 * t.update(clientHelloMessage);
 * t.update(serverHelloMessage);
 * const h = t.digest();
 * ```
 */
export class Transcript {
  /** Hash function of the transcript. */
  readonly hash: HashName;
  /** The messages so far, in `bytes[0, length)`; spare room after. */
  private bytes: Uint8Array = NO_BYTES;
  private length = 0;
  /**
   * Digest of the messages as they are, until the next update, as a binary
   * string: immutable, so each {@link Transcript.digest} hands out one fresh
   * array made from it and nothing a caller does to that array reaches the
   * cache (no defensive copy of a cached array, a Uint8Array fewer per call).
   */
  private last: string | undefined;

  constructor(hash: HashName) {
    this.hash = hash;
  }

  /** A transcript over `messages` (whole handshake messages, headers included). */
  static fromMessages(hash: HashName, ...messages: Uint8Array[]): Transcript {
    const t = new Transcript(hash);
    for (const m of messages) t.update(m);
    return t;
  }

  /** Append a whole handshake message (header included). */
  update(message: Uint8Array): this {
    this.append(message);
    this.last = undefined;
    return this;
  }

  /**
   * Hash of everything so far; the transcript keeps running. Asked again
   * with no update in between (a server derives the application secrets and
   * the expected client Finished over the same transcript), the hash is not
   * computed again.
   */
  digest(): Uint8Array {
    this.last ??= hashBinary(this.hash, this.bytes.subarray(0, this.length));
    return fromBinary(this.last);
  }

  /** Hash of everything so far plus `extra` messages, without adding them. */
  digestWith(...extra: Uint8Array[]): Uint8Array {
    const mark = this.length;
    for (const m of extra) this.append(m);
    const out = hashView(this.hash, this.bytes.subarray(0, this.length));
    this.length = mark; // the extra bytes stay as spare room, never hashed again
    return out;
  }

  /** An independent copy. */
  clone(): Transcript {
    const t = new Transcript(this.hash);
    t.bytes = this.bytes.slice(0, this.length);
    t.length = this.length;
    t.last = this.last;
    return t;
  }

  private append(m: Uint8Array): void {
    const need = this.length + m.length;
    if (need > this.bytes.length) {
      // Room for the next few messages (ServerHello, EncryptedExtensions,
      // Finished) without doubling: the transcript stays with the
      // connection, so spare room is memory per connection.
      const grown = new Uint8Array(need + TRANSCRIPT_SLACK);
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    this.bytes.set(m, this.length);
    this.length = need;
  }
}

const NO_BYTES = new Uint8Array(0);
const TRANSCRIPT_SLACK = 256;

/**
 * Hash of `data` (a view, not copied) into a fresh Uint8Array.
 *
 * NOTE: the digest comes back as a binary string, not a Buffer: a Buffer
 * made by node:crypto has a native backing store of its own (allocated,
 * accounted as external memory, freed by the garbage collector), and the
 * copy into a Uint8Array was made anyway. Measured with callgrind
 * (instructions, load-independent): 1500 bytes hashed and returned as a
 * Uint8Array, 50.9k instructions with 'buffer' against 44.6k with 'binary'.
 */
function hashView(hash: HashName, data: Uint8Array): Uint8Array {
  if (oneShot !== undefined) return fromBinary(oneShot(hash, data, 'binary'));
  return new Uint8Array(createHash(hash).update(data).digest());
}

/** Hash of `data` (a view, not copied) as a binary (latin1) string. */
function hashBinary(hash: HashName, data: Uint8Array): string {
  if (oneShot !== undefined) return oneShot(hash, data, 'binary');
  return createHash(hash).update(data).digest('binary');
}

/**
 * The synthetic `message_hash` handshake message that replaces ClientHello1
 * in the transcript after a HelloRetryRequest (RFC 9846 §4.4.1):
 * `handshake_type message_hash (254) || 00 00 Hash.length || Hash(ClientHello1)`.
 * @group Crypto
 * @example
 * ```ts
 * const t = Transcript.fromMessages('sha256', messageHash('sha256', ch1), hrr, ch2);
 * ```
 */
export function messageHash(hash: HashName, clientHello1: Uint8Array): Uint8Array {
  const h = hashBytes(hash, clientHello1);
  const out = new Uint8Array(4 + h.length);
  out[0] = 254;
  out[3] = h.length;
  out.set(h, 4);
  return out;
}
