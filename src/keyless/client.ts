/**
 * The front end's side of keyless mode: a client for one or more key
 * servers that plugs into the same interfaces as local keys — an
 * {@link EchPrivateKey} for each ECH config and a CertificateVerify signer
 * for each certificate — so the handshake code cannot tell the difference.
 *
 * Transport: TLS 1.3 with client certificates (node:tls), a small pool of
 * connections per key server, requests pipelined with ids. Key servers are
 * tried in the configured order (the first reachable one serves); a server
 * whose connection breaks or does not answer in time is skipped and
 * reconnected in the background with exponential backoff. Every operation
 * has a deadline: when no key server answers in time it fails with
 * {@link KeylessError} (`ERR_KEYLESS_UNAVAILABLE`, alert `internal_error`),
 * never hangs.
 *
 * @module
 */
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { DecryptError, EchError } from '../wire/alert.js';
import type { EchConfig } from '../ech/config.js';
import type { EchPrivateKey } from '../keys/key-set.js';
import { type LogSink, silent } from '../log/log.js';
import {
  FrameDecoder,
  KeylessOp,
  KeylessStatus,
  decodeResponse,
  echKeyId,
  encodeRequest,
  keylessStatusName,
  tlsKeyId,
  type KeylessResponse,
} from './protocol.js';

/**
 * A keyless failure, carrying `internal_error` to the TLS peer:
 * `ERR_KEYLESS_UNAVAILABLE` when no key server answered in time,
 * `ERR_KEYLESS_REFUSED` when one answered with an error (`status`).
 * @group Keyless
 * @example
 * ```ts
 * try { await client.sign(keyId, scheme, data); }
 * catch (e) { if (e instanceof KeylessError && e.code === 'ERR_KEYLESS_UNAVAILABLE') alertOps(); }
 * ```
 */
export class KeylessError extends EchError {
  /** The key server's status name (`forbidden`, `unknown-key`, ...) for refusals. */
  readonly status: string | undefined;
  constructor(code: 'ERR_KEYLESS_UNAVAILABLE' | 'ERR_KEYLESS_REFUSED', message: string, status?: string) {
    super(code, 'internal_error', message);
    this.name = 'KeylessError';
    this.status = status;
  }
}

/**
 * A key server address.
 * @group Keyless
 * @example
 * ```ts
 * const s: KeyServerAddress = { host: '10.0.0.5', port: 7443, serverName: 'keys.customer.example' };
 * ```
 */
export interface KeyServerAddress {
  host: string;
  port: number;
  /** Name the key server's certificate must carry (default `host`). */
  serverName?: string;
}

/**
 * Options of {@link KeylessClient}.
 * @group Keyless
 * @example
 * ```ts
 * const o: KeylessClientOptions = { servers: [{ host: '127.0.0.1', port: 7443 }], cert, key, ca, timeoutMs: 1000 };
 * ```
 */
export interface KeylessClientOptions {
  /** Key servers in preference order; later ones are failovers. */
  servers: readonly KeyServerAddress[];
  /** This front end's client certificate chain and key (PEM): its identity, not a customer key. */
  cert: string;
  key: string;
  /** CA certificate(s) (PEM) the key servers' certificates must chain to. */
  ca: string | string[];
  /** Deadline of one operation, all retries included, ms (default 1000). */
  timeoutMs?: number;
  /** Connections kept open to each key server (default 2). */
  connectionsPerServer?: number;
  /** Reconnect backoff, ms: first delay and cap (default 100 and 5000). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /**
   * Ping every ready connection this often, ms (default 30000): keeps idle
   * connections open through the key server's idle timeout and finds a
   * silent key server before a handshake does.
   */
  keepaliveMs?: number;
  /** Operational log (connects, disconnects, failures). Default: none. */
  log?: LogSink;
}

interface Pending {
  resolve(r: KeylessResponse): void;
  reject(e: Error): void;
}

/** Thrown inside the client when a connection broke under a request: another server may take it. */
class ConnectionLost extends Error {}

