/**
 * A transport-free TLS 1.3 client (RFC 9846 §4) on the same key schedule,
 * record layer and message codecs as the server: used by tests and tools,
 * and the base an ECH client can build on (`mutateClientHello`).
 *
 * Steps, in order: `sendClientHello` → `readServerHello` (or
 * `readHelloRetryRequest` → `sendClientHello` again) → `readEncryptedExtensions`
 * → `readCertificate` → `readCertificateVerify` → `readServerFinished` →
 * `sendClientFinished`; afterwards NewSessionTicket, KeyUpdate, data,
 * close_notify. The server certificate chain is verified with
 * node:crypto `X509Certificate` against the given CAs, and its name against
 * `servername`.
 *
 * ECH (RFC 9849 §6): with the `ech` option the engine's own ClientHello is
 * ClientHelloInner and the {@link ClientEchOffer} turns it into the
 * ClientHelloOuter that goes on the wire. The engine decides acceptance
 * from the HelloRetryRequest's ECH extension and ServerHello.random
 * (§6.1.4), then runs the handshake on the inner transcript (accepted) or the
 * outer one (rejected: certificate checked for the public name, retry_configs
 * read, `ech_required` sent, {@link EchRejectedError}).
 *
 * @module
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { DecodeError, DecryptError, EchError, IllegalParameterError } from '../wire/alert.js';
import { equalBytes } from '../wire/bytes.js';
import { Transcript, hashLength, messageHash } from '../crypto/hkdf.js';
import {
  ContentType,
  ExtensionType,
  HandshakeType,
  ProtocolVersion,
  PskKeyExchangeMode,
  SignatureScheme,
} from '../tls/constants.js';
import { encodeHandshake, type HandshakeMessage } from '../tls/record.js';
import { decodeClientHello, encodeClientHelloMessage, findExtension, type ClientHello, type Extension } from '../tls/client-hello.js';
import {
  decodeCookie,
  encodeAlpn,
  encodeKeyShareClient,
  encodeOfferedPsks,
  encodePskKeyExchangeModes,
  encodeServerName,
  encodeSignatureAlgorithms,
  encodeSupportedGroups,
  encodeSupportedVersions,
  encodeCookie,
  pskBindersLength,
} from '../tls/extensions.js';
import {
  KeyUpdateRequest,
  decodeAlpnSelected,
  decodeCertificate,
  decodeCertificateVerify,
  decodeEncryptedExtensions,
  decodeFinished,
  decodeKeyShareHelloRetry,
  decodeKeyShareServer,
  decodeNewSessionTicket,
  decodePreSharedKeySelected,
  decodeServerHello,
  decodeSupportedVersionSelected,
  encodeFinished,
  isHelloRetryRequest,
  type ServerHello,
} from '../tls/messages.js';
import { certificateVerifyInput, verifyWithScheme } from './certificates.js';
import { CertificateError, verifyServerChain } from './path-validation.js';
import { DEFAULT_CLIENT_GROUPS, generateEphemeralKey, parseEcdhCurve, type EphemeralKey } from './groups.js';
import { KeySchedule, finishedVerifyData, resumptionPsk, trafficKeys } from './key-schedule.js';
import { RecordLayer } from './record-layer.js';
import { parseCipherList, suiteById, type CipherSuiteParams } from './suites.js';
import { ConnectionCore } from './conn.js';
import { acceptConfirmation, hrrAcceptConfirmation, ECH_CONFIRMATION_LENGTH } from '../ech/confirmation.js';
import { decodeEchConfigList } from '../ech/config.js';

/**
 * An ECH offer the engine runs (RFC 9849 §6): set by the ECH client
 * (`connectEch`, src/tls13/ech-client.ts), which builds the hellos; the
 * engine decides acceptance and follows the inner or the outer transcript.
 * @group Client
 * @example
 * ```ts
 * const offer: ClientEchOffer = { mode: 'grease', clientHello: (ch) => addGreaseEch(ch) };
 * new ClientConnection({ servername: 'example.com', ca, ech: offer }, sink);
 * ```
 */
export interface ClientEchOffer {
  /**
   * `real`: a ClientHelloOuter encrypting the engine's ClientHello (which is
   * ClientHelloInner); `grease`: a GREASE extension only (§6.2), never
   * accepted.
   */
  mode: 'real' | 'grease';
  /** ECHConfig.contents.public_name: the name to authenticate when ECH is rejected (§6.1.7). */
  publicName?: string;
  /**
   * Last look at the engine's ClientHello (after `mutateClientHello`, before
   * pre_shared_key): add the inner `encrypted_client_hello` extension (real)
   * or the GREASE one, order the extensions for compression.
   */
  clientHello?(ch: ClientHello, retry: boolean): ClientHello;
  /**
   * Real ECH: the ClientHelloOuter (whole handshake message) to send for the
   * engine's ClientHelloInner. On the second ClientHello `hrrAccepted` says
   * whether the HelloRetryRequest confirmed ECH: if it did, seal the second
   * inner with the same HPKE context (§6.1.5); if not, return the first
   * ClientHelloOuter updated as RFC 9846 §4.1.2 asks (key_share, cookie).
   */
  outerClientHello?(inner: ClientHello, innerMessage: Uint8Array, retry: boolean, hrrAccepted: boolean): Uint8Array;
}

