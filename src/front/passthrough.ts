/**
 * Split mode (RFC 9849 §3.1, §7.1): forward the reconstructed
 * ClientHelloInner to an ECH-aware backend and relay bytes both ways,
 * unmodified. When the backend answers with a HelloRetryRequest, the
 * client's second ClientHelloOuter is decrypted with the same HPKE context
 * and the second ClientHelloInner forwarded (§7.1.1). The front end never
 * holds the session keys: the backend terminates TLS.
 *
 * @module
 */
import { connect, type Socket } from 'node:net';
import { EchError } from '../wire/alert.js';
import { ContentType, HELLO_RETRY_REQUEST_RANDOM, HandshakeType } from '../tls/constants.js';
import { HandshakeReassembler, readRecord, writeRecords } from '../tls/record.js';
import { type EchAccepted, decryptSecondClientHello } from '../ech/decrypt.js';
import { equalBytes } from '../wire/bytes.js';
import { encodeProxyV2 } from './proxy-protocol.js';
import { alertRecord } from './alerts.js';

/**
 * Where and how to pass a connection through.
 * @group Front end
 */
export interface PassthroughTarget {
  host: string;
  port: number;
  /** Send a PROXY protocol v2 header with the client's address first. */
  proxyProtocol?: boolean;
  /** Give up connecting after this many ms (default 10000). */
  connectTimeoutMs?: number;
  /**
   * Forward GREASE ClientHellos (an ECH extension no key of the front end
   * matches) for this name to the backend unchanged, instead of terminating
   * them for the public name. Browsers send GREASE whenever they have no ECH
   * config for a site, so without this such clients get the public name's
   * certificate. The backend must ignore the outer-type extension (BoringSSL
   * does; this library's backend role with `acceptGrease`). Default false.
   */
  forwardGrease?: boolean;
  /**
   * A socket already connected to the backend (a pool's choice, see
   * `connectBackend`): used instead of connecting to `host` and `port`.
   */
  socket?: Socket;
}

/**
 * What a finished passthrough connection did.
 * @group Front end
 */
export interface PassthroughResult {
  /** The backend sent a HelloRetryRequest and the second ClientHello was re-decrypted. */
  helloRetry: boolean;
  bytesFromClient: number;
  bytesFromBackend: number;
  /** Set when the connection ended on an error (alert sent to the client when it is a TLS error). */
  error?: Error;
}

/**
 * Pass one accepted connection through to `target`.
 *
 * `client` is the client's socket; `recordVersion` the legacy_record_version
 * of its first record; `rest` the bytes it sent after the first ClientHello.
 * Resolves when both directions are closed.
 * @group Front end
 * @example
 * ```ts
 * const r = await decryptClientHello(first.message.raw, keys);
 * if (r.status === 'accepted') await passthrough(socket, r, { host: '10.0.0.7', port: 443 }, rest);
 * ```
 */
