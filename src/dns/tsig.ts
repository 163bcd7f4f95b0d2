/**
 * TSIG (RFC 8945): signing a DNS message with a shared HMAC key and verifying
 * the signed answer. dns-packet encodes messages but knows nothing of TSIG, so
 * the TSIG record is built here on the encoded bytes: the MAC covers the
 * message exactly as sent, then the TSIG RR is appended and ARCOUNT raised.
 *
 * @module
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { concatBytes, fromBase64 } from '../wire/bytes.js';
import { DecodeError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { PublishError } from './errors.js';

/**
 * TSIG algorithms supported (RFC 8945 §6: HMAC-SHA256 is mandatory), with
 * their node:crypto hash names.
 * @group DNS
 * @example
 * ```ts
 * TsigAlgorithm['hmac-sha256']; // 'sha256'
 * ```
 */
export const TsigAlgorithm = {
  'hmac-sha256': 'sha256',
  'hmac-sha384': 'sha384',
  'hmac-sha512': 'sha512',
} as const;
/**
 * A TSIG algorithm name.
 * @group DNS
 * @example
 * ```ts
 * const alg: TsigAlgorithm = 'hmac-sha256';
 * ```
 */
export type TsigAlgorithm = keyof typeof TsigAlgorithm;

/**
 * A TSIG key shared with the DNS server.
 * @group DNS
 * @example
 * ```ts
 * const key = tsigKey('ech-update', 'c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ==');
 * ```
 */
export interface TsigKey {
  /** Key name, as configured on the server (e.g. `ech-update.`). */
  name: string;
  /** Algorithm; default `hmac-sha256`. */
  algorithm: TsigAlgorithm;
  /** The shared secret (never logged). */
  secret: Uint8Array;
}

/**
 * Make a {@link TsigKey} from its name and base64 secret (the form BIND's
 * `tsig-keygen` and Knot's `keymgr -t` print).
 * @group DNS
 * @example
 * ```ts
 * const key = tsigKey('ech-update.', process.env.TSIG_SECRET!, 'hmac-sha256');
 * ```
 */
export function tsigKey(name: string, secretBase64: string, algorithm: TsigAlgorithm = 'hmac-sha256'): TsigKey {
  if (!(algorithm in TsigAlgorithm)) throw new PublishError('ERR_PUBLISH_CONFIG', `unknown TSIG algorithm '${algorithm}' (use ${Object.keys(TsigAlgorithm).join(', ')})`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(secretBase64.trim()) || secretBase64.trim().length % 4 !== 0) {
    throw new PublishError('ERR_PUBLISH_CONFIG', `the TSIG secret of key '${name}' is not base64`);
  }
  const secret = fromBase64(secretBase64.trim());
  if (secret.length < 16) throw new PublishError('ERR_PUBLISH_CONFIG', `the TSIG secret of key '${name}' is shorter than 16 bytes`);
  try {
    nameWire(name);
  } catch (e) {
    throw new PublishError('ERR_PUBLISH_CONFIG', `TSIG key name '${name}': ${(e as Error).message}`, { cause: e });
  }
  return { name, algorithm, secret };
}

/**
 * TSIG error codes (RFC 8945 §5.3 and the IANA RCODE registry).
 * @group DNS
 * @example
 * ```ts
 * if (findTsig(answer)?.error === TsigError.BADSIG) console.error('wrong secret');
 * ```
 */
export const TsigError = {
  NOERROR: 0,
  BADSIG: 16,
  BADKEY: 17,
  BADTIME: 18,
  BADTRUNC: 22,
} as const;
/**
 * A TSIG error name.
 * @group DNS
 * @example
 * ```ts
 * const e: TsigError = 'BADKEY';
 * ```
 */
export type TsigError = keyof typeof TsigError;

/**
 * Name of a TSIG error code, or `RCODE_N`.
 * @group DNS
 * @example
 * ```ts
 * tsigErrorName(16); // 'BADSIG'
 * ```
 */
