/**
 * (EC)DHE groups for key_share (RFC 8446bis §4.2.8.2, §7.4.2): X25519 and
 * secp256r1 on node:crypto. Other groups (X25519MLKEM768, ...) are simply not
 * supported: the server skips those shares.
 *
 * @module
 */
import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { EchError, IllegalParameterError, InvalidArgumentError } from '../wire/alert.js';
import { NamedGroup } from '../tls/constants.js';

/**
 * Groups this engine can compute. @group Server
 * @example
 * ```ts
 * SUPPORTED_GROUPS.includes(NamedGroup.x25519); // true
 * ```
 */
export const SUPPORTED_GROUPS: readonly number[] = [NamedGroup.x25519, NamedGroup.secp256r1];

const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

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
  return `0x${group.toString(16).padStart(4, '0')}`;
}

/**
 * Parse a Node-style `ecdhCurve` string (`'X25519:P-256'`, `'auto'`) into a
 * server preference list of supported groups. Unknown names are ignored;
 * a list that leaves nothing is an error.
 * @group Server
 * @example
 * ```ts
 * parseEcdhCurve('P-256:X25519'); // [0x0017, 0x001d]
 * ```
 */
export function parseEcdhCurve(spec: string | undefined): number[] {
  if (spec === undefined || spec === '' || spec.toLowerCase() === 'auto') return [...SUPPORTED_GROUPS];
  const out: number[] = [];
  for (const raw of spec.split(':')) {
    const n = raw.trim().toLowerCase();
    let g: number | undefined;
    if (n === 'x25519') g = NamedGroup.x25519;
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
  if (group === NamedGroup.x25519) {
    const { publicKey, privateKey } = generateKeyPairSync('x25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    return {
      group,
      publicKey: new Uint8Array(spki.subarray(spki.length - 32)),
      computeSecret(peer: Uint8Array): Uint8Array {
        // RFC 8446bis §4.2.8.2 / RFC 7748: X25519 public values are 32 bytes.
        if (peer.length !== 32) throw new IllegalParameterError(`X25519 key_exchange of ${peer.length} bytes`);
        try {
          const pk = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peer]), format: 'der', type: 'spki' });
          return new Uint8Array(diffieHellman({ privateKey, publicKey: pk }));
        } catch (cause) {
          // RFC 8446bis §7.4.2: an all-zero X25519 result MUST abort
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
        // RFC 8446bis §4.2.8.2: UncompressedPointRepresentation, legacy_form 4;
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