/**
 * The handshake completed on ClientHelloOuter: ECH was rejected (RFC 9849
 * §6.1.6). The connection was authenticated for the public name only, so it
 * is not reported as successful; the client sent `ech_required`. Carries the
 * server's `retry_configs` (an ECHConfigList, or `undefined` if it sent
 * none) for one retry.
 * @group Client
 * @example
 * ```ts
 * try { await connectEch(opts); }
 * catch (e) { if (e instanceof EchRejectedError && e.retryConfigs) await connectEch({ ...opts, echConfigList: e.retryConfigs }); }
 * ```
 */
export class EchRejectedError extends EchError {
  /** The server's retry_configs (ECHConfigList), if it sent any. */
  readonly retryConfigs: Uint8Array | undefined;
  /** The chain the server presented (for the public name). */
  readonly peerCertificates: X509Certificate[];
  /** The chain was verified for the public name (false with `rejectUnauthorized: false`). */
  readonly authenticated: boolean;

  constructor(retryConfigs: Uint8Array | undefined, peerCertificates: X509Certificate[], authenticated: boolean, publicName: string | undefined) {
    super(
      'ERR_ECH_REJECTED',
      'ech_required',
      `the server rejected ECH (handshake completed for the public name ${publicName ?? '?'}); ${retryConfigs ? 'it sent retry_configs' : 'it sent no retry_configs'}`,
    );
    this.name = 'EchRejectedError';
    this.retryConfigs = retryConfigs;
    this.peerCertificates = peerCertificates;
    this.authenticated = authenticated;
  }
}

/** Server messages that carry extension responses (RFC 9846 §4.2). */
type ResponseMessage = 'SH' | 'HRR' | 'EE' | 'CT';

/**
 * RFC 9846 §4.2, the extensions table: where the extensions this library
 * recognizes may appear among the server's messages that answer a
 * ClientHello (TLS 1.2-only extensions appear in none).
 */
const RESPONSE_MESSAGES: ReadonlyMap<number, readonly ResponseMessage[]> = new Map<number, readonly ResponseMessage[]>([
  [ExtensionType.server_name, ['EE']],
  [ExtensionType.max_fragment_length, []],
  [ExtensionType.status_request, ['CT']],
  [ExtensionType.supported_groups, ['EE']],
  [ExtensionType.ec_point_formats, []],
  [ExtensionType.signature_algorithms, []],
  [ExtensionType.use_srtp, ['EE']],
  [ExtensionType.heartbeat, ['EE']],
  [ExtensionType.application_layer_protocol_negotiation, ['EE']],
  [ExtensionType.signed_certificate_timestamp, ['CT']],
  [ExtensionType.client_certificate_type, ['EE']],
  [ExtensionType.server_certificate_type, ['EE']],
  [ExtensionType.padding, []],
  [ExtensionType.extended_master_secret, []],
  [ExtensionType.compress_certificate, []],
  [ExtensionType.record_size_limit, ['EE']],
  [ExtensionType.session_ticket, []],
  [ExtensionType.pre_shared_key, ['SH']],
  [ExtensionType.early_data, ['EE']],
  [ExtensionType.supported_versions, ['SH', 'HRR']],
  [ExtensionType.cookie, ['HRR']],
  [ExtensionType.psk_key_exchange_modes, []],
  [ExtensionType.certificate_authorities, []],
  [ExtensionType.oid_filters, []],
  [ExtensionType.post_handshake_auth, []],
  [ExtensionType.signature_algorithms_cert, []],
  [ExtensionType.key_share, ['SH', 'HRR']],
  [ExtensionType.renegotiation_info, []],
  [ExtensionType.ech_outer_extensions, []],
  [ExtensionType.encrypted_client_hello, ['HRR', 'EE']],
]);

/** Offset of an extension's data inside a ServerHello/HelloRetryRequest message (header included), or -1. */
function serverHelloExtensionOffset(raw: Uint8Array, type: number): number {
  let p = 4 + 2 + 32;
  p += 1 + raw[p]!;
  p += 2 + 1;
  const end = p + 2 + ((raw[p]! << 8) | raw[p + 1]!);
  p += 2;
  while (p + 4 <= end) {
    const t = (raw[p]! << 8) | raw[p + 1]!;
    const len = (raw[p + 2]! << 8) | raw[p + 3]!;
    if (t === type) return p + 4;
    p += 4 + len;
  }
  return -1;
}

/**
 * A resumable session, from a NewSessionTicket.
 * @group Client
 * @example
 * ```ts
 * let saved: ClientSession | undefined;
 * new ClientConnection(opts, { send, session: (s) => (saved = s) });
 * ```
 */
export interface ClientSession {
  suite: number;
  psk: Uint8Array;
  ticket: Uint8Array;
  ageAdd: number;
  lifetime: number;
  /** ms since the epoch. */
  receivedAt: number;
  servername: string | undefined;
}

/**
 * Client options (Node's names where they exist).
 * @group Client
 * @example
 * ```ts
 * const opts: ClientOptions = { servername: 'example.com', ca: caPem, ALPNProtocols: ['h2'] };
 * ```
 */
