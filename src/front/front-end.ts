/**
 * The client-facing front end (DESIGN.md, "Data flow of one connection"):
 * read the first flight, decrypt ClientHelloOuter once, route by the inner
 * server name (and ALPN), then either pass the connection through to an
 * ECH-aware backend (split mode) or terminate TLS with this library's engine
 * (shared mode) and hand the plaintext to the route: the ech-status page, a
 * TCP or TLS backend, or a handler in code. Rejected and GREASE connections
 * get the public name's handshake with retry_configs.
 *
 * @module
 */
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import { EchError } from '../wire/alert.js';
import { isPromiseLike } from '../wire/thenable.js';
import { type DecryptResult, decryptClientHelloNow } from '../ech/decrypt.js';
import type { EchKeySet } from '../keys/key-set.js';
import { type EchServerOptions, type ServerConfig, resolveServerConfig } from '../tls13/config.js';
import { TlsSocket } from '../tls13/socket.js';
import { ServerSession } from '../tls13/session.js';
import { createEchHook, type EchStatus } from '../tls13/ech-hook.js';
import type { CertificateKeyPair } from '../tls13/certificates.js';
import { alertRecord } from './alerts.js';
import { echStatusHandler, serveEchStatus } from './ech-status.js';
import { type FirstFlight, readFirstFlightThen } from './first-flight.js';
import { type LogSink, silent } from './log.js';
import { FrontEndMetrics } from './metrics.js';
import { type PassthroughTarget, passthrough, passthroughRaw } from './passthrough.js';
import { encodeProxyV2 } from './proxy-protocol.js';
import { type RouteMatch, RoutingTable } from './routes.js';
import { Tls12Terminator } from './tls12.js';
import { isTls12OnlyMessage } from './tls12-scan.js';
import { type BackendPool, type BackendSpec, type BalancePolicy, type HealthCheckOptions, type SelectFunction, connectBackend, routePools } from './pool.js';

/**
 * What a route does with a connection.
 * @group Front end
 */
export type RouteAction =
  /** Terminate and answer with the ech-status page. */
  | { respond: 'ech-status' }
  /** Split mode: forward ClientHelloInner to an ECH-aware backend and relay. */
  | { passthrough: PassthroughTarget }
  /** Terminate, then relay the plaintext to a TCP backend. */
  | { forward: { host: string; port: number; proxyProtocol?: boolean } }
  /** Terminate, then re-encrypt with node:tls to a legacy TLS backend. */
  | {
      forwardTls: {
        host: string;
        port: number;
        /** CA certificates (PEM) the backend's certificate must chain to. */
        ca?: string | string[];
        /** SNI and name to verify; default the route's server name. */
        servername?: string;
        rejectUnauthorized?: boolean;
        proxyProtocol?: boolean;
      };
    }
  /** Terminate, then call a function with the plaintext socket. */
  | { handler: (socket: TerminatedSocket, info: ConnectionInfo) => void };

/**
 * A terminated connection as a route gets it: the engine's {@link TlsSocket}
 * (TLS 1.3, with ECH), or Node's `tls.TLSSocket` for a client that speaks
 * only TLS 1.2 (`FrontEndOptions.tls12`; `getProtocol()` tells them apart).
 * @group Front end
 */
export type TerminatedSocket = TlsSocket | tls.TLSSocket;

/**
 * A route: a name (and optional ALPN) to match, an action, and for
 * terminating actions the certificate to present.
 * @group Front end
 */
export interface FrontEndRoute extends RouteMatch {
  action: RouteAction;
  /** PEM certificate chain and key for this name (terminating actions). */
  cert?: string;
  key?: string;
  /**
   * Keyless mode: signs this certificate's CertificateVerify in place of
   * `key` (a key server holds the key; see `KeylessClient.signer`).
   */
  sign?: CertificateKeyPair['sign'];
  /**
   * A pool of backends for a `passthrough`, `forward` or `forwardTls`
   * action, in place of the action's single host and port (src/front/pool.ts).
   */
  backends?: BackendSpec[];
  /** How the pool picks a backend (default `round-robin`). */
  balance?: BalancePolicy;
  /** Active health checks of the pool's backends (default: passive detection only). */
  healthCheck?: HealthCheckOptions;
  /** A policy of the embedding program; replaces `balance`. */
  select?: SelectFunction;
}

