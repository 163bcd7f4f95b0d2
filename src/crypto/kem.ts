/**
 * DHKEM (RFC 9180 §4.1) on `node:crypto`: key generation, PKCS#8 import and
 * export (the key format of the RFC 9934 PEM file), and a loaded private key
 * that decapsulates.
 *
 * Decapsulation is kept apart from the HPKE key schedule on purpose: in
 * keyless mode the key server runs only {@link KemPrivateKey.decap} and sends
 * back `shared_secret`; the front end runs the key schedule and keeps the
 * context for the second ClientHello after a HelloRetryRequest.
 *
 * Native KEMs: DHKEM(P-256, HKDF-SHA256) 0x0010, DHKEM(P-384, HKDF-SHA384)
 * 0x0011, DHKEM(X25519, HKDF-SHA256) 0x0020, and the post-quantum KEMs of
 * draft-ietf-hpke-pq: ML-KEM-768 0x0041 and X-Wing 0x647a (ML-KEM-768 of
 * `mlkem.ts`: node:crypto on Node ≥ 24, `@noble/post-quantum` before; their
 * shared_secret is the KEM's own, no ExtractAndExpand). Other KEMs go through
 * hpke-js in `hpke.ts` (see `createRecipientContext`).
 *
 * @module
 */
import {
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type ECDH,
  type KeyObject,
} from 'node:crypto';
import { KemId } from 'hpke-js';
import { DecryptError, EchError, InvalidArgumentError } from '../wire/alert.js';
import { hmacScratch, type HmacScratch } from './hpke-hmac.js';
import { MLKEM768, MLKEM768_PKCS8_PREFIX, mlkem768, mlkemSeed } from './mlkem.js';
import { XWING, xwingEncapsulate, xwingFromSeed, xwingSeed } from './xwing.js';
import { generateX25519, generateX25519Raw } from './x25519.js';

/**
 * HPKE KEM ids of the post-quantum KEMs (draft-ietf-hpke-pq): ML-KEM-768
 * 0x0041 and X-Wing 0x647a.
 * @group Crypto
 * @example
 * ```ts
 * generateKemKeyPair(PqKemId.XWing).publicKey.length; // 1216
 * ```
 */
export const PqKemId = { MlKem768: 0x0041, XWing: 0x647a } as const;

/** @internal Static parameters of a post-quantum KEM. */
interface PqKemParams {
  readonly id: number;
  readonly name: string;
  /** Nsk: the private key is the seed (64 bytes d ‖ z for ML-KEM, 32 for X-Wing). */
  readonly nsk: number;
  readonly npk: number;
  readonly nenc: number;
  /** Decapsulator from a seed. */
  fromSeed(seed: Uint8Array): { publicKey: Uint8Array; decapsulate(enc: Uint8Array): Uint8Array };
  encapsulate(pk: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array };
  seed(): Uint8Array;
}

const PQ_KEMS: ReadonlyMap<number, PqKemParams> = new Map<number, PqKemParams>([
  [
    PqKemId.MlKem768,
    {
      id: PqKemId.MlKem768,
      name: 'ML-KEM-768',
      nsk: MLKEM768.seed,
      npk: MLKEM768.encapsulationKey,
      nenc: MLKEM768.ciphertext,
      fromSeed: (seed) => mlkem768().fromSeed(seed),
      encapsulate: (pk) => mlkem768().encapsulate(pk),
      seed: mlkemSeed,
    },
  ],
  [
    PqKemId.XWing,
    {
      id: PqKemId.XWing,
      name: 'X-Wing',
      nsk: XWING.seed,
      npk: XWING.publicKey,
      nenc: XWING.ciphertext,
      fromSeed: (seed) => xwingFromSeed(seed),
      encapsulate: (pk) => xwingEncapsulate(pk),
      seed: xwingSeed,
    },
  ],
]);

/**
 * X-Wing PKCS#8 prefix: id-XWing 1.3.6.1.4.1.62253.25722
 * (draft-connolly-cfrg-xwing-kem), no parameters, privateKey = the 32-byte
 * seed as the OCTET STRING's content.
 */
