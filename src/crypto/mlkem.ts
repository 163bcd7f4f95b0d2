/**
 * ML-KEM-768 (FIPS 203) with two interchangeable implementations:
 * `node:crypto` where it has ML-KEM (Node ≥ 24.7: `encapsulate`,
 * `decapsulate`, key type `ml-kem-768`), and `@noble/post-quantum` on Node
 * 20 and 22. Both take the 64-byte seed `d ‖ z` of FIPS 203
 * `ML-KEM.KeyGen_internal` as the private key, so a key moves between them
 * unchanged; the tests check that they agree byte for byte.
 *
 * Used by the hybrid TLS group X25519MLKEM768 (`tls13/groups.ts`) and the
 * ML-KEM-768 / X-Wing HPKE KEMs (`kem.ts`).
 *
 * @module
 */
import * as nodeCrypto from 'node:crypto';
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { IllegalParameterError, InvalidArgumentError } from '../wire/alert.js';

/**
 * Sizes of ML-KEM-768 (FIPS 203 Table 3), in bytes.
 * @group Crypto
 * @example
 * ```ts
 * MLKEM768.encapsulationKey; // 1184
 * ```
 */
export const MLKEM768 = {
  /** Encapsulation key ek. */
  encapsulationKey: 1184,
  /** Ciphertext c. */
  ciphertext: 1088,
  /** Shared secret K. */
  sharedSecret: 32,
  /** Private seed d ‖ z. */
  seed: 64,
} as const;

/**
 * A decapsulation key made from its 64-byte seed.
 * @group Crypto
 * @example
 * ```ts
 * const dk: MlKemKeyPair = mlkem768().fromSeed(seed);
 * const k = dk.decapsulate(ciphertext);
 * ```
 */
export interface MlKemKeyPair {
  /** The 64-byte seed d ‖ z. */
  readonly seed: Uint8Array;
  /** The encapsulation key ek (1184 bytes). */
  readonly publicKey: Uint8Array;
  /**
   * ML-KEM.Decaps: the 32-byte shared secret (implicit rejection: a
   * well-formed but wrong ciphertext gives a pseudo-random secret).
   * @throws IllegalParameterError if the ciphertext is not 1088 bytes.
   */
  decapsulate(ciphertext: Uint8Array): Uint8Array;
}

/**
 * One ML-KEM-768 implementation.
 * @group Crypto
 * @example
 * ```ts
 * const impl: MlKemImpl = mlkem768();
 * const { ciphertext, sharedSecret } = impl.encapsulate(ek);
 * ```
 */