class Connection {
  ready = false;
  readonly pending = new Map<number, Pending>();
  readonly socket: tls.TLSSocket;
  constructor(socket: tls.TLSSocket) {
    this.socket = socket;
  }
  failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

class Slot {
  readonly conns = new Set<Connection>();
  failures = 0;
  up = false;
  timer: NodeJS.Timeout | undefined;
  constructor(
    readonly address: KeyServerAddress,
    readonly label: string,
  ) {}
  readyConn(): Connection | undefined {
    let best: Connection | undefined;
    for (const c of this.conns) if (c.ready && (!best || c.pending.size < best.pending.size)) best = c;
    return best;
  }
  connecting(): boolean {
    for (const c of this.conns) if (!c.ready) return true;
    return false;
  }
}

class Counter {
  readonly values = new Map<string, number>();
  add(k: string, n = 1): void {
    this.values.set(k, (this.values.get(k) ?? 0) + n);
  }
}

/**
 * A pool of authenticated connections to key servers, and the
 * {@link EchPrivateKey}s and signers that use it.
 * @group Keyless
 * @example
 * ```ts
 * const client = new KeylessClient({ servers: [{ host: '10.0.0.5', port: 7443 }], cert, key, ca });
 * keys.add({ config, privateKey: client.echPrivateKey(config), retry: true });
 * const certificate = ServerCertificate.from({ cert: alphaPem, sign: client.signer(alphaPem) });
 * ```
 */
export class KeylessClient {
  readonly #o: Required<Omit<KeylessClientOptions, 'log'>>;
  readonly #log: LogSink;
  readonly #slots: Slot[];
  #nextId = 1;
  #closed = false;
  #waiters: Array<() => void> = [];
  readonly #requests = new Counter();
  readonly #reconnects = new Counter();
  #latencySum = 0;
  #latencyCount = 0;
  readonly #keepalive: NodeJS.Timeout;

  constructor(options: KeylessClientOptions) {
    if (options.servers.length === 0) throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', 'keyless: no key server configured');
    this.#o = {
      servers: options.servers,
      cert: options.cert,
      key: options.key,
      ca: options.ca,
      timeoutMs: options.timeoutMs ?? 1000,
      connectionsPerServer: Math.max(1, Math.min(16, options.connectionsPerServer ?? 2)),
      reconnectMinMs: options.reconnectMinMs ?? 100,
      reconnectMaxMs: options.reconnectMaxMs ?? 5000,
      keepaliveMs: options.keepaliveMs ?? 30_000,
    };
    this.#log = options.log ?? silent;
    this.#slots = options.servers.map((a) => new Slot(a, `${a.host}:${a.port}`));
    for (const s of this.#slots) this.#fill(s);
    this.#keepalive = setInterval(() => {
      for (const s of this.#slots) {
        for (const c of s.conns) {
          if (c.ready) this.#send(c, KeylessOp.ping, new Uint8Array(0), 0, new Uint8Array(0), this.#o.timeoutMs).catch(() => undefined);
        }
      }
    }, this.#o.keepaliveMs);
    this.#keepalive.unref();
  }

  /** The deadline of one operation, ms. */
  get timeoutMs(): number {
    return this.#o.timeoutMs;
  }

  /** Each key server and whether a connection to it is up. */
  status(): Array<{ server: string; up: boolean; connections: number }> {
    return this.#slots.map((s) => ({ server: s.label, up: s.up, connections: [...s.conns].filter((c) => c.ready).length }));
  }

  /**
   * Resolves once some key server connection is up, or rejects after
   * `timeoutMs` (default the operation timeout).
   */
  async ready(timeoutMs = this.#o.timeoutMs): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.#slots.some((s) => s.readyConn())) {
      const left = deadline - performance.now();
      if (left <= 0 || this.#closed) throw new KeylessError('ERR_KEYLESS_UNAVAILABLE', `keyless: no key server reachable within ${timeoutMs} ms`);
      await this.#waitForChange(left);
    }
  }

