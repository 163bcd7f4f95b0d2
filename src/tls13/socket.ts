/**
 * `TlsSocket`: a Node `Duplex` carrying the plaintext of one TLS 1.3
 * connection over a raw transport (normally a `net.Socket`). Shaped like
 * `tls.TLSSocket` where it matters to consumers such as `http.Server` and
 * `http2`: `encrypted`, `servername`, `alpnProtocol`, `getCipher()`,
 * `getProtocol()`, `isSessionReused()`, `remoteAddress`, `setTimeout()`...
 *
 * @module
 */
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { EchError } from '../wire/alert.js';
import { readFirstHandshakeMessage } from '../tls/record.js';
import type { ServerConfig } from './config.js';
import { ServerConnection, type HandshakeInfo } from './server-handshake.js';
import { groupName } from './groups.js';
import { TlsDuplex } from './duplex.js';
import type { ServerSession } from './session.js';
import { type Deadline, deadline } from './deadlines.js';

/**
 * How a {@link TlsSocket} starts.
 * @group Server
 * @example
 * ```ts
 * const start: TlsSocketStart = await readClientHelloFrom(rawSocket);
 * server.handleSocket(rawSocket, start);
 * ```
 */
export interface TlsSocketStart {
  /**
   * A ClientHello already read off the transport: the whole handshake
   * message (4-byte header included). See `readFirstHandshakeMessage`.
   */
  clientHello?: Uint8Array;
  /** Bytes already read from the transport that come after (or, without `clientHello`, are) the first flight. */
  initialData?: Uint8Array;
  /**
   * Keep the writable side open after the peer's close_notify (or FIN), like
   * `net.Socket`'s `allowHalfOpen`: a relay can still send the answer to a
   * client that half-closed after its request. Default false: the socket
   * ends (close_notify) once the peer's end of data has been read.
   */
  allowHalfOpen?: boolean;
  /**
   * An established `ServerSession` (src/tls13/session.ts) to take over (its
   * transport, engine, unwritten records, unread plaintext and the peer's
   * end of data) in place of a new handshake; see `ServerSession#stream`.
   * @internal
   */
  session?: ServerSession;
}

/**
 * Node's `getCipher()` shape. @group Server
 * @example
 * ```ts
 * const c: CipherInfo | undefined = tlsSocket.getCipher();
 * ```
 */
export interface CipherInfo {
  name: string;
  standardName: string;
  version: 'TLSv1.3';
}

type RawTransport = Duplex & Partial<Pick<Socket, 'remoteAddress' | 'remotePort' | 'remoteFamily' | 'localAddress' | 'localPort'>>;

/**
 * Server side of one TLS 1.3 connection as a `Duplex` of plaintext.
 * Emits `secure` when the handshake completes and `tlsClientError`
 * (`(err)`) if it fails; after a failed handshake the socket is destroyed
 * without an `error` event. Failures after the handshake (bad record MAC,
 * a peer's fatal alert, transport errors) emit `tlsError` (`(err)`) and close
 * the socket, also without an `error` event. Unlike the client's socket, a
 * write completes once the transport has drained, and closing is graceful:
 * what is queued is flushed, and the transport is read until the peer's FIN
 * (at most 5 s) so that no reset discards the last records.
 * @group Server
 * @example
 * ```ts
 * const tls = new TlsSocket(rawSocket, resolveServerConfig({ key, cert }));
 * tls.on('secure', () => tls.end('hello\n'));
 * ```
 */
export class TlsSocket extends TlsDuplex {
  /** Always true, like `tls.TLSSocket`. */
  readonly encrypted = true;
  /** Client certificates are not requested. */
  readonly authorized = false;
  /** The transport underneath. */
  declare readonly socket: RawTransport;
  /** The transport-free engine. */
  readonly connection: ServerConnection;
  /** The handshake's deadline (a shared timer: src/tls13/deadlines.ts). */
  private timer: Deadline | undefined;

