/**
 * A transport-free TLS 1.3 client (RFC 8446bis §4) on the same key schedule,
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
 * @module
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { AlertDescription, DecodeError, DecryptError, EchError, IllegalParameterError, alertName } from '../wire/alert.js';
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
import { HandshakeReassembler, encodeHandshake, type HandshakeMessage } from '../tls/record.js';
import { encodeClientHelloMessage, findExtension, type ClientHello, type Extension } from '../tls/client-hello.js';
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
  decodeKeyUpdate,
  decodeNewSessionTicket,
  decodePreSharedKeySelected,
  decodeServerHello,
  decodeSupportedVersionSelected,
  encodeFinished,
  encodeKeyUpdate,
  isHelloRetryRequest,
  type ServerHello,
} from '../tls/messages.js';
import { certificateVerifyInput, verifyWithScheme } from './certificates.js';
import { generateEphemeralKey, parseEcdhCurve, type EphemeralKey } from './groups.js';
import { KeySchedule, finishedVerifyData, nextTrafficSecret, resumptionPsk, trafficKeys } from './key-schedule.js';
import { RecordLayer } from './record-layer.js';
import { parseCipherList, suiteById, type CipherSuiteParams } from './suites.js';
import { PeerAlertError } from './server-handshake.js';

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
  /** Groups offered in supported_groups, in order (default X25519:P-256). */
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
 * Verify a server chain (leaf first) against trusted CAs and a host name.
 * Throws an {@link EchError} with `bad_certificate`, `unknown_ca` or
 * `certificate_expired`.
 * @group Client
 * @example
 * ```ts
 * verifyServerChain(chain, [caCert], 'example.com');
 * ```
 */
