/**
 * HMAC for the HPKE hot path, built on the one-shot `crypto.hash()`.
 *
 * NOTE: why not `createHmac`: in Node 20 a `createHmac(...).update().digest()`
 * costs 2-3 µs, almost all of it object set-up (an Hmac is a stream), while a
 * one-shot `crypto.hash()` of one or two blocks costs ~0.5 µs when its digest
 * comes back as a binary string. HPKE's base-mode recipient setup needs five
 * HMACs, so this saves ~8 µs per ECH decryption: a sixth of an X25519 ECDH.
 *
 * HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)) (RFC 2104), with K'
 * the key zero-padded to the block size. Callers keep each message in a
 * buffer that starts with `block` spare bytes, where the ipad block is
 * written, so no message is ever copied. Everything is synchronous and the
 * scratch space is per hash function and shared: never call this across an
 * `await`.
 *
 * @module
 * @internal
 */
import * as nodeCrypto from 'node:crypto';

/**
 * Hash functions of the HPKE KDFs and DHKEMs.
 * @group Crypto
 * @example
 * ```ts
 * const alg: HpkeHashName = 'sha384';
 * ```
 */
export type HpkeHashName = 'sha256' | 'sha384' | 'sha512';

type DigestBinary = (alg: HpkeHashName, data: Uint8Array) => string;

// crypto.hash() exists from Node 20.12 / 21.7; fall back to createHash before that.
const oneShot = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;
const digestBinary: DigestBinary =
  typeof oneShot === 'function'
    ? (alg, data) => oneShot(alg, data, 'binary')
    : (alg, data) => nodeCrypto.createHash(alg).update(data).digest('binary');

/**
 * Reusable HMAC state for one hash function. The result of
 * {@link HmacScratch.mac} is a binary (latin1) string of the digest, which
 * {@link HmacScratch.setKey} accepts back without conversion.
 * @internal
 * @group Crypto
 * @example
 * ```ts
 * const h = hmacScratch('sha256');
 * const msg = h.buffer([label, data]); // headroom || label || data
 * h.setKey(salt);
 * const prk = h.mac(msg); // binary string
 * ```
 */
export class HmacScratch {
  readonly alg: HpkeHashName;
  /** Block size B in bytes: the headroom every message buffer reserves. */
  readonly block: number;
  /** Digest size in bytes. */
  readonly size: number;
  readonly #key: Buffer;
  readonly #ipad: Buffer;
  /** (K' ^ opad) || inner digest. */
  readonly #outer: Buffer;
  /** 32-bit views of K', the ipad block and the opad block: the pads are XORed a word at a time. */
  readonly #key32: Int32Array;
  readonly #ipad32: Int32Array;
  readonly #outer32: Int32Array;

  constructor(alg: HpkeHashName) {
    this.alg = alg;
    this.block = alg === 'sha256' ? 64 : 128;
    this.size = alg === 'sha256' ? 32 : alg === 'sha384' ? 48 : 64;
    // Buffer.alloc never hands out a slice of the shared pool: each has its
    // own ArrayBuffer at offset 0, so the Int32Array views are aligned.
    this.#key = Buffer.alloc(this.block);
    this.#ipad = Buffer.alloc(this.block);
    this.#outer = Buffer.alloc(this.block + this.size);
    this.#key32 = new Int32Array(this.#key.buffer, this.#key.byteOffset, this.block >> 2);
    this.#ipad32 = new Int32Array(this.#ipad.buffer, this.#ipad.byteOffset, this.block >> 2);
    this.#outer32 = new Int32Array(this.#outer.buffer, this.#outer.byteOffset, this.block >> 2);
  }

  /**
   * Sets the key for the following {@link HmacScratch.mac} calls: raw bytes
   * or a binary string from a previous `mac`. Keys longer than a block are
   * hashed first (RFC 2104), though HPKE never produces one.
   */
  setKey(key: Uint8Array | string): void {
    const k = this.#key;
    this.#key32.fill(0); // TypedArray fill: Buffer#fill validates its arguments first
    if (typeof key === 'string') {
      if (key.length > this.block) k.write(digestBinary(this.alg, Buffer.from(key, 'binary')), 0, 'binary');
      else k.write(key, 0, 'binary');
    } else if (key.length > this.block) {
      k.write(digestBinary(this.alg, key), 0, 'binary');
    } else {
      k.set(key);
    }
    // The pad bytes repeat, so a word at a time is the same XOR whatever the byte order.
    const k32 = this.#key32;
    const ipad32 = this.#ipad32;
    const outer32 = this.#outer32;
    for (let i = 0; i < k32.length; i++) {
      const w = k32[i] as number;
      ipad32[i] = w ^ 0x36363636;
      outer32[i] = w ^ 0x5c5c5c5c;
    }
  }

  /**
   * HMAC(key, buf[block..]) under the last {@link HmacScratch.setKey}.
   * Overwrites `buf[0..block)` with the ipad block.
   */
  mac(buf: Buffer): string {
    buf.set(this.#ipad, 0);
    this.#outer.write(digestBinary(this.alg, buf), this.block, 'binary');
    return digestBinary(this.alg, this.#outer);
  }

  /** A message buffer: `block` bytes of headroom followed by `parts`, with `extra` zero bytes after them. */
  buffer(parts: readonly Uint8Array[], extra = 0): Buffer {
    const len = parts.reduce((n, p) => n + p.length, 0);
    const buf = Buffer.alloc(this.block + len + extra);
    let off = this.block;
    for (const p of parts) {
      buf.set(p, off);
      off += p.length;
    }
    return buf;
  }
}

const scratch = new Map<HpkeHashName, HmacScratch>();

/**
 * The shared {@link HmacScratch} of `alg`.
 * @internal
 * @group Crypto
 * @example
 * ```ts
 * hmacScratch('sha256').block; // 64
 * ```
 */
export function hmacScratch(alg: HpkeHashName): HmacScratch {
  let s = scratch.get(alg);
  if (s === undefined) {
    s = new HmacScratch(alg);
    scratch.set(alg, s);
  }
  return s;
}
