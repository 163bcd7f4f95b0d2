/**
 * Bounds-checked reader for the TLS presentation language (RFC 9846 §3),
 * after Go's cryptobyte: vectors with u8/u16/u24 length prefixes are read as
 * sub-readers, every read is length-checked and failures are
 * {@link DecodeError}s (`decode_error`).
 *
 * @module
 */
import { DecodeError } from './alert.js';
import { copyBytes } from './bytes.js';

/**
 * A cursor over a byte array. Reads never go past the end; a short read throws
 * {@link DecodeError}. Slices returned by {@link Reader.bytes} are copies, so
 * they never alias the input buffer; {@link Reader.view} returns a view for
 * short-lived use.
 * @group Wire
 * @example
 * ```ts
 * const r = new Reader(bytes);
 * const body = r.vector16();
 * const version = body.u16();
 * body.end('ClientHello');
 * r.end();
 * ```
 */
export class Reader {
  private readonly buf: Uint8Array;
  private pos: number;
  private readonly limit: number;

  /**
   * @param buf bytes to read
   * @param start first offset (default 0)
   * @param end offset one past the last byte (default `buf.length`)
   */
  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    if (start < 0 || end > buf.length || start > end) throw new RangeError('reader bounds outside buffer');
    this.buf = buf;
    this.pos = start;
    this.limit = end;
  }

  /** Bytes left to read. */
  get remaining(): number {
    return this.limit - this.pos;
  }

  /** Offset of the cursor within the underlying buffer. */
  get offset(): number {
    return this.pos;
  }

  /** True when every byte has been read. */
  get empty(): boolean {
    return this.pos === this.limit;
  }

  private need(n: number, what: string): void {
    if (n > this.limit - this.pos) {
      throw new DecodeError(`truncated ${what}: need ${n} bytes, have ${this.limit - this.pos}`);
    }
  }

  /** Read one byte. */
  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  /** Read a big-endian u16. */
  u16(what = 'u16'): number {
    this.need(2, what);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  /** Read a big-endian u24. */
  u24(what = 'u24'): number {
    this.need(3, what);
    const v = (this.buf[this.pos]! << 16) | (this.buf[this.pos + 1]! << 8) | this.buf[this.pos + 2]!;
    this.pos += 3;
    return v;
  }

  /** Read a big-endian u32. */
  u32(what = 'u32'): number {
    this.need(4, what);
    const v =
      this.buf[this.pos]! * 0x1000000 + ((this.buf[this.pos + 1]! << 16) | (this.buf[this.pos + 2]! << 8) | this.buf[this.pos + 3]!);
    this.pos += 4;
    return v;
  }

  /** Read `n` bytes as a copy. */
  bytes(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const out = copyBytes(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Read `n` bytes as a view into the input (do not keep it). */
  view(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Skip `n` bytes. */
  skip(n: number, what = 'bytes'): void {
    this.need(n, what);
    this.pos += n;
  }

  /** A sub-reader over the next `n` bytes; the cursor moves past them. */
  sub(n: number, what = 'vector'): Reader {
    this.need(n, what);
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  /** Sub-reader over a vector with a u8 length prefix. */
  vector8(what = 'u8 vector'): Reader {
    return this.sub(this.u8(what), what);
  }

  /** Sub-reader over a vector with a u16 length prefix. */
  vector16(what = 'u16 vector'): Reader {
    return this.sub(this.u16(what), what);
  }

  /** Sub-reader over a vector with a u24 length prefix. */
  vector24(what = 'u24 vector'): Reader {
    return this.sub(this.u24(what), what);
  }

  /** Copy of the bytes of a u8-prefixed vector. */
  bytes8(what = 'u8 vector'): Uint8Array {
    return this.bytes(this.u8(what), what);
  }

  /** Copy of the bytes of a u16-prefixed vector. */
  bytes16(what = 'u16 vector'): Uint8Array {
    return this.bytes(this.u16(what), what);
  }

  /** Copy of the bytes of a u24-prefixed vector. */
  bytes24(what = 'u24 vector'): Uint8Array {
    return this.bytes(this.u24(what), what);
  }

  /** Copy of every byte left. */
  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }

  /** Throw {@link DecodeError} if any byte is left unread. */
  end(what = 'structure'): void {
    if (this.pos !== this.limit) {
      throw new DecodeError(`${this.limit - this.pos} trailing bytes after ${what}`);
    }
  }
}
