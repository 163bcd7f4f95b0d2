/**
 * HPKE (RFC 9180), base mode only, as ECH uses it (RFC 9849 §6.1, §7.1):
 * `SetupBaseR(enc, skR, "tls ech" || 0x00 || ECHConfig)` then `Open(aad, ct)`
 * once, or twice after a HelloRetryRequest (sequence 0 then 1).
 *
 * The native path runs on `node:crypto`, synchronously: the KEM in `kem.ts`,
 * the key schedule and the AEAD here. Everything that depends only on the
 * suite or on `info` (labels, `psk_id_hash`, `info_hash`, the whole
 * `key_schedule_context`) is computed once and cached, so a recipient setup
 * costs one ECDH, five HMACs and one AEAD open.
 *
 * {@link createRecipientContext} is the one place that picks the path per
 * suite: native where {@link nativeSupported} says so, hpke-js for the KEM
 * otherwise. hpke-js is also the reference implementation of the cross-check
 * tests and the baseline of the benchmark.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, createHmac, type webcrypto } from 'node:crypto';
import { AeadId, CipherSuite, KdfId, KemId } from 'hpke-js';
import { DecryptError, EchError, InvalidArgumentError } from '../wire/alert.js';
import { decapBinary, KemPrivateKey, kemEncap, loadKemPrivateKey, nativeKemSupported } from './kem.js';
import { hmacScratch, type HmacScratch } from './hpke-hmac.js';

export { AeadId, KdfId, KemId };
export {
  generateKemKeyPair,
  kemEncap,
  kemPrivateKeyFromPkcs8,
  kemPrivateKeyToPkcs8,
  kemPublicKey,
  KemPrivateKey,
  loadKemPrivateKey,
  nativeKemSupported,
  PqKemId,
  type KemKeyPair,
} from './kem.js';

/**
 * An HPKE cipher suite: KEM, KDF and AEAD identifiers as on the wire
 * (values of {@link KemId}, {@link KdfId}, {@link AeadId}). In ECH the KEM
 * comes from the ECHConfig's `HpkeKeyConfig`, the KDF/AEAD pair from the
 * client's `ECHClientHello.cipher_suite`.
 * @group Crypto
 * @example
 * ```ts
 * const suite: HpkeSuite = { kem: config.kemId, kdf: ech.cipherSuite.kdfId, aead: ech.cipherSuite.aeadId };
 * ```
 */
export interface HpkeSuite {
  readonly kem: number;
  readonly kdf: number;
  readonly aead: number;
}

type AeadName = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';

const KDFS: ReadonlyMap<number, { hash: 'sha256' | 'sha384' | 'sha512'; nh: number }> = new Map([
  [KdfId.HkdfSha256, { hash: 'sha256', nh: 32 }],
  [KdfId.HkdfSha384, { hash: 'sha384', nh: 48 }],
  [KdfId.HkdfSha512, { hash: 'sha512', nh: 64 }],
]);

const AEADS: ReadonlyMap<number, { cipher: AeadName; nk: number; nn: number }> = new Map([
  [AeadId.Aes128Gcm, { cipher: 'aes-128-gcm', nk: 16, nn: 12 }],
  [AeadId.Aes256Gcm, { cipher: 'aes-256-gcm', nk: 32, nn: 12 }],
  [AeadId.Chacha20Poly1305, { cipher: 'chacha20-poly1305', nk: 32, nn: 12 }],
]);

const TAG_LENGTH = 16;
/** The tag of the ciphertext being opened, copied out of it (see RecipientContext.open); tags are public. */
const TAG = Buffer.alloc(TAG_LENGTH);
const V1 = Buffer.from('HPKE-v1', 'latin1');

