/**
 * Backend pools: several backends behind one route, a balance policy
 * (round-robin, least-connections, client-hash, or a `select` function of
 * the embedding program), passive and active health checks, and
 * {@link connectBackend}: connect to a chosen backend, failing over to the
 * next one before any byte of the client is committed.
 *
 * @module
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { EchError } from '../wire/alert.js';
import type { LogSink } from './log.js';
import type { FrontEndMetrics } from './metrics.js';
import type { FrontEndRoute } from './front-end.js';

/**
 * One backend as configured: an address and a weight (default 1).
 * @group Front end
 */
export interface BackendSpec {
  host: string;
  port: number;
  /** Relative share of new connections (a positive whole number, default 1). */
  weight?: number;
}

/**
 * Built-in balance policies.
 * @group Front end
 */
export type BalancePolicy = 'round-robin' | 'least-connections' | 'client-hash';

/**
 * Active health checks of a pool. Each backend is probed every `intervalMs`
 * (a TCP connect; for `forwardTls` a TLS handshake verified as the route
 * verifies it); `fall` failures in a row mark it down, `rise` successes in a
 * row mark it up again.
 * @group Front end
 */
export interface HealthCheckOptions {
  /** Default 2000. */
  intervalMs?: number;
  /** A probe (and a connection attempt) slower than this fails. Default 1000. */
  timeoutMs?: number;
  /** Default 3. */
  fall?: number;
  /** Default 2. */
  rise?: number;
}

/** Back-off of a down backend without active checks: first retry, and the ceiling. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30_000;

/**
 * A backend of a pool, with its health state. Objects are kept across
 * reloads for backends still configured, so their state carries over.
 * @group Front end
 */
export class Backend {
  readonly host: string;
  readonly port: number;
  /** `host:port` (`[v6]:port`): how logs and metrics name it. */
  readonly address: string;
  weight: number;
  /** Health: `down` backends are skipped (until their back-off retry, without active checks). */
  state: 'up' | 'down' = 'up';
  /** Connections open through this backend now. */
  active = 0;
  /** Connections handed to this backend so far. */
  connections = 0;
  /** Failed connection attempts and probes so far. */
  connectFailures = 0;
  /** Failures (passive or active) in a row. */
  failsInRow = 0;
  /** Successful probes in a row while down. */
  risesInRow = 0;
  /** Without active checks: when a down backend may be tried again (ms since the epoch). */
  retryAt = 0;
  #backoff = RETRY_FIRST_MS;
  /** Smooth weighted round-robin state. */
  current = 0;

  constructor(spec: BackendSpec) {
    this.host = spec.host;
    this.port = spec.port;
    this.weight = spec.weight ?? 1;
    this.address = backendAddress(spec.host, spec.port);
  }

  /** Next back-off delay (doubling up to 30 s); reset when the backend is up. */
  nextBackoff(): number {
    const d = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, RETRY_MAX_MS);
    return d;
  }
  resetBackoff(): void {
    this.#backoff = RETRY_FIRST_MS;
  }
}

/**
 * `host:port`, with brackets around an IPv6 host.
 * @group Front end
 * @example
 * ```ts
 * backendAddress('::1', 443); // '[::1]:443'
 * ```
 */
export function backendAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * What a selection function sees for one connection.
 * @group Front end
 */
export interface SelectContext {
  /** The inner server name when ECH was accepted, else the outer one. */
  serverName: string | undefined;
  /** ALPN protocols the client offered (in ClientHelloInner when ECH was accepted). */
  alpn: readonly string[];
  /** `accepted`, `rejected`, `grease` or `not-offered`. */
  echStatus: string;
  /** The client's address. */
  remoteAddress: string | undefined;
  /** The pool, with every backend and its health state. */
  pool: BackendPool;
  /** Backends usable now: up (or due for a back-off retry) and not yet tried for this connection. */
  candidates: readonly Backend[];
  /** Backends already tried for this connection (failover), in order. */
  tried: readonly Backend[];
}

