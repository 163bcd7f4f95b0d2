/**
 * A throwaway test PKI for the demo, the examples and tests: a certificate
 * authority (ECDSA P-256) that issues leaf certificates for DNS names, made
 * with node:crypto alone. Public as `ech-server/testing`; never for
 * production certificates.
 *
 * @module
 */
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';

/** DER: tag, definite length, body. */
function der(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const head = len < 0x80 ? [tag, len] : len < 0x100 ? [tag, 0x81, len] : [tag, 0x82, len >> 8, len & 0xff];
  const out = new Uint8Array(head.length + len);
  out.set(head);
  let o = head.length;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const seq = (...p: Uint8Array[]) => der(0x30, ...p);
const oid = (...bytes: number[]) => der(0x06, new Uint8Array(bytes));
const utf8 = (s: string) => der(0x0c, new TextEncoder().encode(s));
const TRUE = der(0x01, new Uint8Array([0xff]));
const OID_ECDSA_SHA256 = oid(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
const OID_CN = oid(0x55, 0x04, 0x03);

function utcTime(d: Date): Uint8Array {
  const p = (n: number) => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return der(0x17, new TextEncoder().encode(s));
}

const x509Name = (cn: string) => seq(der(0x31, seq(OID_CN, utf8(cn))));

function extension(id: Uint8Array, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? seq(id, TRUE, der(0x04, value)) : seq(id, der(0x04, value));
}

/** The length of the DER element at `at` and where its contents start. */
function derLength(b: Uint8Array, at: number): { start: number; length: number } {
  const first = b[at + 1]!;
  if (first < 0x80) return { start: at + 2, length: first };
  const n = first & 0x7f;
  let length = 0;
  for (let i = 0; i < n; i++) length = length * 256 + b[at + 2 + i]!;
  return { start: at + 2 + n, length };
}

/**
 * A key identifier: SHA-1 of the subjectPublicKey BIT STRING's bits (RFC 5280
 * §4.2.1.2, method 1), as OpenSSL computes it.
 */
function keyIdentifier(publicKey: KeyObject): Uint8Array {
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const outer = derLength(spki, 0); // SubjectPublicKeyInfo ::= SEQUENCE {
  const alg = derLength(spki, outer.start); //   algorithm AlgorithmIdentifier,
  const bits = derLength(spki, alg.start + alg.length); //   subjectPublicKey BIT STRING }
  return new Uint8Array(createHash('sha1').update(spki.subarray(bits.start + 1, bits.start + bits.length)).digest());
}

/**
 * One X.509 v3 certificate (ECDSA P-256 with SHA-256, RFC 5280), as PEM. It
 * carries a subject key identifier and, issued by a CA, the authority key
 * identifier (§4.2.1.1–2), so two test CAs of one name stay apart.
 */
function certificate(o: { subject: string; issuer: string; publicKey: KeyObject; signer: KeyObject; issuerKeyId?: Uint8Array; ca: boolean; dnsNames: string[]; days: number }): string {
  const serial = randomBytes(16);
  // A positive DER INTEGER in minimal form: high bit clear, and never a
  // leading zero byte (OpenSSL refuses one as "illegal padding", which a
  // plain `& 0x7f` produced once in 256 certificates).
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const now = Date.now();
  const exts = [
    // basicConstraints; keyUsage: keyCertSign|cRLSign for the CA, digitalSignature for a leaf
    extension(oid(0x55, 0x1d, 0x13), true, o.ca ? seq(TRUE) : seq()),
    extension(oid(0x55, 0x1d, 0x0f), true, der(0x03, new Uint8Array(o.ca ? [0x01, 0x06] : [0x07, 0x80]))),
    // subjectKeyIdentifier ::= OCTET STRING
    extension(oid(0x55, 0x1d, 0x0e), false, der(0x04, keyIdentifier(o.publicKey))),
  ];
  // authorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
  if (o.issuerKeyId) exts.push(extension(oid(0x55, 0x1d, 0x23), false, seq(der(0x80, o.issuerKeyId))));
  if (o.dnsNames.length) exts.push(extension(oid(0x55, 0x1d, 0x11), false, seq(...o.dnsNames.map((n) => der(0x82, new TextEncoder().encode(n))))));
  const tbs = seq(
    der(0xa0, der(0x02, new Uint8Array([2]))),
    der(0x02, new Uint8Array(serial)),
    seq(OID_ECDSA_SHA256),
    x509Name(o.issuer),
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + o.days * 86400_000))),
    x509Name(o.subject),
    new Uint8Array(o.publicKey.export({ type: 'spki', format: 'der' })),
    der(0xa3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, o.signer);
  const cert = seq(tbs, seq(OID_ECDSA_SHA256), der(0x03, new Uint8Array([0]), new Uint8Array(signature)));
  const b64 = Buffer.from(cert).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/**
 * A throwaway certificate authority (ECDSA P-256) issuing leaf certificates
 * (ECDSA P-256, RSA or Ed25519 keys) for DNS names, made with node:crypto
 * alone (no `openssl` binary). For the
 * demo, examples and tests; never for production.
 * @group Testing
 * @example
 * ```ts
 * const pki = createTestPki();
 * const { cert, key } = pki.issue(['cover.example']);
 * ```
 */
export interface TestPki {
  /** The CA certificate (PEM): what clients trust. */
  caCert: string;
  /** The CA's private key (PKCS#8 PEM). */
  caKey: string;
  /**
   * Issue a certificate and a new key for `dnsNames` (`*.` wildcards allowed);
   * the first name is the subject CN. The second argument is the validity in
   * days, or {@link TestIssueOptions} (validity and the leaf's key type; the
   * default is an ECDSA P-256 key).
   */
  issue(dnsNames: string[], options?: number | TestIssueOptions): { cert: string; key: string };
}

/**
 * The key type of an issued leaf: ECDSA P-256, RSA 2048 or Ed25519. The CA
 * signs each with ECDSA P-256 / SHA-256.
 * @group Testing
 * @example
 * ```ts
 * const kind: TestKeyType = 'ed25519';
 * ```
 */
export type TestKeyType = 'ec' | 'rsa' | 'ed25519';

/**
 * Options of {@link TestPki.issue}.
 * @group Testing
 * @example
 * ```ts
 * const { cert, key } = createTestPki().issue(['rsa.example'], { keyType: 'rsa', days: 2 });
 * ```
 */
export interface TestIssueOptions {
  /** Validity in days (default: the PKI's). */
  days?: number;
  /** The leaf's key type (default `'ec'`). */
  keyType?: TestKeyType;
}

function leafKeyPair(type: TestKeyType): { publicKey: KeyObject; privateKey: KeyObject } {
  switch (type) {
    case 'ec':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'rsa':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'ed25519':
      return generateKeyPairSync('ed25519');
  }
}

/**
 * Create a {@link TestPki}, or reopen one from its CA certificate and key.
 * @group Testing
 * @example
 * ```ts
 * const pki = createTestPki();
 * const site = pki.issue(['alpha.example']);
 * tls.connect({ port, servername: 'alpha.example', ca: pki.caCert });
 * ```
 */
export function createTestPki(existing?: { caCert: string; caKey: string }, days = 30): TestPki {
  let caKey: KeyObject;
  let caCert: string;
  if (existing) {
    caKey = createPrivateKey(existing.caKey);
    caCert = existing.caCert;
  } else {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    caKey = pair.privateKey;
    caCert = certificate({ subject: 'ech-server demo CA', issuer: 'ech-server demo CA', publicKey: pair.publicKey, signer: caKey, ca: true, dnsNames: [], days });
  }
  const caX509 = new X509Certificate(caCert);
  const issuer = caX509.subject.replace(/^CN=/, '');
  const issuerKeyId = keyIdentifier(caX509.publicKey);
  return {
    caCert,
    caKey: caKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    issue(dnsNames, options) {
      const o = typeof options === 'number' ? { days: options } : (options ?? {});
      const pair = leafKeyPair(o.keyType ?? 'ec');
      const cert = certificate({ subject: dnsNames[0]!, issuer, publicKey: pair.publicKey, signer: caKey, issuerKeyId, ca: false, dnsNames, days: o.days ?? days });
      return { cert, key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
    },
  };
}