/** Per-suite constants of the key schedule (RFC 9180 §5.1). */
interface SuiteParams {
  readonly suite: HpkeSuite;
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  readonly cipher: AeadName;
  readonly nk: number;
  readonly nn: number;
  /** "HPKE-v1" || suite_id: the prefix of every labelled ikm. */
  readonly labelPrefix: Buffer;
  /** Nh zero bytes: the HMAC key of an empty salt. */
  readonly zeroSalt: Buffer;
  /** HMAC state of the KDF's hash. */
  readonly hmac: HmacScratch;
  /** HMAC headroom || "HPKE-v1" || suite_id || "secret" (|| psk, empty in base mode). */
  readonly secretMsg: Buffer;
  /** I2OSP(Nk, 2) || "HPKE-v1" || suite_id || "key". */
  readonly keyInfoPrefix: Buffer;
  /** I2OSP(Nn, 2) || "HPKE-v1" || suite_id || "base_nonce". */
  readonly nonceInfoPrefix: Buffer;
  /** mode_base || psk_id_hash, the first part of key_schedule_context. */
  readonly contextPrefix: Buffer;
}

const suiteCache = new Map<number, SuiteParams>();

function suiteKey(s: HpkeSuite): number {
  return s.kem * 0x100000000 + s.kdf * 0x10000 + s.aead;
}