const XWING_PKCS8_PREFIX = Buffer.from('3034020100300d060b2b0601040183e62d81c87a0420', 'hex');
/** DER of the OIDs (tag, length, value). */
const XWING_OID = Buffer.from('060b2b0601040183e62d81c87a', 'hex');
const MLKEM768_OID = Buffer.from('0609608648016503040402', 'hex');

function pqKeyFromSeed(p: PqKemParams, raw: Uint8Array): ReturnType<PqKemParams['fromSeed']> {
  if (!(raw instanceof Uint8Array) || raw.length !== p.nsk) throw new InvalidArgumentError(`${p.name} private key must be a ${p.nsk}-byte seed`);
  return p.fromSeed(raw);
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  return b.length >= prefix.length && Buffer.from(b.buffer, b.byteOffset, prefix.length).equals(prefix);
}

/**
 * @internal Static parameters of one native DHKEM.
 * @group Crypto
 * @example
 * ```ts
 * const p: KemParams | undefined = nativeKem(0x0020); // p?.npk === 32
 * ```
 */
export interface KemParams {
  readonly id: number;
  readonly name: string;
  readonly hash: 'sha256' | 'sha384';
  /** Nh of the KEM's KDF (= Nsecret for every DHKEM here). */
  readonly nh: number;
  /** Nsk: raw private key length. */
  readonly nsk: number;
  /** Npk = Nenc: serialized public key length. */
  readonly npk: number;
  /** node:crypto curve name for `createECDH`, or undefined for X25519. */
  readonly curve: 'prime256v1' | 'secp384r1' | undefined;
  /** JWK `crv` value. */
  readonly jwkCrv: 'X25519' | 'P-256' | 'P-384';
  /** "HPKE-v1" || "KEM" || I2OSP(kem_id, 2) || "eae_prk": the ikm prefix of LabeledExtract("", "eae_prk", dh). */
  readonly eaePrkPrefix: Buffer;
  /** I2OSP(Nsecret, 2) || "HPKE-v1" || "KEM" || I2OSP(kem_id, 2) || "shared_secret": the info prefix of the LabeledExpand. */
  readonly sharedSecretPrefix: Buffer;
  /** HMAC state of the KEM's hash. */
  readonly hmac: HmacScratch;
}

function kemParams(
  id: number,
  name: string,
  hash: 'sha256' | 'sha384',
  nh: number,
  nsk: number,
  npk: number,
  curve: 'prime256v1' | 'secp384r1' | undefined,
  jwkCrv: 'X25519' | 'P-256' | 'P-384',
): KemParams {
  const suiteId = Buffer.from([0x4b, 0x45, 0x4d, id >> 8, id & 0xff]); // "KEM" || I2OSP(kem_id, 2)
  const v1 = Buffer.from('HPKE-v1', 'latin1');
  return {
    id,
    name,
    hash,
    nh,
    nsk,
    npk,
    curve,
    jwkCrv,
    eaePrkPrefix: Buffer.concat([v1, suiteId, Buffer.from('eae_prk', 'latin1')]),
    sharedSecretPrefix: Buffer.concat([Buffer.from([nh >> 8, nh & 0xff]), v1, suiteId, Buffer.from('shared_secret', 'latin1')]),
    hmac: hmacScratch(hash),
  };
}

const KEMS: ReadonlyMap<number, KemParams> = new Map([
  [KemId.DhkemX25519HkdfSha256, kemParams(KemId.DhkemX25519HkdfSha256, 'DHKEM(X25519, HKDF-SHA256)', 'sha256', 32, 32, 32, undefined, 'X25519')],
  [KemId.DhkemP256HkdfSha256, kemParams(KemId.DhkemP256HkdfSha256, 'DHKEM(P-256, HKDF-SHA256)', 'sha256', 32, 32, 65, 'prime256v1', 'P-256')],
  [KemId.DhkemP384HkdfSha384, kemParams(KemId.DhkemP384HkdfSha384, 'DHKEM(P-384, HKDF-SHA384)', 'sha384', 48, 48, 97, 'secp384r1', 'P-384')],
]);

/**
 * @internal The native parameters of `kem`, or undefined.
 * @group Crypto
 * @example
 * ```ts
 * nativeKem(0x0010)?.name; // 'DHKEM(P-256, HKDF-SHA256)'
 * ```
 */