/**
 * A selection policy: the backend for a connection, or `undefined` for none
 * (the connection is then closed as when every backend is down). It may
 * return any backend of `ctx.pool`; one already in `ctx.tried` ends the
 * failover.
 * @group Front end
 */
export type SelectFunction = (ctx: SelectContext) => Backend | undefined;

/**
 * The built-in policies, as {@link SelectFunction}s (a custom `select` may
 * delegate to them).
 * @group Front end
 * @example
 * ```ts
 * const select: SelectFunction = (ctx) => (ctx.alpn.includes('h2') ? ctx.candidates[0] : balancePolicies['round-robin'](ctx));
 * ```
 */
export const balancePolicies: Record<BalancePolicy, SelectFunction> = {
  // Smooth weighted round-robin (as nginx): each pick adds every
  // candidate's weight to its running score, takes the highest and
  // subtracts the total from it.
  'round-robin': (ctx) => smoothWeighted(ctx.candidates),
  // Fewest open connections per unit of weight; ties by round-robin.
  'least-connections': (ctx) => {
    let best = Infinity;
    let ties: Backend[] = [];
    for (const b of ctx.candidates) {
      const load = b.active / b.weight;
      if (load < best) {
        best = load;
        ties = [b];
      } else if (load === best) ties.push(b);
    }
    return smoothWeighted(ties);
  },
  // Weighted rendezvous hashing of the client address: a client stays on
  // its backend while that one is up; when it goes, only its clients move,
  // each to its next-highest backend.
  'client-hash': (ctx) => {
    const who = ctx.remoteAddress ?? '';
    let best: Backend | undefined;
    let bestScore = -Infinity;
    for (const b of ctx.candidates) {
      const u = (fnv1a(`${who}|${b.address}`) + 1) / 4294967297;
      const score = b.weight / -Math.log(u);
      if (score > bestScore) {
        bestScore = score;
        best = b;
      }
    }
    return best;
  },
};

