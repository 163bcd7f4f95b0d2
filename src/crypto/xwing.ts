/**
 * X-Wing (draft-connolly-cfrg-xwing-kem): ML-KEM-768 and X25519 combined
 * with SHA3-256. Built from the ML-KEM-768 of `mlkem.ts` (native on Node 24,
 * `@noble/post-quantum` elsewhere), X25519 and SHA3-256/SHAKE256 of
 * `node:crypto`; checked against the draft's test vectors and against
 * `@noble/post-quantum`'s own X-Wing in the tests.
 *
 * The private key is the 32-byte seed; the public key is pk_M ‖ pk_X (1216
 * bytes); a ciphertext is ct_M ‖ ct_X (1120 bytes).
 *
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { DecryptError, InvalidArgumentError } from '../wire/alert.js';
import { MLKEM768, mlkem768, type MlKemImpl, type MlKemKeyPair } from './mlkem.js';
import { generateX25519 } from './x25519.js';

/**
 * Sizes of X-Wing, in bytes.
 * @group Crypto
 * @example
 * ```ts
 * XWING.publicKey; // 1216
 * ```
 */
export const XWING = { seed: 32, publicKey: 1216, ciphertext: 1120, sharedSecret: 32 } as const;

/** XWingLabel = "\.//^\" */
const LABEL = Buffer.from('5c2e2f2f5e5c', 'hex');
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

function u8(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function x25519Public(key: KeyObject): Buffer {
  return Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x ?? '', 'base64url');
}

function x25519Dh(priv: KeyObject, pub: Uint8Array): Buffer {
  const pk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(pub).toString('base64url') }, format: 'jwk' });
  return diffieHellman({ privateKey: priv, publicKey: pk });
}

/** Combiner(ss_M, ss_X, ct_X, pk_X) = SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ XWingLabel). */
function combine(ssM: Uint8Array, ssX: Uint8Array, ctX: Uint8Array, pkX: Uint8Array): Uint8Array {
  return u8(createHash('sha3-256').update(ssM).update(ssX).update(ctX).update(pkX).update(LABEL).digest());
}

/**
 * An X-Wing decapsulation key made from its 32-byte seed.
 * @group Crypto
 * @example
 * ```ts
 * const k: XWingKeyPair = xwingFromSeed(seed);
 * const ss = k.decapsulate(ct);
 * ```
 */
export interface XWingKeyPair {
  /** The 32-byte seed (the private key). */
  readonly seed: Uint8Array;
  /** pk_M ‖ pk_X (1216 bytes). */
  readonly publicKey: Uint8Array;
  /**
   * X-Wing Decapsulate.
   * @throws DecryptError if `ct` is not 1120 bytes or its X25519 part gives no shared secret.
   */
  decapsulate(ct: Uint8Array): Uint8Array;
}

/**
 * X-Wing key generation from a 32-byte seed: expanded = SHAKE256(seed, 96);
 * ML-KEM-768 from expanded[0:64] (d ‖ z), X25519 scalar expanded[64:96].
 * @group Crypto
 * @throws InvalidArgumentError if `seed` is not 32 bytes.
 * @example
 * ```ts
 * const { publicKey } = xwingFromSeed(randomBytes(32));
 * ```
 */
export function xwingFromSeed(seed: Uint8Array, impl: MlKemImpl = mlkem768()): XWingKeyPair {
  if (!(seed instanceof Uint8Array) || seed.length !== XWING.seed) throw new InvalidArgumentError('X-Wing seed must be 32 bytes');
  const expanded = createHash('shake256', { outputLength: 96 }).update(seed).digest();
  const m: MlKemKeyPair = impl.fromSeed(expanded.subarray(0, 64));
  const skX = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, expanded.subarray(64, 96)]), format: 'der', type: 'pkcs8' });
  const pkX = x25519Public(skX);
  const publicKey = u8(Buffer.concat([m.publicKey, pkX]));
  return {
    seed: Uint8Array.from(seed),
    publicKey,
    decapsulate(ct: Uint8Array): Uint8Array {
      if (ct.length !== XWING.ciphertext) throw new DecryptError(`X-Wing ciphertext must be ${XWING.ciphertext} bytes, got ${ct.length}`);
      const ctM = ct.subarray(0, MLKEM768.ciphertext);
      const ctX = ct.subarray(MLKEM768.ciphertext);
      const ssM = m.decapsulate(ctM);
      let ssX: Buffer;
      try {
        ssX = x25519Dh(skX, ctX);
      } catch (cause) {
        // OpenSSL refuses a low-order ct_X (all-zero result).
        throw new DecryptError('X-Wing X25519 ciphertext gives no shared secret', { cause });
      }
      return combine(ssM, ssX, ctX, pkX);
    },
  };
}

/**
 * X-Wing Encapsulate(pk) with fresh randomness.
 * @group Crypto
 * @throws InvalidArgumentError if `publicKey` is not 1216 bytes or fails the ML-KEM key check.
 * @example
 * ```ts
 * const { ciphertext, sharedSecret } = xwingEncapsulate(config.publicKey);
 * ```
 */
export function xwingEncapsulate(publicKey: Uint8Array, impl: MlKemImpl = mlkem768()): { ciphertext: Uint8Array; sharedSecret: Uint8Array } {
  if (publicKey.length !== XWING.publicKey) throw new InvalidArgumentError(`X-Wing public key must be ${XWING.publicKey} bytes`);
  const pkM = publicKey.subarray(0, MLKEM768.encapsulationKey);
  const pkX = publicKey.subarray(MLKEM768.encapsulationKey);
  let m: { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  let ssX: Buffer;
  let ctX: Buffer;
  try {
    m = impl.encapsulate(pkM);
    const eph = generateX25519();
    ctX = Buffer.from(eph.publicKey);
    ssX = x25519Dh(eph.privateKey, pkX);
  } catch (cause) {
    throw new InvalidArgumentError('X-Wing public key is not usable', { cause });
  }
  return { ciphertext: u8(Buffer.concat([m.ciphertext, ctX])), sharedSecret: combine(m.sharedSecret, ssX, ctX, pkX) };
}

/**
 * A fresh 32-byte X-Wing seed.
 * @group Crypto
 * @example
 * ```ts
 * const key = xwingFromSeed(xwingSeed());
 * ```
 */
export function xwingSeed(): Uint8Array {
  return u8(randomBytes(XWING.seed));
}