export function nativeKem(kem: number): KemParams | undefined {
  return KEMS.get(kem);
}

function requireKem(kem: number): KemParams {
  const p = KEMS.get(kem);
  if (p === undefined) {
    throw new EchError('ERR_UNSUPPORTED', 'internal_error', `KEM 0x${kem.toString(16).padStart(4, '0')} has no native implementation`);
  }
  return p;
}

/**
 * Whether `kem` is one of the DHKEMs implemented on `node:crypto`
 * (0x0010 P-256, 0x0011 P-384, 0x0020 X25519) or one of the post-quantum KEMs
 * (0x0041 ML-KEM-768, 0x647a X-Wing).
 * @group Crypto
 * @example
 * ```ts
 * nativeKemSupported(KemId.DhkemX25519HkdfSha256); // true
 * nativeKemSupported(KemId.DhkemX448HkdfSha512);   // false (hpke-js path)
 * ```
 */
export function nativeKemSupported(kem: number): boolean {
  return KEMS.has(kem) || PQ_KEMS.has(kem);
}

/**
 * A KEM key pair in raw form: `privateKey` is the 32-byte X25519 scalar or the
 * big-endian EC scalar (32 bytes for P-256, 48 for P-384); `publicKey` is the
 * 32-byte X25519 u-coordinate or the uncompressed SEC1 point (0x04 || X || Y),
 * i.e. RFC 9180 SerializePublicKey, the form used in ECHConfig.
 * @group Crypto
 * @example
 * ```ts
 * const pair: KemKeyPair = generateKemKeyPair(KemId.DhkemP256HkdfSha256); // publicKey: 65 bytes
 * ```
 */