/**
 * What the front end knows about a connection when it hands it to a route.
 * @group Front end
 */
export interface ConnectionInfo {
  echStatus: EchStatus;
  outerServerName: string | undefined;
  /** The inner name when ECH was accepted. */
  innerServerName: string | undefined;
  /** The route's server name, or `public` for the public-name handshake. */
  route: string;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** ALPN protocols the client offered (in ClientHelloInner when ECH was accepted). */
  alpnOffered: readonly string[];
}

/**
 * Limits that keep one client from hurting the others.
 * @group Front end
 */
export interface FrontEndLimits {
  /** Close a connection that has not sent a whole ClientHello after this many ms (default 10000). */
  firstFlightTimeoutMs?: number;
  /** Abort a TLS handshake not finished after this many ms (default 30000). */
  handshakeTimeoutMs?: number;
  /** Largest ClientHello accepted, bytes (default 65536). */
  maxClientHelloBytes?: number;
  /** Connections still in their handshake at once; more are closed at once (default 10000). */
  maxConcurrentHandshakes?: number;
}

/**
 * Options of {@link EchFrontEnd}.
 * @group Front end
 */
export interface FrontEndOptions {
  keys: EchKeySet;
  /** Certificate for the public name, and what to do with its connections (default the ech-status page). */
  publicName: CertificateKeyPair & { action?: RouteAction };
  routes: FrontEndRoute[];
  /** ALPN protocols for terminated connections (default `['http/1.1']`). */
  ALPNProtocols?: string[];
  /** Groups, Node's `ecdhCurve` syntax (e.g. `'P-256'`). */
  ecdhCurve?: string;
  /** More engine options (tickets, ciphers...). */
  tls?: Partial<EchServerOptions>;
  trialDecryption?: boolean;
  limits?: FrontEndLimits;
  /** Structured log sink (default: none). */
  log?: LogSink;
  /** Put inner server names into logs (default false: they are what ECH hides). */
  logInnerNames?: boolean;
  /**
   * Serve clients that offer only TLS 1.2 (no ECH possible) on the public
   * name and the terminating routes, through node:tls (default true); with
   * `false` they get a `protocol_version` alert. Passthrough routes pass
   * them to the backend either way.
   */
  tls12?: boolean;
  /** Put the client's address and port (`remote`, `remotePort`) into connection logs (default true). */
  logClientAddress?: boolean;
}

interface Compiled {
  keys: EchKeySet;
  table: RoutingTable<FrontEndRoute>;
  publicRoute: FrontEndRoute;
  engine: ServerConfig;
  /** TLS 1.2 clients' terminator; undefined when `tls12: false`. */
  tls12: Tls12Terminator | undefined;
  options: FrontEndOptions;
  /** Backend pools of the routes that connect to backends. */
  pools: Map<FrontEndRoute, BackendPool>;
  /** {@link routeLabel} of each route, made once per configuration. */
  labels: Map<FrontEndRoute, string>;
}