export function tsigErrorName(code: number): string {
  for (const [k, v] of Object.entries(TsigError)) if (v === code) return k;
  return `RCODE_${code}`;
}

const CLASS_ANY = 255;
const TYPE_TSIG = 250;
/** Default fudge: RFC 8945 §10 recommends 300 seconds. */
const FUDGE = 300;

/** Canonical (lowercase, uncompressed) wire form of a domain name. */
function nameWire(name: string): Uint8Array {
  const n = name.replace(/\.$/, '').toLowerCase();
  if (n === '') return Uint8Array.of(0);
  const parts: Uint8Array[] = [];
  for (const label of n.split('.')) {
    const b = Buffer.from(label, 'ascii');
    if (b.length < 1 || b.length > 63) throw new PublishError('ERR_PUBLISH_CONFIG', `bad label '${label}'`);
    parts.push(Uint8Array.of(b.length), b);
  }
  parts.push(Uint8Array.of(0));
  const out = concatBytes(...parts);
  if (out.length > 255) throw new PublishError('ERR_PUBLISH_CONFIG', 'name longer than 255 bytes');
  return out;
}

function u16(v: number): Uint8Array {
  return Uint8Array.of(v >> 8, v & 0xff);
}

function u48(v: number): Uint8Array {
  const hi = Math.floor(v / 2 ** 32);
  return Uint8Array.of((hi >> 8) & 0xff, hi & 0xff, (v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}

/** RFC 8945 §4.3.3: the TSIG variables that enter the digest. */
function tsigVariables(key: TsigKey, timeSigned: number, fudge: number, error: number, other: Uint8Array): Uint8Array {
  return concatBytes(
    nameWire(key.name),
    u16(CLASS_ANY),
    new Uint8Array(4), // TTL 0
    nameWire(key.algorithm),
    u48(timeSigned),
    u16(fudge),
    u16(error),
    u16(other.length),
    other,
  );
}

function hmac(key: TsigKey, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac(TsigAlgorithm[key.algorithm], key.secret);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/**
 * A message signed with TSIG: the bytes to send and the MAC, which the
 * answer's MAC covers.
 * @group DNS
 * @example
 * ```ts
 * const signed: TsigSigned = tsigSign(message, key, Date.now());
 * ```
 */
export interface TsigSigned {
  /** The message with the TSIG RR appended. */
  message: Uint8Array;
  /** The request MAC. */
  mac: Uint8Array;
  /** Time Signed (seconds since the epoch). */
  timeSigned: number;
}

/**
 * Sign an encoded DNS message (RFC 8945 §5.1): MAC over the message and the
 * TSIG variables, then the TSIG RR appended as the last additional record.
 * The message must not already carry a TSIG RR.
 * @group DNS
 * @example
 * ```ts
 * const { message, mac } = tsigSign(dnsPacket.encode(update), key, Date.now());
 * ```
 */
export function tsigSign(message: Uint8Array, key: TsigKey, nowMs: number, fudge = FUDGE): TsigSigned {
  if (message.length < 12) throw new PublishError('ERR_PUBLISH_CONFIG', 'a DNS message is at least 12 bytes');
  const timeSigned = Math.floor(nowMs / 1000);
  const mac = hmac(key, message, tsigVariables(key, timeSigned, fudge, 0, new Uint8Array(0)));
  const originalId = (message[0]! << 8) | message[1]!;
  const rdata = concatBytes(nameWire(key.algorithm), u48(timeSigned), u16(fudge), u16(mac.length), mac, u16(originalId), u16(0), u16(0));
  const rr = concatBytes(nameWire(key.name), u16(TYPE_TSIG), u16(CLASS_ANY), new Uint8Array(4), u16(rdata.length), rdata);
  const out = concatBytes(message, rr);
  const ar = ((out[10]! << 8) | out[11]!) + 1;
  out[10] = ar >> 8;
  out[11] = ar & 0xff;
  return { message: out, mac, timeSigned };
}

/** A malformed DNS message (what the server sent us, or what we were given). */
function malformed(detail: string): PublishError {
  return new PublishError('ERR_DNS_RESPONSE', detail);
}

/** Skip a (possibly compressed) name. */
function skipName(r: Reader): void {
  for (;;) {
    if (r.empty) throw malformed('truncated name');
    const len = r.u8();
    if (len === 0) return;
    if ((len & 0xc0) === 0xc0) {
      if (r.empty) throw malformed('truncated name');
      r.skip(1); // the pointer's second byte
      return;
    }
    if (len & 0xc0) throw malformed('bad label type');
    if (len > r.remaining) throw malformed('truncated name');
    r.skip(len);
  }
}

/** Read an uncompressed name as text (TSIG names are never compressed). */
function readName(r: Reader): string {
  const labels: string[] = [];
  for (;;) {
    if (r.empty) throw malformed('truncated name');
    const len = r.u8();
    if (len === 0) return labels.length ? `${labels.join('.')}.` : '.';
    if (len & 0xc0) throw malformed('compressed name in TSIG');
    if (len > r.remaining) throw malformed('truncated name');
    labels.push(Buffer.from(r.view(len)).toString('ascii').toLowerCase());
  }
}

/**
 * The TSIG RR found at the end of a message.
 * @group DNS
 * @example
 * ```ts
 * const t: TsigRecord | undefined = findTsig(answer);
 * console.log(t?.keyName, t?.timeSigned);
 * ```
 */
export interface TsigRecord {
  /** Offset where the TSIG RR starts (the unsigned message is the bytes before it). */
  offset: number;
  keyName: string;
  algorithm: string;
  timeSigned: number;
  fudge: number;
  mac: Uint8Array;
  originalId: number;
  error: number;
  otherData: Uint8Array;
}

/**
 * Find and parse the TSIG RR of a message (the last additional record), or
 * `undefined` when the message has none. A malformed message is an
 * `ERR_DNS_RESPONSE` {@link PublishError}.
 * @group DNS
 * @example
 * ```ts
 * const tsig = findTsig(answer);
 * if (tsig?.error) console.log(tsigErrorName(tsig.error));
 * ```
 */
export function findTsig(message: Uint8Array): TsigRecord | undefined {
  if (message.length < 12) throw malformed('message shorter than its header');
  const r = new Reader(message, 4); // after ID and flags
  const qd = r.u16();
  const an = r.u16();
  const ns = r.u16();
  const ar = r.u16();
  if (ar === 0) return undefined;
  for (let i = 0; i < qd; i++) {
    skipName(r);
    if (r.remaining < 4) throw malformed('truncated question');
    r.skip(4); // QTYPE, QCLASS
  }
  let last = r.offset;
  for (let i = 0; i < an + ns + ar; i++) {
    last = r.offset;
    skipName(r);
    if (r.remaining < 10) throw malformed('truncated record');
    r.skip(8); // TYPE, CLASS, TTL
    const rdLength = r.u16();
    if (rdLength > r.remaining) throw malformed('truncated record data');
    r.skip(rdLength);
  }
  if (!r.empty) throw malformed('trailing bytes after the last record');
  // The last record, again: its owner name, TYPE, CLASS, TTL and RDATA.
  const rr = new Reader(message, last);
  const keyName = readName(rr);
  if (rr.u16() !== TYPE_TSIG) return undefined;
  rr.skip(6); // CLASS, TTL
  const rdata = rr.vector16('TSIG RDATA');
  // RFC 8945 §4.2: Algorithm Name, Time Signed (u48), Fudge, MAC Size + MAC,
  // Original ID, Error, Other Len + Other Data, and nothing after.
  const algorithm = readName(rdata);
  try {
    const timeSigned = rdata.u16() * 2 ** 32 + rdata.u32();
    const fudge = rdata.u16();
    const mac = rdata.bytes16();
    const originalId = rdata.u16();
    const error = rdata.u16();
    const otherData = rdata.bytes16();
    rdata.end();
    return { offset: last, keyName, algorithm, timeSigned, fudge, mac, originalId, error, otherData };
  } catch (e) {
    if (e instanceof DecodeError) throw new PublishError('ERR_DNS_RESPONSE', 'TSIG RDATA length does not add up', { cause: e });
    throw e;
  }
}

/**
 * Verify the TSIG of a response to a signed request (RFC 8945 §5.3.1, §5.4):
 * the server's TSIG error (BADSIG, BADKEY, BADTIME) becomes an
 * `ERR_DNS_TSIG` {@link PublishError}; so do an unsigned answer, a MAC that
 * does not verify, and a time outside the fudge window.
 * @group DNS
 * @example
 * ```ts
 * const signed = tsigSign(query, key, Date.now());
 * const answer = await exchange(signed.message);
 * tsigVerifyResponse(answer, key, signed.mac, Date.now());
 * ```
 */
export function tsigVerifyResponse(response: Uint8Array, key: TsigKey, requestMac: Uint8Array, nowMs: number): void {
  let t: TsigRecord | undefined;
  try {
    t = findTsig(response);
  } catch (e) {
    throw new PublishError('ERR_DNS_RESPONSE', `malformed DNS answer: ${(e as Error).message}`, { cause: e });
  }
  const rcode = response.length >= 4 ? response[3]! & 0x0f : 0;
  if (!t) {
    throw new PublishError('ERR_DNS_TSIG', `the server's answer is not TSIG-signed (RCODE ${rcode}); is key '${key.name}' configured on the server?`);
  }
  if (t.error !== 0) {
    const name = tsigErrorName(t.error);
    const hint =
      name === 'BADSIG' ? 'the TSIG secret does not match the server\'s' :
      name === 'BADKEY' ? `the server does not know key '${key.name}' with ${key.algorithm}, or does not allow that key here` :
      name === 'BADTIME' ? 'the clocks differ by more than the fudge' : 'TSIG failed';
    throw new PublishError('ERR_DNS_TSIG', `TSIG error ${name} from the server: ${hint}`, { tsigError: name });
  }
  if (t.keyName !== nameText(key.name) || t.algorithm !== nameText(key.algorithm)) {
    throw new PublishError('ERR_DNS_TSIG', `the answer is signed with key ${t.keyName} (${t.algorithm}), not ${key.name}`);
  }
  const unsigned = response.slice(0, t.offset);
  unsigned[0] = t.originalId >> 8;
  unsigned[1] = t.originalId & 0xff;
  const ar = ((unsigned[10]! << 8) | unsigned[11]!) - 1;
  unsigned[10] = ar >> 8;
  unsigned[11] = ar & 0xff;
  const expected = hmac(key, u16(requestMac.length), requestMac, unsigned, tsigVariables(key, t.timeSigned, t.fudge, t.error, t.otherData));
  if (t.mac.length !== expected.length || !timingSafeEqual(t.mac, expected)) {
    throw new PublishError('ERR_DNS_TSIG', 'the TSIG MAC of the server\'s answer does not verify (wrong secret, or the answer was altered)', { tsigError: 'BADSIG' });
  }
  const now = Math.floor(nowMs / 1000);
  if (Math.abs(now - t.timeSigned) > t.fudge) {
    throw new PublishError('ERR_DNS_TSIG', `the answer was signed at ${t.timeSigned}, outside the fudge of ${t.fudge} s around ${now}`, { tsigError: 'BADTIME' });
  }
}

function nameText(name: string): string {
  const n = name.replace(/\.$/, '').toLowerCase();
  return n ? `${n}.` : '.';
}

/**
 * A fresh random 16-bit DNS message ID.
 * @group DNS
 * @example
 * ```ts
 * const id = randomMessageId();
 * ```
 */
export function randomMessageId(): number {
  return randomBytes(2).readUInt16BE(0);
}
