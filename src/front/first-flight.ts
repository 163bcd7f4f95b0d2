/**
 * The first-flight reader: reads a connection's first bytes until one whole
 * ClientHello (across records and TCP reads), with a size cap and a
 * deadline, and without consuming anything after it.
 *
 * @module
 */
import type { Socket } from 'node:net';
import { EchError } from '../wire/alert.js';
import { readFirstHandshakeMessage } from '../tls/record.js';
import { type Deadline, deadline } from '../tls13/deadlines.js';

/**
 * A connection's first ClientHello.
 * @group Front end
 */
export interface FirstFlight {
  /** The ClientHello handshake message (4-byte header included). */
  message: Uint8Array;
  /** Every byte read, the ClientHello's records included. */
  raw: Uint8Array;
  /** Bytes read after the ClientHello's records. */
  rest: Uint8Array;
  /** legacy_record_version of the first record. */
  recordVersion: number;
}

/**
 * Options of {@link readFirstFlight}.
 * @group Front end
 */
export interface FirstFlightOptions {
  /** Largest ClientHello accepted (handshake body), bytes (default `maxBytes`, else 65536). */
  maxClientHelloBytes?: number;
  /** Largest first flight accepted, record headers included, bytes (default the ClientHello limit + 1024). */
  maxBytes?: number;
  /** Give up after this many ms (default 10000): the slowloris guard. */
  timeoutMs?: number;
}

/**
 * Read the first ClientHello from `socket`. Rejects with an {@link EchError}
 * carrying the alert to send: `decode_error` for bytes that are not TLS,
 * `record_overflow`/`decode_error` for an oversized hello,
 * `unexpected_message` for a first record that is not a handshake, and code
 * `ERR_TIMEOUT` (no alert is owed) when the client stalls. The socket is
 * paused when this resolves; listeners it added are removed.
 * @group Front end
 * @example
 * ```ts
 * const first = await readFirstFlight(socket, { timeoutMs: 5000 });
 * const r = await decryptClientHello(first.message, keys);
 * ```
 */
export function readFirstFlight(socket: Socket, opts: FirstFlightOptions = {}): Promise<FirstFlight> {
  return new Promise((resolve, reject) => readFirstFlightThen(socket, opts, (err, first) => (err ? reject(err) : resolve(first!))));
}

/**
 * {@link readFirstFlight} with a callback, for the front end's hot path (no
 * promise, no microtask between the last read and the callback): `done`
 * runs once, with the error or the first flight, after the listeners
 * this added were removed and the socket paused.
 * @group Front end
 * @example
 * ```ts
 * readFirstFlightThen(socket, { timeoutMs: 5000 }, (err, first) => (err ? socket.destroy() : route(first!)));
 * ```
 */
export function readFirstFlightThen(socket: Socket, opts: FirstFlightOptions, done: (err: Error | undefined, first?: FirstFlight) => void): void {
  const maxMessage = opts.maxClientHelloBytes ?? opts.maxBytes ?? 65536;
  new FirstFlightReader(socket, maxMessage, opts.maxBytes ?? maxMessage + 1024, opts.timeoutMs ?? 10_000, done);
}

/** Where the shared listeners find the {@link FirstFlightReader} of a socket. */
const kReader = Symbol('FirstFlightReader');
/** A socket whose first flight is being read. */
type Reading = Socket & { [kReader]?: FirstFlightReader | undefined };
/** No bytes yet (never written: it has none). */
const EMPTY = new Uint8Array(0);

/**
 * One socket's first-flight read: its state in one object, the socket's
 * listeners shared by every connection (they find the reader through the
 * socket), instead of a closure per listener and per step.
 */
class FirstFlightReader {
  private buf: Uint8Array = EMPTY;
  private readonly timer: Deadline;

  constructor(
    private readonly socket: Reading,
    private readonly maxMessage: number,
    private readonly maxBytes: number,
    timeoutMs: number,
    private readonly done: (err: Error | undefined, first?: FirstFlight) => void,
  ) {
    // One shared timer per duration, not a setTimeout per connection (src/tls13/deadlines.ts).
    this.timer = deadline(timeoutMs, () => this.fail(new EchError('ERR_TIMEOUT', 'handshake_failure', `no complete ClientHello within ${timeoutMs} ms`)));
    socket[kReader] = this;
    // `on`, not `once`: `cleanup` removes them all after the first that runs.
    socket.on('data', FirstFlightReader.onData);
    socket.on('end', FirstFlightReader.onEnd);
    socket.on('close', FirstFlightReader.onEnd);
    socket.on('error', FirstFlightReader.onError);
    socket.resume();
  }

  private static onData(this: Reading, d: Buffer): void {
    this[kReader]?.data(d);
  }

  private static onEnd(this: Reading): void {
    this[kReader]?.fail(new EchError('ERR_PROTOCOL', 'handshake_failure', 'client closed before sending a complete ClientHello'));
  }

  private static onError(this: Reading, e: Error): void {
    this[kReader]?.fail(e);
  }

  private cleanup(): void {
    this.timer.cancel();
    const socket = this.socket;
    socket[kReader] = undefined;
    socket.off('data', FirstFlightReader.onData);
    socket.off('end', FirstFlightReader.onEnd);
    socket.off('error', FirstFlightReader.onError);
    socket.off('close', FirstFlightReader.onEnd);
    socket.pause();
  }

  private fail(e: Error): void {
    this.cleanup();
    this.done(e);
  }

  private data(d: Buffer): void {
    let buf = this.buf;
    // The first read is the usual case: one copy of it, into our own bytes.
    if (buf.length === 0) buf = new Uint8Array(d);
    else {
      const n = new Uint8Array(buf.length + d.length);
      n.set(buf);
      n.set(d, buf.length);
      buf = n;
    }
    this.buf = buf;
    let got;
    try {
      got = readFirstHandshakeMessage(buf, this.maxMessage);
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    if (got) {
      this.cleanup();
      this.done(undefined, {
        message: got.message.raw,
        raw: buf,
        // Nothing after the ClientHello (the usual case): no bytes to copy.
        rest: got.consumed === buf.length ? EMPTY : buf.slice(got.consumed),
        recordVersion: (buf[1]! << 8) | buf[2]!,
      });
      return;
    }
    if (buf.length > this.maxBytes) this.fail(new EchError('ERR_DECODE', 'decode_error', `first flight exceeds ${this.maxBytes} bytes without a complete ClientHello`));
  }
}