function hexId(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

function unsupported(what: string): EchError {
  return new EchError('ERR_UNSUPPORTED', 'internal_error', what);
}

/** Key-schedule constants for a suite whose KDF and AEAD node:crypto has (any KEM id). */
function symmetricParams(suite: HpkeSuite): SuiteParams {
  const k = suiteKey(suite);
  const cached = suiteCache.get(k);
  if (cached !== undefined && cached.suite.kdf === suite.kdf && cached.suite.aead === suite.aead) return cached;
  const kdf = KDFS.get(suite.kdf);
  const aead = AEADS.get(suite.aead);
  if (kdf === undefined) throw unsupported(`HPKE KDF ${hexId(suite.kdf)} is not supported`);
  if (aead === undefined) throw unsupported(`HPKE AEAD ${hexId(suite.aead)} is not supported`);
  if (!Number.isInteger(suite.kem) || suite.kem < 0 || suite.kem > 0xffff) throw new InvalidArgumentError('KEM id must be a u16');
  // suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)
  const suiteId = Buffer.from([0x48, 0x50, 0x4b, 0x45, suite.kem >> 8, suite.kem & 0xff, 0, suite.kdf, 0, suite.aead]);
  const labelPrefix = Buffer.concat([V1, suiteId]);
  const zeroSalt = Buffer.alloc(kdf.nh);
  const lab = (s: string): Buffer => Buffer.from(s, 'latin1');
  const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
  // psk_id_hash = LabeledExtract("", "psk_id_hash", psk_id = "")
  const pskIdHash = createHmac(kdf.hash, zeroSalt).update(labelPrefix).update(lab('psk_id_hash')).digest();
  const params: SuiteParams = {
    suite: { kem: suite.kem, kdf: suite.kdf, aead: suite.aead },
    hash: kdf.hash,
    cipher: aead.cipher,
    nk: aead.nk,
    nn: aead.nn,
    labelPrefix,
    zeroSalt,
    hmac: hmacScratch(kdf.hash),
    secretMsg: hmacScratch(kdf.hash).buffer([labelPrefix, lab('secret')]),
    keyInfoPrefix: Buffer.concat([u16(aead.nk), labelPrefix, lab('key')]),
    nonceInfoPrefix: Buffer.concat([u16(aead.nn), labelPrefix, lab('base_nonce')]),
    contextPrefix: Buffer.concat([Buffer.from([0x00]), pskIdHash]),
  };
  suiteCache.set(k, params);
  return params;
}

/**
 * Whether `suite` runs entirely on `node:crypto` (synchronous
 * {@link setupBaseRecipient} / {@link setupBaseSender}). KEMs: 0x0010, 0x0011,
 * 0x0020, 0x0041 (ML-KEM-768), 0x647a (X-Wing); KDFs: 1, 2, 3; AEADs: 1, 2, 3.
 * @group Crypto
 * @example
 * ```ts
 * nativeSupported({ kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm }); // true
 * ```
 */
export function nativeSupported(suite: HpkeSuite): boolean {
  return nativeKemSupported(suite.kem) && KDFS.has(suite.kdf) && AEADS.has(suite.aead);
}

function nativeParams(suite: HpkeSuite): SuiteParams {
  if (!nativeKemSupported(suite.kem)) throw unsupported(`HPKE KEM ${hexId(suite.kem)} has no native implementation`);
  return symmetricParams(suite);
}

function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The `info`-dependent half of the key schedule, computed once per suite and
 * `info`: `key_schedule_context = mode || psk_id_hash || info_hash` and the
 * two LabeledExpand inputs built from it. In ECH, `info` is
 * `"tls ech" || 0x00 || ECHConfig`, constant per config, so the key set can
 * prepare it when a config is loaded.
 *
 * Create it with {@link prepareInfo}.
 * @group Crypto
 * @example
 * ```ts
 * const prepared = prepareInfo(suite, info);
 * const ctx = setupBaseRecipient(suite, key, enc, prepared);
 * ```
 */
export class PreparedInfo {
  /** The suite this was prepared for. */
  readonly suite: HpkeSuite;
  /** A copy of `info`. */
  readonly info: Uint8Array;
  /** @internal */
  readonly params: SuiteParams;
  /** @internal HMAC headroom || keyInfoPrefix || key_schedule_context || 0x01 (HKDF-Expand, one block). */
  readonly keyMsg: Buffer;
  /** @internal HMAC headroom || nonceInfoPrefix || key_schedule_context || 0x01. */
  readonly nonceMsg: Buffer;

  /** @internal Use {@link prepareInfo}. */
  constructor(params: SuiteParams, info: Uint8Array) {
    this.params = params;
    this.suite = params.suite;
    this.info = Uint8Array.from(info);
    // info_hash = LabeledExtract("", "info_hash", info)
    const infoHash = createHmac(params.hash, params.zeroSalt)
      .update(params.labelPrefix)
      .update('info_hash', 'latin1')
      .update(info)
      .digest();
    const ksc = Buffer.concat([params.contextPrefix, infoHash]);
    const one = Uint8Array.of(1);
    this.keyMsg = params.hmac.buffer([params.keyInfoPrefix, ksc, one]);
    this.nonceMsg = params.hmac.buffer([params.nonceInfoPrefix, ksc, one]);
  }
}

/** Identity cache: the same `info` array object (e.g. held by a loaded ECHConfig) skips even the comparison of bytes' re-hash. */
const infoByObject = new WeakMap<Uint8Array, PreparedInfo[]>();
/** Content cache for callers that rebuild `info` per connection; bounded, oldest evicted. */
const infoByContent = new Map<string, PreparedInfo>();
const INFO_CACHE_MAX = 256;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/**
 * Prepares (or fetches from a cache) the `info`-dependent part of the key
 * schedule for `suite`. Caches by array identity, then by content (bounded).
 * @group Crypto
 * @throws EchError `ERR_UNSUPPORTED` if the KDF or AEAD is not supported.
 * @example
 * ```ts
 * const info = Buffer.concat([Buffer.from('tls ech\0', 'latin1'), config.raw]);
 * const prepared = prepareInfo({ kem: 0x20, kdf: 1, aead: 1 }, info);
 * ```
 */
export function prepareInfo(suite: HpkeSuite, info: Uint8Array): PreparedInfo {
  const params = symmetricParams(suite);
  const list = infoByObject.get(info);
  if (list !== undefined) {
    for (const p of list) if (p.params === params && sameBytes(p.info, info)) return p;
  }
  const contentKey = `${suiteKey(suite)}:${Buffer.from(info.buffer, info.byteOffset, info.byteLength).toString('latin1')}`;
  let prepared = infoByContent.get(contentKey);
  if (prepared === undefined) {
    prepared = new PreparedInfo(params, info);
    if (infoByContent.size >= INFO_CACHE_MAX) {
      const oldest = infoByContent.keys().next();
      if (oldest.done !== true) infoByContent.delete(oldest.value);
    }
    infoByContent.set(contentKey, prepared);
  }
  // A list per array object holds one entry per suite; an array mutated again
  // and again between calls would grow it, so it is reset past a bound.
  if (list !== undefined && list.length < 32) list.push(prepared);
  else infoByObject.set(info, [prepared]);
  return prepared;
}

function resolveInfo(params: SuiteParams, info: Uint8Array | PreparedInfo): PreparedInfo {
  if (info instanceof PreparedInfo) {
    if (info.params !== params) throw new InvalidArgumentError('PreparedInfo was made for another suite');
    return info;
  }
  return prepareInfo(params.suite, info);
}

/**
 * The AEAD key material of an HPKE context.
 * @group Crypto
 * @example
 * ```ts
 * const { key, baseNonce }: HpkeKeyMaterial = keyScheduleBase(suite, sharedSecret, info);
 * ```
 */
export interface HpkeKeyMaterial {
  /** Nk bytes. */
  readonly key: Uint8Array;
  /** Nn bytes. */
  readonly baseNonce: Uint8Array;
}

function keySchedule(params: SuiteParams, sharedSecret: Uint8Array | string, prepared: PreparedInfo): { key: Buffer; baseNonce: Buffer } {
  const h = params.hmac;
  // secret = LabeledExtract(shared_secret, "secret", psk = "")
  h.setKey(sharedSecret);
  const secret = h.mac(params.secretMsg);
  // key = LabeledExpand(secret, "key", ksc, Nk); base_nonce = LabeledExpand(secret, "base_nonce", ksc, Nn).
  // Nk, Nn <= Nh, so each Expand is T(1) = HMAC(secret, info || 0x01), truncated.
  h.setKey(secret);
  const key = h.mac(prepared.keyMsg);
  const nonce = h.mac(prepared.nonceMsg);
  const out = Buffer.allocUnsafe(params.nk + params.nn);
  out.write(key, 0, params.nk, 'binary');
  out.write(nonce, params.nk, params.nn, 'binary');
  return { key: out.subarray(0, params.nk), baseNonce: out.subarray(params.nk) };
}

/**
 * RFC 9180 §5.1 KeySchedule in base mode (no PSK): derives the AEAD `key`
 * and `base_nonce` from a KEM `shared_secret`. The exporter secret is not
 * derived (ECH does not use it).
 * @group Crypto
 * @throws EchError `ERR_UNSUPPORTED` if the KDF or AEAD is not supported.
 * @example
 * ```ts
 * // keyless mode: the key server returned sharedSecret
 * const ctx = new RecipientContext(suite, keyScheduleBase(suite, sharedSecret, info));
 * ```
 */
export function keyScheduleBase(suite: HpkeSuite, sharedSecret: Uint8Array, info: Uint8Array | PreparedInfo): HpkeKeyMaterial {
  const params = symmetricParams(suite);
  const { key, baseNonce } = keySchedule(params, sharedSecret, resolveInfo(params, info));
  return { key: view(key), baseNonce: view(baseNonce) };
}

/** Largest sequence number used; RFC 9180 allows 2^96-1, a JS number safely counts to 2^53-1. */
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

function computeNonce(baseNonce: Buffer, seq: number): Buffer {
  if (seq === 0) return baseNonce; // node:crypto copies the IV; nothing writes to it
  const nonce = Buffer.from(baseNonce); // copy
  let s = seq;
  for (let i = nonce.length - 1; s > 0; i--) {
    nonce[i] = (nonce[i] as number) ^ s % 256;
    s = Math.floor(s / 256);
  }
  return nonce;
}

function checkMaterial(params: SuiteParams, m: HpkeKeyMaterial): { key: Buffer; baseNonce: Buffer } {
  if (m.key.length !== params.nk || m.baseNonce.length !== params.nn) {
    throw new InvalidArgumentError(`key must be ${params.nk} bytes and base nonce ${params.nn} bytes for ${params.cipher}`);
  }
  return { key: Buffer.from(m.key), baseNonce: Buffer.from(m.baseNonce) }; // copies: the caller may reuse its arrays
}

/** Key material made by {@link recipientContext} for the constructor to keep without copying. */
let adopted: { key: Buffer; baseNonce: Buffer } | undefined;

/** A recipient context on fresh key-schedule output, which nobody else holds. */
function recipientContext(params: SuiteParams, sharedSecret: Uint8Array | string, prepared: PreparedInfo): RecipientContext {
  const m = keySchedule(params, sharedSecret, prepared);
  adopted = m;
  try {
    return new RecipientContext(params.suite, m);
  } finally {
    adopted = undefined;
  }
}

/**
 * The recipient side of an HPKE base-mode context (RFC 9180 §5.2): opens
 * ciphertexts in order. In ECH the server keeps it across a
 * HelloRetryRequest and opens the second ClientHelloOuter's payload with
 * sequence number 1 (RFC 9849 §7.1.1).
 *
 * Usually created by {@link setupBaseRecipient} or
 * {@link createRecipientContext}; construct it directly from
 * {@link keyScheduleBase} output when decapsulation ran elsewhere (keyless).
 * @group Crypto
 * @example
 * ```ts
 * const ctx = setupBaseRecipient(suite, key, enc, info);
 * const inner = ctx.open(outerAad, payload);   // seq 0
 * const inner2 = ctx.open(outerAad2, payload2); // seq 1, after HRR
 * ```
 */
export class RecipientContext {
  /** The suite of this context. */
  readonly suite: HpkeSuite;
  readonly #cipher: AeadName;
  readonly #key: Buffer;
  readonly #baseNonce: Buffer;
  #seq = 0;

  /**
   * @param suite the HPKE suite (only KDF and AEAD matter here).
   * @param material `key` and `baseNonce` from {@link keyScheduleBase}.
   * @throws InvalidArgumentError if the lengths do not match the AEAD.
   */
  constructor(suite: HpkeSuite, material: HpkeKeyMaterial) {
    const params = symmetricParams(suite);
    // The key schedule's own fresh buffers (see recipientContext) are kept
    // as they are; a caller's arrays are copied, since it may reuse them.
    const m = material === adopted ? adopted : checkMaterial(params, material);
    this.suite = params.suite;
    this.#cipher = params.cipher;
    this.#key = m.key;
    this.#baseNonce = m.baseNonce;
  }

  /** Sequence number of the next {@link RecipientContext.open}: the count of successful opens so far. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Context.Open(aad, ct) (RFC 9180 §5.2). The sequence number advances only
   * on success, so a failed open leaves the context usable.
   * @throws DecryptError (alert `decrypt_error`) if authentication fails.
   * @example
   * ```ts
   * const encodedInner = ctx.open(clientHelloOuterAad, ech.payload);
   * ```
   */
  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length < TAG_LENGTH) throw new DecryptError('HPKE ciphertext shorter than the AEAD tag');
    if (this.#seq >= MAX_SEQ) throw new DecryptError('HPKE message limit reached');
    const nonce = computeNonce(this.#baseNonce, this.#seq);
    const split = ciphertext.length - TAG_LENGTH;
    let pt: Buffer;
    try {
      // NOTE: no authTagLength option (it costs ~0.4 µs of option validation):
      // the tag given to setAuthTag is always exactly TAG_LENGTH bytes, so a
      // truncated-tag forgery is impossible; ChaCha20-Poly1305 defaults to 16.
      const d = createDecipheriv(this.#cipher as 'aes-128-gcm', this.#key, nonce);
      d.setAAD(aad);
      // The tag through a shared buffer (setAuthTag copies it at once), not a view.
      for (let i = 0; i < TAG_LENGTH; i++) TAG[i] = ciphertext[split + i]!;
      d.setAuthTag(TAG);
      pt = d.update(ciphertext.subarray(0, split));
      d.final();
    } catch (cause) {
      throw new DecryptError('HPKE open failed', { cause });
    }
    this.#seq++;
    return view(pt);
  }
}

/**
 * The sender side of an HPKE base-mode context: `enc` to send, and
 * {@link SenderContext.seal} in order. Created by {@link setupBaseSender}.
 * @group Crypto
 * @example
 * ```ts
 * const sender = setupBaseSender(suite, config.publicKey, info);
 * const payload = sender.seal(outerAad, encodedInner);
 * ```
 */
export class SenderContext {
  /** The suite of this context. */
  readonly suite: HpkeSuite;
  /** The encapsulated key (ECHClientHello.enc). */
  readonly enc: Uint8Array;
  readonly #cipher: AeadName;
  readonly #key: Buffer;
  readonly #baseNonce: Buffer;
  #seq = 0;

  /** @internal Use {@link setupBaseSender}. */
  constructor(suite: HpkeSuite, enc: Uint8Array, material: HpkeKeyMaterial) {
    const params = symmetricParams(suite);
    const m = checkMaterial(params, material);
    this.suite = params.suite;
    this.enc = enc;
    this.#cipher = params.cipher;
    this.#key = m.key;
    this.#baseNonce = m.baseNonce;
    this.seal = this.seal.bind(this); // so `const { enc, seal } = setupBaseSender(...)` works
  }

  /** Sequence number of the next {@link SenderContext.seal}. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Context.Seal(aad, pt) (RFC 9180 §5.2): ciphertext || 16-byte tag.
   * @example
   * ```ts
   * const payload = sender.seal(aad, plaintext);
   * ```
   */
  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.#seq >= MAX_SEQ) throw new EchError('ERR_INTERNAL', 'internal_error', 'HPKE message limit reached');
    const c = createCipheriv(this.#cipher as 'aes-128-gcm', this.#key, computeNonce(this.#baseNonce, this.#seq), {
      authTagLength: TAG_LENGTH,
    });
    c.setAAD(aad);
    const out = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
    this.#seq++;
    return view(out);
  }
}

