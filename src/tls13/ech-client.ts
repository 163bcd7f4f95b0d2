/**
 * The ECH client (RFC 9849 §6) on this library's TLS 1.3 client engine:
 * `connectEch` picks a usable ECHConfig, sends ClientHelloOuter with the
 * engine's hello sealed inside as ClientHelloInner (shared extensions
 * compressed with `ech_outer_extensions`, §6.1.3 padding, a GREASE
 * pre_shared_key in the outer hello when resuming), and reports what
 * happened. Acceptance itself is decided by the engine
 * ({@link ClientConnection}, option `ech`): the accept confirmation in
 * ServerHello.random, or in the HelloRetryRequest's ECH extension.
 *
 * On rejection the engine completes the handshake for the public name,
 * verifies that certificate, reads `retry_configs`, sends `ech_required` and
 * fails with {@link EchRejectedError}; `connectEch({ retry: true })` then
 * reconnects once with the retry configs.
 *
 * @module
 */
import { randomBytes, type X509Certificate } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { rootCertificates } from 'node:tls';
import { EchError, InvalidArgumentError } from '../wire/alert.js';
import { ExtensionType } from '../tls/constants.js';
import { encodeClientHello, encodeClientHelloMessage, findExtension, type ClientHello, type Extension } from '../tls/client-hello.js';
import { decodeOfferedPsks, encodeEchClientHello, encodeOfferedPsks, encodeServerName } from '../tls/extensions.js';
import { decodeEchConfigList, publicNameProblem, type EchConfig, type HpkeSymmetricCipherSuite } from '../ech/config.js';
import { echHpkeInfo } from '../ech/decrypt.js';
import { encodeClientHelloInner } from '../ech/inner.js';
import { echPaddingLength } from '../ech/builder.js';
import { nativeSupported, setupBaseSender, type SenderContext } from '../crypto/hpke.js';
import { EchRejectedError, type ClientEchOffer, type ClientSession } from './client.js';
import { connectTls13, type TlsClientSocket } from './client-socket.js';
import type { EchStatus } from './ech-hook.js';

export { EchRejectedError };

/**
 * Options of {@link connectEch}.
 * @group ECH client
 * @example
 * ```ts
 * const opts: EchConnectOptions = { host: '127.0.0.1', port: 443, servername: 'secret.example', echConfigList, retry: true };
 * ```
 */
export interface EchConnectOptions {
  host: string;
  port: number;
  /** The inner (true) server name: SNI of ClientHelloInner, the name the certificate must match. */
  servername: string;
  /** ECHConfigList; absent ⇒ no ECH (or GREASE with `grease: true`). */
  echConfigList?: Uint8Array;
  /** Send a GREASE ECH extension when no ECHConfig is used (RFC 9849 §6.2). */
  grease?: boolean;
  /** On rejection with retry_configs, reconnect once with them (§6.1.6). */
  retry?: boolean;
  /** Trusted CAs (PEM); default Node's bundled roots (`tls.rootCertificates`). */
  ca?: string | string[];
  /** Verify the chain and name (default true). Without it retry_configs are never used. */
  rejectUnauthorized?: boolean;
  ALPNProtocols?: string[];
  /** Groups offered, e.g. `'X25519:P-256'`. */
  ecdhCurve?: string;
  /** Groups to send key shares for (default the first of `ecdhCurve`). */
  keyShareGroups?: number[];
  /** Resume: the PSK goes in ClientHelloInner; ClientHelloOuter gets a GREASE PSK. */
  session?: ClientSession;
  /** Give up on an attempt after this many ms (default 10000). */
  timeoutMs?: number;
}

/**
 * What {@link connectEch} got. Only connections authenticated for
 * `servername` are returned; a rejection is an {@link EchRejectedError}.
 * @group ECH client
 * @example
 * ```ts
 * const r: EchConnectResult = await connectEch(opts);
 * r.socket.on('session', (s) => (saved = s));   // NewSessionTicket, for `session` next time
 * r.socket.end('GET / HTTP/1.1\r\nHost: secret.example\r\n\r\n');
 * ```
 */
