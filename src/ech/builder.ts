/**
 * ClientHello builder: plain ClientHellos, ECH ClientHelloOuter/Inner pairs
 * the way browsers make them (outer-extension compression, the RFC 9849
 * §6.1.3 padding scheme, GREASE PSK in the outer hello), GREASE ECH (§6.2),
 * and the second ClientHello after a HelloRetryRequest. It drives tests and is
 * the ECH client's hello.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../wire/alert.js';
import {
  CipherSuite,
  ExtensionType,
  NamedGroup,
  ProtocolVersion,
  PskKeyExchangeMode,
  SignatureScheme,
} from '../tls/constants.js';
import { type ClientHello, type Extension, encodeClientHello, encodeClientHelloMessage } from '../tls/client-hello.js';
import {
  type KeyShareEntry,
  type OfferedPsks,
  encodeAlpn,
  encodeEchClientHello,
  encodeKeyShareClient,
  encodeOfferedPsks,
  encodePskKeyExchangeModes,
  encodeServerName,
  encodeSignatureAlgorithms,
  encodeSupportedGroups,
  encodeSupportedVersions,
} from '../tls/extensions.js';
import type { EchConfig, HpkeSymmetricCipherSuite } from './config.js';
import { echHpkeInfo } from './decrypt.js';
import { encodeClientHelloInner } from './inner.js';

/**
 * What goes into one ClientHello. Every field has a browser-like default.
 * @group ECH client
 */
export interface ClientHelloSpec {
  serverName?: string;
  alpn?: string[];
  cipherSuites?: number[];
  supportedGroups?: number[];
  keyShares?: KeyShareEntry[];
  signatureAlgorithms?: number[];
  supportedVersions?: number[];
  pskModes?: number[];
  /** An offered PSK (its binders already computed, or placeholders). */
  psk?: OfferedPsks;
  /** Further extensions, inserted before server_name (e.g. GREASE ones). */
  extraExtensions?: Extension[];
  /** legacy_session_id; default 32 random bytes (compatibility mode). */
  sessionId?: Uint8Array;
  random?: Uint8Array;
}

/** Default cipher suites, signature schemes and groups of the builder. */
const DEFAULTS = {
  cipherSuites: [CipherSuite.TLS_AES_128_GCM_SHA256, CipherSuite.TLS_AES_256_GCM_SHA384, CipherSuite.TLS_CHACHA20_POLY1305_SHA256],
  groups: [NamedGroup.x25519, NamedGroup.secp256r1],
  signatureAlgorithms: [
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pkcs1_sha256,
  ],
};

/**
 * The extensions every hello shares, in order: these are what an ECH inner
 * hello compresses.
 */
function commonExtensions(spec: ClientHelloSpec): Extension[] {
  const exts: Extension[] = [...(spec.extraExtensions ?? [])];
  exts.push({ type: ExtensionType.supported_groups, data: encodeSupportedGroups(spec.supportedGroups ?? DEFAULTS.groups) });
  exts.push({
    type: ExtensionType.signature_algorithms,
    data: encodeSignatureAlgorithms(spec.signatureAlgorithms ?? DEFAULTS.signatureAlgorithms),
  });
  exts.push({ type: ExtensionType.key_share, data: encodeKeyShareClient(spec.keyShares ?? []) });
  exts.push({
    type: ExtensionType.psk_key_exchange_modes,
    data: encodePskKeyExchangeModes(spec.pskModes ?? [PskKeyExchangeMode.psk_dhe_ke]),
  });
  exts.push({
    type: ExtensionType.supported_versions,
    data: encodeSupportedVersions(spec.supportedVersions ?? [ProtocolVersion.TLS13]),
  });
  return exts;
}

function helloFrom(spec: ClientHelloSpec, extensions: Extension[], sessionId: Uint8Array): ClientHello {
  return {
    legacyVersion: ProtocolVersion.TLS12,
    random: spec.random ?? new Uint8Array(randomBytes(32)),
    legacySessionId: sessionId,
    cipherSuites: spec.cipherSuites ?? DEFAULTS.cipherSuites,
    legacyCompressionMethods: new Uint8Array([0]),
    extensions,
  };
}

