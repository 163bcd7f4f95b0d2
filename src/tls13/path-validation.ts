/**
 * Server certificate path validation for the client (RFC 5280 §6 as it
 * applies to TLS, RFC 9846 §4.4.2): build a path from the leaf through the
 * certificates the server sent to a trusted CA, then check every certificate
 * on it — basicConstraints (cA, pathLenConstraint), keyUsage keyCertSign,
 * extendedKeyUsage serverAuth, validity, critical extensions — and the
 * leaf's name.
 *
 * Node's `X509Certificate` parses the certificates, checks signatures and
 * matches names; the rest is read here with a small DER walk over the
 * project's {@link Reader}: the extensions with their criticality, the
 * validity dates, and the raw issuer and subject names.
 *
 * Where a choice is left open, this follows what OpenSSL's `X509_verify_cert`
 * does with purpose `sslserver` (the tests compare with `openssl verify`),
 * and the alerts are those OpenSSL's client sends for the same errors.
 *
 * @module
 */
import { isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { DecodeError, EchError, type AlertDescription } from '../wire/alert.js';
import { equalBytes } from '../wire/bytes.js';
import { Reader } from '../wire/reader.js';

/**
 * Why a certificate chain was refused.
 * @group Client
 */
export type CertificateFailure =
  /** The server sent no certificate. */
  | 'empty_chain'
  /** A certificate could not be read (bad DER, a repeated extension). */
  | 'malformed'
  /** No path from the leaf to a trusted CA. */
  | 'untrusted'
  /** A certificate's signature does not verify under its issuer's key. */
  | 'bad_signature'
  /** A certificate signed with MD5 or SHA-1. */
  | 'weak_signature'
  /** An issuing certificate is not a CA (basicConstraints, keyUsage). */
  | 'not_a_ca'
  /** A CA's pathLenConstraint is exceeded. */
  | 'path_length'
  /** extendedKeyUsage without serverAuth, or a leaf keyUsage without digitalSignature. */
  | 'purpose'
  /** A critical extension this validator does not process. */
  | 'unhandled_critical_extension'
  /** A CA with nameConstraints (not enforced here, so refused). */
  | 'name_constraints'
  /** Outside its validity period. */
  | 'expired'
  | 'not_yet_valid'
  /** The leaf does not name the host. */
  | 'host_mismatch';

/**
 * A refused server certificate chain: `code` `ERR_CERTIFICATE`, the alert
 * RFC 9846 §6.2 names for it, and `reason` saying which check failed.
 * @group Client
 * @example
 * ```ts
 * try { verifyServerChain(chain, roots, 'example.com'); }
 * catch (e) { if (e instanceof CertificateError) console.log(e.alert, e.reason, e.depth); }
 * ```
 */
export class CertificateError extends EchError {
  /** Which check failed. */
  readonly reason: CertificateFailure;
  /** Position on the path of the certificate at fault (0 = leaf), when there is one. */
  readonly depth: number | undefined;

  constructor(alert: AlertDescription, reason: CertificateFailure, message: string, options?: { cause?: unknown; depth?: number }) {
    super('ERR_CERTIFICATE', alert, message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CertificateError';
    this.reason = reason;
    this.depth = options?.depth;
  }
}

// ------------------------------------------------------------ DER

/** Read one DER TLV: its tag and a sub-reader over its contents. */
function tlv(r: Reader, what: string): { tag: number; body: Reader } {
  const tag = r.u8(what);
  if ((tag & 0x1f) === 0x1f) throw new DecodeError(`${what}: high tag numbers are not used in certificates`);
  const first = r.u8(what);
  let length = first;
  if (first & 0x80) {
    const n = first & 0x7f;
    // DER: the long form only when needed, at most 4 length bytes here.
    if (n === 0 || n > 4) throw new DecodeError(`${what}: unsupported length form`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + r.u8(what);
    if (length < 0x80) throw new DecodeError(`${what}: non-minimal length`);
  }
  return { tag, body: r.sub(length, what) };
}

function expectTlv(r: Reader, tag: number, what: string): Reader {
  const t = tlv(r, what);
  if (t.tag !== tag) throw new DecodeError(`${what}: tag 0x${t.tag.toString(16)}, expected 0x${tag.toString(16)}`);
  return t.body;
}

/** Dotted form of an OBJECT IDENTIFIER's contents. */
function oidString(b: Uint8Array): string {
  if (b.length === 0) throw new DecodeError('empty OID');
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < b.length; i++) {
    const byte = b[i]!;
    if (v === 0 && byte === 0x80) throw new DecodeError('non-minimal OID arc');
    v = v * 128 + (byte & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DecodeError('OID arc too large');
    if (!(byte & 0x80)) {
      arcs.push(v);
      v = 0;
    } else if (i === b.length - 1) {
      throw new DecodeError('truncated OID');
    }
  }
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

function readOid(r: Reader, what: string): string {
  const body = expectTlv(r, 0x06, what);
  return oidString(body.rest());
}

function readBoolean(r: Reader, what: string): boolean {
  const b = expectTlv(r, 0x01, what);
  const v = b.u8(what);
  b.end(what);
  // DER: TRUE is 0xFF.
  if (v !== 0x00 && v !== 0xff) throw new DecodeError(`${what}: BOOLEAN not in DER`);
  return v === 0xff;
}

/** UTCTime or GeneralizedTime (RFC 5280 §4.1.2.5: seconds, "Z"). */
function readTime(r: Reader, what: string): Date {
  const t = tlv(r, what);
  const s = new TextDecoder('latin1').decode(t.body.rest());
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === 0x17 && (m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    const yy = Number(m[1]);
    // §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (t.tag === 0x18 && (m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    year = Number(m[1]);
  } else {
    throw new DecodeError(`${what}: not a UTCTime or GeneralizedTime in DER`);
  }
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** A small non-negative INTEGER (pathLenConstraint); huge values saturate. */
function readSmallUint(r: Reader, what: string): number {
  const b = expectTlv(r, 0x02, what).rest();
  if (b.length === 0 || (b[0]! & 0x80) !== 0) throw new DecodeError(`${what}: not a non-negative INTEGER`);
  let v = 0;
  for (const x of b) v = Math.min(v * 256 + x, 0x7fffffff);
  return v;
}

// ------------------------------------------------------------ certificate fields

const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  nameConstraints: '2.5.29.30',
  certificatePolicies: '2.5.29.32',
  crlDistributionPoints: '2.5.29.31',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/**
 * Extensions whose meaning this validator takes into account, so they may be
 * critical. certificatePolicies: no policy is required (RFC 5280 §6.1.1
 * initial-explicit-policy false), and a path that needs one carries
 * policyConstraints, which is not in this set; crlDistributionPoints: only
 * says where CRLs are (revocation is not checked, as `openssl verify` does not
 * by default).
 */
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.nameConstraints,
  OID.certificatePolicies,
  OID.crlDistributionPoints,
]);

/** Signature algorithms RFC 9846 §4.4.2.4 refuses (MD2/MD5) or recommends refusing (SHA-1). */
const WEAK_SIGNATURES = new Map<string, string>([
  ['1.2.840.113549.1.1.2', 'MD2'],
  ['1.2.840.113549.1.1.4', 'MD5'],
  ['1.2.840.113549.1.1.5', 'SHA-1'],
  ['1.2.840.10045.4.1', 'SHA-1'],
  ['1.2.840.10040.4.3', 'SHA-1'],
]);

interface Extension {
  critical: boolean;
  value: Uint8Array;
}

/** What path validation needs of one certificate. */
interface CertInfo {
  x509: X509Certificate;
  version: number;
  signatureOid: string;
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  extensions: Map<string, Extension>;
  /** basicConstraints, when present. */
  basic?: { ca: boolean; pathLen: number | undefined };
  /** keyUsage bits (bit 0 = digitalSignature), when present. */
  keyUsage?: Uint8Array;
  /** extendedKeyUsage OIDs, when present. */
  extKeyUsage?: string[];
  /** subjectKeyIdentifier, when present. */
  skid?: Uint8Array;
  /** authorityKeyIdentifier's keyIdentifier, when present. */
  akid?: Uint8Array;
}

/*
 * Certificate  ::=  SEQUENCE  { tbsCertificate, signatureAlgorithm, signatureValue }
 * TBSCertificate  ::=  SEQUENCE  {
 *      version         [0]  EXPLICIT Version DEFAULT v1,
 *      serialNumber         CertificateSerialNumber,
 *      signature            AlgorithmIdentifier,
 *      issuer               Name,
 *      validity             Validity,
 *      subject              Name,
 *      subjectPublicKeyInfo SubjectPublicKeyInfo,
 *      issuerUniqueID  [1]  IMPLICIT UniqueIdentifier OPTIONAL,
 *      subjectUniqueID [2]  IMPLICIT UniqueIdentifier OPTIONAL,
 *      extensions      [3]  EXPLICIT Extensions OPTIONAL }
 * Extension  ::=  SEQUENCE  { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
 */
function parseCertificate(x509: X509Certificate): CertInfo {
  const der = new Uint8Array(x509.raw);
  const outer = new Reader(der);
  const cert = expectTlv(outer, 0x30, 'Certificate');
  outer.end('Certificate');
  const tbs = expectTlv(cert, 0x30, 'TBSCertificate');
  const sigAlg = expectTlv(cert, 0x30, 'signatureAlgorithm');
  const signatureOid = readOid(sigAlg, 'signatureAlgorithm');

  let version = 1;
  let t = tlv(tbs, 'TBSCertificate');
  if (t.tag === 0xa0) {
    version = readSmallUint(t.body, 'version') + 1;
    t.body.end('version');
    t = tlv(tbs, 'serialNumber');
  }
  if (t.tag !== 0x02) throw new DecodeError('serialNumber is not an INTEGER');
  expectTlv(tbs, 0x30, 'signature');
  const issuerStart = tbs.offset;
  expectTlv(tbs, 0x30, 'issuer');
  const issuer = der.slice(issuerStart, tbs.offset);
  const validity = expectTlv(tbs, 0x30, 'validity');
  const notBefore = readTime(validity, 'notBefore');
  const notAfter = readTime(validity, 'notAfter');
  validity.end('validity');
  const subjectStart = tbs.offset;
  expectTlv(tbs, 0x30, 'subject');
  const subject = der.slice(subjectStart, tbs.offset);
  expectTlv(tbs, 0x30, 'subjectPublicKeyInfo');

  const extensions = new Map<string, Extension>();
  while (!tbs.empty) {
    const f = tlv(tbs, 'TBSCertificate field');
    if (f.tag === 0x81 || f.tag === 0xa1 || f.tag === 0x82 || f.tag === 0xa2) continue; // unique IDs
    if (f.tag !== 0xa3) throw new DecodeError(`unexpected TBSCertificate field 0x${f.tag.toString(16)}`);
    const list = expectTlv(f.body, 0x30, 'Extensions');
    f.body.end('extensions');
    while (!list.empty) {
      const e = expectTlv(list, 0x30, 'Extension');
      const id = readOid(e, 'extnID');
      let critical = false;
      const peek = new Reader(der, e.offset);
      if (!e.empty && peek.u8() === 0x01) critical = readBoolean(e, 'critical');
      const value = expectTlv(e, 0x04, 'extnValue').rest();
      e.end('Extension');
      // RFC 5280 §4.2: "A certificate MUST NOT include more than one
      // instance of a particular extension."
      if (extensions.has(id)) throw new DecodeError(`extension ${id} appears twice`);
      extensions.set(id, { critical, value });
    }
  }
  const info: CertInfo = { x509, version, signatureOid, issuer, subject, notBefore, notAfter, extensions };

  const bc = extensions.get(OID.basicConstraints);
  if (bc) {
    // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL }
    const r = new Reader(bc.value);
    const s = expectTlv(r, 0x30, 'basicConstraints');
    r.end('basicConstraints');
    let ca = false;
    let pathLen: number | undefined;
    if (!s.empty && new Reader(bc.value, s.offset).u8() === 0x01) ca = readBoolean(s, 'cA');
    if (!s.empty) pathLen = readSmallUint(s, 'pathLenConstraint');
    s.end('basicConstraints');
    info.basic = { ca, pathLen };
  }
  const ku = extensions.get(OID.keyUsage);
  if (ku) {
    // KeyUsage ::= BIT STRING: the first octet counts the unused bits.
    const r = new Reader(ku.value);
    const bits = expectTlv(r, 0x03, 'keyUsage').rest();
    r.end('keyUsage');
    if (bits.length === 0 || bits[0]! > 7) throw new DecodeError('keyUsage: bad BIT STRING');
    info.keyUsage = bits.subarray(1);
  }
  const eku = extensions.get(OID.extKeyUsage);
  if (eku) {
    // ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId
    const r = new Reader(eku.value);
    const s = expectTlv(r, 0x30, 'extKeyUsage');
    r.end('extKeyUsage');
    const purposes: string[] = [];
    while (!s.empty) purposes.push(readOid(s, 'KeyPurposeId'));
    info.extKeyUsage = purposes;
  }
  const ski = extensions.get(OID.subjectKeyIdentifier);
  if (ski) {
    // SubjectKeyIdentifier ::= KeyIdentifier ::= OCTET STRING
    const r = new Reader(ski.value);
    info.skid = expectTlv(r, 0x04, 'subjectKeyIdentifier').rest();
    r.end('subjectKeyIdentifier');
  }
  const aki = extensions.get(OID.authorityKeyIdentifier);
  if (aki) {
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT KeyIdentifier OPTIONAL, … }
    const r = new Reader(aki.value);
    const s = expectTlv(r, 0x30, 'authorityKeyIdentifier');
    r.end('authorityKeyIdentifier');
    if (!s.empty && new Reader(aki.value, s.offset).u8() === 0x80) info.akid = expectTlv(s, 0x80, 'keyIdentifier').rest();
  }
  return info;
}

const parsed = new WeakMap<X509Certificate, CertInfo>();

function infoOf(x: X509Certificate, depth: number | undefined): CertInfo {
  let i = parsed.get(x);
  if (!i) {
    try {
      i = parseCertificate(x);
    } catch (cause) {
      throw new CertificateError('bad_certificate', 'malformed', `certificate ${x.subject.replace(/\n/g, ', ')} is malformed: ${(cause as Error).message}`, {
        cause,
        ...(depth !== undefined ? { depth } : {}),
      });
    }
    parsed.set(x, i);
  }
  return i;
}

/** keyUsage bit `n` (RFC 5280 §4.2.1.3: digitalSignature (0) … keyCertSign (5)). */
function hasKeyUsage(ku: Uint8Array, bit: number): boolean {
  const byte = ku[bit >> 3];
  return byte !== undefined && (byte & (0x80 >> (bit & 7))) !== 0;
}
const KU_DIGITAL_SIGNATURE = 0;
const KU_KEY_CERT_SIGN = 5;

function label(c: CertInfo): string {
  return c.x509.subject.replace(/\n/g, ', ');
}

// ------------------------------------------------------------ path building

/** Signature checks allowed while building one path (Go's crypto/x509 uses the same bound). */
const MAX_SIGNATURE_CHECKS = 100;

/**
 * Verify a server chain (leaf first) against trusted CAs and a host name
 * (RFC 5280 §6.1 path validation; RFC 9846 §4.4.2.2 and §4.4.2.4). Throws a
 * {@link CertificateError}:
 *
 * - `unknown_ca`: no path to a trusted CA (`untrusted`), an issuer that is
 *   not a CA (`not_a_ca`), a pathLenConstraint exceeded (`path_length`);
 * - `bad_certificate`: a signature that does not verify, MD5 or SHA-1
 *   signatures, malformed certificates, a leaf that does not name `host`;
 * - `certificate_expired`: a certificate outside its validity period;
 * - `unsupported_certificate`: extendedKeyUsage without serverAuth on any
 *   certificate of the path, or a leaf keyUsage without digitalSignature;
 * - `certificate_unknown`: an unknown critical extension, or a CA with
 *   nameConstraints (not enforced, hence refused).
 *
 * The certificates after the leaf may come in any order and include extra
 * ones (§4.4.2). Every certificate in `roots` is a trust anchor, self-signed
 * or not. `host` is matched against the leaf's subjectAltName dNSName entries
 * (or iPAddress entries for an IP literal) — never the subject CN — with a
 * wildcard only as the whole left-most label.
 * @group Client
 * @example
 * ```ts
 * verifyServerChain(chain, [caCert], 'example.com');
 * ```
 */
export function verifyServerChain(chain: readonly X509Certificate[], roots: readonly X509Certificate[], host: string | undefined, now = new Date()): void {
  if (chain.length === 0) throw new CertificateError('bad_certificate', 'empty_chain', 'empty certificate chain');
  const path = buildPath(chain, roots);
  checkPath(path);
  checkHost(path[0]!, host);
  checkValidity(path, now);
}

/**
 * From the leaf, at each step: stop at a certificate that is itself trusted;
 * else take a trusted CA that issued it (trusted first, as OpenSSL does);
 * else a certificate of the chain, not used yet, that issued it.
 */
function buildPath(chain: readonly X509Certificate[], roots: readonly X509Certificate[]): CertInfo[] {
  const sent = chain.map((x, i) => infoOf(x, i));
  const trusted = new Set(roots.map((r) => r.fingerprint256));
  const path: CertInfo[] = [sent[0]!];
  const used = new Set<CertInfo>(path);
  let checks = 0;
  for (;;) {
    const cur = path[path.length - 1]!;
    if (trusted.has(cur.x509.fingerprint256)) return path;
    let badSignature = false;
    const issuedCur = (cand: CertInfo): boolean => {
      if (!likelyIssued(cur, cand)) return false;
      if (++checks > MAX_SIGNATURE_CHECKS) {
        throw new CertificateError('unknown_ca', 'untrusted', `no path to a trusted CA within ${MAX_SIGNATURE_CHECKS} signature checks`);
      }
      if (cur.x509.verify(cand.x509.publicKey)) return true;
      badSignature = true;
      return false;
    };
    let next: CertInfo | undefined;
    for (const r of roots) {
      // Cheap name test first: only candidates are parsed.
      if (r.subject !== cur.x509.issuer && !cur.x509.checkIssued(r)) continue;
      const info = infoOf(r, undefined);
      if (issuedCur(info)) {
        next = info;
        break;
      }
    }
    if (next) {
      path.push(next);
      return path;
    }
    next = sent.find((c) => !used.has(c) && issuedCur(c));
    if (!next) {
      if (badSignature) {
        throw new CertificateError('bad_certificate', 'bad_signature', `the signature on ${label(cur)} does not verify`, { depth: path.length - 1 });
      }
      throw new CertificateError('unknown_ca', 'untrusted', `certificate chain does not lead to a trusted CA (no issuer for ${label(cur)})`, {
        depth: path.length - 1,
      });
    }
    path.push(next);
    used.add(next);
  }
}

/**
 * Could `parent` have issued `child` (before the signature is checked)? The
 * issuer name is the parent's subject — byte for byte, or as OpenSSL
 * compares names (`checkIssued`) — and the authority key identifier, when
 * both sides have one, is the parent's subject key identifier (RFC 5280
 * §4.2.1.1), as OpenSSL's issuer lookup requires.
 */
function likelyIssued(child: CertInfo, parent: CertInfo): boolean {
  if (child.akid && parent.skid && !equalBytes(child.akid, parent.skid)) return false;
  return equalBytes(child.issuer, parent.subject) || child.x509.checkIssued(parent.x509);
}

/** Self-issued: subject and issuer names are the same (RFC 5280 §6.1). */
function selfIssued(c: CertInfo): boolean {
  return equalBytes(c.issuer, c.subject);
}

/** The per-certificate checks, from the leaf up to the trust anchor. */
function checkPath(path: readonly CertInfo[]): void {
  const n = path.length;
  // Non-self-issued intermediates below the certificate at hand.
  let intermediatesBelow = 0;
  for (let i = 0; i < n; i++) {
    const c = path[i]!;
    const anchor = i === n - 1;
    const fail = (alert: AlertDescription, reason: CertificateFailure, message: string): never => {
      throw new CertificateError(alert, reason, `${message} (${label(c)}, depth ${i})`, { depth: i });
    };

    // RFC 5280 §6.1.4 (o): "Recognize and process any other critical
    // extension present in the certificate." What is not understood fails.
    for (const [id, e] of c.extensions) {
      if (e.critical && !UNDERSTOOD.has(id)) fail('certificate_unknown', 'unhandled_critical_extension', `unhandled critical extension ${id}`);
    }

    // RFC 9846 §4.4.2.4: MD5 "MUST abort … with a "bad_certificate" alert";
    // SHA-1 RECOMMENDED likewise. Not for trust anchors, whose own signature
    // is never relied on.
    const weak = WEAK_SIGNATURES.get(c.signatureOid);
    if (weak && !anchor) fail('bad_certificate', 'weak_signature', `certificate signed with ${weak}`);

    if (i > 0) {
      // RFC 5280 §6.1.4 (k): "If certificate i is a version 3 certificate,
      // verify that the basicConstraints extension is present and that cA
      // is set to TRUE." (n): "If a key usage extension is present, verify
      // that the keyCertSign bit is set."
      if (c.keyUsage && !hasKeyUsage(c.keyUsage, KU_KEY_CERT_SIGN)) fail('unknown_ca', 'not_a_ca', 'issuer keyUsage without keyCertSign');
      if (c.basic) {
        if (!c.basic.ca) fail('unknown_ca', 'not_a_ca', 'issuer with basicConstraints cA FALSE');
      } else if (!anchor) {
        fail('unknown_ca', 'not_a_ca', 'issuer without basicConstraints');
      } else if (!(c.version === 1 && selfIssued(c)) && !c.keyUsage) {
        // A trust anchor is tolerated without basicConstraints when it is a
        // v1 root or has keyUsage keyCertSign (OpenSSL's check_ca).
        fail('unknown_ca', 'not_a_ca', 'trust anchor is not a CA certificate');
      }
      // §4.2.1.10: name constraints apply to every certificate below the CA;
      // they are not enforced here, so such a path is refused.
      if (c.extensions.has(OID.nameConstraints)) fail('certificate_unknown', 'name_constraints', 'CA with nameConstraints, which this client does not enforce');
      // §6.1.4 (m): the path may hold at most pathLenConstraint
      // non-self-issued intermediates below this CA.
      if (c.basic?.pathLen !== undefined && intermediatesBelow > c.basic.pathLen) {
        fail('unknown_ca', 'path_length', `pathLenConstraint ${c.basic.pathLen} exceeded by ${intermediatesBelow} intermediates`);
      }
      if (!selfIssued(c)) intermediatesBelow++;
    } else {
      // RFC 9846 §4.4.2.2: "the digitalSignature bit MUST be set if the Key
      // Usage extension is present".
      if (c.keyUsage && !hasKeyUsage(c.keyUsage, KU_DIGITAL_SIGNATURE)) fail('unsupported_certificate', 'purpose', 'leaf keyUsage without digitalSignature');
    }
    // RFC 5280 §4.2.1.12: "If the extension is present, then the certificate
    // MUST only be used for one of the purposes indicated." serverAuth is
    // required on the leaf and, as OpenSSL does, on any CA that restricts it.
    if (c.extKeyUsage && !c.extKeyUsage.includes(OID.serverAuth)) {
      fail('unsupported_certificate', 'purpose', i === 0 ? 'leaf extendedKeyUsage without serverAuth' : 'CA extendedKeyUsage without serverAuth');
    }
  }
}

/**
 * RFC 9525 §6.3: DNS-ID (subjectAltName dNSName) only, never the CN
 * (§6.1: "the client MUST NOT seek a match for a reference identifier of
 * CN-ID"); a wildcard only as the complete left-most label (§6.3). An IP
 * literal is matched against iPAddress entries.
 */
function checkHost(leaf: CertInfo, host: string | undefined): void {
  if (host === undefined) return;
  const ok = isIP(host)
    ? leaf.x509.checkIP(host) !== undefined
    : leaf.x509.checkHost(host, { subject: 'never', wildcards: true, partialWildcards: false, multiLabelWildcards: false, singleLabelSubdomains: false }) !== undefined;
  if (!ok) throw new CertificateError('bad_certificate', 'host_mismatch', `certificate does not match ${host}`, { depth: 0 });
}

/** RFC 5280 §6.1.3 (a)(2): every certificate, the trust anchor too (as OpenSSL checks it). */
function checkValidity(path: readonly CertInfo[], now: Date): void {
  for (let i = path.length - 1; i >= 0; i--) {
    const c = path[i]!;
    if (now < c.notBefore) {
      throw new CertificateError('certificate_expired', 'not_yet_valid', `certificate ${label(c)} is not valid before ${c.notBefore.toISOString()}`, { depth: i });
    }
    if (now > c.notAfter) {
      throw new CertificateError('certificate_expired', 'expired', `certificate ${label(c)} expired at ${c.notAfter.toISOString()}`, { depth: i });
    }
  }
}
