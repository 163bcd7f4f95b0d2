/**
 * From a KEM shared secret to the HPKE recipient context the decryption core
 * opens with. Split from decapsulation so that a keyless key server can do
 * only `Decap` and the front end keeps the context for the second
 * ClientHello after a HelloRetryRequest.
 *
 * @module
 */
import { DecryptError } from '../wire/alert.js';
import type { HpkeSymmetricCipherSuite } from '../ech/config.js';
import type { EchOpener } from '../ech/decrypt.js';
import { type PreparedInfo, nativeSupported, recipientFromSharedSecret } from '../crypto/hpke.js';

/**
 * HPKE KeySchedule(mode_base, shared_secret, info) and a recipient context
 * on it (RFC 9180 §5.1).
 * @group Keys
 * @example
 * ```ts
 * const opener = openerFromSharedSecret(config.kemId, suite, key.decap(enc), echHpkeInfo(config));
 * const encodedInner = opener.open(aad, payload);
 * ```
 */
export function openerFromSharedSecret(
  kem: number,
  suite: HpkeSymmetricCipherSuite,
  sharedSecret: Uint8Array,
  info: Uint8Array | PreparedInfo,
): EchOpener {
  const s = { kem, kdf: suite.kdfId, aead: suite.aeadId };
  // A config may list a suite this library cannot open; for the client that
  // chose it, that is the same as a key that does not decrypt (§7.1: "the
  // server continues to the next candidate").
  if (!nativeSupported(s)) throw new DecryptError(`HPKE suite kdf=0x${suite.kdfId.toString(16)} aead=0x${suite.aeadId.toString(16)} is not supported`);
  return recipientFromSharedSecret(s, sharedSecret, info);
}
