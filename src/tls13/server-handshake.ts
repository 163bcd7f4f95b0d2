/**
 * The transport-free TLS 1.3 server (RFC 9846 §4): a connection object
 * that consumes bytes and produces bytes. The handshake reads as a linear
 * sequence of named steps, in the style of Go's handshake_server_tls13.go:
 *
 * 1. {@link ServerConnection} `processClientHello` — decode, run the
 *    ClientHello hook (the ECH seam), check the version, compression and
 *    mandatory extensions, pick the cipher suite, group, PSK, certificate and
 *    ALPN protocol;
 * 2. `sendHelloRetryRequest` when no usable key share was offered, then
 *    `processClientHello` again on ClientHello2 (checked against
 *    ClientHello1, §4.1.2);
 * 3. `sendServerHello` (with the optional accept-confirmation overwrite of
 *    the last 8 bytes of the random), handshake keys;
 * 4. `sendEncryptedExtensions`, `sendCertificate`, `sendCertificateVerify`
 *    (skipped on PSK resumption), `sendServerFinished`, application keys;
 * 5. `readClientFinished`, then `sendSessionTickets`.
 *
 * After that the connection carries application data, KeyUpdate in both
 * directions and close_notify. Errors become one alert record, written in
 * exactly one place (`fail` of the `ConnectionCore` in conn.ts, which
 * also carries the record pump, alerts, key updates and close_notify).
 *
 * ## ECH seams (RFC 9849 §7)
 *
 * - start from an already-read ClientHello: {@link ServerConnection.receiveClientHello};
 * - `config.onClientHello` ({@link ClientHelloHook}) runs on ClientHello1
 *   and ClientHello2 and may replace the ClientHello the handshake continues
 *   on (ClientHelloInner), add EncryptedExtensions (retry_configs), provide
 *   the ServerHello.random confirmation and an extension for the
 *   HelloRetryRequest, both computed from the transcript hash with the
 *   confirmation bytes zeroed.
 *
 * @module
 */
import { randomPublicBytes } from '../crypto/random.js';
import { isPromiseLike } from '../wire/thenable.js';
import { DecodeError, DecryptError, EchError, IllegalParameterError, MissingExtensionError } from '../wire/alert.js';
import { concatBytes, equalBytes } from '../wire/bytes.js';
import { Transcript, hashLength, messageHash, type HashName } from '../crypto/hkdf.js';
import { ContentType, ExtensionType, HELLO_RETRY_REQUEST_RANDOM, HandshakeType, ProtocolVersion, PskKeyExchangeMode } from '../tls/constants.js';
import { encodeHandshake, type HandshakeMessage } from '../tls/record.js';
import { checkClientHello, decodeClientHello, findExtension, parseClientHelloOwned, type Extension, type ParsedClientHello } from '../tls/client-hello.js';
import {
  decodeAlpn,
  decodeKeyShareClient,
  decodeOfferedPsks,
  decodePskKeyExchangeModes,
  decodeServerName,
  decodeSignatureAlgorithms,
  decodeSupportedGroups,
  decodeSupportedVersions,
  pskBindersLength,
  type KeyShareEntry,
} from '../tls/extensions.js';
import {
  KeyUpdateRequest,
  decodeFinished,
  encodeAlpnSelected,
  encodeCertificate,
  encodeHandshakeMessage,
  encodeKeyShareHelloRetry,
  encodeKeyShareServer,
  encodePreSharedKeySelected,
  encodeSupportedVersionSelected,
  writeCertificateVerify,
  writeExtensionBlock,
  writeNewSessionTicket,
  writeServerHello,
  type ServerHello,
} from '../tls/messages.js';
import { CertificateStore, ServerCertificate, certificateVerifyInput } from './certificates.js';
import type { AcceptConfirmation, ClientHelloHookResult, ServerConfig } from './config.js';
import { groupName, isPostQuantumGroup, serverKeyShare } from './groups.js';
import { KeySchedule, exportKeyingMaterial, finishedVerifyData, resumptionPsk, trafficKeys } from './key-schedule.js';
import { RecordLayer } from './record-layer.js';
import { ConnectionCore, RESOLVED, type ConnectionCoreOptions } from './conn.js';
import { suiteById, type CipherSuiteParams } from './suites.js';
import type { TicketState } from './tickets.js';

export { PeerAlertError } from './conn.js';

/**
 * Where a {@link ServerConnection} delivers its output.
 * @group Server
 * @example
 * ```ts
 * const sink: ConnectionSink = { send: (b) => socket.write(b), data: (b) => app.push(b) };
 * ```
 */
export interface ConnectionSink {
  /** Bytes to write to the transport, in order. */
  send(bytes: Uint8Array): void;
  /** Decrypted application data. */
  data?(bytes: Uint8Array): void;
  /** The handshake completed (client Finished verified). */
  handshakeComplete?(info: HandshakeInfo): void;
  /** The peer sent close_notify: no more data will arrive. */
  peerClosed?(): void;
}

/**
 * What was negotiated.
 * @group Server
 * @example
 * ```ts
 * sink.handshakeComplete = (info: HandshakeInfo) => console.log(info.suite.name, info.servername, info.resumed);
 * ```
 */
export interface HandshakeInfo {
  suite: CipherSuiteParams;
  /** Key exchange group (NamedGroup). */
  group: number;
  /** SNI of the ClientHello the handshake ran on (the inner one with ECH). */
  servername: string | undefined;
  /** Selected ALPN protocol, or `false`. */
  alpnProtocol: string | false;
  /** True when a ticket was accepted. */
  resumed: boolean;
  /** True when a HelloRetryRequest was sent. */
  helloRetry: boolean;
  /** CertificateVerify scheme (full handshakes only). */
  signatureScheme: number | undefined;
  /** Certificate sent (full handshakes only). */
  certificate: ServerCertificate | undefined;
  /** Attributes merged from the ClientHello hook results. */
  attributes: Record<string, unknown>;
}

/**
 * States of the server handshake (RFC 9846 Appendix A.2). @group Server
 * @example
 * ```ts
 * if (conn.state === 'connected') conn.write(data);
 * ```
 */
export type ServerState = 'wait_client_hello' | 'wait_client_hello_2' | 'wait_finished' | 'connected' | 'closed';

/** Records sent under one key before we rotate it with a KeyUpdate (§5.5). */
const KEY_UPDATE_AFTER_RECORDS = 1n << 24n;

/** Bytes of rejected 0-RTT data we skip (RFC 9846 §4.2.10). */
const EARLY_DATA_SKIP = 1 << 16;

/**
 * PSK identities of one ClientHello we try to open, in order (Go's
 * maxClientPSKIdentities): the rest are ignored, so a hello stuffed with
 * bogus identities costs at most this many ticket decryptions.
 * @group Server
 * @example
 * ```ts
 * const tried = offered.identities.slice(0, MAX_PSK_IDENTITIES);
 * ```
 */
