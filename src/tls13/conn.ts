/**
 * The connection core shared by both TLS 1.3 engines, the way Go's `Conn`
 * carries both `serverHandshakeStateTLS13` and `clientHandshakeStateTLS13`:
 * records in, handshake messages and application data out, alerts, key
 * updates and close. `ServerConnection` and `ClientConnection`
 * keep only their handshake state machines on top of it.
 *
 * What lives here once:
 * - the receive queue (input processed in order, one call at a time) and the
 *   one place an error becomes an alert (`fail`);
 * - the record pump: no record interleaved with a fragmented handshake
 *   message (RFC 9846 §5.1), application data only once connected, alerts
 *   (close_notify, user_canceled, fatal);
 * - the record-level rules of {@link RecordLayer} (change_cipher_spec
 *   window, every record protected after the peer's Finished, the
 *   empty-record limit), reached through one `RecordLayer` per connection
 *   and `peerFinished`;
 * - application traffic secrets, KeyUpdate in both directions (§4.6.3),
 *   close_notify (§6.1).
 *
 * @module
 */
import { AlertDescription, DecodeError, EchError, alertName } from '../wire/alert.js';
import { concatBytes } from '../wire/bytes.js';
import { ContentType, HandshakeType } from '../tls/constants.js';
import { HandshakeReassembler, encodeHandshake, type HandshakeMessage } from '../tls/record.js';
import { KeyUpdateRequest, decodeKeyUpdate, encodeKeyUpdate } from '../tls/messages.js';
import { nextTrafficSecret, trafficKeys } from './key-schedule.js';
import { RecordLayer } from './record-layer.js';
import type { CipherSuiteParams } from './suites.js';

/**
 * The settled promise a synchronous task returns: `receive` (and
 * `enqueue`) return this very object when the input was processed at once,
 * without a failure, so a transport can skip tracking it (no `then`, no
 * microtask per read).
 * @example
 * ```ts
 * const p = core.receive(chunk);
 * if (p !== RESOLVED) p.catch(() => socket.destroy());
 * ```
 */
export const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The peer sent a fatal alert (or closed during the handshake). Carries the
 * alert received; no alert is sent back.
 * @group Errors
 * @example
 * ```ts
 * if (err instanceof PeerAlertError) console.log('peer said', err.alert);
 * ```
 */
export class PeerAlertError extends EchError {
  constructor(alert: AlertDescription, message: string) {
    super('ERR_ALERT_RECEIVED', alert, message);
    this.name = 'PeerAlertError';
  }
}

/**
 * What a handshake state machine gives the {@link ConnectionCore} it runs on.
 * @example
 * ```ts
 * const core = new ConnectionCore({ send, handshake: (m) => this.handle(m), connected: () => this.state === 'connected' });
 * ```
 */
export interface ConnectionCoreOptions {
  /** Bytes to write to the transport, in order. */
  send(bytes: Uint8Array): void;
  /** One reassembled handshake message; may be async (the server's hooks are). */
  handshake(m: HandshakeMessage): void | Promise<void>;
  /** True once the handshake completed: application data and close_notify are accepted. */
  connected(): boolean;
  /** Decrypted application data. */
  data?(bytes: Uint8Array): void;
  /** The peer's close_notify was read: nothing more will be. */
  peerClosed?(): void;
  /** The connection failed (the alert, if any, has been sent). */
  failed?(): void;
  /** Largest handshake message accepted (default: the reassembler's). */
  maxHandshakeSize?: number;
  /**
   * Send a KeyUpdate before an application data record once this many
   * records went out under one key (RFC 9846 §5.5). The server does (2^24);
   * the client engine does not.
   */
  keyUpdateAfterRecords?: bigint;
}

/**
 * One TLS 1.3 connection below its handshake: the record pump, alerts, key
 * updates and close, for either side.
 * @example
 * ```ts
 * const core = new ConnectionCore({ send: (b) => socket.write(b), handshake: (m) => machine.handle(m), connected: () => machine.done });
 * socket.on('data', (b) => core.receive(b).catch(() => socket.destroy()));
 * ```
 */
