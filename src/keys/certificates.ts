/**
 * Server certificates: loading PEM chains and keys, choosing a certificate by
 * SNI (exact name, then `*.` wildcard, then the default), choosing the
 * signature scheme from the certificate's key and the client's
 * signature_algorithms (RFC 9846 §4.4.2.2), and producing/verifying the
 * CertificateVerify signature (§4.4.3).
 *
 * @module
 */
import { X509Certificate, constants, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { DecryptError, EchError, InvalidArgumentError } from '../wire/alert.js';
import { SignatureScheme } from '../tls/constants.js';

/**
 * A private key in any form node:crypto accepts.
 * @group Server
 * @example
 * ```ts
 * const key: PrivateKeyInput = readFileSync('server.key', 'utf8');
 * ```
 */
export type PrivateKeyInput = string | Buffer | Uint8Array | KeyObject;

/**
 * One certificate chain and its key, Node-style (`key`, `cert`).
 * @group Server
 * @example
 * ```ts
 * const pair: CertificateKeyPair = { key: keyPem, cert: chainPem, names: ['example.com'] };
 * ```
 */
export interface CertificateKeyPair {
  /** PEM chain (leaf first), or an array of PEM/DER certificates. */
  cert: string | Buffer | Uint8Array | ReadonlyArray<string | Buffer | Uint8Array>;
  /** The leaf's private key. Omit when `sign` is given (keyless). */
  key?: PrivateKeyInput;
  /** Passphrase of an encrypted PEM key. */
  passphrase?: string;
  /** Names served; default: the leaf's DNS subjectAltNames (or CN). */
  names?: readonly string[];
  /**
   * External signer (keyless mode): returns the CertificateVerify signature
   * of `data` under `scheme`.
   */
  sign?: (scheme: number, data: Uint8Array) => Promise<Uint8Array> | Uint8Array;
}

/**
 * Kinds of certificate keys the engine signs with. @group Server
 * @example
 * ```ts
 * if (cert.keyType === 'rsa') console.log('signs with RSA-PSS');
 * ```
 */
export type CertificateKeyType = 'ecdsa-p256' | 'rsa' | 'ed25519';

const SCHEMES: Record<CertificateKeyType, readonly number[]> = {
  'ecdsa-p256': [SignatureScheme.ecdsa_secp256r1_sha256],
  rsa: [SignatureScheme.rsa_pss_rsae_sha256, SignatureScheme.rsa_pss_rsae_sha384, SignatureScheme.rsa_pss_rsae_sha512],
  ed25519: [SignatureScheme.ed25519],
};

function splitPem(input: string): string[] {
  const blocks = input.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  return blocks ?? [];
}

function loadChain(cert: CertificateKeyPair['cert']): X509Certificate[] {
  const items = Array.isArray(cert) ? (cert as ReadonlyArray<string | Buffer | Uint8Array>) : [cert as string | Buffer | Uint8Array];
  const out: X509Certificate[] = [];
  for (const item of items) {
    const text = typeof item === 'string' ? item : Buffer.from(item).toString('latin1');
    if (text.includes('-----BEGIN CERTIFICATE-----')) {
      for (const b of splitPem(text)) out.push(new X509Certificate(b));
    } else {
      out.push(new X509Certificate(typeof item === 'string' ? Buffer.from(item, 'latin1') : Buffer.from(item)));
    }
  }
  if (out.length === 0) throw new InvalidArgumentError('no certificate in cert');
  return out;
}

function keyTypeOf(x: X509Certificate): CertificateKeyType {
  const pk = x.publicKey;
  if (pk.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (pk.asymmetricKeyType === 'rsa') return 'rsa';
  if (pk.asymmetricKeyType === 'ec' && pk.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  throw new InvalidArgumentError(`unsupported certificate key (${pk.asymmetricKeyType} ${pk.asymmetricKeyDetails?.namedCurve ?? ''})`);
}

/**
 * DNS names of a certificate: subjectAltName DNS entries, else the subject CN.
 * @group Server
 * @example
 * ```ts
 * certificateNames(new X509Certificate(pem)); // ['example.com', '*.example.com']
 * ```
 */
export function certificateNames(x: X509Certificate): string[] {
  const san = x.subjectAltName;
  if (san) {
    const names = san
      .split(/,\s*/)
      .filter((s) => s.startsWith('DNS:'))
      .map((s) => s.slice(4).toLowerCase());
    if (names.length) return names;
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject);
  return cn ? [cn[1]!.toLowerCase()] : [];
}

/**
 * The content signed in a CertificateVerify (RFC 9846 §4.4.3): 64 spaces,
 * the context string, a zero byte, then the transcript hash.
 * @group Server
 * @example
 * ```ts
 * const data = certificateVerifyInput(true, transcript.digest());
 * ```
 */
export function certificateVerifyInput(server: boolean, transcriptHash: Uint8Array): Uint8Array {
  const ctx = Buffer.from(server ? 'TLS 1.3, server CertificateVerify' : 'TLS 1.3, client CertificateVerify', 'latin1');
  const out = new Uint8Array(64 + ctx.length + 1 + transcriptHash.length);
  out.fill(0x20, 0, 64);
  out.set(ctx, 64);
  out[64 + ctx.length] = 0;
  out.set(transcriptHash, 65 + ctx.length);
  return out;
}

function hashOfScheme(scheme: number): string | null {
  switch (scheme) {
    case SignatureScheme.ecdsa_secp256r1_sha256:
    case SignatureScheme.rsa_pss_rsae_sha256:
      return 'sha256';
    case SignatureScheme.rsa_pss_rsae_sha384:
      return 'sha384';
    case SignatureScheme.rsa_pss_rsae_sha512:
      return 'sha512';
    case SignatureScheme.ed25519:
      return null;
    default:
      throw new EchError('ERR_UNSUPPORTED', 'illegal_parameter', `signature scheme 0x${scheme.toString(16)} not supported`);
  }
}

function isPss(scheme: number): boolean {
  return scheme >= SignatureScheme.rsa_pss_rsae_sha256 && scheme <= SignatureScheme.rsa_pss_rsae_sha512;
}

/**
 * Sign `data` with `key` under a TLS SignatureScheme.
 * @group Server
 * @example
 * ```ts
 * const sig = signWithScheme(SignatureScheme.ed25519, key, data);
 * ```
 */
export function signWithScheme(scheme: number, key: KeyObject, data: Uint8Array): Uint8Array {
  const h = hashOfScheme(scheme);
  if (isPss(scheme)) {
    // RFC 9846 §4.2.3: RSASSA-PSS with the salt length equal to the digest length.
    const saltLength = h === 'sha256' ? 32 : h === 'sha384' ? 48 : 64;
    return new Uint8Array(sign(h, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }));
  }
  return new Uint8Array(sign(h, data, key));
}

/**
 * Verify a CertificateVerify-style signature; throws {@link DecryptError}
 * (`decrypt_error`, RFC 9846 §4.4.3) when it does not verify.
 * @group Server
 * @example
 * ```ts
 * verifyWithScheme(cv.algorithm, leaf.publicKey, certificateVerifyInput(true, th), cv.signature);
 * ```
 */
export function verifyWithScheme(scheme: number, key: KeyObject, data: Uint8Array, signature: Uint8Array): void {
  const h = hashOfScheme(scheme);
  let ok: boolean;
  try {
    if (isPss(scheme)) {
      const saltLength = h === 'sha256' ? 32 : h === 'sha384' ? 48 : 64;
      ok = verify(h, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, signature);
    } else {
      ok = verify(h, data, key, signature);
    }
  } catch {
    ok = false;
  }
  if (!ok) throw new DecryptError('CertificateVerify signature does not verify');
}

/**
 * A loaded certificate chain with its signing key.
 * @group Server
 * @example
 * ```ts
 * const c = ServerCertificate.from({ key: keyPem, cert: certPem });
 * c.matches('www.example.com');
 * ```
 */
export class ServerCertificate {
  /** DER of each certificate, leaf first. */
  readonly chain: Uint8Array[];
  /** Lower-case DNS names served (may include `*.` wildcards). */
  readonly names: string[];
  /** Kind of the leaf key. */
  readonly keyType: CertificateKeyType;
  /** The parsed leaf. */
  readonly leaf: X509Certificate;
  private readonly key: KeyObject | undefined;
  private readonly signer: CertificateKeyPair['sign'];

  private constructor(pair: CertificateKeyPair) {
    const xs = loadChain(pair.cert);
    this.leaf = xs[0]!;
    this.chain = xs.map((x) => new Uint8Array(x.raw));
    this.keyType = keyTypeOf(this.leaf);
    this.names = (pair.names ?? certificateNames(this.leaf)).map((n) => n.toLowerCase());
    this.signer = pair.sign;
    if (pair.key !== undefined) {
      const k =
        typeof pair.key === 'object' && 'asymmetricKeyType' in pair.key
          ? (pair.key as KeyObject)
          : createPrivateKey({
              key: typeof pair.key === 'string' ? pair.key : Buffer.from(pair.key as Uint8Array),
              ...(pair.passphrase !== undefined ? { passphrase: pair.passphrase } : {}),
            });
      if (!this.leaf.checkPrivateKey(k)) throw new InvalidArgumentError('private key does not match the certificate');
      this.key = k;
    } else if (!pair.sign) {
      throw new InvalidArgumentError('certificate needs a key or a sign function');
    }
  }

  /** Load a certificate chain and key. */
  static from(pair: CertificateKeyPair): ServerCertificate {
    return new ServerCertificate(pair);
  }

  /** Signature schemes this certificate can produce, in preference order. */
  get schemes(): readonly number[] {
    return SCHEMES[this.keyType];
  }

  /** How well the certificate matches `name`: 2 exact, 1 wildcard, 0 none. */
  matchQuality(name: string): 0 | 1 | 2 {
    return this.qualityOf(normalizeName(name));
  }

  /** {@link ServerCertificate.matchQuality} of a name already lower-cased, without its trailing dot. */
  qualityOf(n: string): 0 | 1 | 2 {
    let best: 0 | 1 | 2 = 0;
    for (const c of this.names) {
      if (c === n) return 2;
      // One label only: '*.example.com' matches 'a.example.com', not
      // 'example.com' nor 'a.b.example.com'.
      if (c.startsWith('*.')) {
        const dot = n.indexOf('.');
        if (dot > 0 && n.slice(dot + 1) === c.slice(2)) best = 1;
      }
    }
    return best;
  }

  /** True if the certificate serves `name` (exactly or by wildcard). */
  matches(name: string): boolean {
    return this.matchQuality(name) > 0;
  }

  /** The first scheme of this certificate that the client listed, client order. */
  pickScheme(clientSchemes: readonly number[]): number | undefined {
    for (const s of clientSchemes) if (this.schemes.includes(s)) return s;
    return undefined;
  }

  /** Sign the CertificateVerify input. */
  async sign(scheme: number, data: Uint8Array): Promise<Uint8Array> {
    return await this.signNow(scheme, data);
  }

  /**
   * Sign the CertificateVerify input: with a local key synchronously (the
   * signature itself, no promise, no job), with a `sign` function (keyless)
   * whatever it returns. Throws rather than rejects when the signature
   * cannot be made here.
   * @example
   * ```ts
   * const s = c.signNow(scheme, input);
   * const signature = s instanceof Uint8Array ? s : await s;
   * ```
   */
  signNow(scheme: number, data: Uint8Array): Uint8Array | Promise<Uint8Array> {
    if (this.signer) return this.signer(scheme, data);
    if (!this.key) throw new EchError('ERR_INTERNAL', 'internal_error', 'no signing key');
    return signWithScheme(scheme, this.key, data);
  }
}

/** A server name as certificates are matched: lower case, without a trailing dot. */
function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

/**
 * A set of certificates with SNI-based selection.
 * @group Server
 * @example
 * ```ts
 * const store = new CertificateStore([ServerCertificate.from({ key, cert })]);
 * const pick = store.select('www.example.com', [SignatureScheme.ecdsa_secp256r1_sha256]);
 * ```
 */
export class CertificateStore {
  readonly certificates: readonly ServerCertificate[];

  /** @param certificates the first one is the default */
  constructor(certificates: readonly ServerCertificate[]) {
    this.certificates = certificates;
  }

  /**
   * Choose a certificate and scheme for `servername` and the client's
   * signature_algorithms: exact name first, then wildcard, then the default
   * certificates (in order), each only if the client accepts one of its
   * schemes. `undefined` if none fits.
   */
  select(servername: string | undefined, clientSchemes: readonly number[]): { certificate: ServerCertificate; scheme: number } | undefined {
    // One pass per tier (exact, wildcard, the rest) over the certificates in
    // order, the name normalised once: no per-call arrays (this runs on
    // every full handshake).
    const cs = this.certificates;
    const n = servername ? normalizeName(servername) : undefined;
    for (let tier = 2; tier >= 0; tier--) {
      for (let i = 0; i < cs.length; i++) {
        const c = cs[i]!;
        if ((n ? c.qualityOf(n) : 0) !== tier) continue;
        const scheme = c.pickScheme(clientSchemes);
        if (scheme !== undefined) return { certificate: c, scheme };
      }
    }
    return undefined;
  }

  /** True if some certificate serves `servername` by name. */
  hasName(servername: string): boolean {
    return this.certificates.some((c) => c.matches(servername));
  }
}
