/**
 * X25519 key generation with the raw keys taken from the JWK encodings that
 * `generateKeyPairSync` returns itself, never from `KeyObject.export({ format:
 * 'jwk' })` of the fresh key: on Node 20 that export can deadlock the
 * process. It holds the key's mutex while it allocates the JWK's strings; an
 * allocation may run a garbage collection, which destroys the (finished)
 * key-generation job, whose destructor takes the same mutex (seen in gdb:
 * `ExportJWKEdKey` → `CollectGarbage` → `~KeyGenJob` → `uv_mutex_lock`; a loop
 * of generate + export hung within 20,000 iterations). JWK rather than SPKI
 * DER also because a JWK encoding is almost free, an SPKI export ~120 µs.
 *
 * @module
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { EchError } from '../wire/alert.js';

// @types/node has no overload for JWK encodings; Node ≥ 15.9 takes them.
const PUBLIC_AS_JWK = { publicKeyEncoding: { format: 'jwk' } } as never;
const BOTH_AS_JWK = { publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } } as never;

/** Value of each base64url character (RFC 4648 §5), -1 for the others. */
const B64U = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64U['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charCodeAt(i)] = i;

/**
 * 32 bytes of a base64url JWK field, as an own copy (not a view of Buffer's
 * pool). The 43 characters of an unpadded 32-byte value are decoded
 * straight into the result (no Buffer in between: a heap object fewer);
 * anything else goes through Buffer's decoder.
 */
function raw32(s: string | undefined): Uint8Array {
  if (s !== undefined && s.length === 43) {
    const out = new Uint8Array(32);
    let acc = 0;
    let bits = 0;
    let o = 0;
    let bad = 0;
    for (let i = 0; i < 43; i++) {
      const c = s.charCodeAt(i);
      const v = c < 128 ? B64U[c]! : -1;
      bad |= v;
      acc = ((acc << 6) | (v & 63)) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[o++] = (acc >> bits) & 0xff;
      }
    }
    // A canonical encoding (the last character's 2 spare bits zero);
    // others go through Buffer's decoder, as before.
    if (bad >= 0 && (acc & ((1 << bits) - 1)) === 0) return out;
  }
  return raw32ByBuffer(s);
}

function raw32ByBuffer(s: string | undefined): Uint8Array {
  const b = Buffer.from(s ?? '', 'base64url');
  if (b.length !== 32) throw new EchError('ERR_INTERNAL', 'internal_error', 'X25519 JWK field is not 32 bytes');
  return new Uint8Array(b);
}

/**
 * A fresh X25519 key pair: the public key raw, the private key as a KeyObject
 * for `diffieHellman` (ephemeral keys: TLS key shares, HPKE and X-Wing
 * encapsulation).
 * @example
 * ```ts
 * const { publicKey, privateKey } = generateX25519();
 * publicKey.length; // 32
 * ```
 */
export function generateX25519(): { publicKey: Uint8Array; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519', PUBLIC_AS_JWK) as unknown as { publicKey: { x?: string }; privateKey: KeyObject };
  return { publicKey: raw32(publicKey.x), privateKey };
}

/**
 * A fresh X25519 key pair, both keys raw (32 bytes each): a static key to
 * store, e.g. an ECH key.
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateX25519Raw();
 * ```
 */
export function generateX25519Raw(): { publicKey: Uint8Array; privateKey: Uint8Array } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519', BOTH_AS_JWK) as unknown as { publicKey: { x?: string }; privateKey: { d?: string } };
  return { publicKey: raw32(publicKey.x), privateKey: raw32(privateKey.d) };
}