export interface KemKeyPair {
  readonly kem: number;
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

const base64urlSlice = (Buffer.prototype as unknown as { base64urlSlice?: (this: Uint8Array, start: number, end: number) => string }).base64urlSlice;

function b64u(bytes: Uint8Array): string {
  // Buffer's own base64url slice reads any Uint8Array in place: no Buffer
  // view of `bytes` (a heap object per decapsulation) where it exists.
  if (base64urlSlice !== undefined) return base64urlSlice.call(bytes, 0, bytes.length);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

function fromB64u(s: string | undefined, len: number): Uint8Array {
  if (s === undefined) throw new EchError('ERR_INTERNAL', 'internal_error', 'JWK export lacks a field');
  const b = Buffer.from(s, 'base64url');
  if (b.length > len) throw new EchError('ERR_INTERNAL', 'internal_error', 'JWK field longer than expected');
  const out = new Uint8Array(len);
  out.set(b, len - b.length); // left-pad big-endian integers
  return out;
}

function checkRaw(p: KemParams, raw: Uint8Array): void {
  if (!(raw instanceof Uint8Array) || raw.length !== p.nsk) {
    throw new InvalidArgumentError(`${p.name} private key must be ${p.nsk} bytes`);
  }
}

/** ECDH object holding `raw` (validates 0 < d < n). */
function ecdhFor(p: KemParams, raw: Uint8Array): ECDH {
  const ecdh = createECDH(p.curve as string);
  try {
    ecdh.setPrivateKey(raw);
  } catch (cause) {
    throw new InvalidArgumentError(`${p.name} private key is not a valid scalar`, { cause });
  }
  return ecdh;
}

/** node:crypto KeyObject for a raw private key. */
function privateKeyObject(p: KemParams, raw: Uint8Array): KeyObject {
  checkRaw(p, raw);
  if (p.curve === undefined) {
    return createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  }
  const pub = ecdhFor(p, raw).getPublicKey();
  const n = (p.npk - 1) / 2;
  return createPrivateKey({
    key: { kty: 'EC', crv: p.jwkCrv, d: b64u(raw), x: b64u(pub.subarray(1, 1 + n)), y: b64u(pub.subarray(1 + n)) },
    format: 'jwk',
  });
}

/**
 * Generates a fresh KEM key pair with `node:crypto`.
 * @group Crypto
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateKemKeyPair(KemId.DhkemX25519HkdfSha256);
 * // privateKey: 32-byte scalar, publicKey: 32 bytes for the ECHConfig
 * ```
 */
export function generateKemKeyPair(kem: number): KemKeyPair {
  const pq = PQ_KEMS.get(kem);
  if (pq !== undefined) {
    const seed = pq.seed();
    return { kem, privateKey: seed, publicKey: pq.fromSeed(seed).publicKey };
  }
  const p = requireKem(kem);
  if (p.curve === undefined) {
    const { privateKey, publicKey } = generateX25519Raw();
    return { kem, privateKey, publicKey };
  }
  const ecdh = createECDH(p.curve);
  ecdh.generateKeys();
  const d = ecdh.getPrivateKey();
  const privateKey = new Uint8Array(p.nsk);
  privateKey.set(d, p.nsk - d.length);
  return { kem, privateKey, publicKey: new Uint8Array(ecdh.getPublicKey()) };
}

/**
 * The public key (RFC 9180 SerializePublicKey form) of a raw private key.
 * @group Crypto
 * @throws InvalidArgumentError if the key has the wrong length or is not a valid scalar.
 * @example
 * ```ts
 * const pk = kemPublicKey(KemId.DhkemX25519HkdfSha256, privateKey);
 * ```
 */
export function kemPublicKey(kem: number, privateKeyRaw: Uint8Array): Uint8Array {
  const pq = PQ_KEMS.get(kem);
  if (pq !== undefined) return pqKeyFromSeed(pq, privateKeyRaw).publicKey;
  const p = requireKem(kem);
  checkRaw(p, privateKeyRaw);
  if (p.curve !== undefined) return new Uint8Array(ecdhFor(p, privateKeyRaw).getPublicKey());
  const jwk = createPublicKey(privateKeyObject(p, privateKeyRaw)).export({ format: 'jwk' });
  return fromB64u(jwk.x, p.npk);
}

/**
 * Encodes a raw KEM private key as PKCS#8 DER (the body of the
 * `-----BEGIN PRIVATE KEY-----` block of an RFC 9934 ECH key file). X25519
 * uses OID 1.3.101.110; P-256/P-384 use id-ecPublicKey with the named curve
 * and include the public key. ML-KEM-768 uses the seed form of
 * draft-ietf-lamps-kyber-certificates (OID 2.16.840.1.101.3.4.4.2,
 * `seed [0] OCTET STRING (SIZE (64))`, as Node 24 exports it); X-Wing uses
 * OID 1.3.6.1.4.1.62253.25722 with the 32-byte seed.
 * @group Crypto
 * @example
 * ```ts
 * const der = kemPrivateKeyToPkcs8(KemId.DhkemX25519HkdfSha256, privateKey);
 * const pem = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(der).toString('base64')}\n-----END PRIVATE KEY-----\n`;
 * ```
 */
export function kemPrivateKeyToPkcs8(kem: number, privateKeyRaw: Uint8Array): Uint8Array {
  const pq = PQ_KEMS.get(kem);
  if (pq !== undefined) {
    pqKeyFromSeed(pq, privateKeyRaw); // checks the length
    const prefix = kem === PqKemId.MlKem768 ? MLKEM768_PKCS8_PREFIX : XWING_PKCS8_PREFIX;
    return new Uint8Array(Buffer.concat([prefix, privateKeyRaw]));
  }
  const p = requireKem(kem);
  return new Uint8Array(privateKeyObject(p, privateKeyRaw).export({ format: 'der', type: 'pkcs8' }));
}

/**
 * Decodes a PKCS#8 DER private key and detects its KEM from the algorithm OID
 * (X25519 → 0x0020, EC P-256 → 0x0010, EC P-384 → 0x0011, ML-KEM-768 in
 * seed form → 0x0041, X-Wing → 0x647a).
 * @group Crypto
 * @throws EchError `ERR_KEY_FILE` if the DER does not parse or holds another kind of key.
 * @example
 * ```ts
 * const { kem, privateKey } = kemPrivateKeyFromPkcs8(der);
 * const key = loadKemPrivateKey(kem, privateKey);
 * ```
 */
export function kemPrivateKeyFromPkcs8(der: Uint8Array): { kem: number; privateKey: Uint8Array } {
  // The post-quantum forms are recognised by their exact DER (Node 20/22
  // cannot parse them); both are fixed-length.
  const head = Buffer.from(der.buffer, der.byteOffset, Math.min(der.byteLength, 32));
  for (const [kem, prefix, len, oid] of [
    [PqKemId.MlKem768, MLKEM768_PKCS8_PREFIX, MLKEM768.seed, MLKEM768_OID],
    [PqKemId.XWing, XWING_PKCS8_PREFIX, XWING.seed, XWING_OID],
  ] as const) {
    if (head.includes(oid)) {
      // Other private key forms (ML-KEM expandedKey or both) are refused.
      if (der.length !== prefix.length + len || !startsWith(der, prefix)) {
        const what = kem === PqKemId.MlKem768 ? 'ML-KEM-768 private key is not in the 64-byte seed form' : 'X-Wing private key is not a 32-byte seed';
        throw new EchError('ERR_KEY_FILE', 'internal_error', what);
      }
      return { kem, privateKey: Uint8Array.from(der.subarray(prefix.length)) };
    }
  }
  let ko: KeyObject;
  try {
    ko = createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new EchError('ERR_KEY_FILE', 'internal_error', 'not a PKCS#8 private key', { cause });
  }
  let kem: number;
  if (ko.asymmetricKeyType === 'x25519') {
    kem = KemId.DhkemX25519HkdfSha256;
  } else if (ko.asymmetricKeyType === 'ec') {
    const curve = ko.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') kem = KemId.DhkemP256HkdfSha256;
    else if (curve === 'secp384r1') kem = KemId.DhkemP384HkdfSha384;
    else throw new EchError('ERR_KEY_FILE', 'internal_error', `unsupported EC curve ${String(curve)} for an ECH key`);
  } else {
    throw new EchError('ERR_KEY_FILE', 'internal_error', `unsupported key type ${String(ko.asymmetricKeyType)} for an ECH key`);
  }
  const p = requireKem(kem);
  return { kem, privateKey: fromB64u(ko.export({ format: 'jwk' }).d, p.nsk) };
}

function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i] as number;
  return acc === 0;
}