function compile(options: FrontEndOptions): Compiled {
  const certificates: CertificateKeyPair[] = [];
  for (const r of options.routes) {
    const terminates = !('passthrough' in r.action);
    if (terminates && (!r.cert || (!r.key && !r.sign))) throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', `route ${r.serverName}: a terminating route needs cert and key (or sign)`);
    if (r.cert && r.key) certificates.push({ cert: r.cert, key: r.key });
    else if (r.cert && r.sign) certificates.push({ cert: r.cert, sign: r.sign });
  }
  // Keyless public name (no key, a sign function): it goes first in
  // `certificates`, so it stays the default certificate.
  const pn = options.publicName;
  const keylessPublic = pn.key === undefined && pn.sign !== undefined;
  const engine = resolveServerConfig({
    sessionTimeout: 300,
    ...options.tls,
    ...(keylessPublic ? {} : { key: pn.key, cert: pn.cert as string }),
    certificates: keylessPublic ? [{ cert: pn.cert, sign: pn.sign }, ...certificates] : certificates,
    ALPNProtocols: options.ALPNProtocols ?? ['http/1.1'],
    ...(options.ecdhCurve ? { ecdhCurve: options.ecdhCurve } : {}),
    handshakeTimeout: options.limits?.handshakeTimeoutMs ?? 30_000,
  });
  const publicRoute: FrontEndRoute = { serverName: 'public', action: options.publicName.action ?? { respond: 'ech-status' } };
  const labels = new Map<FrontEndRoute, string>([[publicRoute, 'public']]);
  for (const [i, r] of options.routes.entries()) if (!labels.has(r)) labels.set(r, options.logInnerNames ? r.serverName : `routes[${i}]`);
  return {
    keys: options.keys,
    table: new RoutingTable(options.routes),
    publicRoute,
    labels,
    engine,
    tls12:
      options.tls12 === false
        ? undefined
        : new Tls12Terminator({
            certificates: [pn, ...certificates],
            ALPNProtocols: options.ALPNProtocols ?? ['http/1.1'],
            ...(options.ecdhCurve ? { ecdhCurve: options.ecdhCurve } : {}),
            handshakeTimeoutMs: options.limits?.handshakeTimeoutMs ?? 30_000,
          }),
    options,
    pools: new Map(),
  };
}

/**
 * The ECH front end: a `net.Server` whose connections are decrypted, routed
 * and passed through or terminated. Reconfigure it live with
 * {@link EchFrontEnd.update}; stop it with {@link EchFrontEnd.close}.
 * @group Front end
 * @example
 * ```ts
 * const fe = new EchFrontEnd({
 *   keys: await loadEchKeyDirectory('/etc/ech'),
 *   publicName: { cert: coverCert, key: coverKey },
 *   routes: [
 *     { serverName: 'alpha.example', cert, key, action: { respond: 'ech-status' } },
 *     { serverName: 'beta.example', action: { passthrough: { host: '10.0.0.2', port: 443 } } },
 *   ],
 * });
 * await fe.listen(443);
 * ```
 */
export class EchFrontEnd {
  /** The listening server. */
  readonly server: net.Server;
  /** Counters for the admin endpoint. */
  readonly metrics: FrontEndMetrics;
  #c: Compiled;
  #log: LogSink;
  #handshaking = 0;
  #draining = false;
  readonly #live = new Set<Socket>();
  readonly #apps = new Map<string, http.Server>();