  constructor(socket: RawTransport, config: ServerConfig, start: TlsSocketStart = {}) {
    super(socket, { allowHalfOpen: start.allowHalfOpen ?? false, writeBackpressure: true, gracefulClose: true });
    // The TLS layer decides when the transport's write side ends (after our
    // close_notify), not the transport on the peer's FIN: a net.Socket
    // without allowHalfOpen ends its write side as soon as it reads a FIN,
    // and every record written after that (the answer to a request the
    // client sent just before half-closing) would be dropped.
    socket.allowHalfOpen = true;
    const session = start.session;
    let adopted: { held: Uint8Array[]; peerEnded: boolean } | undefined;
    if (session) {
      // The handshake is done: the engine, its records on their way and the
      // bytes already processed carry over; its output now comes here.
      this.connection = session.connection;
      this.writer = session.writer;
      this.received = session.received;
      adopted = session.handOver({ data: (b) => this.deliver(b), peerClosed: () => this.push(null), failed: (e) => this.receiveFailed(e) });
    } else {
      this.connection = new ServerConnection(config, {
        send: (b) => this.toTransport(b),
        data: (b) => this.deliver(b),
        handshakeComplete: () => this.onSecure(),
        peerClosed: () => this.push(null),
      });
      if (config.handshakeTimeout > 0) {
        this.timer = deadline(config.handshakeTimeout, () => {
          this.timer = undefined;
          this.handshakeFailed(new EchError('ERR_TIMEOUT', 'handshake_failure', `TLS handshake timed out after ${config.handshakeTimeout} ms`), true);
        });
      }
    }
    this.readTransport();
    // The FIN is acted on after the engine has processed every byte read
    // before it: the last chunk may hold the client Finished, the request and
    // close_notify.
    socket.on('end', TlsSocket.onTransportEnd);
    socket.on('error', TlsSocket.onTransportError);
    socket.on('close', TlsSocket.onTransportClose);
    socket.on('timeout', TlsSocket.onTransportTimeout);
    if (adopted) {
      this.markSecure();
      for (const b of adopted.held) this.deliver(b);
      if (adopted.peerEnded) this.push(null);
      if (socket.destroyed) queueMicrotask(() => this.destroy());
      return;
    }
    if (start.clientHello) {
      this.feed(this.connection.receiveClientHello(start.clientHello, start.initialData));
    } else if (start.initialData?.length) {
      this.feed(this.connection.receive(start.initialData));
    }
    // A front end may have paused the transport while reading the first flight.
    socket.resume();
    if (socket.destroyed || socket.readableEnded) {
      queueMicrotask(() =>
        this.handshakeFailed(new EchError('ERR_PROTOCOL', 'handshake_failure', 'transport already closed'), false),
      );
    }
  }

  /*
   * The transport's listeners: shared functions that reach this socket
   * through the transport (`carriedBy`, as the `data` listener does), until
   * the transport closed (`releaseTransport`). Node
   * keeps a closed net.Socket (through its handle) until the next
   * mark-compact, and what its listeners still referred to (this socket,
   * the engine, its record layer and key schedule) would survive every
   * scavenge until then and be promoted with it.
   */
  /** The TlsSocket on `transport`: only a TlsSocket adds these listeners. */
  private static boundTo(transport: Duplex): TlsSocket | undefined {
    return TlsDuplex.carriedBy(transport) as TlsSocket | undefined;
  }

  private static onTransportEnd(this: Duplex): void {
    const t = TlsSocket.boundTo(this);
    if (t) void t.received.then(() => t.transportEnded());
  }

  private static onTransportError(this: Duplex, err: Error): void {
    const t = TlsSocket.boundTo(this);
    if (!t) return;
    if (!t.secured) t.handshakeFailed(err, false);
    else t.failAfterHandshake(err);
  }

  private static onTransportClose(this: Duplex): void {
    const t = TlsSocket.boundTo(this);
    if (!t) return;
    t.releaseTransport();
    t.clearTimer();
    if (!t.secured && !t.destroyed) {
      t.handshakeFailed(new EchError('ERR_PROTOCOL', 'handshake_failure', 'transport closed during the TLS handshake'), false);
    } else if (!t.destroyed) {
      t.destroy();
    }
  }

