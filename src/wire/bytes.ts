/**
 * Small byte helpers shared across layers.
 * @module
 */

/**
 * Constant-time equality of two byte arrays (length is not secret).
 * @group Wire
 * @example
 * ```ts
 * equalBytes(a, b);
 * ```
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/**
 * A copy of `b[start:end]` as a plain `Uint8Array` that never shares memory
 * with `b`. (`Buffer#slice` returns a view, so `b.slice()` is not a copy when
 * `b` is a Buffer; this is.)
 * @group Wire
 * @example
 * ```ts
 * const owned = copyBytes(socketChunk, 5, 9);
 * ```
 */
export function copyBytes(b: Uint8Array, start = 0, end = b.length): Uint8Array {
  return Uint8Array.prototype.slice.call(b, start, end) as Uint8Array;
}

/**
 * Concatenate byte arrays.
 * @group Wire
 * @example
 * ```ts
 * concatBytes(header, body);
 * ```
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (let i = 0; i < parts.length; i++) n += parts[i]!.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (let i = 0; i < parts.length; i++) {
    out.set(parts[i]!, o);
    o += parts[i]!.length;
  }
  return out;
}

/**
 * Lower-case hex of bytes.
 * @group Wire
 * @example
 * ```ts
 * toHex(new Uint8Array([1, 255])); // '01ff'
 * ```
 */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/**
 * Bytes from hex.
 * @group Wire
 * @example
 * ```ts
 * fromHex('01ff');
 * ```
 */
export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'hex'));
}

/**
 * Base64 of bytes (standard alphabet, padded).
 * @group Wire
 * @example
 * ```ts
 * toBase64(bytes);
 * ```
 */
export function toBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

/**
 * Bytes from base64 (standard or URL alphabet). Rejects characters outside
 * the alphabet.
 * @group Wire
 * @example
 * ```ts
 * fromBase64('AEX+DQ==');
 * ```
 */
export function fromBase64(s: string): Uint8Array {
  const t = s.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(t)) throw new TypeError('invalid base64');
  return new Uint8Array(Buffer.from(t, 'base64'));
}