/**
 * SetupBaseR(enc, skR, info) on `node:crypto`, synchronous (RFC 9180 §5.1.1).
 * @group Crypto
 * @throws DecryptError for a bad `enc`; EchError `ERR_UNSUPPORTED` if the
 * suite is not native; InvalidArgumentError if `key` is for another KEM.
 * @example
 * ```ts
 * const key = loadKemPrivateKey(KemId.DhkemX25519HkdfSha256, raw);
 * const ctx = setupBaseRecipient({ kem: 0x20, kdf: 1, aead: 1 }, key, enc, info);
 * const pt = ctx.open(aad, ct);
 * ```
 */
export function setupBaseRecipient(
  suite: HpkeSuite,
  key: KemPrivateKey,
  enc: Uint8Array,
  info: Uint8Array | PreparedInfo,
): RecipientContext {
  const params = nativeParams(suite);
  if (key.kem !== suite.kem) throw new InvalidArgumentError(`key is for KEM ${hexId(key.kem)}, suite wants ${hexId(suite.kem)}`);
  const prepared = resolveInfo(params, info);
  return recipientContext(params, decapBinary(key, enc), prepared);
}

/**
 * HPKE KeySchedule(mode_base, shared_secret, info) and a recipient context
 * on it (RFC 9180 §5.1), from a shared secret decapsulated elsewhere (a
 * keyless key server): {@link keyScheduleBase} and the
 * {@link RecipientContext} constructor in one, without copying the key
 * material between them.
 * @group Crypto
 * @throws EchError `ERR_UNSUPPORTED` if the KDF or AEAD is not supported;
 * InvalidArgumentError if `info` was prepared for another suite.
 * @example
 * ```ts
 * const ctx = recipientFromSharedSecret(suite, await keyServer.decap(enc), info);
 * const pt = ctx.open(aad, ct);
 * ```
 */