/**
 * Build a plain ClientHello (no ECH).
 * @group ECH client
 * @example
 * ```ts
 * const ch = buildClientHello({ serverName: 'example.com', keyShares: [share] });
 * const message = encodeClientHelloMessage(ch);
 * ```
 */
export function buildClientHello(spec: ClientHelloSpec): ClientHello {
  const exts = commonExtensions(spec);
  if (spec.serverName !== undefined) exts.push({ type: ExtensionType.server_name, data: encodeServerName(spec.serverName) });
  if (spec.alpn?.length) exts.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(spec.alpn) });
  if (spec.psk) exts.push({ type: ExtensionType.pre_shared_key, data: encodeOfferedPsks(spec.psk) });
  return helloFrom(spec, exts, spec.sessionId ?? new Uint8Array(randomBytes(32)));
}

/**
 * An HPKE sender context for ECH: `SetupBaseS(pkR, info)` has been done.
 * @group ECH client
 */
export interface EchSealer {
  /** The encapsulated key. */
  enc: Uint8Array;
  /** Seal the next message (sequence numbers advance). */
  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * Creates an {@link EchSealer} for a config, a suite and HPKE info.
 * @group ECH client
 */
export type EchSealerFactory = (
  config: EchConfig,
  suite: HpkeSymmetricCipherSuite,
  info: Uint8Array,
) => EchSealer | Promise<EchSealer>;

/**
 * Options for {@link buildEchClientHello}.
 * @group ECH client
 */
export interface EchHelloOptions {
  /** The ECHConfig to encrypt to. */
  config: EchConfig;
  /** HPKE sender setup (the library's HPKE by default, via `createEchSealer`). */
  sealer: EchSealerFactory;
  /** Cipher suite; default the config's first. */
  suite?: HpkeSymmetricCipherSuite;
  /** Outer ALPN list; default the inner one. */
  outerAlpn?: string[];
  /**
   * Compress the shared extensions with ech_outer_extensions (default true),
   * as BoringSSL and Chromium do.
   */
  compress?: boolean;
  /** Outer server_name; default the config's public_name. */
  outerServerName?: string;
}

/**
 * An ECH ClientHello pair, ready to send, with what the client needs to
 * follow up.
 * @group ECH client
 */
export interface EchClientHello {
  /** ClientHelloOuter (what goes on the wire). */
  outer: ClientHello;
  /** ClientHelloOuter as a handshake message. */
  outerMessage: Uint8Array;
  /** ClientHelloInner as the server will reconstruct it. */
  inner: ClientHello;
  /** ClientHelloInner as a handshake message (for the inner transcript). */
  innerMessage: Uint8Array;
  /** The EncodedClientHelloInner that was sealed. */
  encodedInner: Uint8Array;
  config: EchConfig;
  suite: HpkeSymmetricCipherSuite;
  /** The sender context, kept for the ClientHello after HelloRetryRequest. */
  sealer: EchSealer;
  /** Extension types compressed into ech_outer_extensions. */
  compressed: number[];
}

/**
 * Amount of RFC 9849 §6.1.3 padding for an EncodedClientHelloInner of `len`
 * bytes (before padding), given the config's maximum_name_length and the
 * inner server name.
 * @group ECH client
 * @example
 * ```ts
 * echPaddingLength(200, 42, 'secret.example'); // pads to a multiple of 32
 * ```
 */
export function echPaddingLength(len: number, maximumNameLength: number, serverName: string | undefined): number {
  // RFC 9849 §6.1.3: "If the ClientHelloInner contained a "server_name"
  // extension with a name of length D, add max(0, L - D) bytes of padding.
  // If the ClientHelloInner did not contain a "server_name" extension ...
  // add L + 9 bytes of padding."
  const l = maximumNameLength;
  let pad = serverName !== undefined ? Math.max(0, l - Buffer.byteLength(serverName, 'latin1')) : l + 9;
  // "Let L be the length of the EncodedClientHelloInner with all the padding
  // computed so far. Let N = 31 - ((L - 1) % 32) and add N bytes of padding."
  const total = len + pad;
  pad += 31 - ((total - 1) % 32);
  return pad;
}

function aeadTagLength(aeadId: number): number {
  if (aeadId === 0xffff) throw new InvalidArgumentError('export-only AEAD cannot encrypt ClientHelloInner');
  return 16;
}

function greasePsk(psk: OfferedPsks): OfferedPsks {
  // RFC 9849 §6.1.2: "For each PSK identity advertised in the
  // ClientHelloInner, the client generates a random PSK identity with the same
  // length ... a random, 32-bit, unsigned integer ... for each inner PSK
  // binder, the client generates a random string of the same length."
  return {
    identities: psk.identities.map((i) => ({
      identity: new Uint8Array(randomBytes(i.identity.length)),
      obfuscatedTicketAge: randomBytes(4).readUInt32BE(0),
    })),
    binders: psk.binders.map((b) => new Uint8Array(randomBytes(b.length))),
  };
}

/** The outer-variant `encrypted_client_hello` extension. */
function outerEchExtension(suite: HpkeSymmetricCipherSuite, configId: number, enc: Uint8Array, payload: Uint8Array): Extension {
  return {
    type: ExtensionType.encrypted_client_hello,
    data: encodeEchClientHello({ type: 'outer', kdfId: suite.kdfId, aeadId: suite.aeadId, configId, enc, payload }),
  };
}

/** The outer hello with a placeholder (all-zero) ECH payload of the sealed length. */
function outerWithPlaceholder(
  spec: ClientHelloSpec,
  opts: EchHelloOptions,
  suite: HpkeSymmetricCipherSuite,
  enc: Uint8Array,
  payloadLength: number,
  sessionId: Uint8Array,
  random: Uint8Array,
): ClientHello {
  const exts = commonExtensions(spec);
  exts.push({ type: ExtensionType.server_name, data: encodeServerName(opts.outerServerName ?? opts.config.publicName) });
  const outerAlpn = opts.outerAlpn ?? spec.alpn;
  if (outerAlpn?.length) exts.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(outerAlpn) });
  exts.push(outerEchExtension(suite, opts.config.configId, enc, new Uint8Array(payloadLength)));
  if (spec.psk) exts.push({ type: ExtensionType.pre_shared_key, data: encodeOfferedPsks(greasePsk(spec.psk)) });
  return { ...helloFrom(spec, exts, sessionId), random };
}