export const MAX_PSK_IDENTITIES = 5;

/** Offset of ServerHello.random in the handshake message (header, legacy_version). */
const SERVER_HELLO_RANDOM_OFFSET = 4 + 2;

/** Length of the ticket_nonce we send: a big-endian per-connection counter. */
const TICKET_NONCE_LENGTH = 8;

/** The parts of a ClientHello the negotiation reads. */
interface HelloFacts {
  ch: ParsedClientHello;
  /** The whole message as it enters the transcript. */
  message: Uint8Array;
  servername: string | undefined;
  alpn: string[] | undefined;
  groups: number[] | undefined;
  shares: KeyShareEntry[] | undefined;
  sigalgs: number[] | undefined;
  pskModes: number[] | undefined;
  pskExt: Extension | undefined;
  earlyData: boolean;
  hook: ClientHelloHookResult;
  /** The first MAX_PSK_IDENTITIES offered tickets, opened once (see `openOfferedTickets`). */
  opened?: Array<TicketState | undefined>;
}

/**
 * A TLS 1.3 server connection without a transport. Feed it the bytes read
 * from the peer with {@link ServerConnection.receive}; it writes its output to
 * `sink.send`. All input is processed in order, one call at a time.
 * `receive` rejects with the error that ended the connection, after the alert
 * that names it has gone to `sink.send`.
 * @group Server
 * @example
 * ```ts
 * const conn = new ServerConnection(resolveServerConfig({ key, cert }), {
 *   send: (b) => socket.write(b),
 *   data: (b) => console.log('app data', b),
 *   handshakeComplete: (info) => console.log('TLS 1.3 with', info.suite.name),
 * });
 * socket.on('data', (b) => conn.receive(b).catch((e) => socket.destroy(e)));
 * ```
 */
export class ServerConnection {
  readonly config: ServerConfig;
  private readonly sink: ConnectionSink;
  /** Records, alerts, key updates and close (shared with the client engine). */
  private readonly core: ConnectionCore;
  private readonly records: RecordLayer;
  private stateValue: ServerState = 'wait_client_hello';
  /** Scratch space given to the ClientHello hook. */
  private readonly hookState: Record<string, unknown> = {};
  private readonly attributes: Record<string, unknown> = {};

  // Negotiated state.
  private suite: CipherSuiteParams | undefined;
  private group = 0;
  private transcript: Transcript | undefined;
  private first: HelloFacts | undefined;
  private hrrSent = false;
  private ccsSent = false;
  private schedule: KeySchedule | undefined;
  private clientHsSecret: Uint8Array | undefined;
  private serverHsSecret: Uint8Array | undefined;
  /** EncryptedExtensions ... Finished, sent together. */
  private pendingFlight: Uint8Array[] = [];
  private clientApSecret: Uint8Array | undefined;
  /** exporter_master_secret, derived on the first export (see exportKeyingMaterial). */
  private exporterSecret: Uint8Array | undefined;
  /** Transcript-Hash(ClientHello...server Finished): the exporter master secret's context. */
  private exporterTranscript: Uint8Array | undefined;
  private resumptionSecret: Uint8Array | undefined;
  private expectedClientFinished: Uint8Array | undefined;
  private negotiated: HandshakeInfo | undefined;
  /** Tickets sent so far: the next ticket_nonce (a Number, exact far beyond any ticket count). */
  private ticketNonce = 0;
  /** KeyUpdate messages sent and received so far. */
  readonly keyUpdates: { sent: number; received: number };

  constructor(config: ServerConfig, sink: ConnectionSink) {
    this.config = config;
    this.sink = sink;
    this.core = new ConnectionCore(new ServerConnection.CoreOptions(this, sink));
    this.records = this.core.records;
    this.keyUpdates = this.core.keyUpdates;
  }

  /**
   * What the connection core is given: one object whose methods reach this
   * connection and its sink, instead of six closures and an options object
   * per connection. The sink's `data` and `peerClosed` are read at each call
   * (an adopting `TlsSocket` re-points them).
   */
  private static readonly CoreOptions = class implements ConnectionCoreOptions {
    readonly maxHandshakeSize: number;
    readonly keyUpdateAfterRecords = KEY_UPDATE_AFTER_RECORDS;
    constructor(
      private readonly c: ServerConnection,
      private readonly sink: ConnectionSink,
    ) {
      this.maxHandshakeSize = c.config.maxHandshakeSize;
    }
    send(b: Uint8Array): void {
      this.sink.send(b);
    }
    handshake(m: HandshakeMessage): void | Promise<void> {
      return this.c.handleHandshake(m);
    }
    connected(): boolean {
      return this.c.stateValue === 'connected';
    }
    data(b: Uint8Array): void {
      this.sink.data?.(b);
    }
    peerClosed(): void {
      this.sink.peerClosed?.();
    }
    failed(): void {
      this.c.stateValue = 'closed';
    }
  };

  /** Current handshake state. */
  get state(): ServerState {
    return this.stateValue;
  }

  /** What was negotiated, once the handshake completed. */
  get info(): HandshakeInfo | undefined {
    return this.negotiated;
  }

  /** The error that closed the connection, if any. */
  get error(): Error | undefined {
    return this.core.error;
  }

  /**
   * Process bytes read from the peer. Resolves when they are consumed;
   * rejects with the error that ended the connection.
   */
  receive(data: Uint8Array): Promise<void> {
    return this.core.receive(data);
  }

  /**
   * Start from a ClientHello already read off the wire (split-mode front
   * ends, ECH): `message` is the whole handshake message (4-byte header
   * included) and `rest` any bytes read after the records that carried it.
   * @example
   * ```ts
   * const first = readFirstHandshakeMessage(buf);
   * await conn.receiveClientHello(first.message.raw, buf.subarray(first.consumed));
   * ```
   */
  receiveClientHello(message: Uint8Array, rest?: Uint8Array): Promise<void> {
    // The work is a method, the closure only a call (a closure created per
    // connection loses its optimised code at every full GC: keep it small).
    const p = this.core.enqueue(() => this.firstClientHello(message));
    if (!rest || !rest.length) return p;
    // Handled at once (no hook or signature pending): the rest follows now.
    return p === RESOLVED ? this.receive(rest) : p.then(() => this.receive(rest));
  }

