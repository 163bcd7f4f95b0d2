/**
 * HKDF (RFC 5869) and the TLS 1.3 labelled derivations built on it
 * (RFC 9846 §7.1): HKDF-Expand-Label, Derive-Secret, and an incremental
 * transcript hash. Used by the TLS 1.3 key schedule and by the ECH accept
 * confirmation (RFC 9849 §7.2), which is why it lives below both.
 *
 * Everything here is synchronous and uses `node:crypto` HMAC / hash, so the
 * same code serves SHA-256 and SHA-384 suites.
 *
 * @module
 */
import { createHash, createHmac, type Hash } from 'node:crypto';
import { InvalidArgumentError } from '../wire/alert.js';

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
  const h = createHash(hash);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/**
 * HMAC of `data` under `key`.
 * @group Crypto
 * @example
 * ```ts
 * const tag = hmac('sha256', finishedKey, transcriptHash);
 * ```
 */
export function hmac(hash: HashName, key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac(hash, key).update(data).digest());
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
  const s = salt.length === 0 ? new Uint8Array(hashLength(hash)) : salt;
  return hmac(hash, s, ikm);
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
  const n = hashLength(hash);
  if (!Number.isInteger(length) || length < 0 || length > 255 * n) {
    throw new InvalidArgumentError(`HKDF-Expand length ${length} out of range`);
  }
  const out = new Uint8Array(length);
  let prev = new Uint8Array(0);
  let o = 0;
  for (let i = 1; o < length; i++) {
    const h = createHmac(hash, prk);
    h.update(prev);
    h.update(info);
    h.update(Uint8Array.of(i));
    prev = new Uint8Array(h.digest());
    const take = Math.min(n, length - o);
    out.set(prev.subarray(0, take), o);
    o += take;
  }
  return out;
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
  const l = typeof label === 'string' ? new TextEncoder().encode(label) : label;
  const fullLen = TLS13_PREFIX.length + l.length;
  if (fullLen > 255) throw new InvalidArgumentError('HKDF label longer than 255 bytes');
  if (context.length > 255) throw new InvalidArgumentError('HKDF context longer than 255 bytes');
  if (length > 0xffff) throw new InvalidArgumentError('HKDF label length out of range');
  const out = new Uint8Array(2 + 1 + fullLen + 1 + context.length);
  out[0] = length >>> 8;
  out[1] = length & 0xff;
  out[2] = fullLen;
  out.set(TLS13_PREFIX, 3);
  out.set(l, 3 + TLS13_PREFIX.length);
  out[3 + fullLen] = context.length;
  out.set(context, 4 + fullLen);
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
  return hkdfExpand(hash, secret, encodeHkdfLabel(length, label, context), length);
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
 * {@link Transcript.digest} does not finish the running state, so the hash
 * can be read at every step. Before the cipher suite is known, buffer messages
 * with a `Transcript` per candidate hash or use {@link Transcript.fromMessages}.
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
  private state: Hash;

  constructor(hash: HashName) {
    this.hash = hash;
    this.state = createHash(hash);
  }

  /** A transcript over `messages` (whole handshake messages, headers included). */
  static fromMessages(hash: HashName, ...messages: Uint8Array[]): Transcript {
    const t = new Transcript(hash);
    for (const m of messages) t.update(m);
    return t;
  }

  /** Append a whole handshake message (header included). */
  update(message: Uint8Array): this {
    this.state.update(message);
    return this;
  }

  /** Hash of everything so far; the transcript keeps running. */
  digest(): Uint8Array {
    return new Uint8Array(this.state.copy().digest());
  }

  /** Hash of everything so far plus `extra` messages, without adding them. */
  digestWith(...extra: Uint8Array[]): Uint8Array {
    const h = this.state.copy();
    for (const m of extra) h.update(m);
    return new Uint8Array(h.digest());
  }

  /** An independent copy. */
  clone(): Transcript {
    const t = new Transcript(this.hash);
    t.state = this.state.copy();
    return t;
  }
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