export class ConnectionCore {
  /** The record layer (protection, change_cipher_spec window, empty-record limit). */
  readonly records = new RecordLayer();
  /** Handshake messages reassembled from records. */
  readonly hs: HandshakeReassembler;
  /** KeyUpdate messages sent and received so far. */
  readonly keyUpdates = { sent: 0, received: 0 };
  private readonly opts: ConnectionCoreOptions;
  /**
   * Settles after every task enqueued so far; `undefined` when none is
   * pending (the next task may then run synchronously).
   */
  private chain: Promise<void> | undefined;
  /** A task is running synchronously (a nested `enqueue` waits for it). */
  private running = false;
  /** Lets the tasks enqueued from inside a running one go, once it has ended. */
  private release: (() => void) | undefined;
  /** Records held by `cork` for one transport write; `undefined` when not corked. */
  private out: Uint8Array[] | undefined;
  private failure: Error | undefined;
  private writeClosedValue = false;
  private readClosedValue = false;
  private suite: CipherSuiteParams | undefined;
  private readSecret: Uint8Array | undefined;
  private writeSecret: Uint8Array | undefined;

  constructor(opts: ConnectionCoreOptions) {
    this.opts = opts;
    this.hs = new HandshakeReassembler(opts.maxHandshakeSize);
  }

  /** The error that closed the connection, if any. */
  get error(): Error | undefined {
    return this.failure;
  }

  /** True once close_notify was sent or the connection failed. */
  get writeClosed(): boolean {
    return this.writeClosedValue;
  }

  /** True once the peer's close_notify was read. */
  get readClosed(): boolean {
    return this.readClosedValue;
  }

  /**
   * Run `task` after every earlier one, unless the connection has failed;
   * an error it throws fails the connection (alert sent) and is rethrown.
   * When nothing is pending the task runs at once, synchronously: a
   * synchronous task (a record of application data, the client's Finished)
   * costs no promise hop, and the returned promise is already settled.
   */
  enqueue(task: () => void | Promise<void>): Promise<void> {
    if (!this.chain && !this.running) return this.run(task);
    // Called from inside a running task: wait until it has ended.
    this.chain ??= new Promise<void>((resolve) => {
      this.release = resolve;
    });
    const p = this.chain.then(() => this.run(task));
    this.track(p);
    return p;
  }

