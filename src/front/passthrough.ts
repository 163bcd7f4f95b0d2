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
import { forwardChunk, readChunks } from './relay-reads.js';

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
    const relay = new SplitModeRelay(client, accepted, target, rest, recordVersion, resolve);
    relay.connectBackend(onConnected);
    relay.writeClientHelloInner();
    relay.relay();
  });
}

/**
 * Client bytes the relay keeps while the backend's first message is not yet
 * known (or the second ClientHello is being decrypted) before it stops
 * reading from the client. Only a client sending early data waits here; it
 * is held back by TCP, not dropped.
 */
const HOLD_BYTES = 64 * 1024;

/**
 * One split-mode connection, in the order it happens: connect the backend,
 * write ClientHelloInner, sniff the backend's first flight for a
 * HelloRetryRequest, decrypt and forward the second ClientHello, relay.
 *
 * Flow control is `stream.pipe`'s: a side whose write() returned false
 * stops the other side's reads until it emits 'drain', so a slow reader on
 * either end makes the front end hold at most a socket buffer's worth per
 * direction (plus {@link HOLD_BYTES} during the handshake phase).
 */
class SplitModeRelay {
  private readonly result: PassthroughResult = { helloRetry: false, bytesFromClient: 0, bytesFromBackend: 0 };
  private readonly backend: Socket;
  private readonly timer: NodeJS.Timeout;
  /** Set once the promise is resolved. */
  private done = false;
  private closedSides = 0;
  private clientEnded: boolean;
  /** Client bytes not yet forwarded (they wait for the backend's first message or a second ClientHello). */
  private pending: Uint8Array[];
  private pendingBytes: number;
  /** The handshake phase is over: client bytes go straight to the backend, as read. */
  private direct = false;
  /** The backend's bytes read so far while looking for its first message; undefined once known. */
  private sniff: Uint8Array | undefined = new Uint8Array(0);
  private firstServerMessage: 'unknown' | 'hrr' | 'sh' = 'unknown';
  private readonly serverHs = new HandshakeReassembler(1 << 16);
  private readonly clientHs = new HandshakeReassembler(1 << 16);
  /** The second ClientHello is being decrypted. */
  private rebuilding = false;
  /** The second ClientHello has been forwarded. */
  private secondDone = false;

  constructor(
    private readonly client: Socket,
    private readonly accepted: EchAccepted,
    private readonly target: PassthroughTarget,
    rest: Uint8Array,
    private readonly recordVersion: number,
    private readonly resolve: (r: PassthroughResult) => void,
  ) {
    this.backend = target.socket ?? connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.pending = rest.length ? [rest] : [];
    this.pendingBytes = rest.length;
    // Half-close is relayed, not turned into a close: a client that sends its
    // request and its FIN at once still gets the backend's answer (the front
    // end's sockets are allowHalfOpen). The client's FIN goes on to the
    // backend once every byte before it has (`pending` may wait for the
    // backend's first message or a second ClientHello being re-encrypted).
    this.clientEnded = client.readableEnded;
    client.on('end', () => {
      this.clientEnded = true;
      this.endBackendWhenFlushed();
    });
    this.backend.on('end', () => endGracefully(client));
    const ms = target.connectTimeoutMs ?? 10_000;
    this.timer = setTimeout(() => this.finish(new EchError('ERR_TIMEOUT', 'internal_error', `backend ${target.host}:${target.port} did not answer within ${ms} ms`)), ms);
    this.timer.unref();
  }

  /** Step 1: wait for the backend connection (or take the pool's socket) and watch both sides close. */
  connectBackend(onConnected?: () => void): void {
    const { client, backend } = this;
    const connected = () => {
      clearTimeout(this.timer);
      onConnected?.();
    };
    if (this.target.socket) connected();
    else backend.once('connect', connected);
    backend.on('error', (e) => {
      clearTimeout(this.timer);
      this.finish(e);
    });
    client.on('error', (e) => this.finish(e));
    client.on('close', () => {
      if (!backend.destroyed) backend.end();
      // Nothing waits for the client any more: read the backend to its FIN.
      this.flowBackend();
      this.sideClosed();
    });
    backend.on('close', () => {
      clearTimeout(this.timer);
      if (!this.done) endGracefully(client);
      this.sideClosed();
    });
  }