export function recipientFromSharedSecret(suite: HpkeSuite, sharedSecret: Uint8Array, info: Uint8Array | PreparedInfo): RecipientContext {
  const params = symmetricParams(suite);
  return recipientContext(params, sharedSecret, resolveInfo(params, info));
}

/**
 * SetupBaseS(pkR, info) on `node:crypto` (RFC 9180 §5.1.1): a fresh
 * ephemeral key, `enc`, and a sealing context.
 * @group Crypto
 * @throws InvalidArgumentError for a bad public key; EchError
 * `ERR_UNSUPPORTED` if the suite is not native.
 * @example
 * ```ts
 * const sender = setupBaseSender(suite, config.publicKey, info);
 * const payload = sender.seal(outerAad, encodedInner); // send sender.enc with it
 * ```
 */
export function setupBaseSender(suite: HpkeSuite, recipientPublicKey: Uint8Array, info: Uint8Array | PreparedInfo): SenderContext {
  const params = nativeParams(suite);
  const prepared = resolveInfo(params, info);
  const { enc, sharedSecret } = kemEncap(suite.kem, recipientPublicKey);
  return new SenderContext(params.suite, enc, keySchedule(params, sharedSecret, prepared));
}

/**
 * A raw private key for {@link createRecipientContext}, for any KEM (the
 * hpke-js path takes RFC 9180 SerializePrivateKey bytes).
 * @group Crypto
 * @example
 * ```ts
 * const raw: RawKemPrivateKey = { kem: KemId.DhkemX448HkdfSha512, privateKey: skBytes };
 * const ctx = await createRecipientContext(suite, raw, enc, info);
 * ```
 */