export interface ClientOptions {
  /** SNI and the name the certificate must match. */
  servername?: string;
  /** Trusted CA certificates (PEM). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Verify the certificate chain and name (default true). */
  rejectUnauthorized?: boolean;
  ALPNProtocols?: string[];
  /** TLS 1.3 suites in preference order. */
  ciphers?: string;
  /** Groups offered in supported_groups, in order (default X25519:P-256; add `X25519MLKEM768` for the post-quantum hybrid). */
  ecdhCurve?: string;
  /** Groups to send key shares for (default: the first of `ecdhCurve`). */
  keyShareGroups?: number[];
  /** signature_algorithms (default ECDSA P-256, RSA-PSS, Ed25519). */
  signatureAlgorithms?: number[];
  /** Resume this session (PSK, psk_dhe_ke). */
  session?: ClientSession;
  /** Send a 32-byte legacy_session_id and a CCS (middlebox compatibility, default true). */
  compatibilityMode?: boolean;
  /**
   * Last look at each ClientHello before it is encoded (pre_shared_key, if
   * any, stays last and its binder is computed afterwards): extra
   * extensions, GREASE, an ECH extension...
   */
  mutateClientHello?: (ch: ClientHello, retry: boolean) => ClientHello | void;
  /**
   * The ClientHello actually put on the wire, given the one the transcript
   * uses (whole handshake messages). An ECH client returns ClientHelloOuter
   * here while the handshake continues on ClientHelloInner.
   */
  wireClientHello?: (message: Uint8Array, retry: boolean) => Uint8Array;
  /** Offer ECH (or GREASE ECH): see {@link ClientEchOffer}. */
  ech?: ClientEchOffer;
}

/**
 * Where a {@link ClientConnection} delivers its output.
 * @group Client
 * @example
 * ```ts
 * const sink: ClientSink = { send: (b) => socket.write(b), data: (b) => process.stdout.write(b) };
 * ```
 */
export interface ClientSink {
  send(bytes: Uint8Array): void;
  data?(bytes: Uint8Array): void;
  handshakeComplete?(info: ClientHandshakeInfo): void;
  session?(session: ClientSession): void;
  peerClosed?(): void;
}

/**
 * What the client negotiated.
 * @group Client
 * @example
 * ```ts
 * sink.handshakeComplete = (info: ClientHandshakeInfo) => console.log(info.alpnProtocol, info.resumed);
 * ```
 */
export interface ClientHandshakeInfo {
  suite: CipherSuiteParams;
  group: number;
  alpnProtocol: string | false;
  resumed: boolean;
  helloRetry: boolean;
  /** ServerHello.random (ECH clients check the accept confirmation in it). */
  serverRandom: Uint8Array;
  /** The server's chain (empty on resumption). */
  peerCertificates: X509Certificate[];
  /** EncryptedExtensions as received. */
  encryptedExtensions: Extension[];
  /**
   * ECH: `accepted` (the handshake ran on ClientHelloInner), `grease`, or
   * `not-offered`. A rejection never completes (see {@link EchRejectedError}).
   */
  echStatus: 'accepted' | 'grease' | 'not-offered';
}

type ClientState = 'start' | 'wait_sh' | 'wait_ee' | 'wait_cert' | 'wait_cv' | 'wait_finished' | 'connected' | 'closed';

const DEFAULT_SIGALGS = [
  SignatureScheme.ecdsa_secp256r1_sha256,
  SignatureScheme.rsa_pss_rsae_sha256,
  SignatureScheme.rsa_pss_rsae_sha384,
  SignatureScheme.rsa_pss_rsae_sha512,
  SignatureScheme.ed25519,
];

function loadCas(ca: ClientOptions['ca']): X509Certificate[] {
  const items = ca === undefined ? [] : Array.isArray(ca) ? ca : [ca];
  const out: X509Certificate[] = [];
  for (const item of items) {
    const text = typeof item === 'string' ? item : item.toString('latin1');
    for (const b of text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []) out.push(new X509Certificate(b));
  }
  return out;
}

/**
 * A TLS 1.3 client connection without a transport.
 * @group Client
 * @example
 * ```ts
 * const client = new ClientConnection({ servername: 'localhost', ca }, {
 *   send: (b) => socket.write(b),
 *   handshakeComplete: () => client.write(new TextEncoder().encode('GET / HTTP/1.0\r\n\r\n')),
 *   data: (b) => process.stdout.write(b),
 * });
 * socket.on('data', (b) => client.receive(b).catch(console.error));
 * client.start();
 * ```
 */
