/**
 * `isTls12Only` (src/front/tls12.ts) on the raw ClientHello: the same
 * answer and the same errors, from an allocation-free scan instead of a full
 * decode. The front end asks it of every first flight; on an accepted
 * connection nothing else needs ClientHelloOuter decoded.
 *
 * @module
 */
import { DecodeError, IllegalParameterError } from '../wire/alert.js';
import { HandshakeType, ProtocolVersion } from '../tls/constants.js';
import { decodeSupportedVersions } from '../tls/extensions.js';
import { scanClientHello } from '../tls/scan.js';

/**
 * Whether a ClientHello (the handshake message, with or without its 4-byte
 * header) offers no TLS 1.3 — a TLS 1.2 client. Throws
 * {@link IllegalParameterError} for a hello that offers ECH but no TLS 1.3,
 * and {@link DecodeError} / {@link IllegalParameterError} for a malformed
 * hello, exactly as decoding it and calling `isTls12Only` would.
 * @group Front end
 * @example
 * ```ts
 * if (isTls12OnlyMessage(first.message)) console.log('TLS 1.2 client');
 * ```
 */
export function isTls12OnlyMessage(message: Uint8Array): boolean {
  let body = message;
  if (message.length >= 4 && message[0] === HandshakeType.client_hello) {
    const len = (message[1]! << 16) | (message[2]! << 8) | message[3]!;
    if (len !== message.length - 4) throw new DecodeError('ClientHello handshake length does not match its body');
    body = message.subarray(4);
  }
  const scan = scanClientHello(body);
  // RFC 9846 §4.2.1: a TLS 1.3 client MUST send supported_versions
  // "containing all versions of TLS which they are prepared to negotiate
  // (for this specification, that means minimally 0x0304 ...)". "If this
  // extension is not present, servers ... which also support TLS 1.2 MUST
  // negotiate TLS 1.2 or prior".
  if (scan.versionsAt >= 0) {
    const versions = decodeSupportedVersions(body.subarray(scan.versionsAt, scan.versionsAt + scan.versionsLen));
    if (versions.includes(ProtocolVersion.TLS13)) return false;
  }
  // RFC 9849 §6.1: when offering ECH, ClientHelloOuter "MUST offer to
  // negotiate TLS 1.3 or above". Well-formed but forbidden: illegal_parameter.
  if (scan.echAt >= 0) {
    throw new IllegalParameterError('encrypted_client_hello in a ClientHello that does not offer TLS 1.3');
  }
  return true;
}
