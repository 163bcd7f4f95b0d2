/**
 * Server options with Node's names (`key`, `cert`, `SNICallback`,
 * `ALPNProtocols`, `ecdhCurve`, `ciphers`, `sessionTimeout`,
 * `handshakeTimeout`, ...) and their resolution into the engine's
 * {@link ServerConfig}.
 *
 * @module
 */
import { InvalidArgumentError } from '../wire/alert.js';
import type { Extension, ParsedClientHello } from '../tls/client-hello.js';
import type { HashName } from '../crypto/hkdf.js';
import { CertificateStore, ServerCertificate, type CertificateKeyPair, type PrivateKeyInput } from './certificates.js';
import { parseEcdhCurve } from './groups.js';
import { parseCipherList, type CipherSuiteParams } from './suites.js';
import { TicketKeys } from './tickets.js';

/**
 * Computes an accept confirmation (ECH, RFC 9849 §7.2) from the transcript
 * hash the engine computed with the confirmation bytes zeroed. Must return
 * exactly as many bytes as were zeroed (8).
 * @group Server
 * @example
 * ```ts
 * const confirm: AcceptConfirmation = (th, hash) =>
 *   hkdfExpandLabel(hash, hkdfExtract(hash, new Uint8Array(0), innerRandom), 'ech accept confirmation', th, 8);
 * ```
 */
export type AcceptConfirmation = (transcriptHash: Uint8Array, hash: HashName) => Uint8Array;

/**
 * What the {@link ClientHelloHook} sees.
 * @group Server
 * @example
 * ```ts
 * const hook: ClientHelloHook = (info: ClientHelloHookInfo) => {
 *   if (info.retry) console.log('second ClientHello, state kept:', info.state);
 * };
 * ```
 */
export interface ClientHelloHookInfo {
  /** The ClientHello as received, decoded. */
  clientHello: ParsedClientHello;
  /** The whole handshake message as received (4-byte header included). */
  message: Uint8Array;
  /** `false` for the first ClientHello, `true` for the one after a HelloRetryRequest. */
  retry: boolean;
  /**
   * Scratch space of this connection, the same object in both calls (keep
   * the ECH HPKE context here between ClientHello1 and ClientHello2).
   */
  state: Record<string, unknown>;
}

/**
 * What a {@link ClientHelloHook} may return. Every field is optional;
 * returning `undefined` continues on the ClientHello as received.
 * @group Server
 * @example
 * ```ts
 * const accepted: ClientHelloHookResult = {
 *   clientHello: innerBody,
 *   serverHelloConfirmation: (th, hash) => acceptConfirmation(hash, innerRandom, th),
 *   helloRetryRequestExtension: { type: 0xfe0d, compute: (th, hash) => hrrAcceptConfirmation(hash, innerRandom, th) },
 *   attributes: { echAccepted: true },
 * };
 * const rejected: ClientHelloHookResult = { encryptedExtensions: [{ type: 0xfe0d, data: retryConfigs }] };
 * ```
 */
export interface ClientHelloHookResult {
  /**
   * A replacement ClientHello **body** (no handshake header), e.g. the
   * ClientHelloInner. The handshake (negotiation, SNI, transcript, PSK
   * binders) continues on it; the original goes nowhere.
   */
  clientHello?: Uint8Array;
  /**
   * The replacement already framed and decoded, for a hook that has both
   * (the ECH hook: ClientHelloInner as rebuilt by the decryption). The
   * handshake then uses it as is, instead of re-framing and decoding
   * `clientHello` (one copy and one decode fewer). `message` is the whole
   * handshake message (4-byte header included) and `hello` its decoded body
   * with views into it; both are owned by the handshake from then on (never
   * modified). When set, it takes precedence over `clientHello`.
   */
  decodedClientHello?: { message: Uint8Array; readonly hello: ParsedClientHello };
  /** Extra EncryptedExtensions entries (e.g. ECH `retry_configs`). */
  encryptedExtensions?: Extension[];
  /**
   * Overwrites the last 8 bytes of ServerHello.random. Called with
   * Transcript-Hash(ClientHello(s) ... ServerHello) where the ServerHello
   * carries those 8 bytes as zeros.
   */
  serverHelloConfirmation?: AcceptConfirmation;
  /**
   * An extension to add to a HelloRetryRequest (if one is sent): written as
   * `length` zero bytes (default 8), the transcript hash over
   * message_hash(ClientHello1) || HelloRetryRequest is taken, then `compute`
   * fills the real value in.
   */
  helloRetryRequestExtension?: { type: number; length?: number; compute: AcceptConfirmation };
  /** Free-form facts to expose on the connection (e.g. `{ echAccepted: true, outerServerName }`). */
  attributes?: Record<string, unknown>;
}