function smoothWeighted(list: readonly Backend[]): Backend | undefined {
  let total = 0;
  let best: Backend | undefined;
  for (const b of list) {
    b.current += b.weight;
    total += b.weight;
    if (!best || b.current > best.current) best = b;
  }
  if (best) best.current -= total;
  return best;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche (murmur3 fmix32): FNV alone differs little in the low bits.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * An active probe of one backend: resolves when it is healthy, rejects
 * otherwise; must give up when `signal` aborts.
 * @group Front end
 */
export type BackendProbe = (backend: Backend, timeoutMs: number, signal: AbortSignal) => Promise<void>;

/**
 * Options of {@link BackendPool}.
 * @group Front end
 */
export interface BackendPoolOptions {
  backends: readonly BackendSpec[];
  /** Default `round-robin`. Ignored when `select` is given. */
  balance?: BalancePolicy;
  /** A policy of the embedding program. */
  select?: SelectFunction;
  /** Active checks; without them only passive detection (failed connects) applies. */
  healthCheck?: HealthCheckOptions;
  /** Give up a connection attempt after this many ms (default 10000, at most `healthCheck.timeoutMs`). */
  connectTimeoutMs?: number;
  /** How logs and metrics name the route (never an inner name unless the operator asks). */
  label?: string;
  /** Active probe (default a TCP connect). */
  probe?: BackendProbe;
  log?: LogSink;
  metrics?: FrontEndMetrics;
  /** A pool this one replaces (a reload): backends with the same address keep their state. */
  previous?: BackendPool;
}

/**
 * The backends of one route and their health. Active checks (when
 * configured) run on unref'd timers until {@link BackendPool.close}.
 * @group Front end
 * @example
 * ```ts
 * const pool = new BackendPool({ backends: [{ host: '10.0.0.1', port: 443 }, { host: '10.0.0.2', port: 443, weight: 2 }] });
 * const { socket, backend } = await connectBackend(pool, { serverName: 'a.example', alpn: [], echStatus: 'accepted', remoteAddress: '192.0.2.7' });
 * ```
 */
export class BackendPool {
  readonly backends: readonly Backend[];
  readonly label: string;
  readonly balance: BalancePolicy;
  readonly select: SelectFunction;
  readonly fall: number;
  readonly rise: number;
  readonly connectTimeoutMs: number;
  readonly healthCheck: Required<HealthCheckOptions> | undefined;
  readonly #log: LogSink | undefined;
  readonly #metrics: FrontEndMetrics | undefined;
  readonly #probe: BackendProbe;
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #probing = false;
  #allDown = false;
  #closed = false;

  constructor(options: BackendPoolOptions) {
    if (options.backends.length === 0) throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', 'a backend pool needs at least one backend');
    const old = new Map((options.previous?.backends ?? []).map((b) => [b.address, b]));
    this.backends = options.backends.map((s) => {
      if (s.weight !== undefined && (!Number.isInteger(s.weight) || s.weight <= 0)) throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', `backend ${backendAddress(s.host, s.port)}: weight must be a positive whole number`);
      const kept = old.get(backendAddress(s.host, s.port));
      if (kept) {
        kept.weight = s.weight ?? 1;
        return kept;
      }
      return new Backend(s);
    });
    this.label = options.label ?? 'pool';
    this.balance = options.balance ?? 'round-robin';
    const select = options.select ?? balancePolicies[this.balance];
    if (typeof select !== 'function') throw new EchError('ERR_INVALID_ARGUMENT', 'internal_error', `balance must be one of ${Object.keys(balancePolicies).join(', ')}`);
    this.select = select;
    const hc = options.healthCheck;
    this.healthCheck = hc ? { intervalMs: hc.intervalMs ?? 2000, timeoutMs: hc.timeoutMs ?? 1000, fall: hc.fall ?? 3, rise: hc.rise ?? 2 } : undefined;
    this.fall = this.healthCheck?.fall ?? 3;
    this.rise = this.healthCheck?.rise ?? 2;
    this.connectTimeoutMs = Math.min(options.connectTimeoutMs ?? 10_000, this.healthCheck?.timeoutMs ?? Infinity);
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#probe = options.probe ?? tcpProbe;
    this.#allDown = this.backends.every((b) => b.state === 'down');
    if (this.healthCheck) {
      this.#timer = setInterval(() => void this.checkNow(), this.healthCheck.intervalMs);
      this.#timer.unref();
      // The first round at once, so a dead backend is known before clients meet it.
      setImmediate(() => void this.checkNow()).unref();
    }
  }

  /** Number of backends. */
  get size(): number {
    return this.backends.length;
  }

  /** True when no backend is up. */
  get allDown(): boolean {
    return this.backends.every((b) => b.state === 'down');
  }

  /** Backends usable now for a connection that already tried `tried`. */
  candidates(tried: readonly Backend[] = [], now = Date.now()): Backend[] {
    return this.backends.filter((b) => !tried.includes(b) && (b.state === 'up' || (!this.healthCheck && now >= b.retryAt)));
  }

  /** Run one round of active checks now (resolves when every probe ended). */
  async checkNow(): Promise<void> {
    if (!this.healthCheck || this.#probing || this.#closed) return;
    this.#probing = true;
    const { timeoutMs } = this.healthCheck;
    try {
      await Promise.all(
        this.backends.map((b) =>
          this.#probe(b, timeoutMs, this.#abort.signal).then(
            () => !this.#closed && this.#success(b, true),
            (e: Error) => !this.#closed && this.#failure(b, e, true),
          ),
        ),
      );
    } finally {
      this.#probing = false;
    }
  }

  /** Record a failed connection attempt (passive check). */
  reportFailure(b: Backend, err: Error): void {
    this.#metrics?.backendConnectFailure(this.label, b.address);
    this.#failure(b, err, false);
  }

  /** Record a successful connection (passive check). */
  reportSuccess(b: Backend): void {
    b.connections++;
    this.#metrics?.backendConnection(this.label, b.address);
    this.#success(b, false);
  }

  /** Count a connection refused because no backend was usable. */
  reportExhausted(): void {
    this.#metrics?.poolExhausted(this.label);
  }

  #failure(b: Backend, err: Error, active: boolean): void {
    b.connectFailures++;
    b.risesInRow = 0;
    b.failsInRow++;
    if (b.state === 'down') {
      if (!this.healthCheck) b.retryAt = Date.now() + b.nextBackoff();
      return;
    }
    if (b.failsInRow >= this.fall) {
      b.state = 'down';
      b.current = 0;
      if (!this.healthCheck) b.retryAt = Date.now() + b.nextBackoff();
      this.#log?.({ event: 'backend_down', route: this.label, backend: b.address, check: active ? 'active' : 'passive', code: (err as NodeJS.ErrnoException).code ?? err.message });
      this.#poolState();
    }
  }

  #success(b: Backend, active: boolean): void {
    b.failsInRow = 0;
    if (b.state === 'up') return;
    // With active checks only they bring a backend back (`rise` in a row);
    // without, one connection after the back-off does.
    if (this.healthCheck && !active) return;
    if (this.healthCheck && ++b.risesInRow < this.rise) return;
    b.state = 'up';
    b.risesInRow = 0;
    b.resetBackoff();
    this.#log?.({ event: 'backend_up', route: this.label, backend: b.address, check: active ? 'active' : 'passive' });
    this.#poolState();
  }

  #poolState(): void {
    const down = this.allDown;
    if (down === this.#allDown) return;
    this.#allDown = down;
    this.#log?.({ event: down ? 'pool_down' : 'pool_up', route: this.label, backends: this.backends.length });
  }

  /** Stop active checks (and abort probes in flight). Idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#abort.abort();
  }
}

/** Active probe: a TCP connection, then closed. */
export const tcpProbe: BackendProbe = (b, timeoutMs, signal) => dial(b, timeoutMs, signal).then((s) => void s.destroy());

