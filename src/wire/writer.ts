/**
 * Growable writer for the TLS presentation language. Length-prefixed vectors
 * are written by closures, so lengths are never computed by hand
 * (cryptobyte's Builder).
 *
 * @module
 */
import { InvalidArgumentError } from './alert.js';

/** Parts longer than this are copied by {@link Writer.bytesFrom} through a view, shorter ones byte by byte. */
const COPY_BY_VIEW = 256;

/**
 * Appends TLS-encoded values to a growing buffer.
 * @group Wire
 * @example
 * ```ts
 * const w = new Writer();
 * w.u16(0x0303);
 * w.vector16((v) => v.bytes(payload));
 * const out = w.finish();
 * ```
 */
export class Writer {
  private buf: Uint8Array;
  private len = 0;

  constructor(initialCapacity = 256) {
    this.buf = new Uint8Array(initialCapacity);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.len;
  }

  /** Size of the current buffer (it grows as needed). */
  get capacity(): number {
    return this.buf.length;
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private check(v: number, max: number, what: string): void {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new InvalidArgumentError(`${what} out of range: ${v}`);
  }

  /** Write one byte. */
  u8(v: number): this {
    this.check(v, 0xff, 'u8');
    this.ensure(1);
    this.buf[this.len++] = v;
    return this;
  }

  /** Write a big-endian u16. */
  u16(v: number): this {
    this.check(v, 0xffff, 'u16');
    this.ensure(2);
    this.buf[this.len++] = v >>> 8;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  /** Write a big-endian u24. */
  u24(v: number): this {
    this.check(v, 0xffffff, 'u24');
    this.ensure(3);
    this.buf[this.len++] = v >>> 16;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  /** Write a big-endian u32. */
  u32(v: number): this {
    this.check(v, 0xffffffff, 'u32');
    this.ensure(4);
    this.buf[this.len++] = v >>> 24;
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  /** Write raw bytes. */
  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /**
   * Write `src[start, end)`: {@link Writer.bytes} of a part of an array
   * without a view of it (a view is a ~100-byte heap object); short parts
   * are copied byte by byte, long ones through one view.
   */
  bytesFrom(src: Uint8Array, start: number, end: number): this {
    if (start < 0 || end > src.length || start > end) throw new RangeError('bytesFrom range outside the source');
    const n = end - start;
    this.ensure(n);
    const buf = this.buf;
    let o = this.len;
    if (n > COPY_BY_VIEW) buf.set(src.subarray(start, end), o);
    else for (let i = start; i < end; i++) buf[o++] = src[i]!;
    this.len += n;
    return this;
  }

  /** Write `n` zero bytes. */
  zeros(n: number): this {
    this.ensure(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
    return this;
  }

  private vector(prefix: 1 | 2 | 3, max: number, body: (w: Writer) => void): this {
    this.ensure(prefix);
    const at = this.len;
    this.len += prefix;
    body(this);
    const n = this.len - at - prefix;
    if (n > max) throw new InvalidArgumentError(`vector of ${n} bytes exceeds its ${prefix * 8}-bit length prefix`);
    for (let i = prefix - 1, v = n; i >= 0; i--, v >>>= 8) this.buf[at + i] = v & 0xff;
    return this;
  }

  /** Write a vector with a u8 length prefix; `body` writes its contents. */
  vector8(body: (w: Writer) => void): this {
    return this.vector(1, 0xff, body);
  }

  /** Write a vector with a u16 length prefix; `body` writes its contents. */
  vector16(body: (w: Writer) => void): this {
    return this.vector(2, 0xffff, body);
  }

  /** Write a vector with a u24 length prefix; `body` writes its contents. */
  vector24(body: (w: Writer) => void): this {
    return this.vector(3, 0xffffff, body);
  }

  /**
   * `b` behind a `prefix`-byte length: the vector of {@link Writer.vector8}
   * and its siblings without the closure (the length is known up front).
   */
  private prefixed(prefix: 1 | 2 | 3, max: number, b: Uint8Array): this {
    const n = b.length;
    if (n > max) throw new InvalidArgumentError(`vector of ${n} bytes exceeds its ${prefix * 8}-bit length prefix`);
    this.ensure(prefix + n);
    const buf = this.buf;
    let at = this.len;
    if (prefix === 3) buf[at++] = n >>> 16;
    if (prefix >= 2) buf[at++] = (n >>> 8) & 0xff;
    buf[at++] = n & 0xff;
    buf.set(b, at);
    this.len = at + n;
    return this;
  }

  /** Shorthand: u8-prefixed bytes. */
  bytes8(b: Uint8Array): this {
    return this.prefixed(1, 0xff, b);
  }

  /** Shorthand: u16-prefixed bytes. */
  bytes16(b: Uint8Array): this {
    return this.prefixed(2, 0xffff, b);
  }

  /** Shorthand: u24-prefixed bytes. */
  bytes24(b: Uint8Array): this {
    return this.prefixed(3, 0xffffff, b);
  }

  /**
   * Forget what was written and keep the buffer, to write a new value
   * (see {@link encode}). Views from {@link Writer.finishView} are
   * overwritten by what follows.
   */
  reset(): this {
    this.len = 0;
    return this;
  }

  /**
   * The bytes written, as a view of the writer's own buffer (no copy). The
   * writer must not be used afterwards.
   */
  finishView(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** The bytes written, as a new array. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/**
 * Encode with a fresh {@link Writer}.
 * @group Wire
 * @example
 * ```ts
 * const bytes = encode((w) => w.u16(0xfe0d));
 * ```
 */
export function encode(body: (w: Writer) => void): Uint8Array {
  return encodeWith(callBody, body);
}

const callBody = (w: Writer, body: (w: Writer) => void): void => body(w);

/**
 * {@link encode} without a closure: `write(w, value)` writes into a writer
 * whose first `headroom` bytes are zeros, left for the caller to fill in the
 * returned copy (a header whose length field covers what follows).
 * @group Wire
 * @example
 * ```ts
 * const msg = encodeWith(writeServerHello, sh, 4); // then msg[0..3] = type, uint24 length
 * ```
 */
export function encodeWith<T>(write: (w: Writer, value: T) => void, value: T, headroom = 0): Uint8Array {
  // Writers are reused: encoding runs once or more per handshake message and
  // extension, and a fresh Writer costs an object and a 256-byte buffer each
  // time. A nested call (from inside `write`) takes another writer off the
  // pool; a `write` that throws loses its writer (the pool refills).
  const w = pooled > 0 ? pool[--pooled]! : new Writer();
  if (headroom > 0) w.zeros(headroom);
  write(w, value);
  const out = w.finish();
  if (w.capacity <= POOLED_CAPACITY && pooled < POOL_SIZE) pool[pooled++] = w.reset();
  return out;
}

/** Writers kept for {@link encodeWith}: enough for its nesting depth. */
const POOL_SIZE = 8;
/** A writer that grew beyond this is not kept (its buffer would stay allocated). */
const POOLED_CAPACITY = 4096;
/**
 * A fixed-size stack (`pooled` writers at the bottom): an array used with
 * push/pop would trim and regrow its backing store as it empties and refills.
 */
const pool: Writer[] = [];
let pooled = 0;
