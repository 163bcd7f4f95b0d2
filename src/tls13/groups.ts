/**
 * Key exchange groups for key_share (RFC 9846 §4.2.8.2, §7.4.2): X25519 and
 * secp256r1 on node:crypto, and the post-quantum hybrid X25519MLKEM768
 * (draft-ietf-tls-ecdhe-mlkem: ML-KEM-768 of `crypto/mlkem.ts`, native on
 * Node ≥ 24, `@noble/post-quantum` on Node 20/22). Other groups are not
 * supported: the server skips those shares.
 *
 * @module
 */
import { createECDH, createPublicKey, diffieHellman } from 'node:crypto';
import { EchError, IllegalParameterError, InvalidArgumentError } from '../wire/alert.js';
import { NamedGroup } from '../tls/constants.js';
import { MLKEM768, mlkem768, mlkemSeed } from '../crypto/mlkem.js';
import { generateX25519 } from '../crypto/x25519.js';

/**
 * Groups this engine can compute, in the server's default preference order
 * (`ecdhCurve: 'auto'`): X25519MLKEM768, X25519, P-256. @group Server
 * @example
 * ```ts
 * SUPPORTED_GROUPS.includes(NamedGroup.X25519MLKEM768); // true
 * ```
 */
export const SUPPORTED_GROUPS: readonly number[] = [NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1];

/**
 * The client's default supported_groups (X25519, P-256): the hybrid group is
 * offered only when asked for with `ecdhCurve` (its share is 1216 bytes, and
 * without native ML-KEM each handshake costs a JS key generation).
 * @group Client
 * @example
 * ```ts
 * parseEcdhCurve(undefined, DEFAULT_CLIENT_GROUPS); // [0x001d, 0x0017]
 * ```
 */
export const DEFAULT_CLIENT_GROUPS: readonly number[] = [NamedGroup.x25519, NamedGroup.secp256r1];

/**
 * Whether `group` is a post-quantum (hybrid) group: the server asks for it
 * with a HelloRetryRequest when the client supports it but sent a classical
 * share only, if it comes first in the server's preference.
 * @group Server
 * @example
 * ```ts
 * isPostQuantumGroup(NamedGroup.X25519MLKEM768); // true
 * ```
 */
export function isPostQuantumGroup(group: number): boolean {
  return group === NamedGroup.X25519MLKEM768;
}

/** X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem §4.1): client share ek ‖ X25519, server share ct ‖ X25519. */
const HYBRID_CLIENT_SHARE = MLKEM768.encapsulationKey + 32;
const HYBRID_SERVER_SHARE = MLKEM768.ciphertext + 32;

function toB64u(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
}

/**
 * Name of a group as Node reports it (`getEphemeralKeyInfo().name`).
 * @group Server
 * @example
 * ```ts
 * groupName(NamedGroup.x25519); // 'X25519'
 * ```
 */
export function groupName(group: number): string {
  if (group === NamedGroup.x25519) return 'X25519';
  if (group === NamedGroup.secp256r1) return 'prime256v1';
  if (group === NamedGroup.X25519MLKEM768) return 'X25519MLKEM768';
  return `0x${group.toString(16).padStart(4, '0')}`;
}

/**
 * Parse a Node-style `ecdhCurve` string (`'X25519MLKEM768:X25519:P-256'`,
 * `'auto'`) into a preference list of supported groups. Unknown names are
 * ignored; a list that leaves nothing is an error. `'auto'` or nothing gives
 * `defaults` (the server's {@link SUPPORTED_GROUPS} unless told otherwise).
 * @group Server
 * @example
 * ```ts
 * parseEcdhCurve('P-256:X25519'); // [0x0017, 0x001d]
 * ```
 */
export function parseEcdhCurve(spec: string | undefined, defaults: readonly number[] = SUPPORTED_GROUPS): number[] {
  if (spec === undefined || spec === '' || spec.toLowerCase() === 'auto') return [...defaults];
  const out: number[] = [];
  for (const raw of spec.split(':')) {
    const n = raw.trim().toLowerCase();
    let g: number | undefined;
    if (n === 'x25519') g = NamedGroup.x25519;
    else if (n === 'x25519mlkem768') g = NamedGroup.X25519MLKEM768;
    else if (n === 'p-256' || n === 'prime256v1' || n === 'secp256r1') g = NamedGroup.secp256r1;
    if (g !== undefined && !out.includes(g)) out.push(g);
  }
  if (out.length === 0) throw new InvalidArgumentError(`no supported group in ecdhCurve '${spec}'`);
  return out;
}

/**
 * An ephemeral key pair for one group.
 * @group Server
 * @example
 * ```ts
 * const k: EphemeralKey = generateEphemeralKey(NamedGroup.secp256r1);
 * ```
 */
export interface EphemeralKey {
  readonly group: number;
  /** The key_exchange bytes to send. */
  readonly publicKey: Uint8Array;
  /** The shared secret with the peer's key_exchange. */
  computeSecret(peer: Uint8Array): Uint8Array;
}

/**
 * Generate an ephemeral key for `group`.
 * @group Server
 * @example
 * ```ts
 * const k = generateEphemeralKey(NamedGroup.x25519);
 * const shared = k.computeSecret(peerShare);
 * ```
 */