export interface EchConnectResult {
  /** Connected, ready for application data. Emits `session` for each ticket. */
  socket: TlsClientSocket;
  echStatus: EchStatus;
  /** A second connection was made with the server's retry_configs. */
  retried: boolean;
  /** What the server sent when it rejected ECH (the first attempt's, if retried). */
  retryConfigs: Uint8Array | undefined;
  alpnProtocol: string | false;
  resumed: boolean;
  helloRetry: boolean;
  /** The server's leaf certificate (undefined on resumption). */
  peerCertificate: X509Certificate | undefined;
}

/**
 * An ECHConfig this client can use and the HPKE suite it picked.
 * @group ECH client
 * @example
 * ```ts
 * const chosen: EchChoice | undefined = chooseEchConfig(echConfigList);
 * ```
 */
export interface EchChoice {
  config: EchConfig;
  suite: HpkeSymmetricCipherSuite;
}

/**
 * Pick the first usable ECHConfig of a list (RFC 9849 §6.1: a supported
 * KEM, KDF/AEAD pair and version; §6.1.7: a valid public_name), or
 * `undefined` if none is (then GREASE is what §6.1 asks for). A malformed list
 * is a `DecodeError`.
 * @group ECH client
 * @example
 * ```ts
 * const c = chooseEchConfig(fromBase64(echConfigListB64));
 * if (c) console.log(c.config.publicName, c.config.configId, c.suite);
 * ```
 */
export function chooseEchConfig(echConfigList: Uint8Array): EchChoice | undefined {
  // §4: "Clients MUST ignore any ECHConfig structure with a version they do
  // not support" — decodeEchConfigList skips those (and unsupported
  // mandatory extensions).
  for (const config of decodeEchConfigList(echConfigList).configs) {
    // §6.1.7: "Clients SHOULD ignore any ECHConfig structure with a
    // public_name that is not a valid host name in preferred name syntax".
    if (publicNameProblem(config.publicName) !== undefined) continue;
    // §6.1: "It MUST NOT choose a cipher suite or version not advertised by
    // the configuration." The export-only AEAD (0xffff) cannot seal.
    const suite = config.cipherSuites.find(
      (s) => s.aeadId !== 0xffff && nativeSupported({ kem: config.kemId, kdf: s.kdfId, aead: s.aeadId }),
    );
    if (suite) return { config, suite };
  }
  return undefined;
}

/** Extensions the inner hello shares with the outer one, compressed with ech_outer_extensions. */
const COMPRESSED: readonly number[] = [
  ExtensionType.supported_versions,
  ExtensionType.supported_groups,
  ExtensionType.key_share,
  ExtensionType.signature_algorithms,
  ExtensionType.psk_key_exchange_modes,
];

/** AEAD tag length of the HPKE AEADs this client seals with (AES-GCM, ChaCha20-Poly1305). */
const AEAD_TAG = 16;

/** Inner first: compressible extensions contiguous (§6.1 rule 3), then the private ones, then the inner ECH extension. */
function orderInner(ch: ClientHello, echExtension: Extension): ClientHello {
  const shared = ch.extensions.filter((e) => COMPRESSED.includes(e.type));
  const rest = ch.extensions.filter((e) => !COMPRESSED.includes(e.type) && e.type !== ExtensionType.encrypted_client_hello);
  return { ...ch, extensions: [...shared, ...rest, echExtension] };
}

function greasePsk(data: Uint8Array): Uint8Array {
  // RFC 9849 §6.1.2: "For each PSK identity advertised in the
  // ClientHelloInner, the client generates a random PSK identity with the
  // same length. It also generates a random, 32-bit, unsigned integer to use
  // as the obfuscated_ticket_age. Likewise, for each inner PSK binder, the
  // client generates a random string of the same length."
  const psk = decodeOfferedPsks(data);
  return encodeOfferedPsks({
    identities: psk.identities.map((i) => ({
      identity: new Uint8Array(randomBytes(i.identity.length)),
      obfuscatedTicketAge: randomBytes(4).readUInt32BE(0),
    })),
    binders: psk.binders.map((b) => new Uint8Array(randomBytes(b.length))),
  });
}

