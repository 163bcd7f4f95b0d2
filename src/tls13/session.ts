/**
 * `ServerSession`: one server TLS 1.3 connection driven straight off its
 * `net.Socket`, without a `Duplex` of plaintext: the engine reads the
 * socket's `data` and its records go to the socket through the same
 * {@link TransportWriter} as a `TlsSocket`'s. The front end runs the
 * ech-status route on it: a one-shot request is answered from the first
 * plaintext record, and the connection closes as a `TlsSocket` closes. A
 * consumer that needs a stream (anything else goes to `http.Server`) gets a
 * `TlsSocket` that adopts the established connection ({@link ServerSession.stream}),
 * with the plaintext not yet read and the peer's end of data, if read.
 *
 * Per connection this spares the stream layer a `TlsSocket` costs and that a
 * one-shot answer does not use: the `Duplex` and its two states, a push
 * and a flowing read per record, the write path, `end`, `finish` and
 * `destroy` with their next-tick hops, and the listeners among them.
 *
 * @module
 */
import type { Socket } from 'node:net';
import { EchError } from '../wire/alert.js';
import type { ServerConfig } from './config.js';
import { ServerConnection, type ConnectionSink, type HandshakeInfo } from './server-handshake.js';
import { groupName } from './groups.js';
import { LINGER_MS, TransportWriter } from './duplex.js';
import { RESOLVED } from './conn.js';
import { type Deadline, deadline } from './deadlines.js';
import { type CipherInfo, TlsSocket } from './socket.js';

/**
 * What a {@link ServerSession} tells its owner. Each runs at most once,
 * `secure` before `error`; after `handshakeError` or `error` the session is
 * closed (the alert, if one is owed, has been written).
 * @group Server
 * @example
 * ```ts
 * const events: ServerSessionEvents = { secure: (s) => answer(s), handshakeError: (e) => log(e), error: (e) => log(e) };
 * ```
 */
export interface ServerSessionEvents {
  /** The handshake completed (runs inside the read that carried the client's Finished). */
  secure(session: ServerSession): void;
  /** The handshake failed or timed out: a `TlsSocket`'s `tlsClientError`. */
  handshakeError(err: Error): void;
  /** The established connection failed (a bad record, a peer's fatal alert, the transport): a `TlsSocket`'s `tlsError`. */
  error(err: Error): void;
}

/** Where a transport's listeners find the {@link ServerSession} on it (see `ServerSession.onRawData`). */
const kSession = Symbol('ServerSession');
/** A transport carrying a {@link ServerSession}. */
type Owned = Socket & { [kSession]?: ServerSession | undefined };

/** How a {@link ServerSession} starts: a ClientHello already read off the socket, and what followed it. */
type SessionStart = { clientHello: Uint8Array; initialData?: Uint8Array | undefined };

/**
 * A server TLS 1.3 connection on a raw `net.Socket`, no stream on top
 * (see the module documentation). Reads start at once; plaintext waits
 * until {@link ServerSession.read} asks for it.
 * @group Server
 * @example
 * ```ts
 * new ServerSession(socket, config, { clientHello, initialData }, {
 *   secure: (s) => s.read((b) => { s.write(answer(b)); s.end(); }, () => s.end()),
 *   handshakeError: () => {},
 *   error: () => {},
 * });
 * ```
 */
export class ServerSession {
  /** The transport. */
  readonly socket: Socket;
  /** The transport-free engine. */
  readonly connection: ServerConnection;
  /** Records on their way to the transport (handed to the adopting `TlsSocket`). @internal */
  readonly writer: TransportWriter;
  /** The engine's sink; its `data` and `peerClosed` are re-pointed by an adopting `TlsSocket`. @internal */
  readonly sink: ConnectionSink;
  /** Settles once every byte read so far has been processed by the engine. @internal */
  received: Promise<void> = RESOLVED;
  /** The handshake completed. */
  secured = false;
  /** Closed, or handed to a `TlsSocket`: nothing more happens here. */
  closed = false;
  private readonly events: ServerSessionEvents;
  /** The handshake's deadline, then the linger's (shared timers: src/tls13/deadlines.ts). */
  private timer: Deadline | undefined;
  private lingerTimer: Deadline | undefined;
  private lingering = false;
  /** Inside `connection.receive` (plaintext is held until it returns). */
  private reading = false;
  /** Plaintext records not yet handed to the reader. */
  private held: Uint8Array[] = [];
  /** The peer's end of data (close_notify, or FIN after the handshake) was read. */
  private peerEnded = false;
  private endSignalled = false;
  /** Set once a `TlsSocket` adopted the connection: failures of input read before go there. */
  private adopterFailed: ((e: Error) => void) | undefined;
  private onData: ((b: Uint8Array) => void) | undefined;
  private onEnd: (() => void) | undefined;