  private firstClientHello(message: Uint8Array): void | Promise<void> {
    if (this.stateValue !== 'wait_client_hello') {
      throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'receiveClientHello after the handshake started');
    }
    if (message.length < 4 || ((message[1]! << 16) | (message[2]! << 8) | message[3]!) !== message.length - 4) {
      throw new DecodeError('ClientHello message length does not match its header');
    }
    // A copy (NOTE: Buffer#slice would be a view of the caller's buffer).
    const raw = new Uint8Array(message);
    return this.handleHandshake({ type: raw[0]!, body: raw.subarray(4), raw });
  }

  /**
   * Encrypt and send application data (after the handshake completed).
   * Throws if the connection is not open for writing.
   */
  write(data: Uint8Array): void {
    if (this.stateValue !== 'connected' || this.core.writeClosed) {
      throw new EchError('ERR_PROTOCOL', 'internal_error', 'connection is not open for writing');
    }
    this.core.writeData(data);
  }

  /**
   * Send a KeyUpdate and switch to the next write key (RFC 9846 §4.6.3);
   * with `requestPeer` the peer is asked to update its key too.
   */
  keyUpdate(requestPeer = true): void {
    if (this.stateValue !== 'connected' || this.core.writeClosed) {
      throw new EchError('ERR_PROTOCOL', 'internal_error', 'connection is not open for writing');
    }
    this.core.sendKeyUpdate(requestPeer ? KeyUpdateRequest.update_requested : KeyUpdateRequest.update_not_requested);
  }

  /**
   * Send close_notify (RFC 9846 §6.1): no more writes. Reading continues
   * until the peer closes too.
   */
  close(): void {
    this.core.close();
  }

  /**
   * Abort: send `alert` (default `user_canceled` ... `internal_error`) and
   * stop processing. Used by transports on timeouts.
   */
  abort(error: EchError): void {
    this.core.abort(error);
  }

  /**
   * TLS-Exporter (RFC 9846 §7.5), available once the handshake completed.
   * @example
   * ```ts
   * conn.exportKeyingMaterial('EXPORTER-my-app', new Uint8Array(0), 32);
   * ```
   */
  exportKeyingMaterial(label: string, context: Uint8Array, length: number): Uint8Array {
    if (!this.suite || !this.schedule || !this.exporterTranscript) {
      throw new EchError('ERR_PROTOCOL', 'internal_error', 'handshake not complete');
    }
    // §7.1: exporter_master_secret, derived on first use (most connections never export).
    this.exporterSecret ??= this.schedule.exporterMasterSecret(this.exporterTranscript);
    return exportKeyingMaterial(this.suite.hash, this.exporterSecret, label, context, length);
  }

  // ------------------------------------------------------------- plumbing

  /**
   * One handshake message; synchronous except for a ClientHello (its hooks
   * and the signature may be asynchronous), so that the client's Finished
   * and what follows it are handled in the turn they arrive.
   */
  private handleHandshake(m: HandshakeMessage): void | Promise<void> {
    switch (this.stateValue) {
      case 'wait_client_hello':
      case 'wait_client_hello_2':
        // RFC 9846 §4.1.2: the ClientHello is "REQUIRED ... as its first TLS message".
        if (m.type !== HandshakeType.client_hello) {
          throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `expected ClientHello, got handshake type ${m.type}`);
        }
        return this.flight(m.raw, this.stateValue === 'wait_client_hello_2');
      case 'wait_finished':
        if (m.type !== HandshakeType.finished) {
          throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `expected Finished, got handshake type ${m.type}`);
        }
        return this.readClientFinished(m);
      case 'connected':
        if (m.type === HandshakeType.key_update) return this.core.readKeyUpdate(m);
        // RFC 9846 §4.1.2: "if a server has negotiated TLS 1.3 and receives
        // a ClientHello at any other time, it MUST terminate the connection
        // with an "unexpected_message" alert." Same for any other message.
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `unexpected post-handshake message type ${m.type}`);
      default:
        return;
    }
  }

  /** Every byte leaves through here; nothing leaves after a failure or close_notify. */
  private send(bytes: Uint8Array): void {
    this.core.send(bytes);
  }

  /** After an await: stop if the connection failed meanwhile (timeout, abort). */
  private checkAlive(): void {
    this.core.checkAlive();
  }

  private sendHandshake(messages: Uint8Array[]): void {
    this.send(this.records.encode(ContentType.handshake, messages.length === 1 ? messages[0]! : concatBytes(...messages)));
  }

  /** RFC 9846 §5.1: messages preceding a key change must end a record. */
  private requireRecordBoundary(what: string): void {
    this.core.requireRecordBoundary(what);
  }

  // ------------------------------------------------------ processClientHello

  /**
   * Answer one ClientHello with one transport write: the HelloRetryRequest
   * and its change_cipher_spec, or ServerHello, change_cipher_spec and the
   * protected EncryptedExtensions..Finished (built across the hook's and the
   * signature's awaits). On failure the alert follows what was built, in the
   * same write (it is protected with the handshake key once ServerHello is
   * out).
   *
   * Synchronous, without a promise, unless a callback returns one (an
   * asynchronous ClientHello hook, an SNICallback, a keyless signer): each
   * step continues at once on a value and only waits on a promise (an
   * `await` of a value would still cost a promise and a microtask).
   */
  private flight(received: Uint8Array, retry: boolean): void | Promise<void> {
    this.core.cork();
    try {
      this.requireRecordBoundary('ClientHello');
      // `received` is the connection's own copy of the message (from the
      // handshake reassembler or receiveClientHello), never written again:
      // the ClientHello is decoded in place, as views into it.
      const body = received.subarray(4);
      const hookFn = this.config.onClientHello;
      if (!hookFn) return this.negotiateFlight(this.helloFacts(undefined, body, received, NO_HOOK_RESULT), retry);
      // Checked now (a malformed ClientHello fails before the hook, as
      // always), decoded only if the hook reads it or the handshake continues
      // on it: the ECH hook replaces it with ClientHelloInner, and the outer
      // one is never decoded here.
      checkClientHello(body);
      const info = new HookInfo(body, received, retry, this.hookState);
      const r = hookFn(info);
      if (!isPromiseLike(r)) return this.negotiateFlight(this.hooked(info, r), retry);
      // One reaction: the hook's result, or its failure.
      return r.then(
        (v) => this.afterHook(info, v, retry),
        (e: unknown) => {
          throw this.failFlight(e);
        },
      );
    } catch (e) {
      throw this.failFlight(e);
    }
  }

  /** An asynchronous hook's result arrived: the handshake continues on it. */
  private afterHook(info: HookInfo, r: ClientHelloHookResult | undefined | void, retry: boolean): void | Promise<void> {
    let facts: HelloFacts;
    try {
      this.checkAlive();
      facts = this.hooked(info, r);
    } catch (e) {
      throw this.failFlight(e);
    }
    return this.negotiateFlight(facts, retry);
  }

  /** The rest of the flight once the hook has run; the held output leaves at its end. */
  private negotiateFlight(facts: HelloFacts, retry: boolean): void | Promise<void> {
    let r: void | Promise<void>;
    try {
      this.checkAlive();
      r = this.negotiate(facts, retry);
    } catch (e) {
      throw this.failFlight(e);
    }
    if (!r) {
      this.core.uncork();
      return;
    }
    return r.then(
      () => this.core.uncork(),
      (e: unknown) => {
        throw this.failFlight(e);
      },
    );
  }

  /** The flight failed: the alert follows what was built, in the same write (once: a second call returns the same error). */
  private failFlight(e: unknown): Error {
    const err = this.core.fail(e);
    this.core.uncork();
    return err;
  }

  /** Checks and picks on a ClientHello (the hook has run); then the HelloRetryRequest or the flight. */
  private negotiate(facts: HelloFacts, retry: boolean): void | Promise<void> {
    const { ch } = facts;

    // RFC 9846 §4.2.1: a TLS 1.3 ClientHello carries supported_versions
    // with 0x0304; we speak nothing older ("If this extension is not present,
    // servers which ... support TLS 1.2 MUST negotiate TLS 1.2").
    const sv = findExtension(ch.extensions, ExtensionType.supported_versions);
    const versions = sv ? decodeSupportedVersions(sv.data) : [];
    if (!versions.includes(ProtocolVersion.TLS13)) {
      throw new EchError('ERR_PROTOCOL', 'protocol_version', 'client does not offer TLS 1.3');
    }
    // §4.1.2: "A server which receives a legacy_version value not equal to
    // 0x0303 MUST abort the handshake with a "protocol_version" alert."
    if (ch.legacyVersion !== ProtocolVersion.TLS12) {
      throw new EchError('ERR_PROTOCOL', 'protocol_version', `legacy_version 0x${ch.legacyVersion.toString(16)}`);
    }
    // §4.1.2: legacy_compression_methods "MUST contain exactly one byte, set
    // to zero"; otherwise "illegal_parameter".
    if (ch.legacyCompressionMethods.length !== 1 || ch.legacyCompressionMethods[0] !== 0) {
      throw new IllegalParameterError('legacy_compression_methods is not [null]');
    }
    // §4.2.11: pre_shared_key "MUST be the last extension in the ClientHello";
    // servers "MUST check ... and fail the handshake with an
    // "illegal_parameter" alert if it is not".
    if (facts.pskExt && ch.extensions[ch.extensions.length - 1]!.type !== ExtensionType.pre_shared_key) {
      throw new IllegalParameterError('pre_shared_key is not the last extension');
    }
    // §4.2.9: a client offering a PSK "MUST" also send psk_key_exchange_modes;
    // servers abort with missing_extension (§9.2).
    if (facts.pskExt && !facts.pskModes) throw new MissingExtensionError('pre_shared_key without psk_key_exchange_modes');
    // §9.2: a ClientHello with key_share "MUST also contain supported_groups";
    // without a PSK it MUST carry signature_algorithms and supported_groups.
    if (facts.shares && !facts.groups) throw new MissingExtensionError('key_share without supported_groups');
    if (!facts.pskExt && (!facts.sigalgs || !facts.groups)) {
      throw new MissingExtensionError('ClientHello without signature_algorithms or supported_groups');
    }
    // §4.2.8: "Clients MUST NOT offer any KeyShareEntry values for groups not
    // listed in the client's "supported_groups" extension. Servers MAY check
    // for violations of these rules and abort the handshake with an
    // "illegal_parameter" alert".
    for (const s of facts.shares ?? []) {
      if (!facts.groups!.includes(s.group)) throw new IllegalParameterError(`key_share for group 0x${s.group.toString(16)} not in supported_groups`);
    }

    if (retry) this.checkClientHelloRetry(facts);

    // --- cipher suite (§4.1.1): the server's or the client's order, preferring
    // the hash of a ticket we could resume (§4.2.11: the PSK's hash must be
    // the suite's).
    if (retry && !ch.cipherSuites.includes(this.suite!.id)) {
      // §4.1.4: "Servers MUST ensure that they negotiate the same cipher suite
      // when receiving a conformant updated ClientHello".
      throw new IllegalParameterError('ClientHello2 no longer allows the cipher suite of the HelloRetryRequest');
    }
    const suite = retry ? this.suite! : this.pickCipherSuite(ch.cipherSuites, this.resumableHash(facts));
    this.suite = suite;

    // --- key exchange group (§4.2.8): a group we prefer for which the client
    // sent a share; else ask for one with a HelloRetryRequest.
    const share = this.pickKeyShare(facts, retry);
    if (!share) {
      if (retry) {
        // §4.1.2: ClientHello2 must carry the single share the HRR asked for.
        throw new IllegalParameterError('ClientHello2 does not carry a key share for the requested group');
      }
      const g = this.config.groups.find((x) => facts.groups?.includes(x));
      if (g === undefined) {
        // §4.2.8 / §4.1.1: no common group → "handshake_failure".
        throw new EchError('ERR_HANDSHAKE_FAILURE', 'handshake_failure', 'no key exchange group in common');
      }
      this.sendHelloRetryRequest(facts, suite, g);
      return;
    }
    this.group = share.group;

    // --- transcript: ClientHello, or message_hash(ClientHello1) || HRR || ClientHello2.
    if (!retry) this.transcript = Transcript.fromMessages(suite.hash, facts.message);

    // --- PSK (§4.2.11), before the certificate: a resumed handshake sends none.
    const psk = this.pickPsk(facts, suite);

    // --- ALPN (RFC 7301 §3.2).
    const alpn = this.pickAlpn(facts);

    // --- certificate and signature scheme (§4.4.2.2), full handshakes only.
    // Without an SNICallback the pick is synchronous: no promise, no extra turn.
    if (psk) return this.answer(facts, retry, suite, share, psk, alpn, undefined);
    if (!this.config.sniCallback) return this.answer(facts, retry, suite, share, psk, alpn, this.selectCertificate(facts, this.config.certificates));
    return this.pickCertificate(facts).then((pick) => {
      this.checkAlive();
      return this.answer(facts, retry, suite, share, psk, alpn, pick);
    });
  }

  /**
   * ServerHello and the protected flight up to the server's Finished; a
   * promise only while a keyless signer's signature is pending.
   */
  private answer(
    facts: HelloFacts,
    retry: boolean,
    suite: CipherSuiteParams,
    share: KeyShareEntry,
    psk: { index: number; state: TicketState } | undefined,
    alpn: string | undefined,
    pick: { certificate: ServerCertificate; scheme: number } | undefined,
  ): void | Promise<void> {
    const certificate = pick?.certificate;
    const scheme = pick?.scheme;
    if (this.transcript && retry) this.transcript.update(facts.message);

    this.negotiated = {
      suite,
      group: share.group,
      servername: facts.servername,
      alpnProtocol: alpn ?? false,
      resumed: psk !== undefined,
      helloRetry: retry,
      signatureScheme: scheme,
      certificate,
      attributes: this.attributes,
    };

    this.sendServerHello(facts, suite, share, psk);
    this.sendEncryptedExtensions(facts, alpn, certificate !== undefined);
    if (certificate && scheme !== undefined) {
      this.sendCertificate(certificate);
      // §4.4.3: sign 64 spaces || "TLS 1.3, server CertificateVerify" || 0 ||
      // Transcript-Hash(ClientHello ... Certificate). A local key signs
      // synchronously; a keyless signer may answer later.
      const signature = certificate.signNow(scheme, certificateVerifyInput(true, this.transcript!.digest()));
      if (isPromiseLike(signature)) {
        return signature.then((sig) => {
          this.checkAlive();
          this.finishFlight(scheme, sig);
        });
      }
      this.finishFlight(scheme, signature);
      return;
    }
    this.finishFlight(undefined, undefined);
  }

  /** CertificateVerify (full handshakes), the server's Finished, and the flight goes out. */
  private finishFlight(scheme: number | undefined, signature: Uint8Array | undefined): void {
    if (scheme !== undefined && signature) {
      this.queueHandshake(encodeHandshakeMessage(HandshakeType.certificate_verify, writeCertificateVerify, { algorithm: scheme, signature }));
    }
    this.sendServerFinished();
    this.stateValue = 'wait_finished';
  }

  /** The hook's result applied (it may replace the ClientHello): the ClientHello the handshake continues on. */
  private hooked(info: HookInfo, r: ClientHelloHookResult | undefined | void): HelloFacts {
    let ch = info.decoded;
    let message = info.message;
    let hook: ClientHelloHookResult = NO_HOOK_RESULT;
    if (r) {
      hook = r;
      if (r.attributes) Object.assign(this.attributes, r.attributes);
      if (r.decodedClientHello) {
        // The handshake continues on the replacement (ClientHelloInner),
        // framed and decoded by the hook: no copy, no second decode.
        ch = r.decodedClientHello.hello;
        message = r.decodedClientHello.message;
      } else if (r.clientHello) {
        // The handshake continues on the replacement (ClientHelloInner).
        ch = decodeClientHello(r.clientHello);
        message = encodeHandshake(HandshakeType.client_hello, r.clientHello);
      }
    }
    return this.helloFacts(ch, info.body, message, hook);
  }

  /**
   * The extensions the negotiation reads, decoded once, from `ch` (the
   * hook's replacement, or the hello as received when the hook decoded it)
   * or else from `body`, the hello as received, decoded here.
   */
  private helloFacts(decoded: ParsedClientHello | undefined, body: Uint8Array, message: Uint8Array, hook: ClientHelloHookResult): HelloFacts {
    const ch = decoded ?? parseClientHelloOwned(body);
    // The first record may be a ClientHello only; after it an unprotected
    // change_cipher_spec may be dropped (RFC 9846 §5).
    this.records.allowChangeCipherSpec(true);
    const exts = ch.extensions;
    const sni = findExtension(exts, ExtensionType.server_name);
    const alpn = findExtension(exts, ExtensionType.application_layer_protocol_negotiation);
    const groups = findExtension(exts, ExtensionType.supported_groups);
    const shares = findExtension(exts, ExtensionType.key_share);
    const sigalgs = findExtension(exts, ExtensionType.signature_algorithms);
    const modes = findExtension(exts, ExtensionType.psk_key_exchange_modes);
    return {
      ch,
      message,
      servername: sni ? decodeServerName(sni.data) : undefined,
      alpn: alpn ? decodeAlpn(alpn.data) : undefined,
      groups: groups ? decodeSupportedGroups(groups.data) : undefined,
      shares: shares ? decodeKeyShareClient(shares.data) : undefined,
      sigalgs: sigalgs ? decodeSignatureAlgorithms(sigalgs.data) : undefined,
      pskModes: modes ? decodePskKeyExchangeModes(modes.data) : undefined,
      pskExt: findExtension(exts, ExtensionType.pre_shared_key),
      earlyData: findExtension(exts, ExtensionType.early_data) !== undefined,
      hook,
    };
  }

  /**
   * RFC 9846 §4.1.2: after a HelloRetryRequest "the client MUST send the
   * same ClientHello without modification, except": key_share (one share of
   * the requested group), early_data removed, cookie added, pre_shared_key
   * updated, padding changed. NOTE: encrypted_client_hello is also allowed to
   * change (RFC 9849 §6.1.5 re-encrypts ClientHelloOuter); with ECH accepted
   * the hook hands us the two ClientHelloInners, which are compared here.
   */
  private checkClientHelloRetry(facts: HelloFacts): void {
    const a = this.first!.ch;
    const b = facts.ch;
    const mutable = new Set<number>([
      ExtensionType.key_share,
      ExtensionType.early_data,
      ExtensionType.cookie,
      ExtensionType.pre_shared_key,
      ExtensionType.padding,
      ExtensionType.encrypted_client_hello,
    ]);
    const same =
      a.legacyVersion === b.legacyVersion &&
      equalBytes(a.random, b.random) &&
      equalBytes(a.legacySessionId, b.legacySessionId) &&
      a.cipherSuites.length === b.cipherSuites.length &&
      a.cipherSuites.every((s, i) => s === b.cipherSuites[i]) &&
      equalBytes(a.legacyCompressionMethods, b.legacyCompressionMethods);
    if (!same) throw new IllegalParameterError('ClientHello2 changed fields other than those a HelloRetryRequest allows');
    const fixed = (exts: Extension[]): Map<number, Uint8Array> => new Map(exts.filter((e) => !mutable.has(e.type)).map((e) => [e.type, e.data]));
    const ea = fixed(a.extensions);
    const eb = fixed(b.extensions);
    if (ea.size !== eb.size) throw new IllegalParameterError('ClientHello2 added or removed extensions');
    for (const [t, d] of ea) {
      const d2 = eb.get(t);
      if (!d2 || !equalBytes(d, d2)) throw new IllegalParameterError(`ClientHello2 changed extension 0x${t.toString(16)}`);
    }
    // §4.2.10: "the client MUST NOT include the "early_data" extension in its
    // followup ClientHello" after a HelloRetryRequest.
    if (facts.earlyData) throw new IllegalParameterError('early_data in ClientHello2');
    // §4.2.8: the new key_share holds a single KeyShareEntry of the group
    // named in the HelloRetryRequest.
    if (!facts.shares || facts.shares.length !== 1 || facts.shares[0]!.group !== this.group) {
      throw new IllegalParameterError('ClientHello2 key_share is not a single share of the requested group');
    }
  }

  private pickCipherSuite(offered: readonly number[], preferHash: HashName | undefined): CipherSuiteParams {
    const ours = this.config.suites;
    // The common suites in the server's or the client's order: the first of
    // them with the preferred hash, else the first. Plain loops: this runs
    // on every ClientHello and needs no intermediate arrays or closures.
    let first: CipherSuiteParams | undefined;
    let preferred: CipherSuiteParams | undefined;
    if (this.config.honorCipherOrder) {
      for (let i = 0; i < ours.length && !preferred; i++) {
        const s = ours[i]!;
        if (!offered.includes(s.id)) continue;
        first ??= s;
        if (s.hash === preferHash) preferred = s;
      }
    } else {
      for (let i = 0; i < offered.length && !preferred; i++) {
        const s = suiteIn(ours, offered[i]!);
        if (!s) continue;
        first ??= s;
        if (s.hash === preferHash) preferred = s;
      }
    }
    const suite = preferred ?? first;
    // §4.1.1: "If the server is unable to negotiate a supported set of
    // parameters ... it MUST abort the handshake with either a
    // "handshake_failure" or "insufficient_security" fatal alert".
    if (!suite) throw new EchError('ERR_HANDSHAKE_FAILURE', 'handshake_failure', 'no cipher suite in common');
    return suite;
  }

  /**
   * Open the offered tickets once per ClientHello: only the first
   * {@link MAX_PSK_IDENTITIES} identities (RFC 9846 §4.2.11: the server
   * picks "a single key" from the offered PSKs, it need not try them all).
   */
  private openOfferedTickets(facts: HelloFacts): Array<TicketState | undefined> {
    if (facts.opened) return facts.opened;
    const tickets = this.config.tickets!;
    const identities = decodeOfferedPsks(facts.pskExt!.data).identities.slice(0, MAX_PSK_IDENTITIES);
    facts.opened = identities.map((id) => tickets.open(id.identity));
    return facts.opened;
  }

  /** Hash of the first offered ticket we could resume (binder not checked yet). */
  private resumableHash(facts: HelloFacts): HashName | undefined {
    const tickets = this.config.tickets;
    if (!facts.pskExt || !tickets || !facts.pskModes?.includes(PskKeyExchangeMode.psk_dhe_ke)) return undefined;
    const now = Date.now();
    for (const state of this.openOfferedTickets(facts)) {
      if (!state || now - state.createdAt > state.lifetime * 1000 || state.servername !== (facts.servername ?? '')) continue;
      const s = suiteById(state.suite);
      if (s) return s.hash;
    }
    return undefined;
  }

  private pickKeyShare(facts: HelloFacts, retry: boolean): KeyShareEntry | undefined {
    // Shares of groups we do not implement (GREASE, ...) are skipped: we only
    // look up the groups we prefer.
    const shares = facts.shares;
    for (const g of this.config.groups) {
      const s = shares ? shareOf(shares, g) : undefined;
      if (s) return s;
      // §4.1.1: a server "MAY" send a HelloRetryRequest for a group it
      // prefers. A post-quantum group we rank above the classical shares the
      // client sent, and that the client lists in supported_groups, is worth
      // the round trip: ask for it rather than settle for a classical secret.
      if (!retry && isPostQuantumGroup(g) && facts.groups?.includes(g)) return undefined;
    }
    return undefined;
  }

  /** §4.2.11: first offered identity that opens, is fresh, matches; binder verified. */
  private pickPsk(facts: HelloFacts, suite: CipherSuiteParams): { index: number; state: TicketState } | undefined {
    if (!facts.pskExt) return undefined;
    const offered = decodeOfferedPsks(facts.pskExt.data);
    const tickets = this.config.tickets;
    // §4.2.9: only psk_dhe_ke is offered by this server.
    if (!tickets || !facts.pskModes!.includes(PskKeyExchangeMode.psk_dhe_ke)) return undefined;
    const now = Date.now();
    const opened = this.openOfferedTickets(facts);
    for (let i = 0; i < opened.length; i++) {
      const state = opened[i];
      if (!state) continue;
      const original = suiteById(state.suite);
      // §4.2.11: the PSK's hash must be the selected suite's hash.
      if (!original || original.hash !== suite.hash) continue;
      if (now - state.createdAt > state.lifetime * 1000 || now < state.createdAt) continue;
      // RFC 9846 §4.6.1 / RFC 6066 §3: resume only for the same server name.
      if (state.servername !== (facts.servername ?? '')) continue;
      this.verifyBinder(facts, suite.hash, state.psk, offered.binders[i]!);
      return { index: i, state };
    }
    return undefined;
  }

  /**
   * §4.2.11.2: binder = HMAC over Transcript-Hash(Truncate(ClientHello))
   * (after a HelloRetryRequest the transcript starts with message_hash and the
   * HRR). "If ... the binder does not validate, the server MUST abort the
   * handshake" with decrypt_error.
   */
  private verifyBinder(facts: HelloFacts, hash: HashName, psk: Uint8Array, binder: Uint8Array): void {
    const truncated = facts.message.subarray(0, facts.message.length - pskBindersLength(facts.pskExt!.data));
    const th = this.transcript && this.hrrSent ? this.transcript.digestWith(truncated) : Transcript.fromMessages(hash, truncated).digest();
    const binderKey = new KeySchedule(hash, psk).resumptionBinderKey();
    const expected = finishedVerifyData(hash, binderKey, th);
    if (!equalBytes(expected, binder)) throw new DecryptError('PSK binder does not verify');
  }

  private pickAlpn(facts: HelloFacts): string | undefined {
    if (!facts.alpn) return undefined;
    const cb = this.config.alpnCallback;
    const ours = this.config.alpnProtocols;
    if (!cb && !ours) return undefined;
    const p = cb ? cb({ servername: facts.servername, protocols: [...facts.alpn] }) : firstCommon(ours!, facts.alpn);
    if (p !== undefined && !facts.alpn.includes(p)) {
      throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', `ALPNCallback chose '${p}', which the client did not offer`);
    }
    // RFC 7301 §3.2: "the server MUST respond with a fatal
    // "no_application_protocol" alert" when it supports none of the client's.
    if (p === undefined) throw new EchError('ERR_HANDSHAKE_FAILURE', 'no_application_protocol', 'no application protocol in common');
    return p;
  }

  private async pickCertificate(facts: HelloFacts): Promise<{ certificate: ServerCertificate; scheme: number }> {
    // §9.2: certificate authentication needs signature_algorithms (the PSK
    // offered, if any, was not accepted) → "missing_extension".
    if (!facts.sigalgs) throw new MissingExtensionError('no signature_algorithms for certificate authentication');
    let store = this.config.certificates;
    const cb = this.config.sniCallback;
    if (cb && facts.servername !== undefined) {
      const name = facts.servername;
      const ctx = await new Promise<unknown>((resolve, reject) => {
        try {
          cb(name, (err, c) => (err ? reject(err) : resolve(c)));
        } catch (e) {
          reject(e);
        }
      });
      if (ctx && typeof ctx === 'object' && 'context' in ctx && !('cert' in ctx)) {
        // NOTE: a tls.SecureContext hides its key inside OpenSSL; this engine
        // cannot sign with it.
        throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', 'SNICallback must pass { key, cert }, not a tls.SecureContext');
      }
      if (ctx instanceof CertificateStore) store = ctx;
      else if (ctx instanceof ServerCertificate) store = new CertificateStore([ctx]);
      else if (ctx && typeof ctx === 'object' && 'cert' in ctx) {
        store = new CertificateStore([ServerCertificate.from(ctx as Parameters<typeof ServerCertificate.from>[0])]);
      }
    }
    return this.selectCertificate(facts, store);
  }

  private selectCertificate(facts: HelloFacts, store: CertificateStore): { certificate: ServerCertificate; scheme: number } {
    // §9.2: certificate authentication needs signature_algorithms (the PSK
    // offered, if any, was not accepted) → "missing_extension".
    if (!facts.sigalgs) throw new MissingExtensionError('no signature_algorithms for certificate authentication');
    if (store.certificates.length === 0) {
      // RFC 6066 §3: no certificate for the requested name.
      throw new EchError('ERR_HANDSHAKE_FAILURE', facts.servername ? 'unrecognized_name' : 'handshake_failure', 'no certificate configured');
    }
    const pick = store.select(facts.servername, facts.sigalgs);
    // §4.4.2.2: no certificate the client's signature_algorithms accept →
    // abort ("handshake_failure").
    if (!pick) throw new EchError('ERR_HANDSHAKE_FAILURE', 'handshake_failure', 'no certificate for the client\'s signature algorithms');
    return pick;
  }

  // --------------------------------------------------- sendHelloRetryRequest

  private sendHelloRetryRequest(facts: HelloFacts, suite: CipherSuiteParams, group: number): void {
    this.first = facts;
    this.group = group;
    this.hrrSent = true;
    // §4.1.4: HRR carries supported_versions and the minimal set needed
    // (key_share selected_group); plus the hook's extension (ECH §7.2.1).
    const exts: Extension[] = [
      { type: ExtensionType.supported_versions, data: encodeSupportedVersionSelected(ProtocolVersion.TLS13) },
      { type: ExtensionType.key_share, data: encodeKeyShareHelloRetry(group) },
    ];
    const hrr: ServerHello = {
      legacyVersion: ProtocolVersion.TLS12,
      random: HELLO_RETRY_REQUEST_RANDOM,
      legacySessionIdEcho: facts.ch.legacySessionId,
      cipherSuite: suite.id,
      legacyCompressionMethod: 0,
      extensions: exts,
    };
    // §4.4.1: the transcript restarts as message_hash(ClientHello1) || HRR.
    this.transcript = Transcript.fromMessages(suite.hash, messageHash(suite.hash, facts.message));
    const extra = facts.hook.helloRetryRequestExtension;
    if (extra) {
      const e: Extension = { type: extra.type, data: new Uint8Array(extra.length ?? 8) };
      exts.push(e);
      const zeroed = encodeHandshakeMessage(HandshakeType.server_hello, writeServerHello, hrr);
      e.data = checkLength(extra.compute(this.transcript.digestWith(zeroed), suite.hash), e.data.length);
    }
    const message = encodeHandshakeMessage(HandshakeType.server_hello, writeServerHello, hrr);
    this.transcript.update(message);
    this.sendHandshake([message]);
    this.sendCompatChangeCipherSpec(facts);
    // §4.2.10: early data sent with ClientHello1 is skipped.
    if (facts.earlyData) this.records.skipUndecryptable(EARLY_DATA_SKIP);
    this.stateValue = 'wait_client_hello_2';
  }

  /** Appendix D.4: a server in compatibility mode sends one CCS after its first flight. */
  private sendCompatChangeCipherSpec(facts: HelloFacts): void {
    if (this.ccsSent || facts.ch.legacySessionId.length === 0) return;
    this.ccsSent = true;
    this.send(RecordLayer.changeCipherSpec());
  }

  // --------------------------------------------------------- sendServerHello

  private sendServerHello(
    facts: HelloFacts,
    suite: CipherSuiteParams,
    share: KeyShareEntry,
    psk: { index: number; state: TicketState } | undefined,
  ): void {
    const { keyExchange, sharedSecret: shared } = serverKeyShare(share.group, share.keyExchange);
    const exts: Extension[] = [
      { type: ExtensionType.supported_versions, data: encodeSupportedVersionSelected(ProtocolVersion.TLS13) },
      { type: ExtensionType.key_share, data: encodeKeyShareServer({ group: share.group, keyExchange }) },
    ];
    if (psk) exts.push({ type: ExtensionType.pre_shared_key, data: encodePreSharedKeySelected(psk.index) });
    const random = randomPublicBytes(32);
    const sh: ServerHello = {
      legacyVersion: ProtocolVersion.TLS12,
      random,
      // §4.1.3: legacy_session_id_echo is the client's legacy_session_id.
      legacySessionIdEcho: facts.ch.legacySessionId,
      cipherSuite: suite.id,
      legacyCompressionMethod: 0,
      extensions: exts,
    };
    const transcript = this.transcript!;
    const confirm: AcceptConfirmation | undefined = facts.hook.serverHelloConfirmation;
    if (confirm) {
      // RFC 9849 §7.2: the confirmation is computed over the transcript with
      // the last 8 bytes of ServerHello.random set to zero.
      random.fill(0, 24);
    }
    const message = encodeHandshakeMessage(HandshakeType.server_hello, writeServerHello, sh);
    if (confirm) {
      const c = checkLength(confirm(transcript.digestWith(message), suite.hash), 8);
      random.set(c, 24);
      // Written into the encoded message rather than encoding it again:
      // random follows the 4-byte handshake header and legacy_version
      // (RFC 9846 §4.1.3).
      message.set(c, SERVER_HELLO_RANDOM_OFFSET + 24);
    }
    transcript.update(message);
    this.sendHandshake([message]);
    this.sendCompatChangeCipherSpec(facts);

    // §7.1: Handshake Secret and the handshake traffic keys.
    this.schedule = new KeySchedule(suite.hash, psk?.state.psk);
    const secrets = this.schedule.handshakeSecrets(shared, transcript.digest());
    this.clientHsSecret = secrets.client;
    this.records.setWriteKeys(suite, trafficKeys(suite, secrets.server));
    this.records.setReadKeys(suite, trafficKeys(suite, secrets.client));
    this.serverHsSecret = secrets.server;
    // §4.2.10: early data is never accepted; skip what the client may send.
    if (facts.earlyData && !this.hrrSent) this.records.skipUndecryptable(EARLY_DATA_SKIP);
  }

  // ------------------------------------------------- sendEncryptedExtensions

  private sendEncryptedExtensions(facts: HelloFacts, alpn: string | undefined, certificateAuth: boolean): void {
    const exts: Extension[] = [];
    if (alpn !== undefined) exts.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpnSelected(alpn) });
    // RFC 6066 §3: a server that used the name "SHALL include an extension of
    // type "server_name" ... The "extension_data" field ... SHALL be empty."
    if (certificateAuth && facts.servername !== undefined) exts.push({ type: ExtensionType.server_name, data: new Uint8Array(0) });
    for (const e of facts.hook.encryptedExtensions ?? []) exts.push(e);
    this.queueHandshake(encodeHandshakeMessage(HandshakeType.encrypted_extensions, writeExtensionBlock, exts));
  }

  private queueHandshake(message: Uint8Array): void {
    this.transcript!.update(message);
    this.pendingFlight.push(message);
  }

  // ---------------------------------------------------------- sendCertificate

  private sendCertificate(certificate: ServerCertificate): void {
    this.queueHandshake(certificateMessage(certificate));
  }

  // ------------------------------------------------------- sendServerFinished

  private sendServerFinished(): void {
    const suite = this.suite!;
    const transcript = this.transcript!;
    // §4.4.4: verify_data = HMAC(finished_key, Transcript-Hash(... CertificateVerify)).
    const verify = finishedVerifyData(suite.hash, this.serverHsSecret!, transcript.digest());
    // Finished is verify_data alone (§4.4.4): framed as it is.
    this.queueHandshake(encodeHandshake(HandshakeType.finished, verify));
    this.sendHandshake(this.pendingFlight);
    this.pendingFlight = [];
    // §7.1: application secrets over ClientHello ... server Finished.
    const th = transcript.digest();
    const ap = this.schedule!.applicationTrafficSecrets(th);
    this.clientApSecret = ap.client;
    this.exporterTranscript = th;
    this.core.setWriteSecret(suite, ap.server);
    this.expectedClientFinished = finishedVerifyData(suite.hash, this.clientHsSecret!, transcript.digest());
  }

  // -------------------------------------------------------- readClientFinished

  private readClientFinished(m: HandshakeMessage): void {
    const suite = this.suite!;
    const verify = decodeFinished(m.body, hashLength(suite.hash));
    // §4.4.4: "Recipients of Finished messages MUST verify that the contents
    // are correct and if incorrect MUST terminate the connection with a
    // "decrypt_error" alert."
    if (!equalBytes(verify, this.expectedClientFinished!)) throw new DecryptError('client Finished does not verify');
    this.requireRecordBoundary('Finished');
    this.transcript!.update(m.raw);
    this.core.setReadSecret(suite, this.clientApSecret!);
    // RFC 9846 §5: after the peer's Finished a change_cipher_spec, or any
    // record not protected, is an unexpected record.
    this.core.peerFinished();
    this.records.skipUndecryptable(0);
    this.resumptionSecret = this.schedule!.resumptionMasterSecret(this.transcript!.digest());
    // The transcript (the handshake's bytes, buffered) is not read again:
    // an idle connection does not keep it.
    this.transcript = undefined;
    this.stateValue = 'connected';
    this.sendSessionTickets();
    this.sink.handshakeComplete?.(this.negotiated!);
  }

  // -------------------------------------------------------- sendSessionTickets

  private sendSessionTickets(): void {
    const tickets = this.config.tickets;
    if (!tickets || this.config.ticketCount <= 0) return;
    const suite = this.suite!;
    const info = this.negotiated!;
    const messages: Uint8Array[] = [];
    for (let i = 0; i < this.config.ticketCount; i++) {
      // RFC 9846 §4.6.1: ticket_nonce is "A per-ticket value that is unique
      // across all tickets issued on this connection": an 8-byte counter
      // (opaque ticket_nonce<0..255>), which cannot wrap.
      const nonce = new Uint8Array(TICKET_NONCE_LENGTH);
      const n = this.ticketNonce++;
      writeU32(nonce, 0, Math.floor(n / 0x100000000));
      writeU32(nonce, 4, n >>> 0);
      // §4.6.1: ticket_age_add, "a securely generated, random 32-bit value".
      const ageAdd = readU32(randomPublicBytes(4), 0);
      const ticket = tickets.seal({
        suite: suite.id,
        psk: resumptionPsk(suite.hash, this.resumptionSecret!, nonce),
        createdAt: Date.now(),
        lifetime: this.config.ticketLifetime,
        ageAdd,
        servername: info.servername ?? '',
        alpn: info.alpnProtocol || '',
      });
      const nst = { lifetime: this.config.ticketLifetime, ageAdd, nonce, ticket, extensions: NO_EXTENSIONS };
      messages.push(encodeHandshakeMessage(HandshakeType.new_session_ticket, writeNewSessionTicket, nst));
    }
    this.sendHandshake(messages);
  }

  /** Group name as Node reports it. */
  get groupName(): string | undefined {
    return this.group ? groupName(this.group) : undefined;
  }
}

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** What the handshake reads of a hook that returned nothing (and without a hook): shared, read only. */
const NO_HOOK_RESULT: ClientHelloHookResult = Object.freeze({});

