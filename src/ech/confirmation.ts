/**
 * ECH acceptance signals (RFC 9849 §7.2, §7.2.1): the 8 bytes a backend
 * writes into ServerHello.random, or into the HelloRetryRequest's ECH
 * extension, to tell the client its ClientHelloInner was used.
 *
 * @module
 */
import { type HashName, hashLength, hkdfExtractExpandLabel } from '../crypto/hkdf.js';

/** Length of an acceptance signal. @group ECH */
export const ECH_CONFIRMATION_LENGTH = 8;

/** "0": Hash.length zero bytes, the Extract's salt (read only). */
const ZERO_SALT: { readonly [H in HashName]: Uint8Array } = {
  sha256: new Uint8Array(hashLength('sha256')),
  sha384: new Uint8Array(hashLength('sha384')),
};

function confirmation(hash: HashName, innerRandom: Uint8Array, label: string, transcriptHash: Uint8Array): Uint8Array {
  // The HMACs run on crypto/hkdf's reused message buffers and cached
  // labels; the PRK stays the HMAC's string (no array for it).
  return hkdfExtractExpandLabel(hash, ZERO_SALT[hash], innerRandom, label, transcriptHash, ECH_CONFIRMATION_LENGTH);
}

/**
 * `accept_confirmation` (RFC 9849 §7.2):
 *
 * ```
 * accept_confirmation = HKDF-Expand-Label(
 *    HKDF-Extract(0, ClientHelloInner.random),
 *    "ech accept confirmation", transcript_ech_conf, 8)
 * ```
 *
 * where `transcript_ech_conf` is the transcript hash of ClientHelloInner up
 * to and including a ServerHello whose last 8 random bytes are zero.
 * @group ECH
 * @example
 * ```ts
 * const c = acceptConfirmation('sha256', inner.random, transcript.digest());
 * serverHello.random.set(c, 24);
 * ```
 */
export function acceptConfirmation(hash: HashName, innerRandom: Uint8Array, transcriptEchConf: Uint8Array): Uint8Array {
  return confirmation(hash, innerRandom, 'ech accept confirmation', transcriptEchConf);
}

/**
 * `hrr_accept_confirmation` (RFC 9849 §7.2.1): as
 * {@link acceptConfirmation} with the label "hrr ech accept confirmation",
 * over the transcript of ClientHelloInner1 up to and including a
 * HelloRetryRequest whose ECH extension holds 8 zero bytes.
 * @group ECH
 * @example
 * ```ts
 * const c = hrrAcceptConfirmation('sha256', inner1.random, transcript.digest());
 * ```
 */
export function hrrAcceptConfirmation(hash: HashName, innerRandom: Uint8Array, transcriptHrrEchConf: Uint8Array): Uint8Array {
  return confirmation(hash, innerRandom, 'hrr ech accept confirmation', transcriptHrrEchConf);
}