export function passthrough(
  client: Socket,
  accepted: EchAccepted,
  target: PassthroughTarget,
  rest: Uint8Array = new Uint8Array(0),
  recordVersion = 0x0301,
  onConnected?: () => void,
): Promise<PassthroughResult> {
  return new Promise((resolve) => {
    const result: PassthroughResult = { helloRetry: false, bytesFromClient: 0, bytesFromBackend: 0 };
    const backend = target.socket ?? connect({ host: target.host, port: target.port, allowHalfOpen: true });
    // Once a side has finished, bytes still in flight towards it are dropped
    // rather than written to a closed socket.
    const toBackend = (b: Uint8Array) => {
      if (!backend.destroyed && !backend.writableEnded) backend.write(b);
    };
    // Half-close is relayed, not turned into a close: a client that sends its
    // request and its FIN at once still gets the backend's answer (the front
    // end's sockets are allowHalfOpen). The client's FIN goes on to the
    // backend once every byte before it has (`pending` may wait for the
    // backend's first message or a second ClientHello being re-encrypted).
    let clientEnded = client.readableEnded;
    const endBackendWhenFlushed = () => {
      if (clientEnded && pending.length === 0 && !rebuilding && !backend.writableEnded) backend.end();
    };
    client.on('end', () => {
      clientEnded = true;
      endBackendWhenFlushed();
    });
    backend.on('end', () => endGracefully(client));
    let done = false;
    let closedSides = 0;
    const finish = (err?: Error) => {
      if (err && !result.error) result.error = err;
      if (done) return;
      if (err) {
        done = true;
        if (err instanceof EchError && !client.destroyed && !client.writableEnded) {
          client.write(alertRecord(err.alert));
          endGracefully(client);
        } else client.destroy();
        backend.destroy();
        resolve(result);
      }
    };
    const sideClosed = () => {
      if (++closedSides === 2 && !done) {
        done = true;
        resolve(result);
      }
    };
    const timer = setTimeout(() => finish(new EchError('ERR_TIMEOUT', 'internal_error', `backend ${target.host}:${target.port} did not answer within ${target.connectTimeoutMs ?? 10_000} ms`)), target.connectTimeoutMs ?? 10_000);
    timer.unref();
    const connected = () => {
      clearTimeout(timer);
      onConnected?.();
    };
    if (target.socket) connected();
    else backend.once('connect', connected);
    backend.on('error', (e) => {
      clearTimeout(timer);
      finish(e);
    });
    client.on('error', (e) => finish(e));
    client.on('close', () => {
      if (!backend.destroyed) backend.end();
      sideClosed();
    });
    backend.on('close', () => {
      clearTimeout(timer);
      if (!done) endGracefully(client);
      sideClosed();
    });

    if (target.proxyProtocol) writeProxyHeader(backend, client);
    backend.write(writeRecords(ContentType.handshake, accepted.innerMessage, recordVersion));

    // Backend → client: relayed as is; the first handshake message is read on
    // the side to learn whether it is a HelloRetryRequest.
    let sniff: Uint8Array | undefined = new Uint8Array(0) as Uint8Array;
    let firstServerMessage: 'unknown' | 'hrr' | 'sh' = 'unknown';
    const serverHs = new HandshakeReassembler(1 << 16);
    backend.on('data', (d: Buffer) => {
      result.bytesFromBackend += d.length;
      if (!client.destroyed && !client.writableEnded) client.write(d);
      if (!sniff) return;
      sniff = concat(sniff, d);
      try {
        for (;;) {
          const r = readRecord(sniff, 0);
          if (!r) break;
          sniff = sniff.subarray(r.next);
          if (r.record.type !== ContentType.handshake) continue;
          serverHs.push(r.record.fragment);
          const m = serverHs.next();
          if (m) {
            // RFC 8446bis §4.1.4: a HelloRetryRequest is a ServerHello with
            // the special random.
            const isHrr = m.type === HandshakeType.server_hello && m.body.length >= 34 && equalBytes(m.body.subarray(2, 34), HELLO_RETRY_REQUEST_RANDOM);
            firstServerMessage = isHrr ? 'hrr' : 'sh';
            sniff = undefined;
            pumpClient();
            break;
          }
        }
      } catch {
        // Not ours to judge: the client will see whatever the backend sent.
        sniff = undefined;
        firstServerMessage = 'sh';
        pumpClient();
      }
    });

    // Client → backend.
    let pending: Uint8Array = rest.length ? new Uint8Array(rest) : new Uint8Array(0);
    let secondDone = false;
    const clientHs = new HandshakeReassembler(1 << 16);
    let rebuilding = false;
    const pumpClient = () => {
      if (firstServerMessage === 'unknown' || rebuilding) return;
      if (firstServerMessage === 'sh' || secondDone) {
        if (pending.length) {
          toBackend(pending);
          pending = new Uint8Array(0);
        }
        endBackendWhenFlushed();
        return;
      }
      // After a HelloRetryRequest: change_cipher_spec passes through, the
      // handshake records are gathered into ClientHello2.
      let out: Uint8Array = new Uint8Array(0);
      for (;;) {
        let r;
        try {
          r = readRecord(pending, 0);
        } catch (e) {
          finish(e as Error);
          return;
        }
        if (!r) break;
        const raw = pending.subarray(0, r.next);
        pending = pending.subarray(r.next);
        if (r.record.type === ContentType.handshake) {
          try {
            clientHs.push(r.record.fragment);
          } catch (e) {
            finish(e as Error);
            return;
          }
          const m = clientHs.next();
          if (m) {
            if (m.type !== HandshakeType.client_hello) {
              finish(new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'expected the second ClientHello'));
              return;
            }
            rebuilding = true;
            const before = out;
            decryptSecondClientHello(m.raw, accepted).then(
              (second) => {
                result.helloRetry = true;
                secondDone = true;
                rebuilding = false;
                toBackend(concat(before, writeRecords(ContentType.handshake, second.innerMessage, r.record.version)));
                pumpClient();
              },
              (e: Error) => finish(e),
            );
            return;
          }
        } else {
          out = concat(out, raw);
        }
      }
      if (out.length) toBackend(out);
    };
    client.on('data', (d: Buffer) => {
      result.bytesFromClient += d.length;
      pending = concat(pending, d);
      pumpClient();
    });
    // The first-flight reader leaves the socket paused.
    client.resume();
  });
}