/**
 * Hook on every ClientHello (the first and the one after a
 * HelloRetryRequest): the ECH seam. Throw an {@link EchError} to abort with
 * its alert (or reject, from an asynchronous hook). A hook that returns its
 * result (or `undefined`) directly, not a promise, lets the server answer the
 * ClientHello in the same turn without a single promise; return a promise
 * only when there is something to wait for.
 * @group Server
 * @example
 * ```ts
 * const server = createEchServer({ key, cert, onClientHello: async ({ clientHello, retry, state }) => {
 *   const r = await decryptEch(clientHello, retry, state);
 *   return r.accepted ? { clientHello: r.innerBody, serverHelloConfirmation: r.confirm } : undefined;
 * } });
 * ```
 */
export type ClientHelloHook = (
  info: ClientHelloHookInfo,
) => ClientHelloHookResult | undefined | void | Promise<ClientHelloHookResult | undefined | void>;

/**
 * Node-style SNI callback; the context may be a {@link CertificateKeyPair}
 * (`{ key, cert }`), a {@link ServerCertificate}, or a {@link CertificateStore};
 * `undefined` falls back to the configured certificates.
 * @group Server
 * @example
 * ```ts
 * const SNICallback: SniCallback = (name, cb) => cb(null, name === 'a.example' ? { key, cert } : undefined);
 * ```
 */
export type SniCallback = (
  servername: string,
  cb: (err: Error | null, ctx?: CertificateKeyPair | ServerCertificate | CertificateStore) => void,
) => void;

/**
 * Options of {@link createEchServer} / {@link ech-server/tls13!ServerConnection}, with
 * Node's `tls.createServer` names where one exists.
 * @group Server
 * @example
 * ```ts
 * const options: EchServerOptions = { key, cert, ALPNProtocols: ['h2', 'http/1.1'], ecdhCurve: 'X25519:P-256' };
 * ```
 */
export interface EchServerOptions {
  /** PEM private key of the default certificate (or several, matching `cert`). */
  key?: PrivateKeyInput | PrivateKeyInput[];
  /** PEM certificate chain of the default certificate (or several). */
  cert?: string | Buffer | Array<string | Buffer>;
  /** Passphrase of `key`. */
  passphrase?: string;
  /** Trusted CAs (kept for API parity; client authentication is not requested). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** More certificates, chosen by SNI (exact name, then wildcard). */
  certificates?: CertificateKeyPair[];
  /** Node-style SNI callback. */
  SNICallback?: SniCallback;
  /** Server ALPN protocols in preference order (or Node's wire-format buffer). */
  ALPNProtocols?: string[] | Uint8Array;
  /**
   * Node's `ALPNCallback`: pick one of the client's protocols, or return
   * `undefined` to refuse the connection (`no_application_protocol`). Not
   * called when the client sends no ALPN. Exclusive with `ALPNProtocols`.
   */
  ALPNCallback?: (arg: { servername: string | undefined; protocols: string[] }) => string | undefined;
  /** Groups in preference order, e.g. `'X25519:P-256'` (default both, X25519 first). */
  ecdhCurve?: string;
  /** TLS 1.3 suites, OpenSSL names joined by ':' (TLS 1.2 names are ignored). */
  ciphers?: string;
  /** Prefer the server's suite order (default: the client's). */
  honorCipherOrder?: boolean;
  /** Ticket lifetime and ticket-key rotation period, seconds (default 300; 0 disables tickets). */
  sessionTimeout?: number;
  /**
   * 48 random bytes shared by every server that must accept each other's
   * tickets (Node's name); default: a random key per server, rotated every
   * `sessionTimeout`. A list of such secrets (fleet mode, rotating them
   * across servers): the first seals new tickets, every one opens.
   */
  ticketKeys?: Uint8Array | readonly Uint8Array[];
  /**
   * Tickets sent after each handshake (default 1; 0 disables): an integer
   * from 0 to {@link MAX_SESSION_TICKETS}, else {@link resolveServerConfig}
   * throws `InvalidArgumentError`.
   */
  sessionTickets?: number;
  /** Abort a handshake not finished after this many ms (default 120000). */
  handshakeTimeout?: number;
  /** The ECH seam, see {@link ClientHelloHook}. */
  onClientHello?: ClientHelloHook;
  /** Largest handshake message accepted (default 65536). */
  maxHandshakeSize?: number;
  /**
   * Like `tls.createServer`'s `allowHalfOpen`: a connection's writable side
   * stays open after the client's close_notify, so an answer can follow a
   * client's half-close (default false: the socket ends once the client's
   * end of data is read). Used by {@link createEchServer}.
   */
  allowHalfOpen?: boolean;
}