const EMPTY = new Uint8Array(0);

/**
 * ExtractAndExpand(dh, kem_context) of RFC 9180 §4.1 as two HMACs (Nsecret
 * = Nh, so the Expand is one block). `eaeMsg` holds HMAC headroom ||
 * "HPKE-v1" || suite_id || "eae_prk" || dh; `ssMsg` holds headroom ||
 * I2OSP(Nsecret, 2) || "HPKE-v1" || suite_id || "shared_secret" || enc || pkRm || 0x01.
 */
function extractAndExpand(p: KemParams, eaeMsg: Buffer, ssMsg: Buffer): string {
  const h = p.hmac;
  h.setKey(EMPTY); // LabeledExtract with an empty salt
  const eaePrk = h.mac(eaeMsg);
  h.setKey(eaePrk);
  return h.mac(ssMsg);
}

function binaryToBytes(s: string): Uint8Array {
  const b = Buffer.from(s, 'binary');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * @internal {@link KemPrivateKey.decap} returning `shared_secret` as a binary
 * string, the form the key schedule's HMAC takes without conversion.
 * @group Crypto
 * @example
 * ```ts
 * hmac.setKey(decapBinary(key, enc));
 * ```
 */
export let decapBinary: (key: KemPrivateKey, enc: Uint8Array) => string;

/**
 * A KEM private key loaded for repeated decapsulation: the node:crypto key
 * objects and the label buffers are built once, so {@link KemPrivateKey.decap}
 * costs one ECDH and two HMACs.
 *
 * Create it with {@link loadKemPrivateKey}.
 * @group Crypto
 * @example
 * ```ts
 * const key = loadKemPrivateKey(KemId.DhkemX25519HkdfSha256, raw);
 * const sharedSecret = key.decap(enc); // what a keyless key server returns
 * ```
 */
export class KemPrivateKey {
  /** KEM identifier (RFC 9180 §7.1). */
  readonly kem: number;
  /** RFC 9180 SerializePublicKey(pkR): what the ECHConfig carries. */
  readonly publicKey: Uint8Array;
  readonly #p: KemParams | undefined;
  /** Post-quantum KEMs: the decapsulator and its parameters. */
  readonly #pq: { readonly p: PqKemParams; readonly key: ReturnType<PqKemParams['fromSeed']> } | undefined;
  readonly #keyObject: KeyObject | undefined;
  readonly #ecdh: ECDH | undefined;
  /** Scratch: headroom || eaePrkPrefix || dh; dh is copied in per call (synchronous use only). */
  readonly #eaeMsg: Buffer;
  /** Scratch: headroom || sharedSecretPrefix || enc || pkRm || 0x01; enc is copied in per call. */
  readonly #ssMsg: Buffer;
  /** Reused JWK for the peer public key (X25519). */
  readonly #peerJwk = { kty: 'OKP', crv: 'X25519', x: '' };

  /** @internal Use {@link loadKemPrivateKey}. */
  constructor(p: KemParams | PqKemParams, raw: Uint8Array) {
    if (!('hash' in p)) {
      const key = pqKeyFromSeed(p, raw);
      this.kem = p.id;
      this.#p = undefined;
      this.#pq = { p, key };
      this.#keyObject = undefined;
      this.#ecdh = undefined;
      this.publicKey = key.publicKey;
      this.#eaeMsg = Buffer.alloc(0);
      this.#ssMsg = Buffer.alloc(0);
      return;
    }
    checkRaw(p, raw);
    this.kem = p.id;
    this.#p = p;
    this.#pq = undefined;
    if (p.curve === undefined) {
      this.#keyObject = privateKeyObject(p, raw);
      this.#ecdh = undefined;
      this.publicKey = fromB64u(createPublicKey(this.#keyObject).export({ format: 'jwk' }).x, p.npk);
    } else {
      this.#keyObject = undefined;
      this.#ecdh = ecdhFor(p, raw);
      this.publicKey = new Uint8Array(this.#ecdh.getPublicKey());
    }
    this.#eaeMsg = p.hmac.buffer([p.eaePrkPrefix], p.nh);
    this.#ssMsg = p.hmac.buffer([p.sharedSecretPrefix, new Uint8Array(p.npk), this.publicKey, Uint8Array.of(1)]);
  }

  /**
   * RFC 9180 DHKEM Decap(enc, skR): returns `shared_secret` (Nsecret bytes).
   * @throws DecryptError (alert `decrypt_error`) if `enc` has the wrong
   * length, is not a valid point, or gives an all-zero X25519 result.
   * @example
   * ```ts
   * const ss = key.decap(ech.enc);
   * const ctx = new RecipientContext(suite, keyScheduleBase(suite, ss, info));
   * ```
   */
  decap(enc: Uint8Array): Uint8Array {
    return binaryToBytes(this.#decap(enc));
  }

  static {
    decapBinary = (key, enc) => key.#decap(enc);
  }

  #decap(enc: Uint8Array): string {
    const pq = this.#pq;
    if (pq !== undefined) {
      // draft-ietf-hpke-pq: Decap(enc, skR) is the KEM's own decapsulation;
      // enc is exactly Nenc bytes (1088 for ML-KEM-768, 1120 for X-Wing).
      if (enc.length !== pq.p.nenc) throw new DecryptError(`${pq.p.name} enc must be ${pq.p.nenc} bytes, got ${enc.length}`);
      const ss = pq.key.decapsulate(enc);
      return Buffer.from(ss.buffer, ss.byteOffset, ss.byteLength).toString('binary');
    }
    const p = this.#p as KemParams;
    if (enc.length !== p.npk) throw new DecryptError(`${p.name} enc must be ${p.npk} bytes, got ${enc.length}`);
    let dh: Uint8Array;
    if (this.#ecdh !== undefined) {
      // RFC 9180 §7.1.1: only the uncompressed SEC1 form is a valid enc.
      if (enc[0] !== 0x04) throw new DecryptError(`${p.name} enc must be an uncompressed point`);
      try {
        dh = this.#ecdh.computeSecret(enc); // rejects points off the curve
      } catch (cause) {
        throw new DecryptError(`${p.name} enc is not a valid point`, { cause });
      }
    } else {
      // NOTE: a JWK import is ~15x faster than an SPKI DER import in Node 20
      // (the DER path goes through OpenSSL's generic decoder).
      const jwk = this.#peerJwk;
      jwk.x = b64u(enc);
      try {
        dh = diffieHellman({ privateKey: this.#keyObject as KeyObject, publicKey: createPublicKey({ key: jwk, format: 'jwk' }) });
      } catch (cause) {
        throw new DecryptError(`${p.name} enc gives no shared secret`, { cause });
      }
      // RFC 9180 §7.1.4 / RFC 7748 §6.1: abort on the all-zero value.
      if (isAllZero(dh)) throw new DecryptError(`${p.name} enc is a low-order point`);
    }
    if (dh.length !== p.nh) throw new DecryptError(`${p.name} DH output has an unexpected length`);
    this.#eaeMsg.set(dh, p.hmac.block + p.eaePrkPrefix.length);
    this.#ssMsg.set(enc, p.hmac.block + p.sharedSecretPrefix.length);
    return extractAndExpand(p, this.#eaeMsg, this.#ssMsg);
  }
}

/**
 * Loads a raw KEM private key for decapsulation.
 * @group Crypto
 * @throws InvalidArgumentError for a wrong length or an invalid EC scalar;
 * EchError `ERR_UNSUPPORTED` for a KEM without a native implementation.
 * @example
 * ```ts
 * const { kem, privateKey } = kemPrivateKeyFromPkcs8(der);
 * const key = loadKemPrivateKey(kem, privateKey);
 * key.publicKey; // matches the ECHConfig's public_key
 * ```
 */
export function loadKemPrivateKey(kem: number, privateKeyRaw: Uint8Array): KemPrivateKey {
  return new KemPrivateKey(PQ_KEMS.get(kem) ?? requireKem(kem), privateKeyRaw);
}

/**
 * RFC 9180 DHKEM Encap(pkR) with a fresh ephemeral key: returns `enc` and
 * `shared_secret`. Used by the sender side ({@link setupBaseSender}).
 * @group Crypto
 * @throws InvalidArgumentError if `publicKey` is not a valid public key of the KEM.
 * @example
 * ```ts
 * const { enc, sharedSecret } = kemEncap(KemId.DhkemX25519HkdfSha256, config.publicKey);
 * ```
 */
export function kemEncap(kem: number, publicKey: Uint8Array): { enc: Uint8Array; sharedSecret: Uint8Array } {
  const pq = PQ_KEMS.get(kem);
  if (pq !== undefined) {
    if (publicKey.length !== pq.npk) throw new InvalidArgumentError(`${pq.name} public key must be ${pq.npk} bytes`);
    try {
      const { ciphertext, sharedSecret } = pq.encapsulate(publicKey);
      return { enc: ciphertext, sharedSecret };
    } catch (cause) {
      throw new InvalidArgumentError(`${pq.name} public key is not usable`, { cause });
    }
  }
  const p = requireKem(kem);
  if (publicKey.length !== p.npk || (p.curve !== undefined && publicKey[0] !== 0x04)) {
    throw new InvalidArgumentError(`${p.name} public key must be ${p.npk} bytes${p.curve !== undefined ? ' in uncompressed form' : ''}`);
  }
  let enc: Uint8Array;
  let dh: Uint8Array;
  try {
    if (p.curve !== undefined) {
      const ecdh = createECDH(p.curve);
      enc = new Uint8Array(ecdh.generateKeys());
      dh = ecdh.computeSecret(publicKey);
    } else {
      const eph = generateX25519();
      enc = eph.publicKey;
      const pkR = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(publicKey) }, format: 'jwk' });
      dh = diffieHellman({ privateKey: eph.privateKey, publicKey: pkR });
      if (isAllZero(dh)) throw new Error('all-zero X25519 output');
    }
  } catch (cause) {
    throw new InvalidArgumentError(`${p.name} public key is not usable`, { cause });
  }
  const eaeMsg = p.hmac.buffer([p.eaePrkPrefix, dh]);
  const ssMsg = p.hmac.buffer([p.sharedSecretPrefix, enc, publicKey, Uint8Array.of(1)]);
  return { enc, sharedSecret: binaryToBytes(extractAndExpand(p, eaeMsg, ssMsg)) };
}
