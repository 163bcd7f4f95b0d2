/**
 * The server's ECH key set: several keys at once, lookup by config_id and
 * cipher suite for the decryption core, and the retry list sent in
 * EncryptedExtensions when ECH is rejected (RFC 9849 §7.1).
 *
 * @module
 */
import { randomInt } from 'node:crypto';
import { InvalidArgumentError } from '../wire/alert.js';
import { equalBytes } from '../wire/bytes.js';
import { type EchConfig, type HpkeSymmetricCipherSuite, encodeEchConfigList } from '../ech/config.js';
import { type EchKeyCandidate, type EchKeyLookup, type EchOpener, echHpkeInfo } from '../ech/decrypt.js';
import { openerFromSharedSecret } from './opener.js';
import { PreparedInfo, nativeSupported, prepareInfo, setupBaseRecipient } from '../crypto/hpke.js';
import { KemPrivateKey } from '../crypto/kem.js';

/**
 * The private half of an ECH key, as the key set uses it: only HPKE
 * decapsulation. A local key ({@link ech-server/hpke!KemPrivateKey}) and a keyless key-server
 * client implement it alike, so the handshake cannot tell them apart.
 * @group Keys
 */
export interface EchPrivateKey {
  /** HPKE KEM identifier. */
  readonly kem: number;
  /** Serialized public key; must equal the ECHConfig's public_key. */
  readonly publicKey: Uint8Array;
  /** RFC 9180 `Decap(enc, skR)`: the KEM shared secret. */
  decap(enc: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * One ECH key in a key set.
 * @group Keys
 */
export interface EchKey {
  /** The ECHConfig published for this key. */
  config: EchConfig;
  /** The private key (local or remote). */
  privateKey: EchPrivateKey;
  /**
   * Whether this config is sent in retry_configs (and published). Keys kept
   * only so that clients with a cached config still decrypt have `false`.
   */
  retry: boolean;
  /** Where the key came from (a file path), for messages; never secret. */
  source?: string;
}

const suiteMatches = (c: EchConfig, s: HpkeSymmetricCipherSuite) =>
  c.cipherSuites.some((x) => x.kdfId === s.kdfId && x.aeadId === s.aeadId);

/**
 * A set of ECH keys. Implements the decryption core's {@link EchKeyLookup}.
 * @group Keys
 * @example
 * ```ts
 * const keys = new EchKeySet([await generateEchKey({ publicName: 'cover.example' })]);
 * const result = await decryptClientHello(clientHello, keys);
 * const retry = keys.retryConfigList();
 * ```
 */
export class EchKeySet implements EchKeyLookup {
  readonly #keys: EchKey[] = [];
  readonly #candidates = new Map<EchKey, EchKeyCandidate>();
  #byId = new Map<number, EchKey[]>();

  constructor(keys: Iterable<EchKey> = []) {
    for (const k of keys) this.add(k);
  }

  /** Number of keys. */
  get size(): number {
    return this.#keys.length;
  }

  /** The keys, in the order added (retry preference order). */
  keys(): readonly EchKey[] {
    return this.#keys;
  }

  /**
   * Add a key. Its private key must match the config's public key and KEM;
   * a config_id already in use by another key is refused (RFC 9849 §4.1:
   * "the client-facing server SHOULD allocate distinct config_id values for
   * each ECHConfig in its known set").
   */
  add(key: EchKey): this {
    if (key.privateKey.kem !== key.config.kemId) {
      throw new InvalidArgumentError(`key ${key.source ?? ''} has KEM 0x${key.privateKey.kem.toString(16)} but its ECHConfig says 0x${key.config.kemId.toString(16)}`);
    }
    if (!equalBytes(key.privateKey.publicKey, key.config.publicKey)) {
      throw new InvalidArgumentError(`the private key ${key.source ? `in ${key.source} ` : ''}does not match its ECHConfig's public key`);
    }
    if (this.#byId.has(key.config.configId)) {
      throw new InvalidArgumentError(`config_id ${key.config.configId} is already used by another key in this set`);
    }
    this.#keys.push(key);
    this.#byId.set(key.config.configId, [key]);
    return this;
  }

  /** Remove the key with this config_id; returns whether one was removed. */
  remove(configId: number): boolean {
    const i = this.#keys.findIndex((k) => k.config.configId === configId);
    if (i < 0) return false;
    const [k] = this.#keys.splice(i, 1);
    this.#candidates.delete(k!);
    this.#byId.delete(configId);
    return true;
  }

  /** The key with this config_id. */
  get(configId: number): EchKey | undefined {
    return this.#byId.get(configId)?.[0];
  }

  /**
   * A random config_id not used by any key in the set (rejection sampling,
   * RFC 9849 §4.1). Throws when all 256 are taken.
   */
  unusedConfigId(): number {
    if (this.#byId.size >= 256) throw new InvalidArgumentError('all 256 config_id values are in use');
    for (;;) {
      const id = randomInt(256);
      if (!this.#byId.has(id)) return id;
    }
  }

  #candidate(k: EchKey): EchKeyCandidate {
    let c = this.#candidates.get(k);
    if (!c) {
      const info = echHpkeInfo(k.config);
      const pk = k.privateKey;
      // The info-dependent half of the HPKE key schedule, once per suite.
      const prepared = new Map<number, PreparedInfo | Uint8Array>();
      const infoFor = (suite: HpkeSymmetricCipherSuite): PreparedInfo | Uint8Array => {
        const key = (suite.kdfId << 16) | suite.aeadId;
        let p = prepared.get(key);
        if (!p) {
          const s = { kem: pk.kem, kdf: suite.kdfId, aead: suite.aeadId };
          p = nativeSupported(s) ? prepareInfo(s, info) : info;
          prepared.set(key, p);
        }
        return p;
      };
      c = {
        config: k.config,
        setupRecipient(enc: Uint8Array, suite: HpkeSymmetricCipherSuite): EchOpener | Promise<EchOpener> {
          const suiteInfo = infoFor(suite);
          // A local key with a native suite: decapsulation and key schedule
          // in one, the shared secret never leaves its binary string.
          if (pk instanceof KemPrivateKey && suiteInfo instanceof PreparedInfo) return setupBaseRecipient(suiteInfo.suite, pk, enc, suiteInfo);
          const ss = pk.decap(enc);
          if (ss instanceof Uint8Array) return openerFromSharedSecret(pk.kem, suite, ss, suiteInfo);
          return ss.then((s) => openerFromSharedSecret(pk.kem, suite, s, suiteInfo));
        },
      };
      this.#candidates.set(k, c);
    }
    return c;
  }

  /** {@inheritDoc ech-server/ech!EchKeyLookup.candidates} */
  candidates(configId: number, suite: HpkeSymmetricCipherSuite): readonly EchKeyCandidate[] {
    const ks = this.#byId.get(configId);
    if (!ks) return NONE;
    const k = ks[0]!;
    return suiteMatches(k.config, suite) ? [this.#candidate(k)] : NONE;
  }

  /** {@inheritDoc ech-server/ech!EchKeyLookup.allCandidates} */
  allCandidates(suite: HpkeSymmetricCipherSuite): readonly EchKeyCandidate[] {
    return this.#keys.filter((k) => suiteMatches(k.config, suite)).map((k) => this.#candidate(k));
  }

  /** Configs sent as retry_configs, in preference order. */
  retryConfigs(): EchConfig[] {
    return this.#keys.filter((k) => k.retry).map((k) => k.config);
  }

  /**
   * The ECHConfigList for retry_configs and for DNS, or `undefined` when no
   * key is marked for retry.
   */
  retryConfigList(): Uint8Array | undefined {
    const configs = this.retryConfigs();
    return configs.length ? encodeEchConfigList(configs) : undefined;
  }
}

const NONE: readonly EchKeyCandidate[] = Object.freeze([]);