  private static onTransportTimeout(this: Duplex): void {
    TlsSocket.boundTo(this)?.emit('timeout');
  }

  private transportEnded(): void {
    if (this.lingering) return;
    if (!this.secured) {
      this.handshakeFailed(new EchError('ERR_PROTOCOL', 'handshake_failure', 'peer closed the transport during the TLS handshake'), false);
    } else {
      // Transport closed without close_notify: end of data (truncation is
      // visible to the application only through the missing close_notify).
      this.push(null);
    }
  }

  /** @internal */
  protected receiveFailed(e: Error): void {
    if (!this.secured) this.handshakeFailed(e, false);
    else this.failAfterHandshake(e);
  }

  /**
   * An error on an established connection (the alert is already written):
   * reported as a `tlsError` event and {@link TlsSocket.tlsError}, then the
   * socket closes. NOTE: deliberately not an `error` event — a consumer
   * without an error listener (a bare `pipe`) must not take the process
   * down because one peer misbehaved.
   */
  private failAfterHandshake(e: Error): void {
    if (this.destroyed) return;
    this.tlsError = e;
    // The alert is written: close after it, without a reset.
    this.linger();
    this.emit('tlsError', e);
    this.destroy();
  }

  /** The error that ended an established connection, if any. */
  tlsError: Error | undefined;

  private clearTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private onSecure(): void {
    this.clearTimer();
    this.markSecure();
    this.emit('secure');
  }

  private handshakeFailed(err: Error, abort: boolean): void {
    if (this.destroyed) return;
    this.clearTimer();
    if (abort) this.connection.abort(err as EchError);
    this.emit('tlsClientError', err);
    // Flush the alert (already written), then close the transport.
    this.linger();
    this.destroy();
  }

  /** Handshake results, once `secure` fired. */
  get handshake(): HandshakeInfo | undefined {
    return this.connection.info;
  }

  /** SNI of the handshake (the inner one with ECH), or `false`. */
  get servername(): string | false {
    return this.connection.info?.servername ?? false;
  }

  /** Negotiated ALPN protocol, or `false`. */
  get alpnProtocol(): string | false {
    return this.connection.info?.alpnProtocol ?? false;
  }

  /** Negotiated key exchange group name ('X25519', 'prime256v1'). */
  get group(): string | undefined {
    const g = this.connection.info?.group;
    return g === undefined ? undefined : groupName(g);
  }

  /** True when the ClientHello hook reported `attributes.echAccepted === true`. */
  get echAccepted(): boolean {
    return this.attributes.echAccepted === true || this.attributes.echStatus === 'accepted';
  }

  /**
   * ECH status reported by the ECH hook (`attributes.echStatus`):
   * `accepted`, `rejected`, `grease`, or `not-offered` (the default, also
   * without a hook).
   */
  get echStatus(): 'accepted' | 'rejected' | 'grease' | 'not-offered' {
    const s = this.attributes['echStatus'];
    return s === 'accepted' || s === 'rejected' || s === 'grease' ? s : 'not-offered';
  }

  /** The server_name of ClientHelloOuter (the public name with ECH), if the ECH hook reported it. */
  get outerServerName(): string | undefined {
    const v = this.attributes['outerServerName'];
    return typeof v === 'string' ? v : undefined;
  }

  /** The server_name of ClientHelloInner when ECH was accepted, if the ECH hook reported it. */
  get innerServerName(): string | undefined {
    const v = this.attributes['innerServerName'];
    return typeof v === 'string' ? v : undefined;
  }

  /** Attributes set by the ClientHello hook (e.g. ECH status). */
  get attributes(): Record<string, unknown> {
    return this.connection.info?.attributes ?? {};
  }