  /** Step 2: the PROXY header if asked for, then ClientHelloInner in records of the client's version. */
  writeClientHelloInner(): void {
    if (this.target.proxyProtocol) writeProxyHeader(this.backend, this.client);
    this.backend.write(writeRecords(ContentType.handshake, this.accepted.innerMessage, this.recordVersion));
  }

  /**
   * Step 5: relay both ways. The backend's bytes go to the client as read
   * (its first flight is sniffed on the side); the client's are held until
   * the backend's first message is known, then written on as read.
   */
  relay(): void {
    const { client, backend } = this;
    // Reads into reused memory (src/front/relay-reads.ts): each handler says
    // whether it kept the chunk (held it, or left it in a write still queued).
    readChunks(backend, (d) => {
      this.result.bytesFromBackend += d.length;
      const kept = forwardChunk(backend, client, d);
      // The sniffer copies what it keeps.
      if (this.sniff) this.sniffFirstFlight(d);
      return kept;
    });
    readChunks(client, (d) => {
      this.result.bytesFromClient += d.length;
      if (this.direct) return forwardChunk(client, backend, d);
      this.pending.push(d);
      this.pendingBytes += d.length;
      this.pumpClient();
      this.flowClient();
      return true;
    });
    backend.on('drain', () => this.flowClient());
    client.on('drain', () => this.flowBackend());
    // The first-flight reader leaves the client's socket paused.
    this.flowClient();
  }

  /** Read from the client unless the backend has not drained, or too much waits for the handshake phase. */
  private flowClient(): void {
    if (this.done) return;
    const { backend } = this;
    const full = !backend.destroyed && !backend.writableEnded && backend.writableNeedDrain;
    if (full || this.pendingBytes > HOLD_BYTES) this.client.pause();
    else this.client.resume();
  }

  /** Read from the backend unless the client has not drained. */
  private flowBackend(): void {
    const { client } = this;
    if (!client.destroyed && !client.writableEnded && client.writableNeedDrain) this.backend.pause();
    else this.backend.resume();
  }

  /** Step 3: read the backend's first handshake message to learn whether it is a HelloRetryRequest. */
  private sniffFirstFlight(d: Uint8Array): void {
    if (!this.sniff) return;
    this.sniff = concat(this.sniff, d);
    try {
      for (;;) {
        const r = readRecord(this.sniff, 0);
        if (!r) break;
        this.sniff = this.sniff.subarray(r.next);
        if (r.record.type !== ContentType.handshake) continue;
        this.serverHs.push(r.record.fragment);
        const m = this.serverHs.next();
        if (m) {
          // RFC 9846 §4.1.4: a HelloRetryRequest is a ServerHello with
          // the special random.
          const isHrr = m.type === HandshakeType.server_hello && m.body.length >= 34 && equalBytes(m.body.subarray(2, 34), HELLO_RETRY_REQUEST_RANDOM);
          this.firstServerMessage = isHrr ? 'hrr' : 'sh';
          this.sniff = undefined;
          this.pumpClient();
          break;
        }
      }
    } catch {
      // Not ours to judge: the client will see whatever the backend sent.
      this.sniff = undefined;
      this.firstServerMessage = 'sh';
      this.pumpClient();
    }
  }

