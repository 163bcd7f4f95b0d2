/**
 * The `Duplex` glue shared by `TlsSocket` (server) and
 * `TlsClientSocket` (client): a transport-free engine on a raw
 * transport, its plaintext as a stream. Records written only while the
 * transport is writable, reads paused when the consumer is, writes held
 * until the handshake completes, close_notify then FIN on `end()`.
 *
 * The deliberate differences between the two sides are options
 * ({@link TlsDuplexOptions}): the server waits for the transport to drain
 * before accepting more plaintext, and closes gracefully (flush, FIN, read
 * until the peer's FIN); the client does neither.
 *
 * @module
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { RESOLVED } from './conn.js';
import { deadline } from './deadlines.js';

/**
 * What the glue needs of an engine (`ServerConnection` or
 * `ClientConnection`).
 * @example
 * ```ts
 * const engine: TlsEngine = new ServerConnection(config, sink);
 * ```
 */
export interface TlsEngine {
  /** Process bytes read from the transport. */
  receive(data: Uint8Array): Promise<void>;
  /** Encrypt and send application data. */
  write(data: Uint8Array): void;
  /** Send close_notify. */
  close(): void;
}

/**
 * The deliberate differences between the server's and the client's socket.
 * @example
 * ```ts
 * const server: TlsDuplexOptions = { allowHalfOpen: false, writeBackpressure: true, gracefulClose: true };
 * ```
 */
export interface TlsDuplexOptions {
  /** Keep the writable side open after the peer's end of data. */
  allowHalfOpen: boolean;
  /** `write` callbacks wait for the transport's `drain` when it needs one (server). */
  writeBackpressure: boolean;
  /**
   * Destroying flushes what is queued before the transport goes, and an
   * orderly or failed close ends the transport's write side and reads until
   * the peer's FIN, for at most 5 s, instead of resetting it (server).
   */
  gracefulClose: boolean;
}

/**
 * How long a closed connection keeps its transport open, reading and
 * discarding, for the peer's FIN (see `linger`).
 */
export const LINGER_MS = 5000;

/**
 * Bytes of records held for one transport write (see `toTransport`): a
 * full record and a little more, so that bulk data goes out as it comes.
 */
const COALESCE_BYTES = 16 * 1024 + 1024;

/**
 * Records on their way to a transport: what an engine writes in one turn of
 * the event loop leaves in one transport write (at `setImmediate`, or before
 * the transport ends or is destroyed), and at {@link COALESCE_BYTES} pending
 * at once (bulk data is not held). Every write on a loopback or LAN socket
 * costs the writer the whole TCP path in the kernel. Shared by
 * {@link TlsDuplex} and the front end's stream-less `ServerSession`, which
 * hands its writer to the `TlsSocket` that adopts it.
 * @example
 * ```ts
 * const w = new TransportWriter(rawSocket);
 * w.push(record); // written with the rest of this turn's records
 * w.flush(); // now
 * ```
 */
export class TransportWriter {
  /** Bytes held, not yet on the transport. */
  bytes = 0;
  private list: Uint8Array[] = [];
  private scheduled = false;
  /** Held until {@link TransportWriter.release}: no write scheduled meanwhile. */
  private holding = false;

  constructor(readonly socket: Duplex) {}