/**
 * The real ECH offer: seals the engine's ClientHelloInner into a
 * ClientHelloOuter (RFC 9849 §6.1, §6.1.1), keeping the HPKE context for the
 * hello after a HelloRetryRequest (§6.1.5).
 */
class RealEchOffer implements ClientEchOffer {
  readonly mode = 'real' as const;
  readonly publicName: string;
  private readonly sealer: SenderContext;
  private firstOuter: ClientHello | undefined;

  constructor(
    private readonly choice: EchChoice,
    private readonly innerName: string,
  ) {
    this.publicName = choice.config.publicName;
    const { config, suite } = choice;
    // §6.1: "enc, context = SetupBaseS(pkR, "tls ech" || 0x00 || ECHConfig)"
    this.sealer = setupBaseSender({ kem: config.kemId, kdf: suite.kdfId, aead: suite.aeadId }, config.publicKey, echHpkeInfo(config));
  }

  clientHello(ch: ClientHello): ClientHello {
    // §6.1: "It MUST include the "encrypted_client_hello" extension of type
    // inner"; §6.1.5: after HRR it "is left unmodified".
    return orderInner(ch, { type: ExtensionType.encrypted_client_hello, data: encodeEchClientHello({ type: 'inner' }) });
  }

  outerClientHello(inner: ClientHello, _innerMessage: Uint8Array, retry: boolean, hrrAccepted: boolean): Uint8Array {
    if (retry && !hrrAccepted) return this.rejectedSecondOuter(inner);
    const { config, suite } = this.choice;
    const compressed = inner.extensions.filter((e) => COMPRESSED.includes(e.type)).map((e) => e.type);
    const unpadded = encodeClientHelloInner(inner, compressed, 0);
    // §6.1.3: padding from maximum_name_length, then to a multiple of 32.
    const encoded = encodeClientHelloInner(inner, compressed, echPaddingLength(unpadded.length, config.maximumNameLength, this.innerName));
    const echExt = (enc: Uint8Array, payload: Uint8Array): Extension => ({
      type: ExtensionType.encrypted_client_hello,
      data: encodeEchClientHello({ type: 'outer', kdfId: suite.kdfId, aeadId: suite.aeadId, configId: config.configId, enc, payload }),
    });
    // §6.1.5: the second ClientHelloOuter "reuses the original HPKE
    // encryption context ... and uses the empty string for enc".
    const enc = retry ? new Uint8Array(0) : this.sealer.enc;
    // §6.1 rule 2: compressed extensions "MUST be in the same relative order
    // as in ClientHelloInner"; rule 5: public_name in server_name.
    const exts: Extension[] = inner.extensions.filter((e) => compressed.includes(e.type));
    exts.push({ type: ExtensionType.server_name, data: encodeServerName(config.publicName) });
    for (const t of [ExtensionType.application_layer_protocol_negotiation, ExtensionType.cookie]) {
      const e = findExtension(inner.extensions, t);
      if (e) exts.push(e);
    }
    const echAt = exts.length;
    exts.push(echExt(enc, new Uint8Array(encoded.length + AEAD_TAG)));
    // §6.1 rule 6: a GREASE pre_shared_key when the inner hello offers one
    // (psk_key_exchange_modes is already copied: it is compressed).
    const psk = findExtension(inner.extensions, ExtensionType.pre_shared_key);
    if (psk) exts.push({ type: ExtensionType.pre_shared_key, data: greasePsk(psk.data) });
    const outer: ClientHello = {
      ...inner,
      // §6.1 rule 4: "It MUST generate a fresh ClientHelloOuter.random"
      // (RFC 9846 §4.1.2: the second hello keeps the first one's).
      random: retry ? this.firstOuter!.random : new Uint8Array(randomBytes(32)),
      // rule 3: "It MUST copy the legacy_session_id field from ClientHelloInner."
      legacySessionId: inner.legacySessionId,
      extensions: exts,
    };
    // §6.1.1: seal with ClientHelloOuterAAD (payload zeroed) as the AAD.
    const payload = this.sealer.seal(encodeClientHello(outer), encoded);
    exts[echAt] = echExt(enc, payload);
    if (!retry) this.firstOuter = outer;
    return encodeClientHelloMessage(outer);
  }