  /** Run one task now: synchronously, then (if it returns a promise) to its end. */
  private run(task: () => void | Promise<void>): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    let r: void | Promise<void> = undefined;
    let thrown: Error | undefined;
    this.running = true;
    try {
      r = task();
    } catch (e) {
      thrown = this.fail(e);
    }
    this.running = false;
    // Tasks enqueued from inside this one wait for `release`.
    const release = this.release;
    this.release = undefined;
    if (thrown) {
      release?.();
      return Promise.reject(thrown);
    }
    if (!r) {
      release?.();
      return RESOLVED;
    }
    const p = r.then(undefined, (e: unknown) => {
      throw this.fail(e);
    });
    if (release) p.then(release, release);
    else this.track(p);
    return p;
  }

  /** Later tasks wait for `p`; once it and everything before settled, the core is idle. */
  private track(p: Promise<void>): void {
    // One reaction both waits for `p` and marks the core idle when nothing
    // was enqueued after it.
    const settled: Promise<void> = p.then(
      () => this.settle(settled),
      () => this.settle(settled),
    );
    this.chain = settled;
  }

  /** `settled` (see `track`) is the last task: the next one may run at once. */
  private settle(settled: Promise<void>): void {
    if (this.chain === settled) this.chain = undefined;
  }

  /**
   * Hold what is sent until {@link ConnectionCore.uncork}, then hand it to
   * the transport in one write: the server builds a flight across awaits
   * (hooks, the signature) and it still leaves in one write. A failure
   * meanwhile sends what is held and the alert together.
   */
  cork(): void {
    this.out ??= [];
  }

  /** Send what {@link ConnectionCore.cork} held, as one write. */
  uncork(): void {
    const out = this.out;
    this.out = undefined;
    if (!out || out.length === 0) return;
    this.opts.send(out.length === 1 ? out[0]! : concatBytes(...out));
  }

  /** To the transport now, or with the rest of the current task's output. */
  private emit(bytes: Uint8Array): void {
    if (this.out) this.out.push(bytes);
    else this.opts.send(bytes);
  }

  /**
   * Process bytes read from the peer. Resolves when they are consumed;
   * rejects with the error that ended the connection. The core may keep a
   * reference to `data` until then (not after: bytes of an incomplete record
   * are copied).
   */
  receive(data: Uint8Array): Promise<void> {
    return this.enqueue(() => {
      if (this.readClosedValue) return;
      this.records.push(data);
      return this.pumpAll();
    });
  }

  /**
   * {@link ConnectionCore.pump} until the input is used up, then stop
   * referring to the caller's bytes: at once, or at the end of the chain of
   * an asynchronous handler (no reaction of its own).
   */
  private pumpAll(): void | Promise<void> {
    const r = this.pump();
    if (!r) this.records.detach();
    return r;
  }

  /**
   * The one place an error becomes an alert (RFC 9846 §6.2): the alert is
   * protected with the current write key if there is one. A peer's alert is
   * not answered.
   */
  fail(e: unknown): Error {
    if (this.failure) return this.failure;
    const err =
      e instanceof EchError
        ? e
        : new EchError('ERR_INTERNAL', 'internal_error', e instanceof Error ? e.message : String(e), { cause: e });
    this.failure = err;
    if (!(err instanceof PeerAlertError) && !this.writeClosedValue) {
      try {
        // The alert follows the flight held by `cork` (whose keys protect
        // it), in the same transport write.
        this.emit(this.records.encodeAlert(err.alert === 'close_notify' ? 'internal_error' : err.alert));
      } catch {
        // The transport is gone; nothing more to say.
      }
    }
    this.writeClosedValue = true;
    // An abort (timeout) may come while a flight is held: it and the
    // alert go out now, before the transport is closed.
    try {
      this.uncork();
    } catch {
      // The transport is gone.
    }
    this.opts.failed?.();
    return err;
  }

  /** Abort with `error` (its alert is sent), unless already failed. Used by transports on timeouts. */
  abort(error: EchError): void {
    if (this.failure) return;
    this.fail(error);
  }

  /** After an await: stop if the connection failed meanwhile (timeout, abort). */
  checkAlive(): void {
    if (this.failure) throw this.failure;
  }

  /** Every byte the core writes leaves through here; nothing after a failure or close_notify. */
  send(bytes: Uint8Array): void {
    if (this.failure || this.writeClosedValue) return;
    this.emit(bytes);
  }

  /** RFC 9846 §5.1: messages preceding a key change must end a record. */
  requireRecordBoundary(what: string): void {
    if (this.hs.pending > 0) {
      throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `${what} not aligned with a record boundary before a key change`);
    }
  }

  /**
   * Handle the records buffered so far, synchronously while the handshake
   * handlers are; an asynchronous one (the server's ClientHello hooks)
   * returns a promise, and the rest continues when it settles.
   */
  private pump(): void | Promise<void> {
    // Whole handshake messages left by a record already read.
    const r = this.handshakeMessages();
    if (r) return r;
    for (;;) {
      if (this.failure || this.readClosedValue) return;
      const rec = this.records.next();
      if (!rec) return;
      // RFC 9846 §5.1: "Handshake messages MUST NOT be interleaved with
      // other record types."
      if (rec.type !== ContentType.handshake && this.hs.pending > 0) {
        throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'record interleaved with a fragmented handshake message');
      }
      switch (rec.type) {
        case ContentType.alert:
          this.readAlert(rec.content);
          break;
        case ContentType.handshake: {
          this.hs.push(rec.content);
          const r2 = this.handshakeMessages();
          if (r2) return r2;
          break;
        }
        case ContentType.application_data:
          // RFC 9846 §2: application data only after the handshake (no
          // 0-RTT is accepted here).
          if (!this.opts.connected()) {
            throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'application data before the handshake completed');
          }
          if (rec.content.length) this.opts.data?.(rec.content);
          break;
        default:
          throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `unexpected record type ${rec.type}`);
      }
    }
  }

  /** Hand every whole reassembled message to the handshake; a promise if one handler is asynchronous. */
  private handshakeMessages(): Promise<void> | undefined {
    for (;;) {
      if (this.failure) return undefined;
      const m = this.hs.next();
      if (!m) return undefined;
      const r = this.opts.handshake(m);
      // Only a real promise yields: a synchronous state machine runs its
      // whole flight in the same turn.
      if (r) return r.then(() => this.pumpAll());
    }
  }

  private readAlert(content: Uint8Array): void {
    // RFC 9846 §5.1: "a record with an Alert type MUST contain exactly one
    // message" (two bytes: level, description).
    if (content.length !== 2) throw new DecodeError(`alert record of ${content.length} bytes`);
    const desc = content[1]!;
    if (desc === AlertDescription.close_notify) {
      if (!this.opts.connected()) {
        throw new PeerAlertError('close_notify', 'peer closed the connection during the handshake');
      }
      // RFC 9846 §6.1: "Any data received after a closure alert has been
      // received MUST be ignored."
      this.readClosedValue = true;
      this.opts.peerClosed?.();
      return;
    }
    if (desc === AlertDescription.user_canceled) return; // §6.1: a close_notify follows.
    const name = alertName(desc);
    throw new PeerAlertError((name in AlertDescription ? name : 'internal_error') as AlertDescription, `peer sent alert ${name}`);
  }

  /** Install the peer's application traffic secret (its next records are protected with it). */
  setReadSecret(suite: CipherSuiteParams, secret: Uint8Array): void {
    this.suite = suite;
    this.readSecret = secret;
    this.records.setReadKeys(suite, trafficKeys(suite, secret));
  }

  /** Install our application traffic secret (our next records are protected with it). */
  setWriteSecret(suite: CipherSuiteParams, secret: Uint8Array): void {
    this.suite = suite;
    this.writeSecret = secret;
    this.records.setWriteKeys(suite, trafficKeys(suite, secret));
  }

  /**
   * The peer's Finished was read (RFC 9846 §5): every later record must be
   * protected, a change_cipher_spec is an unexpected record.
   */
  peerFinished(): void {
    this.records.peerFinished();
  }

  /** Encrypt and send application data; callers check the connection is open for writing. */
  writeData(data: Uint8Array): void {
    if (data.length === 0) return;
    // RFC 9846 §5.5: rekey well before the AEAD limits (2^24.5 full-size
    // records for AES-GCM) by sending a KeyUpdate first.
    const limit = this.opts.keyUpdateAfterRecords;
    if (limit !== undefined && this.records.writeSequence >= limit) this.sendKeyUpdate(KeyUpdateRequest.update_not_requested);
    this.send(this.records.encode(ContentType.application_data, data));
  }

  /** Send close_notify (RFC 9846 §6.1): no more writes. Reading continues until the peer closes too. */
  close(): void {
    if (this.writeClosedValue || this.failure) return;
    this.send(this.records.encodeAlert('close_notify'));
    this.writeClosedValue = true;
  }

  /** A KeyUpdate from the peer (connected): switch to its next read key, answer if asked. */
  readKeyUpdate(m: HandshakeMessage): void {
    const request = decodeKeyUpdate(m.body);
    this.keyUpdates.received++;
    // §5.1: KeyUpdate precedes a key change, so it must end its record.
    this.requireRecordBoundary('KeyUpdate');
    const suite = this.suite!;
    // §4.6.3: the sender's next messages use the next generation of keys.
    this.setReadSecret(suite, nextTrafficSecret(suite.hash, this.readSecret!));
    // §4.6.3: on update_requested "the receiver MUST send a KeyUpdate of its
    // own with request_update set to "update_not_requested" prior to sending
    // its next Application Data record".
    if (request === KeyUpdateRequest.update_requested && !this.writeClosedValue) {
      this.sendKeyUpdate(KeyUpdateRequest.update_not_requested);
    }
  }

  /** Send a KeyUpdate and switch to our next write key (RFC 9846 §4.6.3). */
  sendKeyUpdate(request: KeyUpdateRequest): void {
    const suite = this.suite!;
    this.send(this.records.encode(ContentType.handshake, encodeHandshake(HandshakeType.key_update, encodeKeyUpdate(request))));
    this.keyUpdates.sent++;
    this.setWriteSecret(suite, nextTrafficSecret(suite.hash, this.writeSecret!));
  }
}