export interface RawKemPrivateKey {
  readonly kem: number;
  readonly privateKey: Uint8Array;
}

const loadedByRaw = new WeakMap<RawKemPrivateKey, KemPrivateKey>();
const hpkeJsKeys = new WeakMap<RawKemPrivateKey, Promise<webcrypto.CryptoKey>>();

async function hpkeJsDecap(suite: HpkeSuite, raw: RawKemPrivateKey, enc: Uint8Array): Promise<Uint8Array> {
  let cs: CipherSuite;
  try {
    cs = new CipherSuite({ kem: suite.kem as KemId, kdf: suite.kdf as KdfId, aead: suite.aead as AeadId });
  } catch (cause) {
    throw new EchError('ERR_UNSUPPORTED', 'internal_error', `HPKE KEM ${hexId(suite.kem)} is not supported`, { cause });
  }
  let pending = hpkeJsKeys.get(raw);
  if (pending === undefined) {
    pending = cs.kem.deserializePrivateKey(raw.privateKey);
    hpkeJsKeys.set(raw, pending);
  }
  let privateKey: webcrypto.CryptoKey;
  try {
    privateKey = await pending;
  } catch (cause) {
    hpkeJsKeys.delete(raw);
    throw new InvalidArgumentError(`not a valid private key for KEM ${hexId(suite.kem)}`, { cause });
  }
  try {
    return new Uint8Array(await cs.kem.decap({ recipientKey: privateKey, enc }));
  } catch (cause) {
    throw new DecryptError('HPKE decapsulation failed', { cause });
  }
}