/** The PROXY v2 header describing `client`'s connection, first on `backend`. */
function writeProxyHeader(backend: Socket, client: Socket): void {
  if (!client.remoteAddress || !client.localAddress) return;
  backend.write(
    encodeProxyV2({
      sourceAddress: client.remoteAddress,
      sourcePort: client.remotePort ?? 0,
      destinationAddress: client.localAddress,
      destinationPort: client.localPort ?? 0,
    }),
  );
}

/** How long a client whose backend has finished may keep its side open. */
const LINGER_MS = 5000;

/**
 * End the client's write side (FIN after what is queued) and let the socket
 * close once the client's FIN is read too — at most {@link LINGER_MS} later.
 * Destroying it instead while the client's last bytes are unread (or still
 * on the way) makes the kernel answer with a RST, which discards the
 * backend's answer not yet delivered.
 */
function endGracefully(client: Socket): void {
  if (client.destroyed || client.writableEnded) return;
  client.end();
  const t = setTimeout(() => client.destroy(), LINGER_MS);
  t.unref();
  client.once('close', () => clearTimeout(t));
  client.resume();
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return new Uint8Array(b);
  const o = new Uint8Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
}

/**
 * Plain TLS passthrough (no ECH to decrypt): relay the first flight as read,
 * then bytes both ways, unmodified. Used for connections without ECH routed
 * by their outer server name to a passthrough backend.
 * @group Front end
 * @example
 * ```ts
 * await passthroughRaw(socket, first.raw, { host: '10.0.0.7', port: 443 });
 * ```
 */
export function passthroughRaw(
  client: Socket,
  firstFlight: Uint8Array,
  target: PassthroughTarget,
  onConnected?: () => void,
): Promise<PassthroughResult> {
  return new Promise((resolve) => {
    const result: PassthroughResult = { helloRetry: false, bytesFromClient: firstFlight.length, bytesFromBackend: 0 };
    // allowHalfOpen on both sockets: `pipe` relays each side's FIN as an
    // end() of the other, so the backend's answer to a client that
    // half-closed after its request still reaches it.
    const backend = target.socket ?? connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      result.error = new EchError('ERR_TIMEOUT', 'internal_error', `backend ${target.host}:${target.port} did not answer`);
      backend.destroy();
      client.destroy();
    }, target.connectTimeoutMs ?? 10_000);
    timer.unref();
    const connected = () => {
      clearTimeout(timer);
      onConnected?.();
    };
    if (target.socket) connected();
    else backend.once('connect', connected);
    if (target.proxyProtocol) writeProxyHeader(backend, client);
    backend.write(firstFlight);
    client.on('data', (d: Buffer) => (result.bytesFromClient += d.length));
    backend.on('data', (d: Buffer) => (result.bytesFromBackend += d.length));
    client.pipe(backend);
    // Not `.pipe(client)`: the client's write side is ended by endGracefully.
    backend.pipe(client, { end: false });
    backend.on('end', () => endGracefully(client));
    if (client.readableEnded) backend.end();
    let closed = 0;
    const side = () => {
      if (++closed === 2) resolve(result);
    };
    backend.on('error', (e) => {
      result.error ??= e;
      client.destroy();
    });
    client.on('error', (e) => {
      result.error ??= e;
      backend.destroy();
    });
    backend.on('close', () => {
      clearTimeout(timer);
      endGracefully(client);
      side();
    });
    client.on('close', () => {
      if (!backend.destroyed) backend.end();
      side();
    });
    client.resume();
  });
}