export interface MlKemImpl {
  /** Which library computes. */
  readonly name: 'node:crypto' | '@noble/post-quantum';
  /** ML-KEM.KeyGen_internal(d, z) from `seed` = d ‖ z (64 bytes). */
  fromSeed(seed: Uint8Array): MlKemKeyPair;
  /**
   * ML-KEM.Encaps(ek) after the FIPS 203 §7.2 input checks.
   * @throws IllegalParameterError if `ek` fails the length or modulus check.
   */
  encapsulate(ek: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
}

const Q = 3329;

/**
 * FIPS 203 §7.2 encapsulation key checks: (1) type check, ek is 384·k + 32
 * bytes; (2) modulus check, ByteEncode12(ByteDecode12(ek[0:384k])) = ek,
 * i.e. every 12-bit coefficient is below q = 3329.
 * @group Crypto
 * @example
 * ```ts
 * if (!mlkem768KeyValid(ek)) throw new IllegalParameterError('bad ML-KEM key');
 * ```
 */
export function mlkem768KeyValid(ek: Uint8Array): boolean {
  if (ek.length !== MLKEM768.encapsulationKey) return false;
  let bad = 0;
  for (let i = 0; i < 1152; i += 3) {
    const b0 = ek[i] as number;
    const b1 = ek[i + 1] as number;
    const b2 = ek[i + 2] as number;
    const c0 = b0 | ((b1 & 0x0f) << 8);
    const c1 = (b1 >> 4) | (b2 << 4);
    bad |= (Q - 1 - c0) | (Q - 1 - c1); // negative (sign bit set) when c >= q
  }
  return bad >= 0;
}

function checkEk(ek: Uint8Array): void {
  // draft-ietf-tls-ecdhe-mlkem §4 / draft-ietf-tls-mlkem §4.2: "the server
  // MUST perform the encapsulation key check described in Section 7.2 of
  // [FIPS203] on the client's encapsulation key, and abort with an
  // illegal_parameter alert if it fails."
  if (!mlkem768KeyValid(ek)) throw new IllegalParameterError('ML-KEM-768 encapsulation key fails the FIPS 203 §7.2 check');
}

function checkCt(ct: Uint8Array): void {
  // FIPS 203 §7.3 ciphertext type check; draft-ietf-tls-mlkem §4.2: the
  // client "MUST check if the ciphertext length matches ... and abort with an
  // illegal_parameter alert".
  if (ct.length !== MLKEM768.ciphertext) throw new IllegalParameterError(`ML-KEM-768 ciphertext of ${ct.length} bytes`);
}

function checkSeed(seed: Uint8Array): void {
  if (!(seed instanceof Uint8Array) || seed.length !== MLKEM768.seed) throw new InvalidArgumentError('ML-KEM-768 seed must be 64 bytes');
}

function u8(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * PKCS#8 PrivateKeyInfo prefix of an ML-KEM-768 key in seed form
 * (draft-ietf-lamps-kyber-certificates: id-alg-ml-kem-768 =
 * 2.16.840.1.101.3.4.4.2, privateKey = `seed [0] OCTET STRING (SIZE (64))`),
 * the form Node 24 exports; the 64-byte seed follows.
 * @group Crypto
 * @example
 * ```ts
 * const der = Buffer.concat([MLKEM768_PKCS8_PREFIX, seed]); // 86 bytes
 * ```
 */
export const MLKEM768_PKCS8_PREFIX: Uint8Array = Uint8Array.from(Buffer.from('3054020100300b060960864801650304040204428040', 'hex'));

/** The JS implementation (`@noble/post-quantum`), available everywhere. @group Crypto
 * @example
 * ```ts
 * const dk = mlkem768Noble.fromSeed(seed);
 * ```
 */
export const mlkem768Noble: MlKemImpl = {
  name: '@noble/post-quantum',
  fromSeed(seed) {
    checkSeed(seed);
    const { secretKey, publicKey } = ml_kem768.keygen(seed);
    return {
      seed: Uint8Array.from(seed),
      publicKey: u8(publicKey),
      decapsulate(ct) {
        checkCt(ct);
        return u8(ml_kem768.decapsulate(ct, secretKey));
      },
    };
  },
  encapsulate(ek) {
    checkEk(ek);
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(ek);
    return { ciphertext: u8(cipherText), sharedSecret: u8(sharedSecret) };
  },
};

type NativeKem = {
  encapsulate(key: KeyObject): { sharedKey: Buffer; ciphertext: Buffer };
  decapsulate(key: KeyObject, ciphertext: Uint8Array): Buffer;
};

function makeNative(): MlKemImpl | undefined {
  const c = nodeCrypto as unknown as Partial<NativeKem>;
  const encapsulate = c.encapsulate;
  const decapsulate = c.decapsulate;
  if (typeof encapsulate !== 'function' || typeof decapsulate !== 'function') return undefined;
  const impl: MlKemImpl = {
    name: 'node:crypto',
    fromSeed(seed) {
      checkSeed(seed);
      const key = createPrivateKey({ key: Buffer.concat([MLKEM768_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
      const pub = (createPublicKey(key).export({ format: 'jwk' }) as { pub?: string }).pub;
      return {
        seed: Uint8Array.from(seed),
        publicKey: u8(Buffer.from(pub ?? '', 'base64url')),
        decapsulate(ct) {
          checkCt(ct);
          return u8(decapsulate(key, ct));
        },
      };
    },
    encapsulate(ek) {
      checkEk(ek);
      const pub = createPublicKey({
        key: { kty: 'AKP', alg: 'ML-KEM-768', pub: Buffer.from(ek.buffer, ek.byteOffset, ek.byteLength).toString('base64url') },
        format: 'jwk',
      } as unknown as Parameters<typeof createPublicKey>[0]);
      const r = encapsulate(pub);
      return { ciphertext: u8(r.ciphertext), sharedSecret: u8(r.sharedKey) };
    },
  };
  try {
    // Probe once: an older Node 24 may have encapsulate() but no ML-KEM keys.
    const dk = impl.fromSeed(new Uint8Array(64));
    const { ciphertext, sharedSecret } = impl.encapsulate(dk.publicKey);
    if (Buffer.compare(dk.decapsulate(ciphertext), sharedSecret) !== 0) return undefined;
  } catch {
    return undefined;
  }
  return impl;
}

/**
 * The `node:crypto` implementation, or undefined on a Node without ML-KEM
 * (Node 20, 22). @group Crypto
 * @example
 * ```ts
 * if (mlkem768Native) console.log('native ML-KEM');
 * ```
 */
export const mlkem768Native: MlKemImpl | undefined = makeNative();

/**
 * The ML-KEM-768 implementation in use: `node:crypto` when it has ML-KEM,
 * else `@noble/post-quantum`.
 * @group Crypto
 * @example
 * ```ts
 * mlkem768().name; // 'node:crypto' on Node 24
 * ```
 */
export function mlkem768(): MlKemImpl {
  return mlkem768Native ?? mlkem768Noble;
}

/**
 * A fresh 64-byte ML-KEM seed d ‖ z.
 * @group Crypto
 * @example
 * ```ts
 * const dk = mlkem768().fromSeed(mlkemSeed());
 * ```
 */
export function mlkemSeed(): Uint8Array {
  return u8(randomBytes(MLKEM768.seed));
}