/**
 * SetupBaseR for any suite, choosing the implementation in one place: the
 * synchronous `node:crypto` path when {@link nativeSupported} (the returned
 * promise is already settled), otherwise hpke-js decapsulates and the key
 * schedule and AEAD run natively (every RFC 9180 KDF and AEAD is native).
 * @group Crypto
 * @throws DecryptError for a bad `enc`; EchError `ERR_UNSUPPORTED` for a KEM
 * neither path has, or a KDF/AEAD outside RFC 9180.
 * @example
 * ```ts
 * const ctx = await createRecipientContext(suite, { kem: suite.kem, privateKey: raw }, enc, info);
 * const pt = ctx.open(aad, ct);
 * ```
 */
export async function createRecipientContext(
  suite: HpkeSuite,
  key: KemPrivateKey | RawKemPrivateKey,
  enc: Uint8Array,
  info: Uint8Array | PreparedInfo,
): Promise<RecipientContext> {
  if (key.kem !== suite.kem) throw new InvalidArgumentError(`key is for KEM ${hexId(key.kem)}, suite wants ${hexId(suite.kem)}`);
  if (nativeSupported(suite)) {
    let loaded: KemPrivateKey;
    if (key instanceof KemPrivateKey) {
      loaded = key;
    } else {
      const cached = loadedByRaw.get(key);
      loaded = cached ?? loadKemPrivateKey(key.kem, key.privateKey);
      if (cached === undefined) loadedByRaw.set(key, loaded);
    }
    return setupBaseRecipient(suite, loaded, enc, info);
  }
  const params = symmetricParams(suite); // throws for a KDF/AEAD outside RFC 9180
  if (key instanceof KemPrivateKey) throw new InvalidArgumentError('a loaded KemPrivateKey is native-only');
  const prepared = resolveInfo(params, info);
  const sharedSecret = await hpkeJsDecap(suite, key, enc);
  return new RecipientContext(params.suite, keySchedule(params, sharedSecret, prepared));
}