  /**
   * Client → backend during the handshake phase: nothing until the
   * backend's first message is known; after a ServerHello everything, and
   * from then on the client's bytes go straight through (`direct`); after a
   * HelloRetryRequest everything but the second ClientHello, which is
   * re-encrypted first.
   */
  private pumpClient(): void {
    if (this.direct || this.firstServerMessage === 'unknown' || this.rebuilding) return;
    if (this.firstServerMessage === 'sh' || this.secondDone) {
      this.direct = true;
      const held = this.pending;
      this.pending = [];
      this.pendingBytes = 0;
      for (const b of held) this.toBackend(b);
      this.endBackendWhenFlushed();
      this.flowClient();
      return;
    }
    // After a HelloRetryRequest: change_cipher_spec passes through, the
    // handshake records are gathered into ClientHello2.
    let buf = this.pending.length === 1 ? this.pending[0]! : concatAll(this.pending);
    const out: Uint8Array[] = [];
    const keep = () => {
      this.pending = buf.length ? [buf] : [];
      this.pendingBytes = buf.length;
    };
    for (;;) {
      let r;
      try {
        r = readRecord(buf, 0);
      } catch (e) {
        this.finish(e as Error);
        return;
      }
      if (!r) break;
      const raw = buf.subarray(0, r.next);
      buf = buf.subarray(r.next);
      if (r.record.type === ContentType.handshake) {
        try {
          this.clientHs.push(r.record.fragment);
        } catch (e) {
          this.finish(e as Error);
          return;
        }
        const m = this.clientHs.next();
        if (m) {
          if (m.type !== HandshakeType.client_hello) {
            this.finish(new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'expected the second ClientHello'));
            return;
          }
          keep();
          this.forwardSecondClientHello(m.raw, out, r.record.version);
          this.flowClient();
          return;
        }
      } else {
        out.push(raw);
      }
    }
    keep();
    for (const b of out) this.toBackend(b);
    this.flowClient();
  }

  /** Step 4: decrypt the second ClientHelloOuter with the same HPKE context (RFC 9849 §7.1.1) and forward its inner, after `before`. */
  private forwardSecondClientHello(outer: Uint8Array, before: Uint8Array[], version: number): void {
    this.rebuilding = true;
    decryptSecondClientHello(outer, this.accepted).then(
      (second) => {
        this.result.helloRetry = true;
        this.secondDone = true;
        this.rebuilding = false;
        this.toBackend(concatAll([...before, writeRecords(ContentType.handshake, second.innerMessage, version)]));
        this.pumpClient();
      },
      (e: Error) => this.finish(e),
    );
  }

  /** Once a side has finished, bytes still in flight towards it are dropped rather than written to a closed socket. */
  private toBackend(b: Uint8Array): void {
    if (!this.backend.destroyed && !this.backend.writableEnded) this.backend.write(b);
  }

  /** Relay the client's FIN once nothing before it waits. */
  private endBackendWhenFlushed(): void {
    if (this.clientEnded && this.pendingBytes === 0 && !this.rebuilding && !this.backend.writableEnded) this.backend.end();
  }

  /** Record `err`; on the first error, alert the client (TLS errors) or drop it, drop the backend, and resolve. */
  private finish(err?: Error): void {
    if (err && !this.result.error) this.result.error = err;
    if (this.done) return;
    if (err) {
      this.done = true;
      if (err instanceof EchError && !this.client.destroyed && !this.client.writableEnded) {
        this.client.write(alertRecord(err.alert));
        endGracefully(this.client);
      } else this.client.destroy();
      this.backend.destroy();
      this.resolve(this.result);
    }
  }

  private sideClosed(): void {
    if (++this.closedSides === 2 && !this.done) {
      this.done = true;
      this.resolve(this.result);
    }
  }
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

function concatAll(parts: Uint8Array[]): Uint8Array {
  const o = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    o.set(p, at);
    at += p.length;
  }
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
    // allowHalfOpen on both sockets: the relay passes each side's FIN on as
    // an end() of the other, so the backend's answer to a client that
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
    // `stream.pipe` both ways, with reads into reused memory
    // (src/front/relay-reads.ts): a full side pauses the other until 'drain'.
    readChunks(client, (d) => {
      result.bytesFromClient += d.length;
      return forwardChunk(client, backend, d);
    });
    readChunks(backend, (d) => {
      result.bytesFromBackend += d.length;
      return forwardChunk(backend, client, d);
    });
    backend.on('drain', () => client.resume());
    client.on('drain', () => backend.resume());
    // The client's FIN ends the backend's write side after every byte before
    // it; the client's write side is ended by endGracefully.
    client.on('end', () => {
      if (!backend.destroyed && !backend.writableEnded) backend.end();
    });
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