async function sealInto(
  spec: ClientHelloSpec,
  opts: EchHelloOptions,
  suite: HpkeSymmetricCipherSuite,
  sealer: EchSealer,
  enc: Uint8Array,
  outerRandom: Uint8Array = new Uint8Array(randomBytes(32)),
): Promise<EchClientHello> {
  const sessionId = spec.sessionId ?? new Uint8Array(randomBytes(32));
  // ClientHelloInner: the shared extensions first (so they are contiguous for
  // compression, §6.1 rule 3), then the private ones; pre_shared_key last.
  const common = commonExtensions(spec);
  const innerExts: Extension[] = [...common];
  if (spec.serverName !== undefined) innerExts.push({ type: ExtensionType.server_name, data: encodeServerName(spec.serverName) });
  if (spec.alpn?.length) innerExts.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(spec.alpn) });
  innerExts.push({ type: ExtensionType.encrypted_client_hello, data: encodeEchClientHello({ type: 'inner' }) });
  if (spec.psk) innerExts.push({ type: ExtensionType.pre_shared_key, data: encodeOfferedPsks(spec.psk) });
  const inner: ClientHello = helloFrom(spec, innerExts, sessionId);
  const compressed = opts.compress === false ? [] : common.map((e) => e.type);
  const unpadded = encodeClientHelloInner(inner, compressed, 0);
  const padding = echPaddingLength(unpadded.length, opts.config.maximumNameLength, spec.serverName);
  const encodedInner = encodeClientHelloInner(inner, compressed, padding);
  const payloadLength = encodedInner.length + aeadTagLength(suite.aeadId);
  // RFC 9849 §6.1: "It MUST generate a fresh ClientHelloOuter.random" (the
  // caller passes a fresh one, or the first hello's after HelloRetryRequest).
  const outer = outerWithPlaceholder(spec, opts, suite, enc, payloadLength, sessionId, outerRandom);
  const aad = encodeClientHello(outer);
  const payload = await sealer.seal(aad, encodedInner);
  const echIndex = outer.extensions.findIndex((e) => e.type === ExtensionType.encrypted_client_hello);
  outer.extensions[echIndex] = outerEchExtension(suite, opts.config.configId, enc, payload);
  return {
    outer,
    outerMessage: encodeClientHelloMessage(outer),
    inner,
    innerMessage: encodeClientHelloMessage(inner),
    encodedInner,
    config: opts.config,
    suite,
    sealer,
    compressed,
  };
}