  /** Like `tls.TLSSocket#getCipher()`. */
  getCipher(): CipherInfo | undefined {
    const s = this.connection.info?.suite;
    return s ? { name: s.name, standardName: s.name, version: 'TLSv1.3' } : undefined;
  }

  /** Always `'TLSv1.3'` once connected. */
  getProtocol(): string | null {
    return this.connection.info ? 'TLSv1.3' : null;
  }

  /** Like `tls.TLSSocket#getEphemeralKeyInfo()`. */
  getEphemeralKeyInfo(): { type: 'ECDH'; name: string; size: number } | Record<string, never> {
    const g = this.connection.info?.group;
    if (g === undefined) return {};
    const name = groupName(g);
    return { type: 'ECDH', name, size: name === 'X25519' ? 253 : 256 };
  }

  /** True when the handshake resumed a session from a ticket. */
  isSessionReused(): boolean {
    return this.connection.info?.resumed ?? false;
  }

  /** No client certificate is requested: always an empty object. */
  getPeerCertificate(): Record<string, never> {
    return {};
  }

  /** Like `tls.TLSSocket#exportKeyingMaterial(length, label, context)`. */
  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Buffer {
    return Buffer.from(this.connection.exportKeyingMaterial(label, context ?? new Uint8Array(0), length));
  }

  /** Send a KeyUpdate (asking the peer to update too, by default). */
  keyUpdate(requestPeer = true): void {
    this.connection.keyUpdate(requestPeer);
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily;
  }
  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }
  get localPort(): number | undefined {
    return this.socket.localPort;
  }

  /** Passed to the transport; its `timeout` is re-emitted here. */
  setTimeout(ms: number, cb?: () => void): this {
    (this.socket as Partial<Socket>).setTimeout?.(ms);
    if (cb) this.once('timeout', cb);
    return this;
  }
  setNoDelay(noDelay?: boolean): this {
    (this.socket as Partial<Socket>).setNoDelay?.(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, delay?: number): this {
    (this.socket as Partial<Socket>).setKeepAlive?.(enable, delay);
    return this;
  }
  ref(): this {
    (this.socket as Partial<Socket>).ref?.();
    return this;
  }
  unref(): this {
    (this.socket as Partial<Socket>).unref?.();
    return this;
  }
  address(): ReturnType<Socket['address']> | Record<string, never> {
    return (this.socket as Partial<Socket>).address?.() ?? {};
  }

  /** End (close_notify) and destroy once everything is flushed, like `net.Socket#destroySoon`. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.clearTimer();
    super._destroy(err, cb);
  }
}

/**
 * Read the first ClientHello of a raw transport without consuming it for
 * anyone else: resolves with the whole handshake message and every byte read
 * after it, for {@link TlsSocketStart}. Rejects on malformed input or EOF.
 * @group Server
 * @example
 * ```ts
 * const first = await readClientHelloFrom(raw);
 * server.handleSocket(raw, first);
 * ```
 */
export function readClientHelloFrom(socket: Duplex, maxBytes = 65536 + 1024): Promise<Required<Pick<TlsSocketStart, 'clientHello' | 'initialData'>>> {
  return new Promise((resolve, reject) => {
    let buf = new Uint8Array(0);
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
    };
    const onData = (chunk: Buffer): void => {
      const next = new Uint8Array(buf.length + chunk.length);
      next.set(buf);
      next.set(chunk, buf.length);
      buf = next;
      try {
        const r = readFirstHandshakeMessage(buf);
        if (r) {
          cleanup();
          socket.pause();
          resolve({ clientHello: r.message.raw, initialData: buf.slice(r.consumed) });
        } else if (buf.length > maxBytes) {
          throw new EchError('ERR_PROTOCOL', 'decode_error', 'first flight too large');
        }
      } catch (e) {
        cleanup();
        reject(e);
      }
    };
    const onEnd = (e?: Error): void => {
      cleanup();
      reject(e ?? new EchError('ERR_PROTOCOL', 'decode_error', 'transport ended before a whole ClientHello'));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
  });
}