export class ClientConnection {
  protected readonly options: ClientOptions;
  protected readonly sink: ClientSink;
  /** Records, alerts, key updates and close (shared with the server engine). */
  private readonly core: ConnectionCore;
  protected readonly records: RecordLayer;
  private state: ClientState = 'start';
  private readonly suites: CipherSuiteParams[];
  private readonly groups: number[];
  private keys = new Map<number, EphemeralKey>();
  private ch: ClientHello | undefined;
  private chMessage: Uint8Array | undefined;
  private transcript: Transcript | undefined;
  private suite: CipherSuiteParams | undefined;
  private group = 0;
  private helloRetry = false;
  private pskAccepted = false;
  private schedule: KeySchedule | undefined;
  private clientHs: Uint8Array | undefined;
  private serverHs: Uint8Array | undefined;
  private rms: Uint8Array | undefined;
  private serverRandom: Uint8Array = new Uint8Array(32);
  private ee: Extension[] = [];
  private alpn: string | false = false;
  private certs: X509Certificate[] = [];
  private infoValue: ClientHandshakeInfo | undefined;
  /** The first ClientHello as sent (ClientHelloOuter with ECH). */
  private firstWire: Uint8Array | undefined;
  /** Real ECH: decided at the HelloRetryRequest or the ServerHello. */
  private echDecision: 'accepted' | 'rejected' | undefined;
  private retryConfigs: Uint8Array | undefined;
  /** Extension types of the last ClientHello sent (engine's and wire's). */
  private offered = new Set<number>();

  constructor(options: ClientOptions, sink: ClientSink) {
    this.options = options;
    this.sink = sink;
    this.core = new ConnectionCore({
      send: (b) => sink.send(b),
      handshake: (m) => this.handle(m),
      connected: () => this.state === 'connected',
      data: (b) => sink.data?.(b),
      peerClosed: () => {
        this.state = 'closed';
        sink.peerClosed?.();
      },
      failed: () => {
        this.state = 'closed';
      },
    });
    this.records = this.core.records;
    this.suites = parseCipherList(options.ciphers);
    this.groups = parseEcdhCurve(options.ecdhCurve, DEFAULT_CLIENT_GROUPS);
  }

  /** What was negotiated, once connected. */
  get info(): ClientHandshakeInfo | undefined {
    return this.infoValue;
  }

  /** The error that closed the connection, if any. */
  get error(): Error | undefined {
    return this.core.error;
  }

  /** Send the ClientHello. */
  start(): void {
    if (this.state !== 'start') return;
    try {
      this.sendClientHello(undefined, undefined);
    } catch (e) {
      throw this.core.fail(e);
    }
  }

  /** Process bytes from the server. */
  receive(data: Uint8Array): Promise<void> {
    return this.core.receive(data);
  }

  /** Encrypt and send application data. */
  write(data: Uint8Array): void {
    if (this.state !== 'connected' || this.core.writeClosed) throw new EchError('ERR_PROTOCOL', 'internal_error', 'not connected');
    this.core.writeData(data);
  }

  /** Send KeyUpdate and move to the next write key. */
  keyUpdate(requestPeer = true): void {
    if (this.state !== 'connected' || this.core.writeClosed) throw new EchError('ERR_PROTOCOL', 'internal_error', 'not connected');
    this.core.sendKeyUpdate(requestPeer ? KeyUpdateRequest.update_requested : KeyUpdateRequest.update_not_requested);
  }

  /** Send close_notify. */
  close(): void {
    this.core.close();
  }

