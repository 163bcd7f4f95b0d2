/**
 * One test for "did this callback return a promise?", shared by every
 * layer that takes a value or a promise (the TLS engine's hooks and
 * signers, ECH decryption with local or remote keys, the fuzzer and the
 * benchmark harness): any thenable counts, as `await` would treat it.
 *
 * @module
 */

/**
 * True when `v` is a promise or any other thenable, which the caller must
 * wait for; false for a value it can use at once.
 * @example
 * ```ts
 * const r = decryptClientHelloNow(message, keys);
 * if (isPromiseLike(r)) r.then(next, fail); else next(r);
 * ```
 */
export function isPromiseLike<T>(v: T | PromiseLike<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null | undefined)?.then === 'function';
}