/**
 * Active probe for a TLS backend: a TLS handshake verified with these
 * options (CA, name), then closed.
 * @group Front end
 * @example
 * ```ts
 * const probe = tlsProbe({ servername: 'legacy.internal', ca: caPem });
 * ```
 */
export function tlsProbe(options: { servername: string; ca?: string | string[]; rejectUnauthorized?: boolean }): BackendProbe {
  return (b, timeoutMs, signal) =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: b.host, port: b.port, servername: options.servername, ...(options.ca ? { ca: options.ca } : {}), rejectUnauthorized: options.rejectUnauthorized ?? true });
      const done = (e?: Error) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        s.destroy();
        if (e) reject(e);
        else resolve();
      };
      const onAbort = () => done(new Error('aborted'));
      const timer = setTimeout(() => done(new EchError('ERR_TIMEOUT', 'internal_error', `${b.address}: no TLS handshake within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      signal.addEventListener('abort', onAbort);
      s.once('secureConnect', () => done());
      s.once('error', (e) => done(e));
      s.once('close', () => done(new Error('closed before the handshake')));
    });
}

/** A TCP connection to `b`, or an error after `timeoutMs`. */
function dial(b: Backend, timeoutMs: number, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: the relays pass each side's FIN on as a half-close, so a
    // client that half-closes after its request still gets the answer.
    const s = net.connect({ host: b.host, port: b.port, allowHalfOpen: true });
    const settle = (e?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      s.off('error', settle);
      if (e) {
        s.destroy();
        reject(e);
      } else resolve(s);
    };
    const onAbort = () => settle(new Error('aborted'));
    const timer = setTimeout(() => settle(new EchError('ERR_TIMEOUT', 'internal_error', `backend ${b.address} did not accept within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    signal?.addEventListener('abort', onAbort);
    s.once('connect', () => settle());
    s.once('error', settle);
  });
}

/**
 * What {@link connectBackend} needs to know about the connection (the
 * {@link SelectContext} without the pool's part).
 * @group Front end
 */
export type ConnectContext = Omit<SelectContext, 'pool' | 'candidates' | 'tried'>;

