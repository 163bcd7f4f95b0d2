/**
 * EncodedClientHelloInner decoding and `ech_outer_extensions` expansion
 * (RFC 9849 §5.1, Appendix B), and its inverse for the client side.
 *
 * @module
 */
import { DecodeError, IllegalParameterError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { Writer } from '../wire/writer.js';
import { ExtensionType, HandshakeType } from '../tls/constants.js';
import { type ClientHello, type Extension, encodeClientHello, parseClientHelloOwned, type ParsedClientHello, writeClientHello } from '../tls/client-hello.js';
import { type ClientHelloScan, ExtensionList, scanClientHello } from '../tls/scan.js';

/** Length of the ClientHello at the start of `b` (the rest is padding), by its length prefixes. */
function clientHelloLength(b: Uint8Array): number {
  const r = new Reader(b);
  r.skip(2 + 32, 'legacy_version and random');
  r.skip(r.u8('legacy_session_id'), 'legacy_session_id');
  r.skip(r.u16('cipher_suites'), 'cipher_suites');
  r.skip(r.u8('legacy_compression_methods'), 'legacy_compression_methods');
  r.skip(r.u16('extensions'), 'extensions');
  return r.offset;
}

const innerList = new ExtensionList();

/**
 * ClientHelloInner rebuilt from an EncodedClientHelloInner, as a handshake
 * message, with a scan of it.
 * @group ECH
 */
export interface RebuiltClientHelloInner {
  /** ClientHelloInner as a handshake message (4-byte header included). */
  message: Uint8Array;
  /** Positions of its interesting extensions, relative to `message.subarray(4)`. */
  scan: ClientHelloScan;
  /** Outer extension types that `ech_outer_extensions` referenced. */
  outerReferences: number[];
}

/**
 * Rebuild ClientHelloInner from an EncodedClientHelloInner and the raw
 * ClientHelloOuter body (RFC 9849 §5.1), in one linear pass over offsets
 * (Appendix B), copying each extension's bytes once:
 *
 * - bytes after `client_hello` are padding and MUST be zero
 *   (`illegal_parameter` otherwise);
 * - the encoded `legacy_session_id` must be empty, and the outer one is used;
 * - `ech_outer_extensions` is replaced by the referenced outer extensions,
 *   with every rejection §5.1 lists (`illegal_parameter`);
 * - the result may not hold an extension twice (`illegal_parameter`).
 *
 * `outer` must list every extension of `outerBody` (see `scanClientHello`).
 * @group ECH
 * @example
 * ```ts
 * const list = new ExtensionList();
 * scanClientHello(outerBody, list);
 * const { message } = rebuildClientHelloInner(plaintext, outerBody, list);
 * ```
 */
export function rebuildClientHelloInner(encoded: Uint8Array, outerBody: Uint8Array, outer: ExtensionList): RebuiltClientHelloInner {
  const len = clientHelloLength(encoded);
  for (let i = len; i < encoded.length; i++) {
    // RFC 9849 §5.1: "If any padding byte is non-zero, the server MUST abort
    // the connection with an "illegal_parameter" alert."
    if (encoded[i] !== 0) throw new IllegalParameterError('non-zero padding in EncodedClientHelloInner');
  }
  const enc = encoded.subarray(0, len);
  const encScan = scanClientHello(enc, innerList);
  // RFC 9849 §5.1: the client sets legacy_session_id "to the empty string"
  // before encoding; a non-empty one cannot come from a conforming client.
  if (enc[34] !== 0) throw new IllegalParameterError('EncodedClientHelloInner has a non-empty legacy_session_id');
  const outerSid = outerBody[34]!;
  let size = 4 + len + outerSid;
  for (let i = 0; i < outer.count; i++) size += outer.len[i]! + 4;
  const w = new Writer(size);
  // Written straight through, the two length prefixes patched at the end (no
  // closures for the vectors: this runs once per ECH handshake, and a closure
  // created per call loses its optimised code at every full GC).
  w.u8(HandshakeType.client_hello);
  w.u24(0); // uint24 length, patched below
  const outerReferences: number[] = [];
  w.bytesFrom(enc, 0, 34); // legacy_version, random
  w.bytesFrom(outerBody, 34, 35 + outerSid); // the outer legacy_session_id
  w.bytesFrom(enc, encScan.cipherSuitesAt, encScan.extensionsAt); // cipher_suites, compression methods
  const extensionsAt = w.length;
  w.u16(0); // Extension extensions<8..2^16-1> length, patched below
  const start = w.length;
  for (let i = 0; i < innerList.count; i++) {
    const at = innerList.at[i]!;
    const n = innerList.len[i]!;
    if (innerList.types[i] !== ExtensionType.ech_outer_extensions) {
      checkRoom(w.length - start, n + 4);
      w.bytesFrom(enc, at - 4, at + n);
      continue;
    }
    // OuterExtensions: ExtensionType OuterExtensions<2..254>;
    const data = new Reader(enc, at, at + n);
    const refs = data.vector8('ech_outer_extensions');
    if (!data.empty || refs.remaining < 2 || refs.remaining % 2 !== 0) {
      throw new DecodeError('malformed ech_outer_extensions');
    }
    // Appendix B: "Let I be initialized to zero and N be set to the number
    // of extensions in ClientHelloOuter."
    let j = 0;
    while (!refs.empty) {
      const ref = refs.u16();
      outerReferences.push(ref);
      // "If E is "encrypted_client_hello", abort the connection with an
      // "illegal_parameter" alert."
      if (ref === ExtensionType.encrypted_client_hello) {
        throw new IllegalParameterError('ech_outer_extensions references encrypted_client_hello');
      }
      // "While I is less than N and the I-th extension of
      // ClientHelloOuter does not have type E, increment I."
      while (j < outer.count && outer.types[j] !== ref) j++;
      // "If I is equal to N, abort ... with an "illegal_parameter"
      // alert": a missing reference, a repeated one, or one out of order.
      if (j === outer.count) {
        throw new IllegalParameterError(
          `ech_outer_extensions reference 0x${ref.toString(16).padStart(4, '0')} is missing, repeated or out of order in ClientHelloOuter`,
        );
      }
      const oat = outer.at[j]!;
      checkRoom(w.length - start, outer.len[j]! + 4);
      w.bytesFrom(outerBody, oat - 4, oat + outer.len[j]!);
      j++;
    }
  }
  // The writer was sized for the message and is dropped here: keep its buffer.
  const message = w.finishView();
  const body = message.length - 4;
  message[1] = body >>> 16;
  message[2] = (body >>> 8) & 0xff;
  message[3] = body & 0xff;
  const block = message.length - start;
  message[extensionsAt] = block >>> 8;
  message[extensionsAt + 1] = block & 0xff;
  // Checks the rebuilt hello's structure and that expansion introduced no
  // duplicate (RFC 9846 §4.2), and finds its extensions.
  const scan = scanClientHello(message.subarray(4));
  return { message, scan, outerReferences };
}

/**
 * RFC 9846 §4.1.2: `Extension extensions<8..2^16-1>`. Expansion of
 * ech_outer_extensions can push the rebuilt block past what its length
 * prefix holds: that is the client's malformed input (decode_error), not the
 * writer's internal_error.
 */
function checkRoom(used: number, n: number): void {
  if (used + n > 0xffff) {
    throw new DecodeError('ClientHelloInner extensions exceed 65535 bytes after ech_outer_extensions expansion');
  }
}

/**
 * {@link rebuildClientHelloInner} for a decoded ClientHelloOuter, returning
 * ClientHelloInner decoded.
 * @group ECH
 * @example
 * ```ts
 * const { inner } = decodeEncodedClientHelloInner(plaintext, outer);
 * ```
 */
export function decodeEncodedClientHelloInner(
  encoded: Uint8Array,
  outer: ClientHello,
): { inner: ParsedClientHello; message: Uint8Array; outerReferences: number[] } {
  const outerBody = encodeClientHello(outer);
  const list = new ExtensionList();
  scanClientHello(outerBody, list);
  const r = rebuildClientHelloInner(encoded, outerBody, list);
  return { inner: parseClientHelloOwned(r.message.subarray(4)), message: r.message, outerReferences: r.outerReferences };
}

/**
 * Client side of §5.1: replace the extensions listed in `compress` (which
 * must be contiguous in `inner.extensions`) by one `ech_outer_extensions`
 * extension, set legacy_session_id to empty, and append `padding` zero bytes.
 * @group ECH
 * @example
 * ```ts
 * const encoded = encodeClientHelloInner(inner, [ExtensionType.key_share], 24);
 * ```
 */
export function encodeClientHelloInner(inner: ClientHello, compress: readonly number[], padding: number): Uint8Array {
  const exts: Extension[] = [];
  let placed = false;
  const set = new Set(compress);
  for (const e of inner.extensions) {
    if (!set.has(e.type)) {
      exts.push(e);
      continue;
    }
    if (!placed) {
      const w = new Writer();
      w.vector8((v) => {
        for (const t of compress) v.u16(t);
      });
      exts.push({ type: ExtensionType.ech_outer_extensions, data: w.finish() });
      placed = true;
    }
  }
  const w = new Writer(1024);
  writeClientHello(w, { ...inner, legacySessionId: new Uint8Array(0), extensions: exts });
  w.zeros(padding);
  return w.finish();
}