  constructor(options: FrontEndOptions, metrics = new FrontEndMetrics()) {
    this.#c = compile(options);
    this.#log = options.log ?? silent;
    this.metrics = metrics;
    this.#c.pools = this.#pools(this.#c);
    metrics.backendGauges = () =>
      [...this.#c.pools.values()].flatMap((p) => p.backends.map((b) => ({ route: p.label, backend: b.address, up: b.state === 'up', active: b.active })));
    // allowHalfOpen: a client that half-closes right after its request
    // (`socket.end(request)`) must still get the answer. Without it Node ends
    // the socket's write side as soon as the client's FIN is read, and the
    // answer (relayed from a passthrough backend, or encrypted by a
    // TlsSocket) is dropped. Each path ends the write side itself.
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.#connection(s));
  }

  /** The key set in use. */
  get keys(): EchKeySet {
    return this.#c.keys;
  }

  /** True once {@link EchFrontEnd.close} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#live.size;
  }

  /**
   * Replace keys, certificates and routes. New connections use the new
   * configuration; connections already open keep the one they started with.
   * Throws (and changes nothing) when the new options are unusable.
   */
  update(options: Partial<FrontEndOptions>): void {
    const next = compile({ ...this.#c.options, ...options });
    if (options.log) this.#log = options.log;
    // Backends still configured keep their health state; removed ones get
    // no new connections (open ones run to completion).
    next.pools = this.#pools(next, this.#c.pools);
    for (const p of this.#c.pools.values()) p.close();
    this.#c = next;
    this.#apps.clear();
  }

  /** Listen; resolves with the bound address. */
  listen(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    return new Promise((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(port, host, () => {
        this.server.off('error', rej);
        const a = this.server.address() as AddressInfo;
        this.#log({ event: 'listening', host: a.address, port: a.port });
        res({ host: a.address, port: a.port });
      });
    });
  }

  /**
   * Stop accepting, let open connections finish for up to `drainMs`, then
   * close what is left. Resolves when every connection is closed.
   */
  async close(drainMs = 0): Promise<void> {
    this.#draining = true;
    for (const p of this.#c.pools.values()) p.close();
    const closed = new Promise<void>((res) => this.server.close(() => res()));
    if (this.#live.size > 0 && drainMs > 0) {
      this.#log({ event: 'draining', connections: this.#live.size, deadlineMs: drainMs });
      const deadline = Date.now() + drainMs;
      while (this.#live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, Math.min(50, deadline - Date.now())));
    }
    for (const s of this.#live) s.destroy();
    for (const app of this.#apps.values()) app.closeAllConnections();
    await closed;
    // net.Server's close callback runs when the handles are gone, a tick
    // before the sockets' own 'close' events: wait for those, so
    // `connections` is 0 once this resolves.
    for (let i = 0; this.#live.size > 0 && i < 100; i++) await new Promise((r) => setTimeout(r, 10));
    this.#log({ event: 'stopped' });
  }

  #pools(c: Compiled, previous?: Map<FrontEndRoute, BackendPool>): Map<FrontEndRoute, BackendPool> {
    return routePools(c.options.routes, { label: (r) => routeLabel(c, r), log: this.#log, metrics: this.metrics, ...(previous ? { previous } : {}) });
  }

  /**
   * A connected socket to a backend of the route's pool (failing over
   * before any byte is sent), or undefined after closing the client when
   * no backend could be reached (counted; logged by the pool per state change).
   */
  async #backend(route: FrontEndRoute, info: ConnectionInfo, client: { destroyed: boolean; destroy(): void }, inHandshake = false): Promise<Socket | undefined> {
    const pool = this.#c.pools.get(route);
    if (!pool) return undefined;
    try {
      const { socket } = await connectBackend(pool, {
        serverName: info.innerServerName ?? info.outerServerName,
        alpn: info.alpnOffered,
        echStatus: info.echStatus,
        remoteAddress: info.remoteAddress,
      });
      if (!client.destroyed) return socket;
      socket.destroy();
    } catch (e) {
      // Passthrough: the client's handshake ends here, as a handshake error.
      if (inHandshake) this.metrics.handshakeError(e instanceof EchError ? e.code : ((e as NodeJS.ErrnoException).code ?? 'ERR_SOCKET'));
      client.destroy();
    }
    return undefined;
  }

  /** {@link EchFrontEnd.#app}, bound once. */
  readonly #appOf = (site: string): http.Server => this.#app(site);

  #app(site: string): http.Server {
    let app = this.#apps.get(site);
    if (!app) {
      app = http.createServer(echStatusHandler(site));
      app.on('clientError', (_e, s) => s.destroy());
      this.#apps.set(site, app);
    }
    return app;
  }

  #fail(socket: Socket, err: unknown, phase: string): void {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = e instanceof EchError ? e.code : ((e as NodeJS.ErrnoException).code ?? 'ERR_SOCKET');
    const client = this.#client(socket); // before destroy() forgets the peer
    this.metrics.handshakeError(code);
    this.metrics.connection('error');
    if (e instanceof EchError && code !== 'ERR_TIMEOUT' && code !== 'ERR_ALERT_RECEIVED' && !socket.destroyed) {
      this.metrics.alertSent(e.alert);
      socket.end(alertRecord(e.alert));
      // Read (and drop) what the client still sends, so that the socket
      // closes on its FIN rather than with a reset that could cut the alert.
      socket.resume();
      setTimeout(() => socket.destroy(), 1000).unref();
    } else {
      socket.destroy();
    }
    this.#log({ event: 'connection_error', phase, code, alert: e instanceof EchError ? e.alert : undefined, ...client });
  }

  /** The client's address and port for a log line, unless `logClientAddress: false`. */
  #client(socket: Socket): { remote?: string; remotePort?: number } {
    return this.#withClient({}, socket, this.#c) as { remote?: string; remotePort?: number };
  }

  /** {@link EchFrontEnd.#client}, added to a log line's fields `into` (no object of its own), under config `c`. */
  #withClient(into: Record<string, unknown>, socket: Socket, c: Compiled): Record<string, unknown> {
    if (c.options.logClientAddress !== false) {
      into['remote'] = socket.remoteAddress;
      into['remotePort'] = socket.remotePort;
    }
    return into;
  }

  /** The connection's handshake is over (done, failed or closed): it no longer counts against `maxConcurrentHandshakes`. */
  #handshakeDone(socket: Socket): void {
    const t = socket as Tracked;
    if (t[kHandshaking]) {
      t[kHandshaking] = false;
      this.#handshaking--;
    }
  }

  /** Every connection's `close` listener (see {@link EchFrontEnd.#connection}). */
  readonly #socketClosed = ((fe: EchFrontEnd) =>
    function (this: Socket): void {
      fe.#live.delete(this);
      fe.metrics.active(-1);
      fe.#handshakeDone(this);
    })(this);

  /** A new connection: limits, then the first flight, then the ClientHello decrypted, then {@link EchFrontEnd.#route} (callbacks, not awaits: no promise per step). */
  #connection(socket: Socket): void {
    const started = process.hrtime.bigint();
    const c = this.#c;
    const limits = c.options.limits ?? {};
    this.#live.add(socket);
    this.metrics.active(1);
    const handshakeDone = () => this.#handshakeDone(socket);
    // One listener for the connection's whole life (the gauge, the live set
    // and the handshake count); `close` comes once. One function for every
    // connection, which keeps nothing of this one: Node keeps a closed
    // socket (through its handle) until the next mark-compact, and what its
    // listeners referred to would be kept, through every scavenge, with it.
    socket.on('close', this.#socketClosed);
    socket.on('error', ignore);
    if (this.#draining || this.#handshaking >= (limits.maxConcurrentHandshakes ?? 10_000)) {
      this.metrics.handshakeError(this.#draining ? 'DRAINING' : 'TOO_MANY_HANDSHAKES');
      socket.destroy();
      return;
    }
    this.#handshaking++;
    (socket as Tracked)[kHandshaking] = true;

    const failHello = (e: unknown) => {
      handshakeDone();
      this.#fail(socket, e, 'client_hello');
    };
    readFirstFlightThen(socket, { timeoutMs: limits.firstFlightTimeoutMs ?? 10_000, maxClientHelloBytes: limits.maxClientHelloBytes ?? 65536 }, (err, first) => {
      if (err) return failHello(err);
      const decrypted = (result: DecryptResult) => {
        let tls12Only: boolean;
        try {
          // A scan of the raw hello, not result.outer: an accepted connection
          // never needs ClientHelloOuter decoded.
          tls12Only = isTls12OnlyMessage(first!.message);
        } catch (e) {
          return failHello(e);
        }
        this.#route(socket, c, first!, result, tls12Only, started, handshakeDone);
      };
      // With local keys the result comes back at once (no promise, no
      // microtask); a remote (keyless) key makes it a promise.
      let r: DecryptResult | Promise<DecryptResult>;
      try {
        r = decryptClientHelloNow(first!.message, c.keys, { trialDecryption: c.options.trialDecryption ?? false });
      } catch (e) {
        return failHello(e);
      }
      if (isPromiseLike(r)) r.then(decrypted, failHello);
      else decrypted(r);
    });
  }

  /** Route a connection whose ClientHello was read and decrypted: split mode, TLS 1.2, or our engine. */
  #route(socket: Socket, c: Compiled, first: FirstFlight, result: DecryptResult, tls12Only: boolean, started: bigint, handshakeDone: () => void): void {
    const status: EchStatus = result.status === 'rejected' ? (result.reason === 'no-matching-config' ? 'grease' : 'rejected') : result.status;
    // Accepted: the inner name decides. Otherwise the handshake runs on
    // ClientHelloOuter (RFC 9849 §7.1: "proceed with the connection using
    // ClientHelloOuter"), so the outer name decides — except that a rejected
    // hello cannot go to a split-mode backend (a backend "MUST abort" on an
    // outer-type extension, §7): it is terminated here for the public name,
    // with retry_configs. GREASE goes to the backend only where the route
    // says so (`forwardGrease`: the backend ignores the extension).
    const route =
      result.status === 'accepted' ? c.table.lookup(result.innerServerName, result.alpn) : c.table.lookup(result.outerServerName, alpnOffered(result));
    const chosen = route && passthroughOk(route, status) ? route : c.publicRoute;
    const label = routeLabel(c, chosen);
    const logInfo = this.#withClient(
      {
        status,
        outer: result.outerServerName,
        route: label,
        inner: c.options.logInnerNames && result.status === 'accepted' ? result.innerServerName : undefined,
      },
      socket,
      c,
    );

    // Split mode: the backend terminates TLS.
    if ('passthrough' in chosen.action) {
      void this.#split(socket, chosen, chosen.action.passthrough, status, result, first, label, logInfo, started, handshakeDone);
      return;
    }

    // A client offering only TLS 1.2 (so no ECH): node:tls terminates it
    // with the certificate our engine would pick, then the route as usual.
    if (tls12Only && c.tls12?.serves(result.outerServerName)) {
      // Before node:tls takes the socket over (its address is read here, as it always was).
      const info = connectionInfo(status, result, chosen, socket);
      c.tls12.accept(socket, first.raw, result.outerServerName).then(
        (s) => {
          handshakeDone();
          this.metrics.connection('tls12');
          this.metrics.handshakeSeconds(Number(process.hrtime.bigint() - started) / 1e9);
          this.#log({ event: 'handshake', ...logInfo, protocol: s.getProtocol(), alpn: s.alpnProtocol || null, cipher: s.getCipher()?.name, group: (s.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? null });
          this.#deliver(s, chosen, () => info, label);
        },
        (e: Error) => {
          handshakeDone();
          const code = (e as NodeJS.ErrnoException).code ?? 'ERR_SOCKET';
          this.metrics.connection('error');
          this.metrics.handshakeError(code);
          this.#log({ event: 'handshake_error', ...logInfo, protocol: 'TLSv1.2', code });
        },
      );
      return;
    }

    // Shared mode: terminate with our engine, continuing from the ClientHello already read.
    const engine: ServerConfig = { ...c.engine, onClientHello: createEchHook({ keys: c.keys, first: result }) };
    const onHandshakeError = (e: Error) => {
      handshakeDone();
      const code = e instanceof EchError ? e.code : 'ERR_SOCKET';
      this.metrics.connection('error');
      this.metrics.handshakeError(code);
      if (e instanceof EchError && code !== 'ERR_ALERT_RECEIVED' && code !== 'ERR_PROTOCOL') this.metrics.alertSent(e.alert);
      this.#log({ event: 'handshake_error', ...logInfo, code, alert: e instanceof EchError ? e.alert : undefined });
    };
    const onSecure = (s: TlsSocket | ServerSession) => {
      handshakeDone();
      this.metrics.connection(status);
      this.metrics.handshakeSeconds(Number(process.hrtime.bigint() - started) / 1e9);
      this.#log({ event: 'handshake', ...logInfo, alpn: s.alpnProtocol || null, cipher: s.getCipher()?.name, group: s.group ?? null });
    };
    // After the handshake: the client's ech_required alert is counted, not
    // treated as an error (RFC 9849 §7.1: servers "can measure occurrences
    // of the "ech_required" alert"). The socket (or session) closes itself.
    const onTlsError = (e: Error) => {
      if (e instanceof EchError && e.alert === 'ech_required') {
        this.metrics.echRequired();
        this.#log({ event: 'ech_required', ...logInfo });
      }
    };
    const a = chosen.action;
    if ('respond' in a) {
      // The ech-status page: no stream unless the request needs http.Server
      // (src/tls13/session.ts, serveEchStatus).
      new ServerSession(socket, engine, { clientHello: first.message, initialData: first.rest }, {
        secure: (s) => {
          onSecure(s);
          serveEchStatus(s, this.#site(chosen), this.#appOf);
        },
        handshakeError: onHandshakeError,
        error: onTlsError,
      });
      return;
    }
    // A relay keeps the client's write side open after the client's
    // close_notify, for the backend's answer; handlers close like a
    // net.Socket does.
    const relays = 'forward' in a || 'forwardTls' in a;
    const tlsSocket = new TlsSocket(socket, engine, { clientHello: first.message, initialData: first.rest, allowHalfOpen: relays });
    tlsSocket.once('tlsClientError', onHandshakeError);
    tlsSocket.once('secure', () => {
      onSecure(tlsSocket);
      this.#deliver(tlsSocket, chosen, () => connectionInfo(status, result, chosen, socket), label);
    });
    tlsSocket.on('tlsError', (e: Error) => {
      onTlsError(e);
      tlsSocket.destroy();
    });
  }

  /** Split mode: connect to the route's backend and relay, the backend terminating TLS. */
  async #split(
    socket: Socket,
    chosen: FrontEndRoute,
    target: PassthroughTarget,
    status: EchStatus,
    result: DecryptResult,
    first: FirstFlight,
    label: string,
    logInfo: Record<string, unknown>,
    started: bigint,
    handshakeDone: () => void,
  ): Promise<void> {
    this.metrics.connection(status);
    const up = await this.#backend(chosen, connectionInfo(status, result, chosen, socket), socket, true);
    if (!up) return handshakeDone();
    const r =
      result.status === 'accepted'
        ? await passthrough(socket, result, { ...target, socket: up }, first.rest, first.recordVersion, handshakeDone)
        : await passthroughRaw(socket, first.raw, { ...target, socket: up }, handshakeDone);
    handshakeDone();
    this.metrics.handshakeSeconds(Number(process.hrtime.bigint() - started) / 1e9);
    this.metrics.relayed(label, 'client_to_backend', r.bytesFromClient);
    this.metrics.relayed(label, 'backend_to_client', r.bytesFromBackend);
    if (r.error) {
      const code = r.error instanceof EchError ? r.error.code : ((r.error as NodeJS.ErrnoException).code ?? 'ERR_SOCKET');
      this.metrics.handshakeError(code);
      if (r.error instanceof EchError) this.metrics.alertSent(r.error.alert);
    }
    this.#log({ event: 'passthrough_closed', ...logInfo, helloRetry: r.helloRetry, error: r.error?.message });
  }

  /** The site an ech-status route reports: its server name, or the public name for the public route. */
  #site(route: FrontEndRoute): string {
    return route.serverName === 'public' ? (this.#c.keys.retryConfigs()[0]?.publicName ?? 'public name') : route.serverName;
  }

  #deliver(tlsSocket: TerminatedSocket, route: FrontEndRoute, infoOf: () => ConnectionInfo, label: string): void {
    const a = route.action;
    if ('respond' in a) {
      // One-shot requests are answered without an http.Server connection;
      // anything else goes to the site's http.Server (src/front/ech-status.ts).
      serveEchStatus(tlsSocket, this.#site(route), this.#appOf);
      return;
    }
    const info = infoOf();
    if ('handler' in a) {
      a.handler(tlsSocket, info);
    } else if ('forward' in a) {
      void this.#backend(route, info, tlsSocket).then((up) => {
        if (!up) return;
        if (a.forward.proxyProtocol) up.write(proxyHeader(tlsSocket));
        this.#relay(tlsSocket, up, label);
      });
    } else if ('forwardTls' in a) {
      const f = a.forwardTls;
      void this.#backend(route, info, tlsSocket).then((tcp) => {
        if (!tcp) return;
        if (f.proxyProtocol) tcp.write(proxyHeader(tlsSocket));
        const up = tls.connect({
          socket: tcp,
          servername: f.servername ?? route.serverName,
          ...(f.ca ? { ca: f.ca } : {}),
          rejectUnauthorized: f.rejectUnauthorized ?? true,
        });
        this.#relay(tlsSocket, up, label);
      });
    }
  }

  #relay(client: TerminatedSocket, up: net.Socket, route: string): void {
    let fromClient = 0;
    let fromBackend = 0;
    client.on('data', (d: Buffer) => (fromClient += d.length));
    up.on('data', (d: Buffer) => (fromBackend += d.length));
    client.pipe(up).pipe(client);
    const done = () => {
      up.destroy();
      client.destroy();
    };
    up.on('error', (e) => {
      this.#log({ event: 'backend_error', route, code: (e as NodeJS.ErrnoException).code, ...this.#client(client instanceof TlsSocket ? (client.socket as Socket) : client) });
      done();
    });
    up.on('close', () => client.end());
    client.on('close', () => {
      this.metrics.relayed(route, 'client_to_backend', fromClient);
      this.metrics.relayed(route, 'backend_to_client', fromBackend);
      up.end();
    });
  }
}