  constructor(socket: Socket, config: ServerConfig, start: SessionStart, events: ServerSessionEvents) {
    this.socket = socket;
    this.events = events;
    this.writer = new TransportWriter(socket);
    // As TlsSocket: the TLS layer ends the write side (after close_notify), not the peer's FIN.
    socket.allowHalfOpen = true;
    this.sink = {
      send: (b) => this.writer.push(b),
      data: (b) => this.plaintext(b),
      handshakeComplete: () => this.onSecure(),
      peerClosed: () => this.peerEnd(),
    };
    this.connection = new ServerConnection(config, this.sink);
    if (config.handshakeTimeout > 0) {
      this.timer = deadline(config.handshakeTimeout, () => {
        this.timer = undefined;
        this.handshakeFailed(new EchError('ERR_TIMEOUT', 'handshake_failure', `TLS handshake timed out after ${config.handshakeTimeout} ms`), true);
      });
    }
    (socket as Owned)[kSession] = this;
    socket.on('data', ServerSession.onRawData);
    socket.on('end', ServerSession.onRawEnd);
    socket.on('error', ServerSession.onRawError);
    socket.on('close', ServerSession.onRawClose);
    // The flight goes out when the ClientHello's task ends (in the reaction
    // that tracks it), not at the next setImmediate.
    this.writer.hold();
    this.feed(this.connection.receiveClientHello(start.clientHello, start.initialData), true);
    // The front end paused the transport while reading the first flight.
    socket.resume();
    if (socket.destroyed || socket.readableEnded) {
      queueMicrotask(() => this.handshakeFailed(new EchError('ERR_PROTOCOL', 'handshake_failure', 'transport already closed'), false));
    }
  }

  /*
   * The transport's listeners are these four shared functions, which reach
   * the session through the transport (`kSession`), cleared once the
   * transport closed or a TlsSocket adopted the connection: Node keeps a
   * closed net.Socket (through its handle) until the next mark-compact, and
   * what its listeners still referred to (the session, the engine, the
   * record layer, the key schedule, the front end's closures) would survive
   * every scavenge until then and be promoted with it.
   */
  private static onRawData(this: Owned, chunk: Buffer): void {
    this[kSession]?.rawData(chunk);
  }

  private static onRawEnd(this: Owned): void {
    this[kSession]?.rawEnd();
  }

  private static onRawError(this: Owned, err: Error): void {
    this[kSession]?.rawError(err);
  }

  private static onRawClose(this: Owned): void {
    const session = this[kSession];
    if (!session) return;
    this[kSession] = undefined;
    session.rawClose();
  }

  private rawData(chunk: Buffer): void {
    if (this.lingering || this.closed) return;
    // Plaintext of this read is held until every record in it was
    // processed: a record that fails the connection after the request (an
    // unprotected one after Finished) leaves no answer, as with a TlsSocket.
    this.reading = true;
    const p = this.connection.receive(chunk);
    this.reading = false;
    this.feed(p);
    this.drain();
  }

  /** The FIN is acted on after the engine has processed every byte read before it. */
  private rawEnd(): void {
    void this.received.then(() => {
      if (this.lingering || this.closed) return;
      if (!this.secured) this.handshakeFailed(new EchError('ERR_PROTOCOL', 'handshake_failure', 'peer closed the transport during the TLS handshake'), false);
      else {
        // Transport closed without close_notify: end of data.
        this.peerEnd();
        this.drain();
      }
    });
  }

  private rawError(err: Error): void {
    if (!this.secured) this.handshakeFailed(err, false);
    else this.failAfterHandshake(err);
  }

  private rawClose(): void {
    this.clearTimer();
    this.lingerTimer?.cancel();
    if (this.closed) return;
    if (!this.secured) this.handshakeFailed(new EchError('ERR_PROTOCOL', 'handshake_failure', 'transport closed during the TLS handshake'), false);
    else this.destroy();
  }

  /** Track `p` (see `received`); its failure closes the session. */
  private feed(p: Promise<void>, release = false): void {
    // Processed at once, without a failure: nothing to wait for.
    if (p === RESOLVED) {
      if (release) this.writer.release();
      return;
    }
    this.received = p.then(release ? this.release : undefined, (err: unknown) => {
      if (release) this.writer.release();
      const e = err instanceof Error ? err : new Error(String(err));
      if (this.adopterFailed) this.adopterFailed(e);
      else if (!this.secured) this.handshakeFailed(e, false);
      else this.failAfterHandshake(e);
    });
  }

  private readonly release = (): void => this.writer.release();

  private onSecure(): void {
    this.clearTimer();
    this.secured = true;
    this.events.secure(this);
  }