  /**
   * ECH rejected at the HelloRetryRequest: the handshake continues on
   * ClientHelloOuter, so the second ClientHello is the first outer one with
   * the new key_share (and cookie), RFC 9846 §4.1.2. Its ECH extension is
   * kept; the server "does not decrypt the second ClientHello's
   * ECHClientHello.payload value" (RFC 9849 §7.1.1).
   */
  private rejectedSecondOuter(inner: ClientHello): Uint8Array {
    const first = this.firstOuter!;
    const share = findExtension(inner.extensions, ExtensionType.key_share)!;
    const cookie = findExtension(inner.extensions, ExtensionType.cookie);
    const exts = first.extensions.map((e) => (e.type === ExtensionType.key_share ? share : e));
    if (cookie) exts.splice(exts.findIndex((e) => e.type === ExtensionType.encrypted_client_hello), 0, cookie);
    return encodeClientHelloMessage({ ...first, extensions: exts });
  }
}

/** GREASE ECH (RFC 9849 §6.2.1). */
class GreaseEchOffer implements ClientEchOffer {
  readonly mode = 'grease' as const;
  private extension: Extension | undefined;

  constructor(private readonly name: string) {}

  clientHello(ch: ClientHello, retry: boolean): ClientHello {
    // §6.2.1: "If sending a second ClientHello in response to a
    // HelloRetryRequest, the client copies the entire "encrypted_client_hello"
    // extension from the first ClientHello."
    if (!retry || !this.extension) {
      // "Set the payload field to a randomly-generated string of L+C bytes,
      // where ... L is the size of the EncodedClientHelloInner the client would
      // compute when offering ECH, padded according to {{padding}}."
      const asInner = orderInner(ch, { type: ExtensionType.encrypted_client_hello, data: encodeEchClientHello({ type: 'inner' }) });
      const compressed = asInner.extensions.filter((e) => COMPRESSED.includes(e.type)).map((e) => e.type);
      const unpadded = encodeClientHelloInner(asInner, compressed, 0).length;
      const l = unpadded + echPaddingLength(unpadded, 0, this.name);
      this.extension = {
        type: ExtensionType.encrypted_client_hello,
        data: encodeEchClientHello({
          type: 'outer',
          // "Set the cipher_suite field to a supported HpkeSymmetricCipherSuite."
          kdfId: 1,
          aeadId: 1,
          // "Set the config_id field to a random byte."
          configId: randomBytes(1)[0]!,
          // "Set the enc field to a randomly-generated valid encapsulated
          // public key" — any 32 bytes are an X25519 public key.
          enc: new Uint8Array(randomBytes(32)),
          payload: new Uint8Array(randomBytes(l + AEAD_TAG)),
        }),
      };
    }
    return { ...ch, extensions: [...ch.extensions.filter((e) => e.type !== ExtensionType.encrypted_client_hello), this.extension] };
  }
}

interface Attempt {
  socket: TlsClientSocket;
}