  /** Hold `b` for this turn's write (dropped once the transport is not writable). */
  push(b: Uint8Array): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    this.list.push(b);
    this.bytes += b.length;
    if (this.bytes >= COALESCE_BYTES) this.flush();
    else if (!this.scheduled && !this.holding) {
      this.scheduled = true;
      setImmediate(this.later);
    }
  }

  /**
   * Hold what is pushed until {@link TransportWriter.release} (or a
   * `flush`, or {@link COALESCE_BYTES}) instead of until the end of the
   * turn: a task that ends in a microtask (the server's ClientHello, whose
   * flight is built across awaits) writes its output as soon as it ends,
   * without a `setImmediate`.
   */
  hold(): void {
    this.holding = true;
  }

  /** End {@link TransportWriter.hold}: write what is held now. */
  release(): void {
    this.holding = false;
    this.flush();
  }

  /** Write what is held, in one write. */
  flush(): void {
    const list = this.list;
    if (list.length === 0) return;
    const bytes = this.bytes;
    this.list = [];
    this.bytes = 0;
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    if (list.length === 1) {
      socket.write(list[0]!);
    } else if (bytes <= COALESCE_BYTES) {
      const out = Buffer.allocUnsafe(bytes);
      let o = 0;
      for (const c of list) {
        out.set(c, o);
        o += c.length;
      }
      socket.write(out);
    } else {
      // Large: one writev, no copy.
      socket.cork();
      for (const c of list) socket.write(c);
      socket.uncork();
    }
  }

  private readonly later = (): void => {
    this.scheduled = false;
    this.flush();
  };
}

/** Where a transport's `data` listener finds the {@link TlsDuplex} on it (see `readTransport`). */
const kDuplex = Symbol('TlsDuplex');
/** A transport carrying a {@link TlsDuplex}. */
type Carrier = Duplex & { [kDuplex]?: TlsDuplex | undefined };

/**
 * A TLS engine's plaintext as a `Duplex` over a raw transport; subclassed by
 * `TlsSocket` and `TlsClientSocket`, which add their handshake
 * events and error policy.
 * @example
 * ```ts
 * class MySocket extends TlsDuplex { readonly connection = engine; protected receiveFailed(e: Error) { this.destroy(e); } }
 * ```
 */
export abstract class TlsDuplex extends Duplex {
  /** The transport underneath. */
  readonly socket: Duplex;
  /** The transport-free engine. */
  abstract readonly connection: TlsEngine;
  /** The handshake completed: writes go through. @internal */
  protected secured = false;
  /** Settles once every byte read so far has been processed by the engine. @internal */
  protected received: Promise<void> = RESOLVED;
  /** The transport is being closed gracefully (see `linger`); its input is discarded. @internal */
  protected lingering = false;
  private waiters: Array<() => void> = [];
  private readonly glue: TlsDuplexOptions;
  /** Records written by the engine in this turn, not yet on the transport. @internal */
  protected writer: TransportWriter;

  constructor(socket: Duplex, options: TlsDuplexOptions) {
    super({ allowHalfOpen: options.allowHalfOpen });
    this.socket = socket;
    this.glue = options;
    this.writer = new TransportWriter(socket);
  }

  /** Records from the engine to the transport, while it is writable (see {@link TransportWriter}). @internal */
  protected toTransport(b: Uint8Array): void {
    this.writer.push(b);
  }

  /** Write what {@link TlsDuplex.toTransport} holds, in one write. @internal */
  protected flushTransport(): void {
    this.writer.flush();
  }

  /** Plaintext from the engine to the reader; the transport pauses while the reader does. @internal */
  protected deliver(b: Uint8Array): void {
    if (this.destroyed) return;
    if (!this.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) this.socket.pause();
  }

  /**
   * Feed the transport's bytes to the engine (ignored while lingering),
   * through a listener shared by every transport that reaches this socket
   * through the transport itself, until {@link TlsDuplex.releaseTransport}. @internal
   */
  protected readTransport(): void {
    (this.socket as Carrier)[kDuplex] = this;
    this.socket.on('data', TlsDuplex.onTransportData);
  }

  /**
   * The transport closed: its listeners no longer reach this socket. Node
   * keeps a closed net.Socket (through its handle) until the next
   * mark-compact; what its listeners referred to (this socket, the engine,
   * its record layer and key schedule) would survive every scavenge until
   * then and be promoted with it. @internal
   */
  protected releaseTransport(): void {
    (this.socket as Carrier)[kDuplex] = undefined;
  }