/**
 * What the ClientHello hook sees ({@link ClientHelloHookInfo}); the
 * ClientHello as received is decoded on first read of `clientHello`, once.
 */
class HookInfo {
  readonly body: Uint8Array;
  readonly message: Uint8Array;
  readonly retry: boolean;
  readonly state: Record<string, unknown>;
  /** The decoded ClientHello, once read. */
  decoded: ParsedClientHello | undefined;

  constructor(body: Uint8Array, message: Uint8Array, retry: boolean, state: Record<string, unknown>) {
    this.body = body;
    this.message = message;
    this.retry = retry;
    this.state = state;
  }

  get clientHello(): ParsedClientHello {
    return (this.decoded ??= parseClientHelloOwned(this.body));
  }
}

/** An empty extension list, shared (read only). */
const NO_EXTENSIONS: Extension[] = [];

/**
 * The Certificate message of each certificate (RFC 9846 §4.4.2: empty
 * certificate_request_context, the chain without per-entry extensions):
 * the same bytes for every handshake, encoded once. Read only.
 */
const CERTIFICATE_MESSAGES = new WeakMap<ServerCertificate, Uint8Array>();

function certificateMessage(certificate: ServerCertificate): Uint8Array {
  let m = CERTIFICATE_MESSAGES.get(certificate);
  if (!m) {
    m = encodeHandshake(
      HandshakeType.certificate,
      encodeCertificate({
        certificateRequestContext: new Uint8Array(0),
        entries: certificate.chain.map((data) => ({ data, extensions: [] })),
      }),
    );
    CERTIFICATE_MESSAGES.set(certificate, m);
  }
  return m;
}

/** The first of `ours` that `offered` lists, if any. */
function firstCommon(ours: readonly string[], offered: readonly string[]): string | undefined {
  for (let i = 0; i < ours.length; i++) if (offered.includes(ours[i]!)) return ours[i];
  return undefined;
}

/** The first key share of `group`, if any. */
function shareOf(shares: readonly KeyShareEntry[], group: number): KeyShareEntry | undefined {
  for (let i = 0; i < shares.length; i++) if (shares[i]!.group === group) return shares[i];
  return undefined;
}

/** The suite of `ours` with this id, if any. */
function suiteIn(ours: readonly CipherSuiteParams[], id: number): CipherSuiteParams | undefined {
  for (let i = 0; i < ours.length; i++) if (ours[i]!.id === id) return ours[i];
  return undefined;
}

function checkLength(b: Uint8Array, n: number): Uint8Array {
  if (b.length !== n) throw new EchError('ERR_INTERNAL', 'internal_error', `confirmation of ${b.length} bytes, expected ${n}`);
  return b;
}
