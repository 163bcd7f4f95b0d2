/**
 * The client-facing server's decryption core (RFC 9849 §7.1, §7.1.1): from the
 * bytes of a ClientHelloOuter to accepted / rejected / not-offered, or a typed
 * error with the alert the RFC names. Transport-free: no sockets, and no
 * knowledge of how keys are stored — keys come through {@link EchKeyLookup}.
 *
 * @module
 */
import { DecodeError, EchError, IllegalParameterError, MissingExtensionError, DecryptError } from '../wire/alert.js';
import { ExtensionType, HandshakeType, ProtocolVersion, isGrease } from '../tls/constants.js';
import { type ParsedClientHello, decodeClientHello } from '../tls/client-hello.js';
import {
  type EchOuterExtension,
  decodeAlpn,
  decodeEchClientHello,
  decodeServerName,
  decodeSupportedVersions,
} from '../tls/extensions.js';
import type { EchConfig, HpkeSymmetricCipherSuite } from './config.js';
import { decodeEncodedClientHelloInner } from './inner.js';
import { copyBytes } from '../wire/bytes.js';

/**
 * An HPKE recipient context set up for one ClientHelloOuter: opens the first
 * payload and, after a HelloRetryRequest, the second (sequence number 1).
 * @group ECH
 */
export interface EchOpener {
  /** Open `ciphertext` with `aad`; throws (any error) if it does not open. */
  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * One ECH key the server holds, as the decryption core sees it.
 * @group ECH
 */
export interface EchKeyCandidate {
  /** The ECHConfig this key belongs to. */
  readonly config: EchConfig;
  /**
   * HPKE `SetupBaseR(enc, skR, "tls ech" || 0x00 || ECHConfig)` for the given
   * suite (RFC 9849 §7.1). Throws if `enc` is invalid.
   */
  setupRecipient(enc: Uint8Array, suite: HpkeSymmetricCipherSuite): EchOpener | Promise<EchOpener>;
}

/**
 * What the decryption core needs from a key set: candidates by config_id and
 * cipher suite (RFC 9849 §7.1, method 1), and optionally every key for trial
 * decryption (method 2).
 * @group ECH
 */
export interface EchKeyLookup {
  /** Keys whose config has this config_id and lists this cipher suite. */
  candidates(configId: number, suite: HpkeSymmetricCipherSuite): readonly EchKeyCandidate[];
  /** Every key whose config lists this cipher suite (trial decryption). */
  allCandidates?(suite: HpkeSymmetricCipherSuite): readonly EchKeyCandidate[];
}

/**
 * Options of {@link decryptClientHello}.
 * @group ECH
 */
export interface DecryptOptions {
  /**
   * Try every key whatever the config_id (RFC 9849 §7.1 method 2). Off by
   * default: "Unless specified by the application profile or otherwise
   * externally configured, implementations MUST use the first method."
   */
  trialDecryption?: boolean;
}

/**
 * ECH was accepted: the server continues with ClientHelloInner.
 * @group ECH
 */
export interface EchAccepted {
  status: 'accepted';
  /** The reconstructed ClientHelloInner. */
  inner: ParsedClientHello;
  /** Outer extension types the client compressed with ech_outer_extensions. */
  outerReferences: number[];
  /** ClientHelloInner as a handshake message (4-byte header included). */
  innerMessage: Uint8Array;
  /** ClientHelloOuter as parsed. */
  outer: ParsedClientHello;
  outerServerName: string | undefined;
  innerServerName: string | undefined;
  /** The inner ALPN list (empty when the extension is absent). */
  alpn: string[];
  /** The ECHConfig whose key opened the payload. */
  config: EchConfig;
  configId: number;
  suite: HpkeSymmetricCipherSuite;
  /** The HPKE context, kept for the ClientHello after a HelloRetryRequest. */
  context: EchOpener;
}

/**
 * ECH was offered but no key opened it (GREASE, a stale key, or a config_id
 * this server never had): the server continues with ClientHelloOuter and
 * sends retry_configs.
 * @group ECH
 */
export interface EchRejected {
  status: 'rejected';
  /**
   * `no-matching-config`: no key has this config_id and suite (GREASE or a
   * long-retired key); `decryption-failed`: a key matched but did not open it.
   */
  reason: 'no-matching-config' | 'decryption-failed';
  outer: ParsedClientHello;
  outerServerName: string | undefined;
  configId: number;
  suite: HpkeSymmetricCipherSuite;
}

/**
 * No `encrypted_client_hello` extension: an ordinary handshake.
 * @group ECH
 */
export interface EchNotOffered {
  status: 'not-offered';
  outer: ParsedClientHello;
  outerServerName: string | undefined;
}

/**
 * Result of {@link decryptClientHello}.
 * @group ECH
 */
export type DecryptResult = EchAccepted | EchRejected | EchNotOffered;

/** The HPKE info string: "tls ech" || 0x00 || ECHConfig (RFC 9849 §6.1). */
const INFO_PREFIX = new Uint8Array([0x74, 0x6c, 0x73, 0x20, 0x65, 0x63, 0x68, 0x00]);
const infoCache = new WeakMap<EchConfig, Uint8Array>();

/**
 * HPKE `info` for an ECHConfig: "tls ech" || 0x00 || ECHConfig (RFC 9849 §6.1).
 * @group ECH
 * @example
 * ```ts
 * const info = echHpkeInfo(config);
 * ```
 */
export function echHpkeInfo(config: EchConfig): Uint8Array {
  let info = infoCache.get(config);
  if (!info) {
    info = new Uint8Array(INFO_PREFIX.length + config.raw.length);
    info.set(INFO_PREFIX);
    info.set(config.raw, INFO_PREFIX.length);
    infoCache.set(config, info);
  }
  return info;
}

/** Accept a whole handshake message or a bare ClientHello body. */
function clientHelloBody(bytes: Uint8Array): Uint8Array {
  if (bytes.length >= 4 && bytes[0] === HandshakeType.client_hello) {
    const len = (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!;
    if (len !== bytes.length - 4) throw new DecodeError('ClientHello handshake length does not match its body');
    return bytes.subarray(4);
  }
  if (bytes.length >= 1 && bytes[0] !== 0x03) {
    throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `expected a ClientHello, got handshake type ${bytes[0]}`);
  }
  return bytes;
}

function serverNameOf(ch: ParsedClientHello): string | undefined {
  for (const e of ch.extensions) if (e.type === ExtensionType.server_name) return decodeServerName(e.data);
  return undefined;
}

/** ClientHelloOuterAAD: the outer body with the ECH payload zeroed (RFC 9849 §5.2). */
function outerAad(outer: ParsedClientHello, index: number, ech: EchOuterExtension): Uint8Array {
  const aad = copyBytes(outer.raw);
  const at = outer.extensionOffsets[index]! + ech.payloadOffset;
  aad.fill(0, at, at + ech.payload.length);
  return aad;
}

/** The outer ECH extension and its index, after the checks common to both ClientHellos. */
function outerEch(outer: ParsedClientHello): { index: number; ech: EchOuterExtension } | undefined {
  let index = -1;
  for (let i = 0; i < outer.extensions.length; i++) {
    const t = outer.extensions[i]!.type;
    // RFC 9849 §5.1: ""ech_outer_extensions" extension can only be included
    // in EncodedClientHelloInner, and MUST NOT appear in either
    // ClientHelloOuter or ClientHelloInner."
    if (t === ExtensionType.ech_outer_extensions) {
      throw new IllegalParameterError('ech_outer_extensions in ClientHelloOuter');
    }
    if (t === ExtensionType.encrypted_client_hello) index = i;
  }
  if (index < 0) return undefined;
  const ech = decodeEchClientHello(outer.extensions[index]!.data);
  if (ech.type === 'inner') {
    // RFC 9849 §7: "A shared mode server which receives a ClientHello with
    // ECHClientHello.type of inner MUST abort with an "illegal_parameter"
    // alert" (likewise a split-mode client-facing server).
    throw new IllegalParameterError('inner-type encrypted_client_hello received by a client-facing server');
  }
  return { index, ech };
}

/** Rebuild ClientHelloInner and run the checks of RFC 9849 §5.1 and §7.1. */
function finishInner(encoded: Uint8Array, outer: ParsedClientHello): { inner: ParsedClientHello; outerReferences: number[] } {
  const { inner, outerReferences } = decodeEncodedClientHelloInner(encoded, outer);
  // RFC 9849 §7.1: "the client-facing server checks that the message includes
  // a well-formed "encrypted_client_hello" extension of type inner and that it
  // does not offer TLS 1.2 or below. If either of these checks fails, the
  // client-facing server MUST abort with an "illegal_parameter" alert."
  let echInner = false;
  let versions: number[] | undefined;
  for (const e of inner.extensions) {
    if (e.type === ExtensionType.encrypted_client_hello) {
      let ok = false;
      try {
        ok = decodeEchClientHello(e.data).type === 'inner';
      } catch {
        ok = false;
      }
      if (!ok) throw new IllegalParameterError('ClientHelloInner lacks a well-formed inner-type encrypted_client_hello');
      echInner = true;
    } else if (e.type === ExtensionType.supported_versions) {
      try {
        versions = decodeSupportedVersions(e.data);
      } catch (err) {
        throw new IllegalParameterError('ClientHelloInner has a malformed supported_versions', { cause: err });
      }
    }
  }
  if (!echInner) throw new IllegalParameterError('ClientHelloInner lacks the inner-type encrypted_client_hello extension');
  if (!versions) throw new IllegalParameterError('ClientHelloInner offers TLS 1.2 or below (no supported_versions)');
  // GREASE values (RFC 8701) are tolerated; any real version below 1.3 is not.
  if (versions.some((v) => !isGrease(v) && v < ProtocolVersion.TLS13)) {
    throw new IllegalParameterError('ClientHelloInner offers TLS 1.2 or below');
  }
  if (!versions.includes(ProtocolVersion.TLS13)) {
    throw new IllegalParameterError('ClientHelloInner does not offer TLS 1.3');
  }
  return { inner, outerReferences };
}

function alpnOf(ch: ParsedClientHello): string[] {
  for (const e of ch.extensions) {
    if (e.type === ExtensionType.application_layer_protocol_negotiation) return decodeAlpn(e.data);
  }
  return [];
}

function withHeader(body: Uint8Array): Uint8Array {
  const m = new Uint8Array(body.length + 4);
  m[0] = HandshakeType.client_hello;
  m[1] = body.length >>> 16;
  m[2] = (body.length >>> 8) & 0xff;
  m[3] = body.length & 0xff;
  m.set(body, 4);
  return m;
}

/**
 * Decrypt a ClientHelloOuter (RFC 9849 §7.1).
 *
 * `clientHello` is the ClientHello handshake message (with or without its
 * 4-byte header). Returns `accepted` with the reconstructed ClientHelloInner,
 * `rejected` when no key opens the payload (the caller must then handshake on
 * ClientHelloOuter and send retry_configs), or `not-offered`. Throws
 * {@link EchError} carrying the alert the RFC names for malformed or forbidden
 * input.
 * @group ECH
 * @example
 * ```ts
 * const r = await decryptClientHello(firstFlight.message.raw, keySet);
 * if (r.status === 'accepted') route(r.innerServerName);
 * ```
 */
export async function decryptClientHello(
  clientHello: Uint8Array,
  keys: EchKeyLookup,
  options: DecryptOptions = {},
): Promise<DecryptResult> {
  const outer = decodeClientHello(clientHelloBody(clientHello));
  const found = outerEch(outer);
  const outerServerName = serverNameOf(outer);
  if (!found) return { status: 'not-offered', outer, outerServerName };
  const { index, ech } = found;
  const suite = { kdfId: ech.kdfId, aeadId: ech.aeadId };
  const candidates =
    options.trialDecryption && keys.allCandidates ? keys.allCandidates(suite) : keys.candidates(ech.configId, suite);
  if (candidates.length === 0) {
    return { status: 'rejected', reason: 'no-matching-config', outer, outerServerName, configId: ech.configId, suite };
  }
  const aad = outerAad(outer, index, ech);
  for (const candidate of candidates) {
    let context: EchOpener;
    let encoded: Uint8Array;
    try {
      context = await candidate.setupRecipient(ech.enc, suite);
      encoded = await context.open(aad, ech.payload);
    } catch (err) {
      // RFC 9849 §7.1: "If decryption fails, the server continues to the next
      // candidate ECHConfig." A key server that cannot be reached is not a
      // decryption failure: let it surface.
      if (err instanceof EchError && err.code !== 'ERR_DECRYPT') throw err;
      continue;
    }
    const { inner, outerReferences } = finishInner(encoded, outer);
    return {
      status: 'accepted',
      inner,
      outerReferences,
      innerMessage: withHeader(inner.raw),
      outer,
      outerServerName,
      innerServerName: serverNameOf(inner),
      alpn: alpnOf(inner),
      config: candidate.config,
      configId: ech.configId,
      suite,
      context,
    };
  }
  return { status: 'rejected', reason: 'decryption-failed', outer, outerServerName, configId: ech.configId, suite };
}

/**
 * The second ClientHelloInner after a HelloRetryRequest.
 * @group ECH
 */
export interface EchSecondAccepted {
  inner: ParsedClientHello;
  outerReferences: number[];
  innerMessage: Uint8Array;
  outer: ParsedClientHello;
  innerServerName: string | undefined;
  alpn: string[];
}

/**
 * Decrypt the second ClientHelloOuter after a HelloRetryRequest, with the HPKE
 * context kept from the first (RFC 9849 §7.1.1). Only for connections whose
 * first ClientHello was accepted.
 * @group ECH
 * @example
 * ```ts
 * const second = await decryptSecondClientHello(message.raw, firstResult);
 * ```
 */
export async function decryptSecondClientHello(clientHello: Uint8Array, first: EchAccepted): Promise<EchSecondAccepted> {
  const outer = decodeClientHello(clientHelloBody(clientHello));
  const found = outerEch(outer);
  // RFC 9849 §7.1.1: "it checks the second ClientHelloOuter also contains the
  // "encrypted_client_hello" extension. If not, it MUST abort the handshake
  // with a "missing_extension" alert."
  if (!found) throw new MissingExtensionError('second ClientHelloOuter has no encrypted_client_hello');
  const { index, ech } = found;
  // "Otherwise, it checks that ECHClientHello.cipher_suite and
  // ECHClientHello.config_id are unchanged, and that ECHClientHello.enc is
  // empty. If not, it MUST abort the handshake with an "illegal_parameter"
  // alert."
  if (ech.configId !== first.configId) throw new IllegalParameterError('config_id changed in the second ClientHelloOuter');
  if (ech.kdfId !== first.suite.kdfId || ech.aeadId !== first.suite.aeadId) {
    throw new IllegalParameterError('cipher_suite changed in the second ClientHelloOuter');
  }
  if (ech.enc.length !== 0) throw new IllegalParameterError('enc is not empty in the second ClientHelloOuter');
  let encoded: Uint8Array;
  try {
    encoded = await first.context.open(outerAad(outer, index, ech), ech.payload);
  } catch (err) {
    if (err instanceof EchError && err.code !== 'ERR_DECRYPT') throw err;
    // "If decryption fails, the client-facing server MUST abort the handshake
    // with a "decrypt_error" alert."
    throw new DecryptError('second ClientHelloOuter payload does not open with the retained HPKE context', { cause: err });
  }
  const { inner, outerReferences } = finishInner(encoded, outer);
  return {
    inner,
    outerReferences,
    innerMessage: withHeader(inner.raw),
    outer,
    innerServerName: serverNameOf(inner),
    alpn: alpnOf(inner),
  };
}