  /**
   * The socket a transport carries (set by {@link TlsDuplex.readTransport},
   * cleared by {@link TlsDuplex.releaseTransport}), for a subclass's own
   * shared transport listeners. @internal
   */
  protected static carriedBy(transport: Duplex): TlsDuplex | undefined {
    return (transport as Carrier)[kDuplex];
  }

  /** The transport's `data` listener, one function for every transport. */
  private static onTransportData(this: Carrier, chunk: Buffer): void {
    const d = this[kDuplex];
    if (d && !d.lingering) d.feed(d.connection.receive(chunk));
  }

  /** Track `p` (see `received`) and hand its failure to `receiveFailed`. @internal */
  protected feed(p: Promise<void>): void {
    // Processed at once, without a failure: nothing to wait for.
    if (p === RESOLVED) return;
    this.received = p.then(undefined, (err: unknown) => this.receiveFailed(err instanceof Error ? err : new Error(String(err))));
  }

  /** The engine failed on input (its alert is already written). @internal */
  protected abstract receiveFailed(e: Error): void;

  /** The handshake completed: release the writes held until now. @internal */
  protected markSecure(): void {
    this.secured = true;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  override _write(chunk: Buffer, enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.secured) {
      this.waiters.push(() => this._write(chunk, enc, cb));
      return;
    }
    try {
      this.connection.write(chunk);
    } catch (e) {
      cb(e as Error);
      return;
    }
    if (this.glue.writeBackpressure) {
      const raw = this.socket;
      // Records held for the turn's one write count as written: if they
      // would fill the transport's buffer, they go now, and the callback
      // waits for the drain.
      if (this.writer.bytes > 0 && raw.writableLength + this.writer.bytes >= raw.writableHighWaterMark) this.flushTransport();
      if ((raw as Partial<Socket>).writableNeedDrain) {
        raw.once('drain', () => cb());
        return;
      }
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    const finish = (): void => {
      try {
        this.connection.close();
      } catch {
        // already closed
      }
      this.flushTransport();
      this.socket.end();
      cb();
    };
    if (!this.secured) this.waiters.push(finish);
    else finish();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.waiters = [];
    const raw = this.socket;
    // What the engine wrote (an alert, close_notify) goes before the end.
    this.flushTransport();
    if (!this.glue.gracefulClose) {
      if (!raw.destroyed) raw.destroy();
    } else if (!raw.destroyed && !this.lingering) {
      // Closed in order (close_notify and FIN written by _final): close the
      // transport gracefully. Otherwise (destroy() without end(), an error)
      // abort it, once what is already queued has gone out.
      if (!err && raw.writableEnded) this.linger();
      else {
        const s = raw as Duplex & { destroySoon?: () => void };
        if (typeof s.destroySoon === 'function' && raw.writableLength > 0) s.destroySoon();
        else raw.destroy();
      }
    }
    cb(err);
  }

  /**
   * Close the transport without a reset: end its write side after what is
   * queued (close_notify or an alert, then FIN), and keep reading, discarding,
   * until the peer's FIN — at most 5 s (`LINGER_MS`) — before the transport
   * closes. RFC 9846 §6.1: "It is assumed that closing the write side of a
   * connection reliably delivers pending data before destroying the
   * transport." A TCP socket closed while the peer's last bytes (typically
   * its close_notify, sent right after the request) are unread, or arrive
   * after the close, makes the kernel answer with a RST, which throws away
   * our records not yet delivered: the client sees its answer vanish.
   * @internal
   */
  protected linger(): void {
    if (this.lingering) return;
    this.lingering = true;
    const raw = this.socket;
    if (raw.destroyed) return;
    this.flushTransport();
    if (!raw.writableEnded) raw.end();
    // With allowHalfOpen (set by the server socket) the transport closes by
    // itself once its FIN is out and the peer's FIN has been read.
    const d = deadline(LINGER_MS, () => raw.destroy());
    raw.once('close', () => d.cancel());
    raw.resume();
  }
}