/**
 * Resolved configuration the engine runs on.
 * @group Server
 * @example
 * ```ts
 * const config: ServerConfig = resolveServerConfig({ key, cert });
 * ```
 */
export interface ServerConfig {
  certificates: CertificateStore;
  sniCallback: SniCallback | undefined;
  suites: CipherSuiteParams[];
  honorCipherOrder: boolean;
  groups: number[];
  alpnProtocols: string[] | undefined;
  alpnCallback: EchServerOptions['ALPNCallback'];
  tickets: TicketKeys | undefined;
  ticketLifetime: number;
  ticketCount: number;
  handshakeTimeout: number;
  onClientHello: ClientHelloHook | undefined;
  maxHandshakeSize: number;
}

/**
 * Most session tickets sent after one handshake (`sessionTickets`). A client
 * keeps one ticket per future connection; OpenSSL and BoringSSL send 2, Go 1.
 * @group Server
 * @example
 * ```ts
 * resolveServerConfig({ key, cert, sessionTickets: MAX_SESSION_TICKETS });
 * ```
 */
export const MAX_SESSION_TICKETS = 16;

function decodeAlpnWire(b: Uint8Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < b.length; ) {
    const n = b[i]!;
    if (n === 0 || i + 1 + n > b.length) throw new InvalidArgumentError('malformed ALPNProtocols buffer');
    out.push(Buffer.from(b.subarray(i + 1, i + 1 + n)).toString('latin1'));
    i += 1 + n;
  }
  return out;
}

function asArray<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * Resolve Node-style options into a {@link ServerConfig}. Throws
 * {@link InvalidArgumentError} on unusable options (mismatched key, no TLS 1.3
 * suite, no supported group).
 * @group Server
 * @example
 * ```ts
 * const config = resolveServerConfig({ key, cert, ALPNProtocols: ['h2', 'http/1.1'] });
 * ```
 */
export function resolveServerConfig(options: EchServerOptions): ServerConfig {
  const certs: ServerCertificate[] = [];
  const keys = asArray(options.key);
  const pems = asArray(options.cert);
  if (keys.length !== pems.length) {
    // Node pairs keys and certs by key type; we pair them by position.
    if (!(pems.length === 1 && keys.length === 1)) {
      throw new InvalidArgumentError('key and cert must be given in pairs');
    }
  }
  for (let i = 0; i < pems.length; i++) {
    certs.push(
      ServerCertificate.from({
        cert: pems[i]!,
        key: keys[i]!,
        ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
      }),
    );
  }
  for (const p of options.certificates ?? []) certs.push(ServerCertificate.from(p));
  if (certs.length === 0 && !options.SNICallback) throw new InvalidArgumentError('no certificate: give key and cert, certificates, or SNICallback');
  if (options.ALPNCallback && options.ALPNProtocols !== undefined) {
    throw new InvalidArgumentError('ALPNCallback and ALPNProtocols are mutually exclusive');
  }
  const timeout = options.sessionTimeout ?? 300;
  if (!(timeout >= 0)) throw new InvalidArgumentError('sessionTimeout must be >= 0');
  const lifetime = Math.min(Math.floor(timeout), 604800);
  const tickets = options.sessionTickets ?? 1;
  if (!Number.isInteger(tickets) || tickets < 0 || tickets > MAX_SESSION_TICKETS) {
    throw new InvalidArgumentError(`sessionTickets must be an integer from 0 to ${MAX_SESSION_TICKETS}, got ${String(options.sessionTickets)}`);
  }
  const ticketCount = lifetime === 0 ? 0 : tickets;
  let alpn: string[] | undefined;
  if (options.ALPNProtocols !== undefined) {
    alpn = Array.isArray(options.ALPNProtocols) ? [...options.ALPNProtocols] : decodeAlpnWire(options.ALPNProtocols as Uint8Array);
    if (alpn.length === 0) alpn = undefined;
  }
  return {
    certificates: new CertificateStore(certs),
    sniCallback: options.SNICallback,
    suites: parseCipherList(options.ciphers),
    honorCipherOrder: options.honorCipherOrder ?? false,
    groups: parseEcdhCurve(options.ecdhCurve),
    alpnProtocols: alpn,
    alpnCallback: options.ALPNCallback,
    tickets:
      ticketCount > 0
        ? new TicketKeys({ rotationMs: lifetime * 1000, ...(options.ticketKeys ? { secret: options.ticketKeys } : {}) })
        : undefined,
    ticketLifetime: lifetime,
    ticketCount,
    handshakeTimeout: options.handshakeTimeout ?? 120_000,
    onClientHello: options.onClientHello,
    maxHandshakeSize: options.maxHandshakeSize ?? 65536,
  };
}