/**
 * A route as metrics and logs name it: its server name only when the
 * operator asked for inner names (`logInnerNames`), else its position in
 * the configuration (`routes[2]`), so a scrape of /metrics does not list the
 * names ECH hides.
 */
function routeLabel(c: Compiled, route: FrontEndRoute): string {
  return c.labels.get(route) ?? (route === c.publicRoute ? 'public' : c.options.logInnerNames ? route.serverName : `routes[${c.options.routes.indexOf(route)}]`);
}

/** The socket `error` listener: errors end the connection through `close`. */
function ignore(): void {}

/** Set on a connection's socket while its handshake counts against `maxConcurrentHandshakes`. */
const kHandshaking = Symbol('handshaking');
/** A connection's socket, with its handshake flag. */
type Tracked = Socket & { [kHandshaking]?: boolean };

/**
 * A split-mode route takes this connection: always without ECH, with ECH
 * only when accepted, GREASE only where the route says so (`forwardGrease`).
 */
function passthroughOk(r: FrontEndRoute, status: EchStatus): boolean {
  return !('passthrough' in r.action) || status === 'accepted' || status === 'not-offered' || (status === 'grease' && r.action.passthrough.forwardGrease === true);
}

/** What a route's handler or backend pool is told about the connection (made only for those). */
function connectionInfo(status: EchStatus, result: DecryptResult, route: FrontEndRoute, socket: Socket): ConnectionInfo {
  return {
    echStatus: status,
    outerServerName: result.outerServerName,
    innerServerName: result.status === 'accepted' ? result.innerServerName : undefined,
    route: route.serverName,
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    alpnOffered: result.status === 'accepted' ? result.alpn : alpnOffered(result),
  };
}

function alpnOffered(r: DecryptResult): string[] {
  const { outer } = r;
  const ext = outer.extensions.find((e) => e.type === 16);
  if (!ext) return [];
  const out: string[] = [];
  for (let i = 2; i < ext.data.length; ) {
    const n = ext.data[i]!;
    out.push(Buffer.from(ext.data.subarray(i + 1, i + 1 + n)).toString('latin1'));
    i += 1 + n;
  }
  return out;
}

function proxyHeader(s: TerminatedSocket): Uint8Array {
  const raw = s instanceof TlsSocket ? (s.socket as Socket) : s;
  return encodeProxyV2({
    sourceAddress: raw.remoteAddress ?? '0.0.0.0',
    sourcePort: raw.remotePort ?? 0,
    destinationAddress: raw.localAddress ?? '0.0.0.0',
    destinationPort: raw.localPort ?? 0,
  });
}
