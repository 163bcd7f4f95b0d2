/**
 * Random bytes for values that are public or only need to be unpredictable
 * (ServerHello.random, session ticket IVs), drawn from a pool that one
 * `randomFillSync` refills 4 KiB at a time.
 *
 * NOTE: why a pool: in Node 20 `randomBytes(32)` costs ~3-6 µs, nearly all of
 * it call and Buffer overhead, and a 4 KiB `randomFillSync` costs about the
 * same as a 32-byte one (the CSPRNG output itself is cheap). A handshake takes
 * two or three such values. Not for secret keys: those still come from
 * `randomBytes` (or OpenSSL's key generation) directly. Bytes handed out are
 * wiped from the pool; each process and each worker thread has its own pool.
 *
 * @module
 */
import { randomBytes, randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
/** Largest request served from the pool; bigger ones go to `randomBytes`. */
const MAX_POOLED = 256;

const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let used = POOL_SIZE; // empty: the first call fills it

/**
 * `n` fresh random bytes (from the CSPRNG through a pool) for a public or
 * merely unpredictable value. Not for keys.
 * @group Crypto
 * @example
 * ```ts
 * const serverRandom = randomPublicBytes(32);
 * ```
 */
export function randomPublicBytes(n: number): Uint8Array {
  if (n > MAX_POOLED) return new Uint8Array(randomBytes(n));
  if (used + n > POOL_SIZE) {
    randomFillSync(pool);
    used = 0;
  }
  const out = new Uint8Array(n);
  // Byte by byte, not through a view of the pool (a ~100-byte heap object):
  // the values are short (32 bytes at most in a handshake).
  for (let i = 0; i < n; i++) {
    out[i] = pool[used + i]!;
    pool[used + i] = 0;
  }
  used += n;
  return out;
}