export function verifyServerChain(chain: readonly X509Certificate[], roots: readonly X509Certificate[], host: string | undefined, now = new Date()): void {
  if (chain.length === 0) throw new EchError('ERR_CERTIFICATE', 'bad_certificate', 'empty certificate chain');
  for (const c of chain) {
    if (now < new Date(c.validFrom) || now > new Date(c.validTo)) {
      throw new EchError('ERR_CERTIFICATE', 'certificate_expired', `certificate ${c.subject} is not valid now`);
    }
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) {
      throw new EchError('ERR_CERTIFICATE', 'bad_certificate', 'certificate chain is not in order');
    }
  }
  const last = chain[chain.length - 1]!;
  const anchored = roots.some(
    (r) => r.fingerprint256 === last.fingerprint256 || (last.checkIssued(r) && last.verify(r.publicKey)),
  );
  if (!anchored) throw new EchError('ERR_CERTIFICATE', 'unknown_ca', 'certificate chain does not lead to a trusted CA');
  if (host !== undefined && chain[0]!.checkHost(host) === undefined) {
    throw new EchError('ERR_CERTIFICATE', 'bad_certificate', `certificate does not match ${host}`);
  }
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
  protected readonly records = new RecordLayer();
  private readonly hs = new HandshakeReassembler();
  private chain: Promise<void> = Promise.resolve();
  private state: ClientState = 'start';
  private failure: Error | undefined;
  private writeClosed = false;
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
  private clientAp: Uint8Array | undefined;
  private serverAp: Uint8Array | undefined;
  private rms: Uint8Array | undefined;
  private serverRandom: Uint8Array = new Uint8Array(32);
  private ee: Extension[] = [];
  private alpn: string | false = false;
  private certs: X509Certificate[] = [];
  private infoValue: ClientHandshakeInfo | undefined;

  constructor(options: ClientOptions, sink: ClientSink) {
    this.options = options;
    this.sink = sink;
    this.suites = parseCipherList(options.ciphers);
    this.groups = parseEcdhCurve(options.ecdhCurve);
  }

  /** What was negotiated, once connected. */
  get info(): ClientHandshakeInfo | undefined {
    return this.infoValue;
  }

  /** The error that closed the connection, if any. */
  get error(): Error | undefined {
    return this.failure;
  }

  /** Send the ClientHello. */
  start(): void {
    if (this.state !== 'start') return;
    try {
      this.sendClientHello(undefined, undefined);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** Process bytes from the server. */
  receive(data: Uint8Array): Promise<void> {
    const p = this.chain.then(async () => {
      if (this.failure) throw this.failure;
      if (this.state === 'closed') return;
      try {
        this.records.push(data);
        this.pump();
      } catch (e) {
        throw this.fail(e);
      }
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Encrypt and send application data. */
  write(data: Uint8Array): void {
    if (this.state !== 'connected' || this.writeClosed) throw new EchError('ERR_PROTOCOL', 'internal_error', 'not connected');
    if (data.length) this.sink.send(this.records.encode(ContentType.application_data, data));
  }

  /** Send KeyUpdate and move to the next write key. */
  keyUpdate(requestPeer = true): void {
    if (this.state !== 'connected' || this.writeClosed) throw new EchError('ERR_PROTOCOL', 'internal_error', 'not connected');
    this.sendKeyUpdate(requestPeer ? KeyUpdateRequest.update_requested : KeyUpdateRequest.update_not_requested);
  }

  /** Send close_notify. */
  close(): void {
    if (this.writeClosed) return;
    this.writeClosed = true;
    this.sink.send(this.records.encodeAlert('close_notify'));
  }

  private fail(e: unknown): Error {
    if (this.failure) return this.failure;
    const err = e instanceof EchError ? e : new EchError('ERR_INTERNAL', 'internal_error', e instanceof Error ? e.message : String(e), { cause: e });
    this.failure = err;
    if (!(err instanceof PeerAlertError) && !this.writeClosed) {
      try {
        this.sink.send(this.records.encodeAlert(err.alert));
      } catch {
        // nothing more to do
      }
    }
    this.state = 'closed';
    this.writeClosed = true;
    return err;
  }

  private pump(): void {
    for (;;) {
      if (this.state === 'closed') return;
      const rec = this.records.next();
      if (!rec) return;
      if (rec.type !== ContentType.handshake && this.hs.pending > 0) {
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'record interleaved with a fragmented handshake message');
      }
      if (rec.type === ContentType.alert) {
        if (rec.content.length !== 2) throw new DecodeError('alert record is not 2 bytes');
        const d = rec.content[1]!;
        if (d === AlertDescription.close_notify && this.state === 'connected') {
          this.state = 'closed';
          this.sink.peerClosed?.();
          return;
        }
        if (d === AlertDescription.user_canceled) continue;
        const name = alertName(d);
        throw new PeerAlertError((name in AlertDescription ? name : 'internal_error') as AlertDescription, `server sent alert ${name}`);
      }
      if (rec.type === ContentType.application_data) {
        if (this.state !== 'connected') throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'application data during the handshake');
        if (rec.content.length) this.sink.data?.(rec.content);
        continue;
      }
      this.hs.push(rec.content);
      for (let m = this.hs.next(); m; m = this.hs.next()) {
        this.handle(m);
        if ((this.state as ClientState) === 'closed') return;
      }
    }
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
        if (m.type === HandshakeType.key_update) return this.readKeyUpdate(m);
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
    let message: Uint8Array;
    if (session) {
      // RFC 8446bis §4.2.11: pre_shared_key last; binder over the truncated hello.
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
    if (retry) this.transcript!.update(message);
    if (retry && compat) this.sink.send(RecordLayer.changeCipherSpec());
    const wire = o.wireClientHello?.(message, retry) ?? message;
    this.sink.send(this.records.encode(ContentType.handshake, wire));
    this.records.allowChangeCipherSpec(true);
    this.state = 'wait_sh';
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
    if (isHelloRetryRequest(sh)) return this.readHelloRetryRequest(m, sh, suite);
    if (this.helloRetry && suite !== this.suite) throw new IllegalParameterError('cipher suite changed after HelloRetryRequest');
    this.suite = suite;
    this.serverRandom = sh.random;
    if (!this.transcript) this.transcript = Transcript.fromMessages(suite.hash, this.chMessage!);
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
      const idx = decodePreSharedKeySelected(pskExt.data);
      const session = this.options.session;
      if (!session || idx !== 0) throw new IllegalParameterError('server selected a PSK we did not offer');
      if (suiteById(session.suite)!.hash !== suite.hash) throw new IllegalParameterError('PSK hash does not match the suite');
      psk = session.psk;
      this.pskAccepted = true;
    }
    if (this.hs.pending > 0) throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'ServerHello not at a record boundary');
    this.schedule = new KeySchedule(suite.hash, psk);
    const secrets = this.schedule.handshakeSecrets(key.computeSecret(share.keyExchange), this.transcript.digest());
    this.clientHs = secrets.client;
    this.serverHs = secrets.server;
    this.records.setReadKeys(suite, trafficKeys(suite, secrets.server));
    this.state = 'wait_ee';
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
    this.transcript = Transcript.fromMessages(suite.hash, messageHash(suite.hash, this.chMessage!), m.raw);
    this.sendClientHello(hrr, group ?? [...this.keys.keys()][0]!);
  }

  // ------------------------------------------------------------- server flight

  private readEncryptedExtensions(m: HandshakeMessage): void {
    this.ee = decodeEncryptedExtensions(m.body);
    const alpn = findExtension(this.ee, ExtensionType.application_layer_protocol_negotiation);
    if (alpn) {
      const p = decodeAlpnSelected(alpn.data);
      if (!this.options.ALPNProtocols?.includes(p)) throw new IllegalParameterError('server selected an ALPN protocol we did not offer');
      this.alpn = p;
    }
    this.transcript!.update(m.raw);
    this.state = this.pskAccepted ? 'wait_finished' : 'wait_cert';
  }

  private readCertificate(m: HandshakeMessage): void {
    const c = decodeCertificate(m.body);
    if (c.certificateRequestContext.length !== 0) throw new IllegalParameterError('non-empty certificate_request_context');
    // §4.4.2.4: an empty Certificate from a server → "decode_error".
    if (c.entries.length === 0) throw new DecodeError('server sent no certificate');
    try {
      this.certs = c.entries.map((e) => new X509Certificate(Buffer.from(e.data)));
    } catch (cause) {
      throw new EchError('ERR_CERTIFICATE', 'bad_certificate', 'unparsable certificate', { cause });
    }
    if (this.options.rejectUnauthorized ?? true) {
      verifyServerChain(this.certs, loadCas(this.options.ca), this.options.servername);
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
    if (this.hs.pending > 0) throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'Finished not at a record boundary');
    this.transcript!.update(m.raw);
    const ap = this.schedule!.applicationSecrets(this.transcript!.digest());
    this.clientAp = ap.client;
    this.serverAp = ap.server;
    this.sendClientFinished();
    this.records.setReadKeys(suite, trafficKeys(suite, ap.server));
    this.records.setWriteKeys(suite, trafficKeys(suite, ap.client));
    this.records.allowChangeCipherSpec(false);
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

  private readKeyUpdate(m: HandshakeMessage): void {
    const req = decodeKeyUpdate(m.body);
    if (this.hs.pending > 0) throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'KeyUpdate not at a record boundary');
    const suite = this.suite!;
    this.serverAp = nextTrafficSecret(suite.hash, this.serverAp!);
    this.records.setReadKeys(suite, trafficKeys(suite, this.serverAp));
    if (req === KeyUpdateRequest.update_requested && !this.writeClosed) this.sendKeyUpdate(KeyUpdateRequest.update_not_requested);
  }

  private sendKeyUpdate(req: KeyUpdateRequest): void {
    const suite = this.suite!;
    this.sink.send(this.records.encode(ContentType.handshake, encodeHandshake(HandshakeType.key_update, encodeKeyUpdate(req))));
    this.clientAp = nextTrafficSecret(suite.hash, this.clientAp!);
    this.records.setWriteKeys(suite, trafficKeys(suite, this.clientAp));
  }
}