/** One connection; resolves once the handshake completed, rejects with its error. */
function attempt(opts: EchConnectOptions, offer: ClientEchOffer | undefined): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const raw: Socket = netConnect(opts.port, opts.host);
    const ca = opts.ca ?? [...rootCertificates];
    const socket = connectTls13({
      socket: raw,
      servername: opts.servername,
      ca,
      ...(opts.rejectUnauthorized !== undefined ? { rejectUnauthorized: opts.rejectUnauthorized } : {}),
      ...(opts.ALPNProtocols ? { ALPNProtocols: opts.ALPNProtocols } : {}),
      ...(opts.ecdhCurve ? { ecdhCurve: opts.ecdhCurve } : {}),
      ...(opts.keyShareGroups ? { keyShareGroups: opts.keyShareGroups } : {}),
      ...(opts.session ? { session: opts.session } : {}),
      ...(offer ? { ech: offer } : {}),
    });
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      socket.destroy(new EchError('ERR_TIMEOUT', 'internal_error', `no TLS handshake with ${opts.host}:${opts.port} within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.off('secureConnect', ok);
      socket.off('error', bad);
      socket.off('close', closed);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve({ socket });
    };
    const ok = (): void => done();
    const bad = (e: Error): void => done(socket.connection.error ?? e);
    const closed = (): void => done(socket.connection.error ?? new EchError('ERR_PROTOCOL', 'internal_error', 'connection closed during the TLS handshake'));
    socket.once('secureConnect', ok);
    socket.once('error', bad);
    socket.once('close', closed);
  });
}

/**
 * Connect with ECH (RFC 9849 §6). Offers the first usable config of
 * `echConfigList` (GREASE when none is usable, or with `grease` and no list);
 * resolves only for a connection authenticated for `servername`.
 *
 * - accepted: the handshake ran on ClientHelloInner (`echStatus: 'accepted'`);
 * - rejected: rejects with {@link EchRejectedError} (`code:
 *   'ERR_ECH_REJECTED'`, `retryConfigs`), after `ech_required` went out —
 *   unless `retry` is set, the public-name certificate verified and
 *   retry_configs came with a usable config: then one more connection is
 *   made with them (`retried: true`), whose rejection is final (§6.1.6:
 *   "Clients SHOULD NOT accept "retry_config" in response to a connection
 *   initiated in response to a "retry_config"").
 * @group ECH client
 * @example
 * ```ts
 * const r = await connectEch({ host: '127.0.0.1', port: 8443, servername: 'secret.example', echConfigList, ca, retry: true });
 * console.log(r.echStatus, r.retried);          // 'accepted', false
 * r.socket.end('GET / HTTP/1.1\r\nHost: secret.example\r\nConnection: close\r\n\r\n');
 * ```
 */
export async function connectEch(opts: EchConnectOptions): Promise<EchConnectResult> {
  if (!opts.servername) throw new InvalidArgumentError('connectEch: servername is required');
  const offerFor = (list: Uint8Array | undefined): ClientEchOffer | undefined => {
    const choice = list ? chooseEchConfig(list) : undefined;
    if (choice) return new RealEchOffer(choice, opts.servername);
    // §6.1: "If no compatible configuration is found, then the client SHOULD
    // proceed as described in {{grease-ech}}."
    return list || opts.grease ? new GreaseEchOffer(opts.servername) : undefined;
  };
  const finish = (a: Attempt, retried: boolean, retryConfigs: Uint8Array | undefined): EchConnectResult => {
    const info = a.socket.handshake!;
    return {
      socket: a.socket,
      echStatus: info.echStatus,
      retried,
      retryConfigs,
      alpnProtocol: info.alpnProtocol,
      resumed: info.resumed,
      helloRetry: info.helloRetry,
      peerCertificate: info.peerCertificates[0],
    };
  };
  const offer = offerFor(opts.echConfigList);
  try {
    return finish(await attempt(opts, offer), false, undefined);
  } catch (e) {
    if (!(e instanceof EchRejectedError) || !opts.retry) throw e;
    // §6.1.6: "If authentication or the handshake fails, the client MUST
    // return a failure to the calling application. It MUST NOT use the retry
    // configurations."
    if (!e.authenticated || !e.retryConfigs) throw e;
    // "If the server provided "retry_configs" and if at least one of the
    // values contains a version supported by the client ... It SHOULD retry
    // the handshake with a new transport connection, using the retry
    // configurations supplied by the server."
    const choice = chooseEchConfig(e.retryConfigs);
    if (!choice) throw e;
    const second = new RealEchOffer(choice, opts.servername);
    return finish(await attempt(opts, second), true, e.retryConfigs);
  }
}
