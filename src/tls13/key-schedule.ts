/**
 * The TLS 1.3 key schedule (RFC 9846 §7.1), traffic key calculation
 * (§7.3), Finished computation (§4.4.4), traffic secret updates (§7.2) and
 * the resumption PSK (§4.6.1). Side-agnostic: the client uses it too.
 *
 * ```
 *             0
 *             |
 *   PSK ->  HKDF-Extract = Early Secret
 *             +-----> Derive-Secret(., "res binder", "") = binder_key
 *             v
 *       Derive-Secret(., "derived", "")
 *             |
 *   (EC)DHE -> HKDF-Extract = Handshake Secret
 *             +-----> Derive-Secret(., "c hs traffic", ClientHello...ServerHello)
 *             +-----> Derive-Secret(., "s hs traffic", ClientHello...ServerHello)
 *             v
 *       Derive-Secret(., "derived", "")
 *             |
 *   0 -> HKDF-Extract = Master Secret
 *             +-----> Derive-Secret(., "c ap traffic", ClientHello...server Finished)
 *             +-----> Derive-Secret(., "s ap traffic", ClientHello...server Finished)
 *             +-----> Derive-Secret(., "exp master", ClientHello...server Finished)
 *             +-----> Derive-Secret(., "res master", ClientHello...client Finished)
 * ```
 *
 * @module
 */
import { deriveSecret, hashBytes, hashLength, hkdfExpandLabel, hkdfExtract, hmac, type HashName } from '../crypto/hkdf.js';
import { InvalidArgumentError } from '../wire/alert.js';
import type { CipherSuiteParams } from './suites.js';

/** The empty HkdfLabel context ("" in §7.1, §7.3, §4.4.4); read only. */
const EMPTY = new Uint8Array(0);

/** HashLen zeros of each hash (§7.1: the IKM without a PSK, and of the Master Secret); read only. */
const ZEROS: { readonly [H in HashName]: Uint8Array } = {
  sha256: new Uint8Array(hashLength('sha256')),
  sha384: new Uint8Array(hashLength('sha384')),
};

/** Transcript-Hash("") of each hash: the context of the "derived" and "res binder" secrets. */
const EMPTY_HASH: { readonly [H in HashName]: Uint8Array } = {
  sha256: hashBytes('sha256', new Uint8Array(0)),
  sha384: hashBytes('sha384', new Uint8Array(0)),
};

/**
 * Without a PSK the Early Secret, HKDF-Extract(0, 0), and its
 * Derive-Secret(., "derived", "") are the same for every handshake of a
 * hash (RFC 9846 §7.1): computed once per hash, on first use, and read only.
 */
const NO_PSK: { [H in HashName]?: { early: Uint8Array; derived: Uint8Array } } = {};

function noPsk(hash: HashName): { early: Uint8Array; derived: Uint8Array } {
  let v = NO_PSK[hash];
  if (!v) {
    const early = hkdfExtract(hash, ZEROS[hash], ZEROS[hash]);
    v = NO_PSK[hash] = { early, derived: deriveSecret(hash, early, 'derived', EMPTY_HASH[hash]) };
  }
  return v;
}

/**
 * Key and IV of one direction's record protection.
 * @group Server
 * @example
 * ```ts
 * const keys: TrafficKeys = trafficKeys(suite, secret);
 * ```
 */
export interface TrafficKeys {
  key: Uint8Array;
  iv: Uint8Array;
}

/**
 * The secrets of one handshake, derived stage by stage.
 * @group Server
 * @example
 * ```ts
 * const ks = new KeySchedule('sha256', psk);
 * const binderKey = ks.resumptionBinderKey();
 * const hs = ks.handshakeSecrets(ecdheShared, transcript.digest());
 * const ap = ks.applicationSecrets(transcript.digest());
 * ```
 */
export class KeySchedule {
  /** Hash of the cipher suite. */
  readonly hash: HashName;
  /** Early Secret = HKDF-Extract(0, PSK or zeros). */
  readonly earlySecret: Uint8Array;
  private handshakeSecret: Uint8Array | undefined;
  private masterSecret: Uint8Array | undefined;
  /** Derive-Secret(Early Secret, "derived", ""), shared when there is no PSK. */
  private readonly earlyDerived: Uint8Array | undefined;

  /** @param psk the resumption PSK, or none for a full handshake */
  constructor(hash: HashName, psk?: Uint8Array) {
    this.hash = hash;
    if (psk) {
      this.earlySecret = hkdfExtract(hash, ZEROS[hash], psk);
      this.earlyDerived = undefined;
    } else {
      const shared = noPsk(hash);
      this.earlySecret = shared.early;
      this.earlyDerived = shared.derived;
    }
  }

  private emptyHash(): Uint8Array {
    return EMPTY_HASH[this.hash];
  }

  /** binder_key for resumption PSKs: Derive-Secret(Early Secret, "res binder", ""). */
  resumptionBinderKey(): Uint8Array {
    return deriveSecret(this.hash, this.earlySecret, 'res binder', this.emptyHash());
  }