/**
 * Connect to a backend of `pool` for one client connection: the pool's
 * policy picks one; if connecting fails or times out, the next usable
 * backend is tried, up to the pool's size. Nothing of the client's has been
 * sent yet, so failing over is invisible to it. Resolves with the connected
 * socket (its `close` releases the backend's active count) and the backend.
 * Rejects with the last connect error, or `ERR_NO_BACKEND` when no backend
 * was usable at all.
 * @group Front end
 * @example
 * ```ts
 * const { socket, backend } = await connectBackend(pool, { serverName, alpn: [], echStatus: 'accepted', remoteAddress });
 * ```
 */
export async function connectBackend(pool: BackendPool, ctx: ConnectContext): Promise<{ socket: Socket; backend: Backend }> {
  const tried: Backend[] = [];
  let last: Error | undefined;
  for (let i = 0; i < pool.size; i++) {
    const candidates = pool.candidates(tried);
    const b = pool.select({ ...ctx, pool, candidates, tried: [...tried] });
    if (!b || tried.includes(b) || !pool.backends.includes(b)) break;
    tried.push(b);
    try {
      const socket = await dial(b, pool.connectTimeoutMs);
      pool.reportSuccess(b);
      b.active++;
      socket.once('close', () => b.active--);
      return { socket, backend: b };
    } catch (e) {
      last = e as Error;
      pool.reportFailure(b, last);
    }
  }
  pool.reportExhausted();
  throw last ?? new EchError('ERR_NO_BACKEND', 'internal_error', `route ${pool.label}: no backend is up`);
}

/**
 * The pools of a routing table: one per route whose action connects to a
 * backend (`passthrough`, `forward`, `forwardTls`). A route's `backends`
 * list, or else its action's single host and port, fills the pool. Pools
 * of `previous` (the configuration being replaced) lend their backends'
 * health state to the new pools of the same route; the caller closes them.
 * @group Front end
 * @example
 * ```ts
 * const pools = routePools(routes, { label: (r) => r.serverName });
 * ```
 */
export function routePools(
  routes: readonly FrontEndRoute[],
  options: { label: (route: FrontEndRoute) => string; log?: LogSink; metrics?: FrontEndMetrics; previous?: ReadonlyMap<FrontEndRoute, BackendPool> },
): Map<FrontEndRoute, BackendPool> {
  const key = (r: FrontEndRoute) => `${r.serverName.toLowerCase()}|${(r.alpn ?? []).join(',')}|${Object.keys(r.action)[0]}`;
  const old = new Map([...(options.previous ?? [])].map(([r, p]) => [key(r), p]));
  const pools = new Map<FrontEndRoute, BackendPool>();
  try {
    for (const r of routes) addPool(r);
  } catch (e) {
    // One route's pool is unusable: stop the checks of those already made.
    for (const p of pools.values()) p.close();
    throw e;
  }
  return pools;

  function addPool(r: FrontEndRoute): void {
    const a = r.action;
    let target: { host: string; port: number; connectTimeoutMs?: number } | undefined;
    let probe: BackendProbe | undefined;
    if ('passthrough' in a) target = a.passthrough;
    else if ('forward' in a) target = a.forward;
    else if ('forwardTls' in a) {
      const f = a.forwardTls;
      target = f;
      // A backend expecting a PROXY header first gets a TCP probe only.
      if (!f.proxyProtocol) probe = tlsProbe({ servername: f.servername ?? r.serverName, ...(f.ca ? { ca: f.ca } : {}), ...(f.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}) });
    }
    if (!target) return;
    const label = options.label(r);
    pools.set(
      r,
      new BackendPool({
        backends: r.backends ?? [{ host: target.host, port: target.port }],
        ...(r.balance ? { balance: r.balance } : {}),
        ...(r.select ? { select: r.select } : {}),
        ...(r.healthCheck ? { healthCheck: r.healthCheck } : {}),
        ...(target.connectTimeoutMs ? { connectTimeoutMs: target.connectTimeoutMs } : {}),
        ...(probe ? { probe } : {}),
        label,
        ...(options.log ? { log: options.log } : {}),
        ...(options.metrics ? { metrics: options.metrics } : {}),
        ...(old.has(key(r)) ? { previous: old.get(key(r))! } : {}),
      }),
    );
  }
}
