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
import { deadline } from '../tls13/deadlines.js';

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
  const maxBytes = opts.maxBytes ?? maxMessage + 1024;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let buf = new Uint8Array(0);
  const cleanup = () => {
    timer.cancel();
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('error', onError);
    socket.off('close', onEnd);
    socket.pause();
  };
  const fail = (e: Error) => {
    cleanup();
    done(e);
  };
  // One shared timer per duration, not a setTimeout per connection (src/tls13/deadlines.ts).
  const timer = deadline(timeoutMs, () => fail(new EchError('ERR_TIMEOUT', 'handshake_failure', `no complete ClientHello within ${timeoutMs} ms`)));
  const onData = (d: Buffer) => {
    // The first read is the usual case: one copy of it, into our own bytes.
    if (buf.length === 0) buf = new Uint8Array(d);
    else {
      const n = new Uint8Array(buf.length + d.length);
      n.set(buf);
      n.set(d, buf.length);
      buf = n;
    }
    let got;
    try {
      got = readFirstHandshakeMessage(buf, maxMessage);
    } catch (e) {
      fail(e as Error);
      return;
    }
    if (got) {
      cleanup();
      done(undefined, {
        message: got.message.raw,
        raw: buf,
        rest: buf.slice(got.consumed),
        recordVersion: (buf[1]! << 8) | buf[2]!,
      });
      return;
    }
    if (buf.length > maxBytes) fail(new EchError('ERR_DECODE', 'decode_error', `first flight exceeds ${maxBytes} bytes without a complete ClientHello`));
  };
  const onEnd = () => fail(new EchError('ERR_PROTOCOL', 'handshake_failure', 'client closed before sending a complete ClientHello'));
  const onError = (e: Error) => fail(e);
  // `on`, not `once`: `cleanup` removes them all after the first that runs.
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onError);
  socket.resume();
}