  /**
   * The remote private half of an ECH key: `decap` sends `enc` to a key
   * server and returns the KEM shared secret. The HPKE key schedule and the
   * AEAD stay in the front end, which keeps the context for the second
   * ClientHello after a HelloRetryRequest.
   */
  echPrivateKey(config: EchConfig): EchPrivateKey {
    const keyId = echKeyId(config.kemId, config.publicKey);
    const kem = config.kemId;
    return { kem, publicKey: config.publicKey, decap: (enc) => this.decap(keyId, kem, enc) };
  }

  /**
   * A CertificateVerify signer for the certificate `certPem` (its leaf's
   * public key names the key): the `sign` of a `CertificateKeyPair`.
   */
  signer(certPem: string | Uint8Array): (scheme: number, data: Uint8Array) => Promise<Uint8Array> {
    const text = typeof certPem === 'string' ? certPem : Buffer.from(certPem).toString('latin1');
    const first = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(text)?.[0];
    const leaf = new X509Certificate(first ?? Buffer.from(certPem));
    const keyId = tlsKeyId(leaf.publicKey);
    return (scheme, data) => this.sign(keyId, scheme, data);
  }

  /** `decap` on a key server: the KEM shared secret for `enc`. */
  async decap(keyId: Uint8Array, kem: number, enc: Uint8Array): Promise<Uint8Array> {
    const r = await this.#request('decap', KeylessOp.decap, keyId, kem, enc);
    // An enc that is not a valid point cannot open: a decryption failure
    // (the ClientHello is then rejected), not an outage.
    if (r.status === KeylessStatus.cryptoFailed) throw new DecryptError(`keyless decap failed: ${Buffer.from(r.payload).toString('utf8')}`);
    return this.#result('decap', r);
  }

  /** `sign` on a key server: the CertificateVerify signature of `data`. */
  async sign(keyId: Uint8Array, scheme: number, data: Uint8Array): Promise<Uint8Array> {
    return this.#result('sign', await this.#request('sign', KeylessOp.sign, keyId, scheme, data));
  }

  /** A round trip to the first reachable key server. */
  async ping(): Promise<void> {
    this.#result('ping', await this.#request('ping', KeylessOp.ping, new Uint8Array(0), 0, new Uint8Array(0)));
  }