  private unexpected(m: HandshakeMessage): never {
    throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `unexpected handshake message ${m.type} in state ${this.state}`);
  }

  private handle(m: HandshakeMessage): void {
    switch (this.state) {
      case 'wait_sh':
        if (m.type !== HandshakeType.server_hello) this.unexpected(m);
        return this.readServerHello(m);
      case 'wait_ee':
        if (m.type !== HandshakeType.encrypted_extensions) this.unexpected(m);
        return this.readEncryptedExtensions(m);
      case 'wait_cert':
        if (m.type !== HandshakeType.certificate) this.unexpected(m);
        return this.readCertificate(m);
      case 'wait_cv':
        if (m.type !== HandshakeType.certificate_verify) this.unexpected(m);
        return this.readCertificateVerify(m);
      case 'wait_finished':
        if (m.type !== HandshakeType.finished) this.unexpected(m);
        return this.readServerFinished(m);
      case 'connected':
        if (m.type === HandshakeType.new_session_ticket) return this.readNewSessionTicket(m);
        if (m.type === HandshakeType.key_update) return this.core.readKeyUpdate(m);
        return this.unexpected(m);
      default:
        return this.unexpected(m);
    }
  }

  // ---------------------------------------------------------- sendClientHello

  private sendClientHello(hrr: ServerHello | undefined, hrrGroup: number | undefined): void {
    const o = this.options;
    const retry = hrr !== undefined;
    const shareGroups = retry ? [hrrGroup!] : (o.keyShareGroups ?? [this.groups[0]!]);
    if (retry) this.keys.clear();
    for (const g of shareGroups) this.keys.set(g, generateEphemeralKey(g));
    const compat = o.compatibilityMode ?? true;
    const exts: Extension[] = [];
    if (o.servername) exts.push({ type: ExtensionType.server_name, data: encodeServerName(o.servername) });
    exts.push({ type: ExtensionType.supported_versions, data: encodeSupportedVersions([ProtocolVersion.TLS13]) });
    exts.push({ type: ExtensionType.supported_groups, data: encodeSupportedGroups(this.groups) });
    exts.push({
      type: ExtensionType.key_share,
      data: encodeKeyShareClient([...this.keys.values()].map((k) => ({ group: k.group, keyExchange: k.publicKey }))),
    });
    exts.push({ type: ExtensionType.signature_algorithms, data: encodeSignatureAlgorithms(o.signatureAlgorithms ?? DEFAULT_SIGALGS) });
    if (o.ALPNProtocols?.length) exts.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(o.ALPNProtocols) });
    if (hrr) {
      const cookie = findExtension(hrr.extensions, ExtensionType.cookie);
      if (cookie) exts.push({ type: ExtensionType.cookie, data: encodeCookie(decodeCookie(cookie.data)) });
    }
    const session = o.session && suiteById(o.session.suite) ? o.session : undefined;
    if (session) exts.push({ type: ExtensionType.psk_key_exchange_modes, data: encodePskKeyExchangeModes([PskKeyExchangeMode.psk_dhe_ke]) });
    let ch: ClientHello = {
      legacyVersion: ProtocolVersion.TLS12,
      random: retry ? this.ch!.random : new Uint8Array(randomBytes(32)),
      legacySessionId: retry ? this.ch!.legacySessionId : compat ? new Uint8Array(randomBytes(32)) : new Uint8Array(0),
      cipherSuites: this.suites.map((s) => s.id),
      legacyCompressionMethods: Uint8Array.of(0),
      extensions: exts,
    };
    ch = o.mutateClientHello?.(ch, retry) ?? ch;
    if (o.ech?.clientHello) ch = o.ech.clientHello(ch, retry);
    let message: Uint8Array;
    if (session) {
      // RFC 9846 §4.2.11: pre_shared_key last; binder over the truncated hello.
      const hash = suiteById(session.suite)!.hash;
      const age = (Date.now() - session.receivedAt + session.ageAdd) >>> 0;
      const placeholder = encodeOfferedPsks({
        identities: [{ identity: session.ticket, obfuscatedTicketAge: age }],
        binders: [new Uint8Array(hashLength(hash))],
      });
      ch.extensions.push({ type: ExtensionType.pre_shared_key, data: placeholder });
      message = encodeClientHelloMessage(ch);
      const truncated = message.subarray(0, message.length - pskBindersLength(placeholder));
      const th = retry ? this.transcript!.digestWith(truncated) : Transcript.fromMessages(hash, truncated).digest();
      const binder = this.pskBinder(finishedVerifyData(hash, new KeySchedule(hash, session.psk).resumptionBinderKey(), th));
      ch.extensions[ch.extensions.length - 1] = {
        type: ExtensionType.pre_shared_key,
        data: encodeOfferedPsks({ identities: [{ identity: session.ticket, obfuscatedTicketAge: age }], binders: [binder] }),
      };
      message = encodeClientHelloMessage(ch);
    } else {
      message = encodeClientHelloMessage(ch);
    }
    if (!retry) this.ch = ch;
    this.chMessage = message;
    const wire =
      o.ech?.mode === 'real' && o.ech.outerClientHello
        ? o.ech.outerClientHello(ch, message, retry, this.echDecision === 'accepted')
        : (o.wireClientHello?.(message, retry) ?? message);
    if (!retry) this.firstWire = wire;
    // What the server may answer (RFC 9846 §4.2): the extensions of the
    // hello the transcript uses and of the one on the wire (they differ with
    // ECH: the server answers ClientHelloInner or ClientHelloOuter).
    this.offered = new Set(ch.extensions.map((e) => e.type));
    if (wire !== message) for (const e of decodeClientHello(wire.subarray(4)).extensions) this.offered.add(e.type);
    // RFC 9849 §6.1.5/§6.1.6: the transcript holds the ClientHellos the
    // server used: ClientHelloInner once ECH is accepted, ClientHelloOuter
    // once it is rejected.
    if (retry) this.transcript!.update(this.echDecision === 'rejected' ? wire : message);
    const record = this.records.encode(ContentType.handshake, wire);
    this.records.allowChangeCipherSpec(true);
    // The state moves before the bytes leave: a transport that delivers the
    // server's answer within `send` (in memory; a server that answers a
    // ClientHello synchronously) finds the client waiting for it.
    this.state = 'wait_sh';
    if (retry && compat) this.sink.send(RecordLayer.changeCipherSpec());
    this.sink.send(record);
  }

  /** The binder to send (overridable by tests that need a wrong one). */
  protected pskBinder(binder: Uint8Array): Uint8Array {
    return binder;
  }

  /**
   * The client Finished message about to be sent, whole (overridable by
   * tests of misbehaving clients: wrong verify_data, another message).
   */
  protected clientFinishedMessage(message: Uint8Array): Uint8Array {
    return message;
  }

  // ---------------------------------------------------------- readServerHello

  private readServerHello(m: HandshakeMessage): void {
    const sh = decodeServerHello(m.body);
    const ch = this.ch!;
    // §4.1.3 checks shared by ServerHello and HelloRetryRequest.
    if (sh.legacyVersion !== ProtocolVersion.TLS12) throw new EchError('ERR_PROTOCOL', 'protocol_version', 'ServerHello legacy_version');
    if (!equalBytes(sh.legacySessionIdEcho, ch.legacySessionId)) throw new IllegalParameterError('legacy_session_id_echo mismatch');
    if (sh.legacyCompressionMethod !== 0) throw new IllegalParameterError('legacy_compression_method not 0');
    const suite = this.suites.find((s) => s.id === sh.cipherSuite);
    if (!suite) throw new IllegalParameterError('server chose a cipher suite that was not offered');
    const sv = findExtension(sh.extensions, ExtensionType.supported_versions);
    if (!sv || decodeSupportedVersionSelected(sv.data) !== ProtocolVersion.TLS13) {
      throw new EchError('ERR_PROTOCOL', 'protocol_version', 'server did not select TLS 1.3');
    }
    const hrr = isHelloRetryRequest(sh);
    this.checkResponseExtensions(sh.extensions, hrr ? 'HRR' : 'SH');
    if (hrr) return this.readHelloRetryRequest(m, sh, suite);
    if (this.helloRetry && suite !== this.suite) throw new IllegalParameterError('cipher suite changed after HelloRetryRequest');
    this.suite = suite;
    this.serverRandom = sh.random;
    if (this.options.ech?.mode === 'real' && this.echDecision !== 'rejected') this.decideEch(m, sh, suite);
    if (!this.transcript) {
      this.transcript = Transcript.fromMessages(suite.hash, this.echDecision === 'rejected' ? this.firstWire! : this.chMessage!);
    }
    this.transcript.update(m.raw);
    const ks = findExtension(sh.extensions, ExtensionType.key_share);
    if (!ks) throw new EchError('ERR_PROTOCOL', 'missing_extension', 'ServerHello without key_share (psk_ke is not offered)');
    const share = decodeKeyShareServer(ks.data);
    const key = this.keys.get(share.group);
    if (!key) throw new IllegalParameterError('server key_share for a group we did not share');
    this.group = share.group;
    let psk: Uint8Array | undefined;
    const pskExt = findExtension(sh.extensions, ExtensionType.pre_shared_key);
    if (pskExt) {
      // RFC 9849 §6.1.2: "If ECH is rejected and the client-facing server
      // replies with a "pre_shared_key" extension in its ServerHello, then
      // the client MUST abort the handshake with an "illegal_parameter" alert."
      if (this.echDecision === 'rejected') throw new IllegalParameterError('server selected a PSK although it rejected ECH');
      const idx = decodePreSharedKeySelected(pskExt.data);
      const session = this.options.session;
      if (!session || idx !== 0) throw new IllegalParameterError('server selected a PSK we did not offer');
      if (suiteById(session.suite)!.hash !== suite.hash) throw new IllegalParameterError('PSK hash does not match the suite');
      psk = session.psk;
      this.pskAccepted = true;
    }
    this.core.requireRecordBoundary('ServerHello');
    this.schedule = new KeySchedule(suite.hash, psk);
    const secrets = this.schedule.handshakeSecrets(key.computeSecret(share.keyExchange), this.transcript.digest());
    this.clientHs = secrets.client;
    this.serverHs = secrets.server;
    this.records.setReadKeys(suite, trafficKeys(suite, secrets.server));
    this.state = 'wait_ee';
  }

  /**
   * RFC 9849 §6.1.4 for a ServerHello: "If this value matches the last 8
   * bytes of ServerHello.random, the server has accepted ECH. Otherwise, it
   * has rejected ECH."
   */
  private decideEch(m: HandshakeMessage, sh: ServerHello, suite: CipherSuiteParams): void {
    const zeroed = Uint8Array.from(m.raw);
    // transcript_ech_conf: ClientHelloInner ... ServerHello with the last 8
    // bytes of random set to zero (§7.2); random sits at offset 6 of the message.
    zeroed.fill(0, 6 + 32 - ECH_CONFIRMATION_LENGTH, 6 + 32);
    const th = this.helloRetry
      ? this.transcript!.digestWith(zeroed)
      : Transcript.fromMessages(suite.hash, this.chMessage!, zeroed).digest();
    const expected = acceptConfirmation(suite.hash, this.ch!.random, th);
    const accepted = equalBytes(expected, sh.random.subarray(32 - ECH_CONFIRMATION_LENGTH));
    // §6.1.5: after a HelloRetryRequest that accepted ECH, "If the
    // ServerHello does not also indicate ECH acceptance, the client MUST
    // terminate the connection with an "illegal_parameter" alert."
    if (this.helloRetry && this.echDecision === 'accepted' && !accepted) {
      throw new IllegalParameterError('HelloRetryRequest accepted ECH but the ServerHello does not confirm it');
    }
    this.echDecision = accepted ? 'accepted' : 'rejected';
  }

  private readHelloRetryRequest(m: HandshakeMessage, hrr: ServerHello, suite: CipherSuiteParams): void {
    // §4.1.4: "If a client receives a second HelloRetryRequest ... it MUST
    // abort the handshake with an "unexpected_message" alert."
    if (this.helloRetry) throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'second HelloRetryRequest');
    this.helloRetry = true;
    this.suite = suite;
    const ks = findExtension(hrr.extensions, ExtensionType.key_share);
    const group = ks ? decodeKeyShareHelloRetry(ks.data) : undefined;
    // §4.1.4: the HRR must change something, and ask only for a group offered but not shared.
    if (group !== undefined && (!this.groups.includes(group) || this.keys.has(group))) {
      throw new IllegalParameterError('HelloRetryRequest asks for an unusable group');
    }
    if (group === undefined && !findExtension(hrr.extensions, ExtensionType.cookie)) {
      throw new IllegalParameterError('HelloRetryRequest would not change the ClientHello');
    }
    const echExt = findExtension(hrr.extensions, ExtensionType.encrypted_client_hello);
    const ech = this.options.ech;
    // RFC 9849 §6.1.4: "if it has a length other than 8, the client aborts
    // the handshake with a "decode_error" alert" (§6.2.1: GREASE clients
    // check the extension the same way, then ignore it). Without the `ech`
    // option the engine ignores it, as before (callers of the raw seams).
    if (ech && echExt && echExt.data.length !== ECH_CONFIRMATION_LENGTH) {
      throw new DecodeError('HelloRetryRequest encrypted_client_hello is not 8 bytes');
    }
    if (ech?.mode === 'real') {
      // RFC 9849 §6.1.4: "If none is found, the server has rejected ECH.
      // ... Otherwise, the client computes hrr_accept_confirmation ... If
      // this value matches the extension payload, the server has accepted ECH."
      let accepted = false;
      if (echExt) {
        const zeroed = Uint8Array.from(m.raw);
        const at = serverHelloExtensionOffset(zeroed, ExtensionType.encrypted_client_hello);
        zeroed.fill(0, at, at + ECH_CONFIRMATION_LENGTH);
        const th = Transcript.fromMessages(suite.hash, messageHash(suite.hash, this.chMessage!), zeroed).digest();
        accepted = equalBytes(hrrAcceptConfirmation(suite.hash, this.ch!.random, th), echExt.data);
      }
      this.echDecision = accepted ? 'accepted' : 'rejected';
    }
    const first = this.echDecision === 'rejected' ? this.firstWire! : this.chMessage!;
    this.transcript = Transcript.fromMessages(suite.hash, messageHash(suite.hash, first), m.raw);
    this.sendClientHello(hrr, group ?? [...this.keys.keys()][0]!);
  }

  // ------------------------------------------------------------- server flight

  /**
   * RFC 9846 §4.2: "Implementations MUST NOT send extension responses (i.e.,
   * in the ServerHello, EncryptedExtensions, HelloRetryRequest, and
   * Certificate messages) if the remote endpoint did not send the
   * corresponding extension requests, with the exception of the "cookie"
   * extension in the HelloRetryRequest. Upon receiving such an extension, an
   * endpoint MUST abort the handshake with an "unsupported_extension" alert."
   * And: "If an implementation receives an extension which it recognizes and
   * which is not specified for the message in which it appears, it MUST abort
   * the handshake with an "illegal_parameter" alert."
   */
  private checkResponseExtensions(exts: readonly Extension[], where: ResponseMessage): void {
    for (const e of exts) {
      const name = `0x${e.type.toString(16).padStart(4, '0')}`;
      if (!this.offered.has(e.type) && !(where === 'HRR' && e.type === ExtensionType.cookie)) {
        throw new EchError('ERR_PROTOCOL', 'unsupported_extension', `extension ${name} in ${where} was not offered`);
      }
      const allowed = RESPONSE_MESSAGES.get(e.type);
      if (allowed && !allowed.includes(where)) throw new IllegalParameterError(`extension ${name} is not allowed in ${where}`);
    }
  }

  private readEncryptedExtensions(m: HandshakeMessage): void {
    this.ee = decodeEncryptedExtensions(m.body);
    this.checkResponseExtensions(this.ee, 'EE');
    this.readEchEncryptedExtension(findExtension(this.ee, ExtensionType.encrypted_client_hello));
    const alpn = findExtension(this.ee, ExtensionType.application_layer_protocol_negotiation);
    if (alpn) {
      const p = decodeAlpnSelected(alpn.data);
      if (!this.options.ALPNProtocols?.includes(p)) throw new IllegalParameterError('server selected an ALPN protocol we did not offer');
      this.alpn = p;
    }
    this.transcript!.update(m.raw);
    this.state = this.pskAccepted ? 'wait_finished' : 'wait_cert';
  }

  private readEchEncryptedExtension(ext: Extension | undefined): void {
    // Without the `ech` option the engine ignores the extension, as before
    // (callers that build ECH hellos through the raw seams read it themselves).
    if (!ext || !this.options.ech) return;
    // RFC 9849 §5: "If the server sent this extension in response to the
    // inner variant, then the client MUST abort with an
    // "unsupported_extension" alert."
    if (this.echDecision === 'accepted') {
      throw new EchError('ERR_PROTOCOL', 'unsupported_extension', 'retry_configs sent although ECH was accepted');
    }
    // §6.1.6 (rejected) and §6.2.1 (GREASE): "the client MUST check that it
    // is syntactically valid and the client MUST abort the connection with a
    // "decode_error" alert otherwise."
    try {
      decodeEchConfigList(ext.data);
    } catch (cause) {
      throw new DecodeError(`malformed retry_configs: ${(cause as Error).message}`, { cause });
    }
    // §6.2.1: a GREASE client "MUST NOT save the "retry_configs" value".
    if (this.echDecision === 'rejected') this.retryConfigs = Uint8Array.from(ext.data);
  }

  private readCertificate(m: HandshakeMessage): void {
    const c = decodeCertificate(m.body);
    if (c.certificateRequestContext.length !== 0) throw new IllegalParameterError('non-empty certificate_request_context');
    // §4.4.2.4: an empty Certificate from a server → "decode_error".
    if (c.entries.length === 0) throw new DecodeError('server sent no certificate');
    for (const e of c.entries) this.checkResponseExtensions(e.extensions, 'CT');
    try {
      this.certs = c.entries.map((e) => new X509Certificate(Buffer.from(e.data)));
    } catch (cause) {
      throw new CertificateError('bad_certificate', 'malformed', 'unparsable certificate', { cause });
    }
    if (this.options.rejectUnauthorized ?? true) {
      // RFC 9849 §6.1.7: on rejection "The client MUST verify that the
      // certificate is valid for ECHConfig.contents.public_name. If invalid,
      // it MUST abort the connection with the appropriate alert."
      const name = this.echDecision === 'rejected' ? this.options.ech!.publicName : this.options.servername;
      if (this.echDecision === 'rejected' && !name) throw new EchError('ERR_INTERNAL', 'internal_error', 'ECH offer without a public name');
      verifyServerChain(this.certs, loadCas(this.options.ca), name);
    }
    this.transcript!.update(m.raw);
    this.state = 'wait_cv';
  }

  private readCertificateVerify(m: HandshakeMessage): void {
    const cv = decodeCertificateVerify(m.body);
    const offered = this.options.signatureAlgorithms ?? DEFAULT_SIGALGS;
    // §4.4.3: the algorithm must be one the client offered.
    if (!offered.includes(cv.algorithm)) throw new IllegalParameterError('CertificateVerify with a scheme we did not offer');
    verifyWithScheme(cv.algorithm, this.certs[0]!.publicKey, certificateVerifyInput(true, this.transcript!.digest()), cv.signature);
    this.transcript!.update(m.raw);
    this.state = 'wait_finished';
  }

  private readServerFinished(m: HandshakeMessage): void {
    const suite = this.suite!;
    const expected = finishedVerifyData(suite.hash, this.serverHs!, this.transcript!.digest());
    const got = decodeFinished(m.body, hashLength(suite.hash));
    if (!equalBytes(expected, got)) throw new DecryptError('server Finished does not verify');
    this.core.requireRecordBoundary('Finished');
    this.transcript!.update(m.raw);
    const ap = this.schedule!.applicationSecrets(this.transcript!.digest());
    this.sendClientFinished();
    this.core.setReadSecret(suite, ap.server);
    this.core.setWriteSecret(suite, ap.client);
    // RFC 9846 §5: after the peer's Finished a change_cipher_spec, or any
    // record not protected, is an unexpected record.
    this.core.peerFinished();
    if (this.echDecision === 'rejected') {
      // RFC 9849 §6.1.6: "If both authentication and the handshake complete
      // successfully, the client MUST perform the processing described below
      // then abort the connection with an "ech_required" alert before sending
      // any application data"; §6.1.7: such connections are never reported as
      // successful. The alert goes out (under the application keys, as
      // BoringSSL does) when `fail` handles this error.
      throw new EchRejectedError(this.retryConfigs, this.certs, this.options.rejectUnauthorized ?? true, this.options.ech?.publicName);
    }
    this.state = 'connected';
    this.infoValue = {
      suite,
      group: this.group,
      alpnProtocol: this.alpn,
      resumed: this.pskAccepted,
      helloRetry: this.helloRetry,
      serverRandom: this.serverRandom,
      peerCertificates: this.certs,
      encryptedExtensions: this.ee,
      echStatus: this.echDecision === 'accepted' ? 'accepted' : this.options.ech?.mode === 'grease' ? 'grease' : 'not-offered',
    };
    this.sink.handshakeComplete?.(this.infoValue);
  }

  /** Send the client's final flight (CCS in compatibility mode, Finished). */
  protected sendClientFinished(): void {
    const suite = this.suite!;
    if ((this.options.compatibilityMode ?? true) && !this.helloRetry) this.sink.send(RecordLayer.changeCipherSpec());
    this.records.setWriteKeys(suite, trafficKeys(suite, this.clientHs!));
    const verify = finishedVerifyData(suite.hash, this.clientHs!, this.transcript!.digest());
    const msg = encodeHandshake(HandshakeType.finished, encodeFinished(verify));
    this.transcript!.update(msg);
    this.sink.send(this.records.encode(ContentType.handshake, this.clientFinishedMessage(msg)));
    this.rms = this.schedule!.resumptionMasterSecret(this.transcript!.digest());
  }


  // ------------------------------------------------------------ post-handshake

  private readNewSessionTicket(m: HandshakeMessage): void {
    const t = decodeNewSessionTicket(m.body);
    const suite = this.suite!;
    this.sink.session?.({
      suite: suite.id,
      psk: resumptionPsk(suite.hash, this.rms!, t.nonce),
      ticket: t.ticket,
      ageAdd: t.ageAdd,
      lifetime: t.lifetime,
      receivedAt: Date.now(),
      servername: this.options.servername,
    });
  }
}
