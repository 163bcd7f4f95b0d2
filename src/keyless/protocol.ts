/**
 * The keyless wire protocol between a front end and a key server: compact
 * binary frames with request ids, carried over mutually authenticated TLS
 * (see docs/keyless.md). Bytes in, structs out: no sockets here.
 *
 * ```
 * struct {
 *   uint32 length;                  // of everything after this field, <= MAX_FRAME
 *   uint8  version = 1;
 *   uint8  op;                      // KeylessOp
 *   uint32 id;                      // chosen by the client, echoed in the response
 *   opaque key_id<0..255>;          // 32 bytes (see echKeyId, tlsKeyId); empty for ping
 *   uint16 param;                   // decap: KEM id; sign: SignatureScheme; ping: 0
 *   opaque payload<0..2^16-1>;      // decap: enc; sign: the CertificateVerify input
 * } Request;
 *
 * struct {
 *   uint32 length;
 *   uint8  version = 1;
 *   uint8  status;                  // KeylessStatus
 *   uint32 id;
 *   opaque payload<0..2^16-1>;      // ok: shared_secret or signature; else a UTF-8 reason
 * } Response;
 * ```
 *
 * @module
 */
import { createHash, type KeyObject } from 'node:crypto';
import { DecodeError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { Writer } from '../wire/writer.js';

/**
 * Protocol version carried in every frame.
 * @group Keyless
 * @example
 * ```ts
 * if (frame.version !== KEYLESS_VERSION) socket.destroy();
 * ```
 */
export const KEYLESS_VERSION = 1;

/**
 * Largest frame body accepted (bytes after the length field). A request
 * carries at most an X-Wing `enc` (1120 bytes) or a CertificateVerify input
 * (162 bytes); a response at most an RSA-4096 signature (512 bytes).
 * @group Keyless
 * @example
 * ```ts
 * if (length > MAX_FRAME) throw new DecodeError('frame too large');
 * ```
 */
export const MAX_FRAME = 4096;

/**
 * Operations.
 * @group Keyless
 * @example
 * ```ts
 * encodeRequest({ op: KeylessOp.decap, id: 1, keyId, param: 0x0020, payload: enc });
 * ```
 */
export const KeylessOp = {
  /** RFC 9180 Decap(enc, skR) with an ECH key: returns the KEM shared secret. */
  decap: 1,
  /** Sign a TLS 1.3 server CertificateVerify input with a certificate's key. */
  sign: 2,
  /** Liveness check; no key. */
  ping: 3,
} as const;
/**
 * An operation code. @group Keyless
 * @example
 * ```ts
 * const op: KeylessOp = KeylessOp.sign;
 * ```
 */
export type KeylessOp = (typeof KeylessOp)[keyof typeof KeylessOp];

/**
 * Response statuses.
 * @group Keyless
 * @example
 * ```ts
 * if (res.status === KeylessStatus.forbidden) console.error('not allowed');
 * ```
 */
export const KeylessStatus = {
  ok: 0,
  /** No key with this key id. */
  unknownKey: 1,
  /** The client's certificate may not use this key. */
  forbidden: 2,
  /** The client exceeded its rate limit. */
  rateLimited: 3,
  /** Malformed request, wrong KEM or scheme, or data that is not a CertificateVerify input. */
  badRequest: 4,
  /** Decap failed on this `enc` (invalid point): the ECH payload cannot open. */
  cryptoFailed: 5,
  /** Anything else on the key server. */
  internal: 6,
} as const;
/**
 * A response status. @group Keyless
 * @example
 * ```ts
 * const s: KeylessStatus = KeylessStatus.ok;
 * ```
 */
export type KeylessStatus = (typeof KeylessStatus)[keyof typeof KeylessStatus];

const statusNames = new Map<number, string>([
  [0, 'ok'],
  [1, 'unknown-key'],
  [2, 'forbidden'],
  [3, 'rate-limited'],
  [4, 'bad-request'],
  [5, 'crypto-failed'],
  [6, 'internal'],
]);

/**
 * The name used in logs for a status (`ok`, `forbidden`, ...).
 * @group Keyless
 * @example
 * ```ts
 * keylessStatusName(KeylessStatus.rateLimited); // 'rate-limited'
 * ```
 */
export function keylessStatusName(status: number): string {
  return statusNames.get(status) ?? `status-${status}`;
}

/**
 * A request frame.
 * @group Keyless
 * @example
 * ```ts
 * const req: KeylessRequest = { op: KeylessOp.ping, id: 7, keyId: new Uint8Array(0), param: 0, payload: new Uint8Array(0) };
 * ```
 */
export interface KeylessRequest {
  op: number;
  id: number;
  keyId: Uint8Array;
  param: number;
  payload: Uint8Array;
}

/**
 * A response frame.
 * @group Keyless
 * @example
 * ```ts
 * const res: KeylessResponse = { status: KeylessStatus.ok, id: 7, payload: sharedSecret };
 * ```
 */
export interface KeylessResponse {
  status: number;
  id: number;
  payload: Uint8Array;
}

function frame(body: (w: Writer) => void): Uint8Array {
  const w = new Writer(128);
  w.u32(0);
  body(w);
  const out = w.finish();
  const len = out.length - 4;
  if (len > MAX_FRAME) throw new DecodeError(`keyless frame of ${len} bytes exceeds ${MAX_FRAME}`);
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(0, len);
  return out;
}

/**
 * Encode a request frame (with its length prefix).
 * @group Keyless
 * @example
 * ```ts
 * socket.write(encodeRequest({ op: KeylessOp.decap, id, keyId, param: kem, payload: enc }));
 * ```
 */
export function encodeRequest(r: KeylessRequest): Uint8Array {
  return frame((w) => w.u8(KEYLESS_VERSION).u8(r.op).u32(r.id).bytes8(r.keyId).u16(r.param).bytes16(r.payload));
}

/**
 * Encode a response frame (with its length prefix).
 * @group Keyless
 * @example
 * ```ts
 * socket.write(encodeResponse({ status: KeylessStatus.ok, id: req.id, payload: signature }));
 * ```
 */
export function encodeResponse(r: KeylessResponse): Uint8Array {
  return frame((w) => w.u8(KEYLESS_VERSION).u8(r.status).u32(r.id).bytes16(r.payload));
}

function header(body: Uint8Array): { r: Reader; code: number; id: number } {
  const r = new Reader(body);
  const version = r.u8('version');
  if (version !== KEYLESS_VERSION) throw new DecodeError(`keyless protocol version ${version} not supported`);
  const code = r.u8('op');
  const id = r.u32('id');
  return { r, code, id };
}

/**
 * Decode a request frame body (without the length prefix). Throws
 * {@link DecodeError} on truncation, trailing bytes or another version.
 * @group Keyless
 * @example
 * ```ts
 * for (const body of decoder.push(chunk)) handle(decodeRequest(body));
 * ```
 */
export function decodeRequest(body: Uint8Array): KeylessRequest {
  const { r, code, id } = header(body);
  const keyId = r.bytes8('key_id');
  const param = r.u16('param');
  const payload = r.bytes16('payload');
  r.end('request');
  return { op: code, id, keyId, param, payload };
}

/**
 * Decode a response frame body (without the length prefix).
 * @group Keyless
 * @example
 * ```ts
 * const res = decodeResponse(body);
 * ```
 */
export function decodeResponse(body: Uint8Array): KeylessResponse {
  const { r, code, id } = header(body);
  const payload = r.bytes16('payload');
  r.end('response');
  return { status: code, id, payload };
}

/**
 * Splits a byte stream into frame bodies. Throws {@link DecodeError} when a
 * length prefix exceeds {@link MAX_FRAME} (the connection must then close).
 * @group Keyless
 * @example
 * ```ts
 * const d = new FrameDecoder();
 * socket.on('data', (c) => { for (const body of d.push(c)) onFrame(body); });
 * ```
 */
export class FrameDecoder {
  #buf: Buffer = Buffer.alloc(0);

  /** Add received bytes; returns every complete frame body (copies). */
  push(chunk: Uint8Array): Uint8Array[] {
    this.#buf = this.#buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#buf, chunk]);
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.#buf.length < 4) break;
      const len = this.#buf.readUInt32BE(0);
      if (len > MAX_FRAME) throw new DecodeError(`keyless frame of ${len} bytes exceeds ${MAX_FRAME}`);
      if (this.#buf.length < 4 + len) break;
      out.push(new Uint8Array(this.#buf.subarray(4, 4 + len)));
      this.#buf = this.#buf.subarray(4 + len);
    }
    return out;
  }

  /** Bytes held that do not yet form a frame. */
  get pending(): number {
    return this.#buf.length;
  }
}

/**
 * Key id of an ECH key: SHA-256("ech" || I2OSP(kem_id, 2) || public_key).
 * Computed alike from the ECHConfig (front end) and the private key (key
 * server), so nothing maps config_ids to keys by hand.
 * @group Keyless
 * @example
 * ```ts
 * const id = echKeyId(config.kemId, config.publicKey);
 * ```
 */
export function echKeyId(kem: number, publicKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update('ech').update(Uint8Array.of(kem >> 8, kem & 0xff)).update(publicKey).digest());
}

/**
 * Key id of a TLS certificate key: SHA-256 of the DER SubjectPublicKeyInfo
 * (the certificate's public key), as Keyless SSL identifies keys by a digest
 * of the public key.
 * @group Keyless
 * @example
 * ```ts
 * const id = tlsKeyId(new X509Certificate(pem).publicKey);
 * ```
 */
export function tlsKeyId(publicKey: KeyObject): Uint8Array {
  return new Uint8Array(createHash('sha256').update(publicKey.export({ format: 'der', type: 'spki' })).digest());
}

const CV_PREFIX = Buffer.concat([Buffer.alloc(64, 0x20), Buffer.from('TLS 1.3, server CertificateVerify\0', 'latin1')]);

/**
 * Whether `data` is a TLS 1.3 server CertificateVerify input (RFC 9846
 * §4.4.3: 64 spaces, the server context string, 0, a 32/48/64-byte
 * transcript hash). The key server signs nothing else, so a front end cannot
 * use a customer key as a general-purpose signing oracle.
 * @group Keyless
 * @example
 * ```ts
 * isCertificateVerifyInput(certificateVerifyInput(true, hash)); // true
 * ```
 */
export function isCertificateVerifyInput(data: Uint8Array): boolean {
  const h = data.length - CV_PREFIX.length;
  if (h !== 32 && h !== 48 && h !== 64) return false;
  return Buffer.from(data.buffer, data.byteOffset, CV_PREFIX.length).equals(CV_PREFIX);
}
