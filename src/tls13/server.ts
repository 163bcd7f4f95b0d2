/**
 * `createEchServer`: a `net.Server` whose connections speak TLS 1.3 through
 * this library's own engine, shaped like `tls.createServer` /
 * `https.createServer`: it emits `secureConnection` with a {@link TlsSocket}
 * and `tlsClientError` for failed handshakes.
 *
 * @module
 */
import { Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { resolveServerConfig, type EchServerOptions, type ServerConfig } from './config.js';
import { CertificateStore, ServerCertificate, type CertificateKeyPair } from './certificates.js';
import { TlsSocket, type TlsSocketStart } from './socket.js';

/**
 * A TLS 1.3 server on this library's engine.
 *
 * Events: `connection` (raw socket, like `tls.Server`), `secureConnection`
 * (`TlsSocket`), `tlsClientError` (`err, TlsSocket`).
 * @group Server
 * @example
 * ```ts
 * const server = new EchServer({ key, cert }, (s) => s.end('hi\n'));
 * server.listen(8443);
 * ```
 */
export class EchServer extends Server {
  /** The resolved configuration (shared by all connections). */
  readonly config: ServerConfig;
  readonly #allowHalfOpen: boolean;

  constructor(options: EchServerOptions, secureConnectionListener?: (socket: TlsSocket) => void) {
    super();
    this.config = resolveServerConfig(options);
    this.#allowHalfOpen = options.allowHalfOpen ?? false;
    this.on('connection', (raw: Socket) => this.handleSocket(raw));
    if (secureConnectionListener) this.on('secureConnection', secureConnectionListener);
  }

  /**
   * Run the TLS handshake on a transport; used for every accepted socket,
   * and by front ends that have already read the first ClientHello
   * (`start.clientHello`) and want the engine to continue from there.
   */
  handleSocket(raw: Duplex, start?: TlsSocketStart): TlsSocket {
    const tls = new TlsSocket(raw, this.config, { allowHalfOpen: this.#allowHalfOpen, ...start });
    tls.once('secure', () => this.emit('secureConnection', tls));
    tls.once('tlsClientError', (err: Error) => {
      if (this.listenerCount('tlsClientError') > 0) this.emit('tlsClientError', err, tls);
    });
    return tls;
  }

  /**
   * Add a certificate served for its names (or `hostname`), like
   * `tls.Server#addContext`.
   */
  addContext(hostname: string, context: CertificateKeyPair): void {
    const c = ServerCertificate.from({ ...context, names: [hostname] });
    (this.config as { certificates: CertificateStore }).certificates = new CertificateStore([
      ...this.config.certificates.certificates,
      c,
    ]);
  }
}

/**
 * Create a TLS 1.3 server, like `tls.createServer(options, listener)`.
 * @group Server
 * @example
 * ```ts
 * import http from 'node:http';
 * const app = http.createServer((req, res) => res.end('ok'));
 * const server = createEchServer({ key, cert, ALPNProtocols: ['http/1.1'] }, (socket) => app.emit('connection', socket));
 * server.listen(8443);
 * ```
 */
export function createEchServer(options: EchServerOptions, secureConnectionListener?: (socket: TlsSocket) => void): EchServer {
  return new EchServer(options, secureConnectionListener);
}