  private plaintext(b: Uint8Array): void {
    this.held.push(b);
    if (!this.reading) this.drain();
  }

  private peerEnd(): void {
    this.peerEnded = true;
    if (!this.reading) this.drain();
  }

  /** Hand held plaintext, then the end of data, to the reader (none after a failure). */
  private drain(): void {
    if (this.connection.error || this.closed) {
      this.held.length = 0;
      return;
    }
    while (this.held.length > 0 && this.onData) this.onData(this.held.shift()!);
    if (this.peerEnded && !this.endSignalled && this.held.length === 0 && this.onEnd && !this.closed) {
      this.endSignalled = true;
      this.onEnd();
    }
  }

  /**
   * Receive plaintext records with `data` (the ones already read first),
   * and the peer's end of data with `end`, once all of it was read; call
   * with no arguments to stop (what arrives is held for {@link ServerSession.stream}).
   */
  read(data?: (b: Uint8Array) => void, end?: () => void): void {
    this.onData = data;
    this.onEnd = end;
    if (data && !this.reading) this.drain();
  }

  /** True while application data can be written. */
  get writable(): boolean {
    return this.secured && !this.closed && !this.connection.error && !this.socket.destroyed && this.socket.writable;
  }

  /** Encrypt and send application data (with the rest of this turn's records). */
  write(data: Uint8Array): void {
    this.connection.write(data);
  }

  /**
   * Close in order: close_notify, the records held, FIN; then read and
   * discard until the peer's FIN, at most 5 s, so that no reset throws the
   * last records away (what `TlsSocket#destroySoon` does after a write).
   */
  end(): void {
    if (this.closed) return;
    try {
      this.connection.close();
    } catch {
      // already closed
    }
    this.linger();
    this.destroy();
  }

  /**
   * Close now, as `TlsSocket#destroy()` does: gracefully once the write side
   * was ended in order, else by aborting the transport after what is queued.
   */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimer();
    this.held.length = 0;
    const raw = this.socket;
    this.writer.flush();
    if (raw.destroyed || this.lingering) return;
    if (raw.writableEnded) this.linger();
    else if (raw.writableLength > 0) raw.destroySoon();
    else raw.destroy();
  }

  /**
   * The connection as a `TlsSocket` (a `Duplex` of plaintext), for a
   * consumer that needs a stream: it takes over the transport, the engine,
   * the records not yet written, the plaintext not yet read and the peer's
   * end of data. A failure afterwards is the socket's `tlsError`, passed
   * to this session's `error` event. The session is closed to everything
   * else from now on.
   */
  stream(): TlsSocket {
    const t = new TlsSocket(this.socket, this.connection.config, { session: this });
    t.on('tlsError', (e: Error) => this.events.error(e));
    return t;
  }

  /**
   * Give the connection to an adopting `TlsSocket`: detach from the
   * transport, and return what was read and not yet delivered. @internal
   */
  handOver(to: Pick<ConnectionSink, 'data' | 'peerClosed'> & { failed(e: Error): void }): { held: Uint8Array[]; peerEnded: boolean } {
    this.closed = true;
    this.adopterFailed = to.failed;
    this.clearTimer();
    const s = this.socket as Owned;
    s[kSession] = undefined;
    s.off('data', ServerSession.onRawData);
    s.off('end', ServerSession.onRawEnd);
    s.off('error', ServerSession.onRawError);
    s.off('close', ServerSession.onRawClose);
    this.sink.data = to.data;
    this.sink.peerClosed = to.peerClosed;
    const held = this.held;
    this.held = [];
    return { held, peerEnded: this.peerEnded && !this.endSignalled };
  }

  private clearTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private handshakeFailed(err: Error, abort: boolean): void {
    if (this.closed) return;
    this.clearTimer();
    if (abort) this.connection.abort(err as EchError);
    this.events.handshakeError(err);
    // Flush the alert (already written), then close the transport.
    this.linger();
    this.destroy();
  }

  private failAfterHandshake(e: Error): void {
    if (this.closed) return;
    // The alert is written: close after it, without a reset.
    this.linger();
    this.events.error(e);
    this.destroy();
  }

  /** As `TlsDuplex#linger`: FIN after what is queued, then read until the peer's FIN, at most {@link LINGER_MS}. */
  private linger(): void {
    if (this.lingering) return;
    this.lingering = true;
    const raw = this.socket;
    if (raw.destroyed) return;
    this.writer.flush();
    if (!raw.writableEnded) raw.end();
    // allowHalfOpen: the transport closes by itself once its FIN is out and
    // the peer's FIN has been read. `rawClose` clears the timer.
    this.lingerTimer = deadline(LINGER_MS, () => raw.destroy());
    raw.resume();
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
}
