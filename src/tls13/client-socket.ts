/**
 * `connectTls13`: the transport-free {@link ClientConnection} on a TCP
 * socket, as a `Duplex` of plaintext — for tools (`ech-server check`) and
 * tests. Shaped like `tls.connect`: `secureConnect` event, `alpnProtocol`,
 * `getCipher()`, `session` events, `isSessionReused()`.
 *
 * @module
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { isIP } from 'node:net';
import { ClientConnection, type ClientHandshakeInfo, type ClientOptions } from './client.js';
import type { CipherInfo } from './socket.js';
import { TlsDuplex } from './duplex.js';

/**
 * Options of {@link connectTls13}: a host and port, or an existing socket.
 * @group Client
 */
export interface ConnectOptions extends ClientOptions {
  host?: string;
  port?: number;
  /** An already-connected transport instead of host/port. */
  socket?: Duplex;
}

/**
 * Client side of one TLS 1.3 connection over a transport.
 * Events: `secureConnect`, `session` (`ClientSession`), `error`, and the
 * usual stream events. Unlike the server's socket, a write completes as soon
 * as its records are handed to the transport, and destroying it destroys the
 * transport at once.
 * @group Client
 * @example
 * ```ts
 * const s = connectTls13({ host: '127.0.0.1', port: 8443, servername: 'localhost', ca });
 * s.on('secureConnect', () => s.end('hello\n'));
 * s.on('data', (d) => console.log(d.toString()));
 * ```
 */
export class TlsClientSocket extends TlsDuplex {
  /** Always true, like `tls.TLSSocket`. */
  readonly encrypted = true;
  /** The transport-free engine. */
  readonly connection: ClientConnection;

  constructor(socket: Duplex, options: ClientOptions, startNow: boolean) {
    super(socket, { allowHalfOpen: false, writeBackpressure: false, gracefulClose: false });
    this.connection = new ClientConnection(options, {
      send: (b) => this.toTransport(b),
      data: (b) => this.deliver(b),
      handshakeComplete: () => {
        this.markSecure();
        this.emit('secureConnect');
      },
      session: (s) => this.emit('session', s),
      peerClosed: () => this.push(null),
    });
    this.readTransport();
    socket.on('end', () => {
      if (!this.secured) this.destroy(new Error('server closed the connection during the TLS handshake'));
      else this.push(null);
    });
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
    const start = (): void => {
      try {
        this.connection.start();
      } catch (e) {
        this.destroy(e as Error);
      }
    };
    if (startNow) start();
    else socket.once('connect', start);
  }

  /** What was negotiated, once connected. */
  get handshake(): ClientHandshakeInfo | undefined {
    return this.connection.info;
  }

  /** Negotiated ALPN protocol or `false`. */
  get alpnProtocol(): string | false {
    return this.connection.info?.alpnProtocol ?? false;
  }

  /** Like `tls.TLSSocket#getCipher()`. */
  getCipher(): CipherInfo | undefined {
    const s = this.connection.info?.suite;
    return s ? { name: s.name, standardName: s.name, version: 'TLSv1.3' } : undefined;
  }

  /** True when the server accepted our session ticket. */
  isSessionReused(): boolean {
    return this.connection.info?.resumed ?? false;
  }

  /** @internal */
  protected receiveFailed(e: Error): void {
    this.destroy(e);
  }
}

/**
 * Connect with this library's TLS 1.3 client, like `tls.connect`.
 * @group Client
 * @example
 * ```ts
 * let session: ClientSession | undefined;
 * const s = connectTls13({ host: 'localhost', port: 8443, servername: 'localhost', ca });
 * s.on('session', (x) => (session = x));
 * ```
 */
export function connectTls13(options: ConnectOptions): TlsClientSocket {
  if (options.socket) return new TlsClientSocket(options.socket, options, true);
  const raw: Socket = netConnect(options.port ?? 443, options.host ?? 'localhost');
  // RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in "HostName"".
  const servername = options.servername ?? (options.host && !isIP(options.host) ? options.host : undefined);
  return new TlsClientSocket(raw, { ...options, ...(servername !== undefined ? { servername } : {}) }, false);
}