/**
 * Build an ECH ClientHelloOuter carrying `spec` as the encrypted
 * ClientHelloInner (RFC 9849 §6.1).
 * @group ECH client
 * @example
 * ```ts
 * const hello = await buildEchClientHello({ serverName: 'secret.example', keyShares: [share] },
 *   { config, sealer: createEchSealer });
 * socket.write(writeRecords(ContentType.handshake, hello.outerMessage));
 * ```
 */
export async function buildEchClientHello(spec: ClientHelloSpec, opts: EchHelloOptions): Promise<EchClientHello> {
  const suite = opts.suite ?? opts.config.cipherSuites[0];
  if (!suite) throw new InvalidArgumentError('ECHConfig lists no cipher suite');
  // RFC 9849 §6.1: the client "MUST NOT choose a cipher suite or version not
  // advertised by the configuration".
  if (!opts.config.cipherSuites.some((s) => s.kdfId === suite.kdfId && s.aeadId === suite.aeadId)) {
    throw new InvalidArgumentError('cipher suite not advertised by the ECHConfig');
  }
  const sealer = await opts.sealer(opts.config, suite, echHpkeInfo(opts.config));
  return sealInto(spec, opts, suite, sealer, sealer.enc);
}

/**
 * Build the second ClientHelloOuter after a HelloRetryRequest (RFC 9849
 * §6.1.5): same config_id and suite, empty `enc`, sealed with the same HPKE
 * context. `spec` carries the updated key shares (and cookie in
 * `extraExtensions`).
 * @group ECH client
 * @example
 * ```ts
 * const second = await buildSecondEchClientHello({ ...spec, keyShares: [p256Share] }, first, opts);
 * ```
 */
export async function buildSecondEchClientHello(
  spec: ClientHelloSpec,
  first: EchClientHello,
  opts: EchHelloOptions,
): Promise<EchClientHello> {
  // RFC 9846 §4.1.2: the second ClientHello is the first "without
  // modification, except as follows" (key_share, cookie, early_data, PSK), so
  // both randoms and the session id carry over.
  return sealInto(
    { ...spec, sessionId: first.inner.legacySessionId, random: first.inner.random },
    opts,
    first.suite,
    first.sealer,
    new Uint8Array(0),
    first.outer.random,
  );
}

/**
 * Build a ClientHello with a GREASE ECH extension (RFC 9849 §6.2): random
 * config_id, a valid-looking random `enc` of the KEM's length, and a random
 * payload of a plausible length. The real server name goes in the clear.
 * @group ECH client
 * @example
 * ```ts
 * const ch = buildGreaseEchClientHello({ serverName: 'example.com', keyShares: [share] });
 * ```
 */
export function buildGreaseEchClientHello(
  spec: ClientHelloSpec,
  opts: { suite?: HpkeSymmetricCipherSuite; encLength?: number; payloadLength?: number } = {},
): ClientHello {
  const ch = buildClientHello(spec);
  const suite = opts.suite ?? { kdfId: 1, aeadId: 1 };
  const payloadLength = opts.payloadLength ?? 32 * (4 + (randomBytes(1)[0]! % 4)) + 16;
  const ech: Extension = {
    type: ExtensionType.encrypted_client_hello,
    data: encodeEchClientHello({
      type: 'outer',
      kdfId: suite.kdfId,
      aeadId: suite.aeadId,
      configId: randomBytes(1)[0]!,
      enc: new Uint8Array(randomBytes(opts.encLength ?? 32)),
      payload: new Uint8Array(randomBytes(payloadLength)),
    }),
  };
  const pskAt = ch.extensions.findIndex((e) => e.type === ExtensionType.pre_shared_key);
  if (pskAt >= 0) ch.extensions.splice(pskAt, 0, ech);
  else ch.extensions.push(ech);
  return ch;
}