  /**
   * Mix in the (EC)DHE shared secret and derive the handshake traffic
   * secrets over Transcript-Hash(ClientHello...ServerHello).
   */
  handshakeSecrets(sharedSecret: Uint8Array, transcriptHash: Uint8Array): { client: Uint8Array; server: Uint8Array } {
    const derived = this.earlyDerived ?? deriveSecret(this.hash, this.earlySecret, 'derived', this.emptyHash());
    this.handshakeSecret = hkdfExtract(this.hash, derived, sharedSecret);
    return {
      client: deriveSecret(this.hash, this.handshakeSecret, 'c hs traffic', transcriptHash),
      server: deriveSecret(this.hash, this.handshakeSecret, 's hs traffic', transcriptHash),
    };
  }

  /**
   * Derive the application traffic secrets and exporter master secret over
   * Transcript-Hash(ClientHello...server Finished).
   */
  applicationSecrets(transcriptHash: Uint8Array): { client: Uint8Array; server: Uint8Array; exporter: Uint8Array } {
    const ap = this.applicationTrafficSecrets(transcriptHash);
    return { client: ap.client, server: ap.server, exporter: this.exporterMasterSecret(transcriptHash) };
  }

  /**
   * The Master Secret and the application traffic secrets alone, over
   * Transcript-Hash(ClientHello...server Finished): the exporter master
   * secret can wait for {@link KeySchedule.exporterMasterSecret} (one HMAC
   * a handshake saves when nothing exports keying material).
   */
  applicationTrafficSecrets(transcriptHash: Uint8Array): { client: Uint8Array; server: Uint8Array } {
    if (!this.handshakeSecret) throw new InvalidArgumentError('handshake secret not derived yet');
    const derived = deriveSecret(this.hash, this.handshakeSecret, 'derived', this.emptyHash());
    this.masterSecret = hkdfExtract(this.hash, derived, ZEROS[this.hash]);
    return {
      client: deriveSecret(this.hash, this.masterSecret, 'c ap traffic', transcriptHash),
      server: deriveSecret(this.hash, this.masterSecret, 's ap traffic', transcriptHash),
    };
  }

  /** exporter_master_secret over Transcript-Hash(ClientHello...server Finished) (RFC 9846 §7.1). */
  exporterMasterSecret(transcriptHash: Uint8Array): Uint8Array {
    if (!this.masterSecret) throw new InvalidArgumentError('master secret not derived yet');
    return deriveSecret(this.hash, this.masterSecret, 'exp master', transcriptHash);
  }

  /** resumption_master_secret over Transcript-Hash(ClientHello...client Finished). */
  resumptionMasterSecret(transcriptHash: Uint8Array): Uint8Array {
    if (!this.masterSecret) throw new InvalidArgumentError('master secret not derived yet');
    return deriveSecret(this.hash, this.masterSecret, 'res master', transcriptHash);
  }
}

/**
 * `[sender]_write_key` / `[sender]_write_iv` from a traffic secret
 * (RFC 9846 §7.3).
 * @group Server
 * @example
 * ```ts
 * const { key, iv } = trafficKeys(suite, serverHandshakeTrafficSecret);
 * ```
 */
export function trafficKeys(suite: CipherSuiteParams, secret: Uint8Array): TrafficKeys {
  return {
    key: hkdfExpandLabel(suite.hash, secret, 'key', EMPTY, suite.keyLength),
    iv: hkdfExpandLabel(suite.hash, secret, 'iv', EMPTY, suite.ivLength),
  };
}

/**
 * application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length)
 * (RFC 9846 §7.2).
 * @group Server
 * @example
 * ```ts
 * readSecret = nextTrafficSecret('sha256', readSecret);
 * ```
 */
export function nextTrafficSecret(hash: HashName, secret: Uint8Array): Uint8Array {
  return hkdfExpandLabel(hash, secret, 'traffic upd', EMPTY, hashLength(hash));
}

/**
 * finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length);
 * verify_data = HMAC(finished_key, transcriptHash) (RFC 9846 §4.4.4).
 * Also computes PSK binders (§4.2.11.2) with the binder key as BaseKey.
 * @group Server
 * @example
 * ```ts
 * const verifyData = finishedVerifyData('sha256', serverHsSecret, transcript.digest());
 * ```
 */
export function finishedVerifyData(hash: HashName, baseKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
  const finishedKey = hkdfExpandLabel(hash, baseKey, 'finished', EMPTY, hashLength(hash));
  return hmac(hash, finishedKey, transcriptHash);
}

/**
 * The PSK for a ticket: HKDF-Expand-Label(resumption_master_secret,
 * "resumption", ticket_nonce, Hash.length) (RFC 9846 §4.6.1).
 * @group Server
 * @example
 * ```ts
 * const psk = resumptionPsk('sha256', rms, nonce);
 * ```
 */
export function resumptionPsk(hash: HashName, resumptionMasterSecret: Uint8Array, nonce: Uint8Array): Uint8Array {
  return hkdfExpandLabel(hash, resumptionMasterSecret, 'resumption', nonce, hashLength(hash));
}

/**
 * TLS-Exporter(label, context_value, key_length) (RFC 9846 §7.5).
 * @group Server
 * @example
 * ```ts
 * const ekm = exportKeyingMaterial('sha256', exporterMasterSecret, 'EXPORTER-test', new Uint8Array(0), 32);
 * ```
 */
export function exportKeyingMaterial(
  hash: HashName,
  exporterMasterSecret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
): Uint8Array {
  const secret = deriveSecret(hash, exporterMasterSecret, label, hashBytes(hash, new Uint8Array(0)));
  return hkdfExpandLabel(hash, secret, 'exporter', hashBytes(hash, context), length);
}