  #result(op: string, r: KeylessResponse): Uint8Array {
    if (r.status === KeylessStatus.ok) return r.payload;
    const status = keylessStatusName(r.status);
    const reason = Buffer.from(r.payload).toString('utf8');
    this.#log({ event: 'keyless_refused', op, status, reason });
    throw new KeylessError('ERR_KEYLESS_REFUSED', `keyless ${op} refused by the key server (${status}): ${reason}`, status);
  }

  /** Prometheus text for the admin endpoint. */
  renderMetrics(): string {
    const lines = [
      '# HELP ech_keyless_requests_total Key server operations by op and result (ok, refused, unavailable).',
      '# TYPE ech_keyless_requests_total counter',
    ];
    for (const [k, v] of this.#requests.values) {
      const [op, result] = k.split('|');
      lines.push(`ech_keyless_requests_total{op="${op}",result="${result}"} ${v}`);
    }
    lines.push('# HELP ech_keyless_server_up Whether a connection to the key server is up (1) or not (0).', '# TYPE ech_keyless_server_up gauge');
    for (const s of this.#slots) lines.push(`ech_keyless_server_up{server="${s.label}"} ${s.up ? 1 : 0}`);
    lines.push('# HELP ech_keyless_connect_failures_total Failed connection attempts by key server.', '# TYPE ech_keyless_connect_failures_total counter');
    for (const [k, v] of this.#reconnects.values) lines.push(`ech_keyless_connect_failures_total{server="${k}"} ${v}`);
    lines.push(
      '# HELP ech_keyless_request_seconds Time of successful key server operations.',
      '# TYPE ech_keyless_request_seconds summary',
      `ech_keyless_request_seconds_sum ${this.#latencySum}`,
      `ech_keyless_request_seconds_count ${this.#latencyCount}`,
    );
    return `${lines.join('\n')}\n`;
  }

  /** Count of operations by `op|result`, for tests. */
  requestCount(op: string, result: 'ok' | 'refused' | 'unavailable'): number {
    return this.#requests.values.get(`${op}|${result}`) ?? 0;
  }

  /** Close every connection; later operations fail at once. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#keepalive);
    for (const s of this.#slots) {
      clearTimeout(s.timer);
      for (const c of s.conns) {
        c.failAll(new KeylessError('ERR_KEYLESS_UNAVAILABLE', 'keyless client closed'));
        c.socket.destroy();
      }
      s.conns.clear();
      s.up = false;
    }
    this.#wake();
  }

  // ------------------------------------------------------------ requests

  async #request(op: string, code: number, keyId: Uint8Array, param: number, payload: Uint8Array): Promise<KeylessResponse> {
    const t0 = performance.now();
    const deadline = t0 + this.#o.timeoutMs;
    let lastError = 'no key server reachable';
    const failed = new Set<Slot>();
    // Bounded: each pass either sends on a ready connection (whose loss
    // removes it) or waits for a state change; both end by the deadline.
    for (let attempt = 0; attempt < 4 * this.#slots.length * this.#o.connectionsPerServer + 4; attempt++) {
      if (this.#closed) break;
      const left = deadline - performance.now();
      if (left <= 0) break;
      const conn = this.#pick(failed);
      if (!conn) {
        if (!this.#slots.some((s) => s.connecting())) break; // nothing up, nothing on the way: fail fast
        await this.#waitForChange(left);
        continue;
      }
      // With another key server ready, give this one half the deadline, so
      // a silent server still leaves time to ask the next.
      const mine = this.#slotOf(conn);
      const others = this.#slots.some((s) => s !== mine && s.readyConn() !== undefined);
      const attemptMs = others ? Math.min(left, this.#o.timeoutMs / 2) : left;
      try {
        const r = await this.#send(conn, code, keyId, param, payload, attemptMs);
        this.#requests.add(`${op}|${r.status === KeylessStatus.ok ? 'ok' : 'refused'}`);
        if (r.status === KeylessStatus.ok) {
          this.#latencySum += (performance.now() - t0) / 1000;
          this.#latencyCount++;
        }
        return r;
      } catch (e) {
        if (!(e instanceof ConnectionLost)) throw e;
        lastError = e.message;
        if (mine) failed.add(mine);
      }
    }
    this.#requests.add(`${op}|unavailable`);
    const ms = Math.round(performance.now() - t0);
    this.#log({ event: 'keyless_unavailable', op, elapsedMs: ms, timeoutMs: this.#o.timeoutMs, reason: lastError, servers: this.status() });
    throw new KeylessError('ERR_KEYLESS_UNAVAILABLE', `keyless ${op}: no key server answered within ${this.#o.timeoutMs} ms (${lastError})`);
  }

  /** The least-loaded ready connection of the first key server up, preferring those not in `failed`. */
  #pick(failed: ReadonlySet<Slot>): Connection | undefined {
    let fallback: Connection | undefined;
    for (const s of this.#slots) {
      const c = s.readyConn();
      if (!c) continue;
      if (!failed.has(s)) return c;
      fallback ??= c;
    }
    return fallback;
  }

  #send(conn: Connection, op: number, keyId: Uint8Array, param: number, payload: Uint8Array, timeoutMs: number): Promise<KeylessResponse> {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    return new Promise<KeylessResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.pending.delete(id);
        // A key server that does not answer is treated as down: its
        // connection is dropped (and re-established in the background), so
        // the next operation goes to another server.
        const slot = this.#slotOf(conn);
        this.#log({ event: 'keyless_timeout', server: slot?.label, timeoutMs: Math.round(timeoutMs) });
        for (const c of slot?.conns ?? [conn]) c.socket.destroy();
        reject(new ConnectionLost(`no answer within ${Math.round(timeoutMs)} ms`));
      }, timeoutMs);
      conn.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      conn.socket.write(encodeRequest({ op, id, keyId, param, payload }));
    });
  }

  #slotOf(conn: Connection): Slot | undefined {
    return this.#slots.find((s) => s.conns.has(conn));
  }

  #waitForChange(ms: number): Promise<void> {
    return new Promise<void>((res) => {
      // Not unref'd: a caller waiting on a deadline keeps the process alive until it passes.
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        res();
      }
      this.#waiters.push(done);
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  // --------------------------------------------------------- connections

  #fill(slot: Slot): void {
    while (!this.#closed && slot.conns.size < this.#o.connectionsPerServer) this.#connect(slot);
  }

  #connect(slot: Slot): void {
    const a = slot.address;
    const socket = tls.connect({
      host: a.host,
      port: a.port,
      servername: a.serverName ?? a.host,
      cert: this.#o.cert,
      key: this.#o.key,
      ca: this.#o.ca,
      minVersion: 'TLSv1.3',
      // The key server's name is checked even when `host` is an address.
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(a.serverName ?? a.host, cert),
    });
    const conn = new Connection(socket);
    slot.conns.add(conn);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const connectTimer = setTimeout(() => socket.destroy(new Error('connect timeout')), Math.max(this.#o.timeoutMs, 1000));
    connectTimer.unref();
    const decoder = new FrameDecoder();
    let error: string | undefined;
    // Ready only once a ping came back: in TLS 1.3 the client's handshake
    // completes before the key server has checked the client certificate,
    // so a refused certificate shows up only as the connection closing.
    const helloId = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    socket.once('secureConnect', () => {
      conn.pending.set(helloId, { resolve: () => onReady(), reject: () => undefined });
      socket.write(encodeRequest({ op: KeylessOp.ping, id: helloId, keyId: new Uint8Array(0), param: 0, payload: new Uint8Array(0) }));
    });
    const onReady = () => {
      if (socket.destroyed) return;
      clearTimeout(connectTimer);
      conn.ready = true;
      slot.failures = 0;
      if (!slot.up) {
        slot.up = true;
        this.#log({ event: 'keyless_server_up', server: slot.label });
      }
      this.#wake();
    };
    socket.on('data', (chunk: Buffer) => {
      let bodies: Uint8Array[];
      try {
        bodies = decoder.push(chunk);
        for (const b of bodies) {
          const r = decodeResponse(b);
          const p = conn.pending.get(r.id);
          if (p) {
            conn.pending.delete(r.id);
            p.resolve(r);
          }
        }
      } catch (e) {
        socket.destroy(e as Error);
      }
    });
    socket.on('error', (e) => {
      error = (e as NodeJS.ErrnoException).code ?? e.message;
    });
    socket.once('close', () => {
      clearTimeout(connectTimer);
      const wasReady = conn.ready;
      conn.ready = false;
      slot.conns.delete(conn);
      conn.failAll(new ConnectionLost(`connection to ${slot.label} lost${error ? ` (${error})` : ''}`));
      if (!wasReady) {
        slot.failures++;
        this.#reconnects.add(slot.label);
      }
      const stillUp = [...slot.conns].some((c) => c.ready);
      if (slot.up && !stillUp) {
        slot.up = false;
        this.#log({ event: 'keyless_server_down', server: slot.label, error: error ?? null });
      } else if (!wasReady && slot.failures === 1) {
        this.#log({ event: 'keyless_connect_failed', server: slot.label, error: error ?? null });
      }
      this.#wake();
      this.#schedule(slot);
    });
  }

  /** Reconnect after a backoff: min × 2^(failures-1), capped, with ±20 % jitter. */
  #schedule(slot: Slot): void {
    if (this.#closed || slot.timer) return;
    const base = slot.failures === 0 ? 0 : Math.min(this.#o.reconnectMaxMs, this.#o.reconnectMinMs * 2 ** Math.min(20, slot.failures - 1));
    const delay = base * (0.8 + Math.random() * 0.4);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      this.#fill(slot);
    }, delay);
    slot.timer.unref();
  }
}