export function generateEphemeralKey(group: number): EphemeralKey {
  if (group === NamedGroup.X25519MLKEM768) {
    // draft-ietf-tls-ecdhe-mlkem §4.1: the client's key_exchange is the
    // ML-KEM-768 encapsulation key (1184 bytes) followed by the X25519
    // share (32 bytes).
    const dk = mlkem768().fromSeed(mlkemSeed());
    const x = generateEphemeralKey(NamedGroup.x25519);
    const publicKey = new Uint8Array(HYBRID_CLIENT_SHARE);
    publicKey.set(dk.publicKey, 0);
    publicKey.set(x.publicKey, MLKEM768.encapsulationKey);
    return {
      group,
      publicKey,
      computeSecret(peer: Uint8Array): Uint8Array {
        // §4.1: the server's share is the ML-KEM-768 ciphertext (1088 bytes)
        // followed by its X25519 share; draft-ietf-tls-mlkem §4.2: the client
        // "MUST check if the ciphertext length matches ... and abort with an
        // illegal_parameter alert if it fails".
        if (peer.length !== HYBRID_SERVER_SHARE) throw new IllegalParameterError(`X25519MLKEM768 server key_exchange of ${peer.length} bytes`);
        const ssM = dk.decapsulate(peer.subarray(0, MLKEM768.ciphertext));
        const ssX = x.computeSecret(peer.subarray(MLKEM768.ciphertext));
        // §4.1: shared secret = ML-KEM shared secret ‖ X25519 shared secret.
        return concat(ssM, ssX);
      },
    };
  }
  if (group === NamedGroup.x25519) {
    // NOTE: raw keys go through JWK, not SPKI DER: in Node 20 a JWK export is
    // almost free and a JWK import costs ~7 µs, where the SPKI export costs
    // ~120 µs and the SPKI import ~90 µs (an ASN.1 round trip through the
    // OpenSSL decoder framework). Same OpenSSL raw-key functions underneath.
    // The public key comes back as JWK straight from the key generation: no
    // public KeyObject is made, no export called (crypto/x25519.ts).
    const { publicKey, privateKey } = generateX25519();
    return {
      group,
      publicKey,
      computeSecret(peer: Uint8Array): Uint8Array {
        // RFC 9846 §4.2.8.2 / RFC 7748: X25519 public values are 32 bytes.
        if (peer.length !== 32) throw new IllegalParameterError(`X25519 key_exchange of ${peer.length} bytes`);
        try {
          const pk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: toB64u(peer) }, format: 'jwk' });
          return new Uint8Array(diffieHellman({ privateKey, publicKey: pk }));
        } catch (cause) {
          // RFC 9846 §7.4.2: an all-zero X25519 result MUST abort
          // (OpenSSL refuses small-order points, which produce it).
          throw new IllegalParameterError('X25519 key_exchange rejected', { cause });
        }
      },
    };
  }
  if (group === NamedGroup.secp256r1) {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    return {
      group,
      publicKey: new Uint8Array(ecdh.getPublicKey()),
      computeSecret(peer: Uint8Array): Uint8Array {
        // RFC 9846 §4.2.8.2: UncompressedPointRepresentation, legacy_form 4;
        // peers "MUST validate each other's public key".
        if (peer.length !== 65 || peer[0] !== 4) {
          throw new IllegalParameterError('secp256r1 key_exchange is not an uncompressed point');
        }
        try {
          return new Uint8Array(ecdh.computeSecret(peer));
        } catch (cause) {
          throw new IllegalParameterError('secp256r1 key_exchange is not a valid point', { cause });
        }
      },
    };
  }
  throw new EchError('ERR_UNSUPPORTED', 'internal_error', `group 0x${group.toString(16)} not supported`);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The server's side of a key share: for an (EC)DHE group a fresh key pair
 * and the shared secret with the client's share; for X25519MLKEM768 an
 * ML-KEM-768 encapsulation to the client's key plus X25519.
 * @group Server
 * @throws IllegalParameterError for a malformed client share (wrong length,
 * an ML-KEM key failing the FIPS 203 §7.2 check, an invalid or low-order
 * X25519/P-256 value).
 * @example
 * ```ts
 * const { keyExchange, sharedSecret } = serverKeyShare(share.group, share.keyExchange);
 * ```
 */
export function serverKeyShare(group: number, clientShare: Uint8Array): { keyExchange: Uint8Array; sharedSecret: Uint8Array } {
  if (group === NamedGroup.X25519MLKEM768) {
    // draft-ietf-tls-ecdhe-mlkem §4.1: 1184-byte encapsulation key ‖ 32-byte
    // X25519 share; a share of another length is malformed (illegal_parameter).
    if (clientShare.length !== HYBRID_CLIENT_SHARE) {
      throw new IllegalParameterError(`X25519MLKEM768 client key_exchange of ${clientShare.length} bytes`);
    }
    // mlkem768().encapsulate runs the FIPS 203 §7.2 encapsulation key check
    // ("abort with an illegal_parameter alert if it fails").
    const m = mlkem768().encapsulate(clientShare.subarray(0, MLKEM768.encapsulationKey));
    const x = generateEphemeralKey(NamedGroup.x25519);
    const ssX = x.computeSecret(clientShare.subarray(MLKEM768.encapsulationKey));
    return { keyExchange: concat(m.ciphertext, x.publicKey), sharedSecret: concat(m.sharedSecret, ssX) };
  }
  const eph = generateEphemeralKey(group);
  const sharedSecret = eph.computeSecret(clientShare);
  return { keyExchange: eph.publicKey, sharedSecret };
}
