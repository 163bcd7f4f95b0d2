/**
 * EncodedClientHelloInner decoding and `ech_outer_extensions` expansion
 * (RFC 9849 §5.1, Appendix B), and its inverse for the client side.
 *
 * @module
 */
import { IllegalParameterError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { Writer } from '../wire/writer.js';
import { ExtensionType } from '../tls/constants.js';
import { type ClientHello, type Extension, decodeClientHello, type ParsedClientHello, writeClientHello } from '../tls/client-hello.js';
import { decodeEchOuterExtensions } from '../tls/extensions.js';

/**
 * Length of the ClientHello at the start of `buf` (the rest is padding),
 * found by walking its length prefixes.
 */
function clientHelloLength(buf: Uint8Array): number {
  const r = new Reader(buf);
  r.skip(2 + 32, 'legacy_version and random');
  r.vector8('legacy_session_id');
  r.vector16('cipher_suites');
  r.vector8('legacy_compression_methods');
  r.vector16('extensions');
  return r.offset;
}

/**
 * Decode an EncodedClientHelloInner (RFC 9849 §5.1) and rebuild
 * ClientHelloInner from it and ClientHelloOuter:
 *
 * - bytes after `client_hello` are padding and MUST be zero
 *   (`illegal_parameter` otherwise);
 * - `legacy_session_id` is copied from ClientHelloOuter;
 * - an `ech_outer_extensions` extension is replaced by the referenced outer
 *   extensions, in linear time (Appendix B), with every rejection §5.1 lists.
 *
 * Returns the reconstructed ClientHelloInner, parsed (duplicate extensions
 * after expansion are `illegal_parameter`), and the outer extension types
 * that `ech_outer_extensions` referenced.
 * @group ECH
 * @example
 * ```ts
 * const inner = decodeEncodedClientHelloInner(plaintext, outer);
 * ```
 */
export function decodeEncodedClientHelloInner(
  encoded: Uint8Array,
  outer: ClientHello,
): { inner: ParsedClientHello; outerReferences: number[] } {
  const len = clientHelloLength(encoded);
  for (let i = len; i < encoded.length; i++) {
    // RFC 9849 §5.1: "If any padding byte is non-zero, the server MUST abort
    // the connection with an "illegal_parameter" alert."
    if (encoded[i] !== 0) throw new IllegalParameterError('non-zero padding in EncodedClientHelloInner');
  }
  const encodedInner = decodeClientHello(encoded.subarray(0, len));
  // RFC 9849 §5.1: the client sets legacy_session_id "to the empty string"
  // before encoding; a non-empty one cannot come from a conforming client.
  if (encodedInner.legacySessionId.length !== 0) {
    throw new IllegalParameterError('EncodedClientHelloInner has a non-empty legacy_session_id');
  }
  const outerReferences: number[] = [];
  const extensions = expandOuterExtensions(encodedInner.extensions, outer.extensions, outerReferences);
  const inner: ClientHello = {
    legacyVersion: encodedInner.legacyVersion,
    random: encodedInner.random,
    legacySessionId: outer.legacySessionId,
    cipherSuites: encodedInner.cipherSuites,
    legacyCompressionMethods: encodedInner.legacyCompressionMethods,
    extensions,
  };
  const w = new Writer(encoded.length + 512);
  writeClientHello(w, inner);
  // Re-parse: checks for duplicates that expansion may have introduced
  // (RFC 8446bis §4.2) and yields offsets into the rebuilt bytes.
  return { inner: decodeClientHello(w.finish()), outerReferences };
}

/**
 * Replace the `ech_outer_extensions` extension of an EncodedClientHelloInner's
 * extension list with the extensions of ClientHelloOuter it references,
 * following the linear-time procedure of RFC 9849 Appendix B. The referenced
 * types are appended to `references`.
 * @group ECH
 * @example
 * ```ts
 * const expanded = expandOuterExtensions(encodedInner.extensions, outer.extensions);
 * ```
 */
export function expandOuterExtensions(
  innerExts: readonly Extension[],
  outerExts: readonly Extension[],
  references: number[] = [],
): Extension[] {
  const out: Extension[] = [];
  let expanded = false;
  for (const e of innerExts) {
    if (e.type !== ExtensionType.ech_outer_extensions) {
      out.push(e);
      continue;
    }
    if (expanded) throw new IllegalParameterError('more than one ech_outer_extensions');
    expanded = true;
    const refs = decodeEchOuterExtensions(e.data);
    references.push(...refs);
    // Appendix B: I starts at zero, N is the number of outer extensions.
    let i = 0;
    const n = outerExts.length;
    for (const ref of refs) {
      // "If E is "encrypted_client_hello", abort the connection with an
      // "illegal_parameter" alert" (§5.1: "encrypted_client_hello" is
      // referenced in OuterExtensions).
      if (ref === ExtensionType.encrypted_client_hello) {
        throw new IllegalParameterError('ech_outer_extensions references encrypted_client_hello');
      }
      // "While I is less than N and the I-th extension of ClientHelloOuter
      // does not have type E, increment I."
      while (i < n && outerExts[i]!.type !== ref) i++;
      // "If I is equal to N, abort ... with an "illegal_parameter" alert":
      // covers a missing reference, a duplicated one and one out of order.
      if (i === n) {
        throw new IllegalParameterError(
          `ech_outer_extensions reference 0x${ref.toString(16).padStart(4, '0')} is missing, repeated or out of order in ClientHelloOuter`,
        );
      }
      out.push(outerExts[i]!);
      i++;
    }
  }
  return out;
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
