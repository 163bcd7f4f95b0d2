/**
 * ECH acceptance signals (RFC 9849 §7.2, §7.2.1): the 8 bytes a backend
 * writes into ServerHello.random, or into the HelloRetryRequest's ECH
 * extension, to tell the client its ClientHelloInner was used.
 *
 * @module
 */
import { type HashName, encodeHkdfLabel, hashLength, hkdfExpandLabel, hkdfExtract } from '../crypto/hkdf.js';
import { type HmacScratch, hmacScratch } from '../crypto/hpke-hmac.js';

/** Length of an acceptance signal. @group ECH */
export const ECH_CONFIRMATION_LENGTH = 8;

const RANDOM_LENGTH = 32;
const EMPTY = new Uint8Array(0);

/**
 * The two HMAC messages of one hash and label, built once: HMAC headroom ||
 * ClientHello.random for the Extract, and HMAC headroom || HkdfLabel(8,
 * label, transcript hash) || 0x01 for the Expand (one block of output), with
 * the random and the transcript hash written in per call. Used
 * synchronously only (shared scratch).
 */
interface ConfirmationMessages {
  readonly h: HmacScratch;
  readonly extract: Buffer;
  readonly expand: Buffer;
  /** Offset of the transcript hash in `expand`. */
  readonly contextAt: number;
}

const messages = new Map<string, ConfirmationMessages>();

function messagesFor(hash: HashName, label: string): ConfirmationMessages {
  const key = `${hash} ${label}`;
  let m = messages.get(key);
  if (m === undefined) {
    const h = hmacScratch(hash);
    const hkdfLabel = encodeHkdfLabel(ECH_CONFIRMATION_LENGTH, label, new Uint8Array(hashLength(hash)));
    m = {
      h,
      extract: h.buffer([new Uint8Array(RANDOM_LENGTH)]),
      expand: h.buffer([hkdfLabel, Uint8Array.of(1)]),
      contextAt: h.block + hkdfLabel.length - hashLength(hash),
    };
    messages.set(key, m);
  }
  return m;
}

function confirmation(hash: HashName, innerRandom: Uint8Array, label: string, transcriptHash: Uint8Array): Uint8Array {
  if (innerRandom.length !== RANDOM_LENGTH || transcriptHash.length !== hashLength(hash)) {
    // Not a TLS ClientHello.random or transcript hash: the general HKDF path.
    const prk = hkdfExtract(hash, new Uint8Array(hashLength(hash)), innerRandom);
    return hkdfExpandLabel(hash, prk, label, transcriptHash, ECH_CONFIRMATION_LENGTH);
  }
  const { h, extract, expand, contextAt } = messagesFor(hash, label);
  // HKDF-Extract(0, ClientHelloInner.random), where "0" is Hash.length zero
  // bytes: as an HMAC key, the same as an empty one (both pad to a block of zeros).
  extract.set(innerRandom, h.block);
  h.setKey(EMPTY);
  const prk = h.mac(extract);
  // HKDF-Expand-Label(prk, label, transcript hash, 8) = the first 8 bytes of
  // T(1) = HMAC(prk, HkdfLabel || 0x01) (RFC 5869 §2.3; 8 <= Hash.length).
  expand.set(transcriptHash, contextAt);
  h.setKey(prk);
  const t = h.mac(expand);
  const out = new Uint8Array(ECH_CONFIRMATION_LENGTH);
  for (let i = 0; i < ECH_CONFIRMATION_LENGTH; i++) out[i] = t.charCodeAt(i);
  return out;
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
