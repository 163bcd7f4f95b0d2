/**
 * Front-end metrics in the Prometheus text exposition format: counters,
 * gauges and one histogram, rendered on demand. Labels never carry inner
 * server names unless the operator asks for them.
 *
 * @module
 */

type Labels = Record<string, string>;

function key(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
}

/** Most distinct values a single-label family remembers the rendered label set of. */
const KEY_CACHE = 256;

class Family {
  readonly values = new Map<string, number>();
  /** Rendered label sets of a one-label family, by value (the per-connection counters). */
  readonly #keyOf = new Map<string, string>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}
  add(labels: Labels, v: number): void {
    this.addKey(key(labels), v);
  }
  /** Add to the series whose rendered label set is `k`. */
  addKey(k: string, v: number): void {
    this.values.set(k, (this.values.get(k) ?? 0) + v);
  }
  /** {@link Family.add} for one label, without building the label set each time. */
  add1(label: string, value: string, v: number): void {
    let k = this.#keyOf.get(value);
    if (k === undefined) {
      k = key({ [label]: value });
      if (this.#keyOf.size < KEY_CACHE) this.#keyOf.set(value, k);
    }
    this.addKey(k, v);
  }
  get(labels: Labels): number {
    return this.values.get(key(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    if (this.values.size === 0 && this.type === 'gauge') lines.push(`${this.name} 0`);
    for (const [k, v] of this.values) lines.push(k ? `${this.name}{${k}} ${v}` : `${this.name} ${v}`);
    return lines.join('\n');
  }
}

/** Handshake latency buckets, seconds. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The front end's metrics.
 * @group Front end
 * @example
 * ```ts
 * const m = new FrontEndMetrics();
 * m.connection('accepted');
 * res.end(m.render());
 * ```
 */
export class FrontEndMetrics {
  readonly #connections = new Family('ech_connections_total', 'Connections by ECH status (accepted, rejected, grease, not-offered, tls12, error).', 'counter');
  readonly #echRequired = new Family('ech_required_alerts_total', 'ech_required alerts received from clients after an ECH rejection.', 'counter');
  readonly #alerts = new Family('ech_alerts_sent_total', 'Fatal alerts sent, by description.', 'counter');
  readonly #handshakeErrors = new Family('ech_handshake_errors_total', 'Connections that ended before a completed handshake, by reason code.', 'counter');
  readonly #bytes = new Family('ech_relayed_bytes_total', 'Bytes relayed, by route and direction.', 'counter');
  readonly #active = new Family('ech_active_connections', 'Connections open now.', 'gauge');
  readonly #reloads = new Family('ech_reloads_total', 'Configuration reloads, by result.', 'counter');
  readonly #backendConnections = new Family('ech_backend_connections_total', 'Connections handed to a backend of a pool, by route and backend.', 'counter');
  readonly #backendFailures = new Family('ech_backend_connect_failures_total', 'Failed connection attempts to a backend, by route and backend.', 'counter');
  readonly #poolExhausted = new Family('ech_backend_pool_exhausted_total', 'Connections closed because no backend of the route was usable.', 'counter');
  /** Live pools' state, read at render time (set by the front end). */
  backendGauges: (() => Array<{ route: string; backend: string; up: boolean; active: number }>) | undefined;
  /** Cumulative count per bucket of {@link BUCKETS}, in order. */
  readonly #hist: number[] = BUCKETS.map(() => 0);
  #histSum = 0;
  #histCount = 0;

  /** Count a connection by its ECH status. */
  connection(status: string): void {
    this.#connections.add1('status', status, 1);
  }
  /** Count an ech_required alert. */
  echRequired(): void {
    this.#echRequired.addKey('', 1);
  }
  /** Count an alert sent. */
  alertSent(alert: string): void {
    this.#alerts.add1('alert', alert, 1);
  }
  /** Count a handshake error. */
  handshakeError(reason: string): void {
    this.#handshakeErrors.add1('reason', reason, 1);
  }
  /** Count relayed bytes. */
  relayed(route: string, direction: 'client_to_backend' | 'backend_to_client', n: number): void {
    if (n > 0) this.#bytes.add({ route, direction }, n);
  }
  /** Change the active-connection gauge. */
  active(delta: number): void {
    this.#active.addKey('', delta);
  }
  /** Count a reload. */
  reload(ok: boolean): void {
    this.#reloads.add({ result: ok ? 'ok' : 'error' }, 1);
  }
  /** Count a connection handed to a pool's backend. */
  backendConnection(route: string, backend: string): void {
    this.#backendConnections.add({ route, backend }, 1);
  }
  /** Count a failed connection attempt to a backend. */
  backendConnectFailure(route: string, backend: string): void {
    this.#backendFailures.add({ route, backend }, 1);
  }
  /** Count a connection closed because no backend was usable. */
  poolExhausted(route: string): void {
    this.#poolExhausted.add({ route }, 1);
  }
  /** Record one handshake's duration, seconds. */
  handshakeSeconds(s: number): void {
    const h = this.#hist;
    for (let i = 0; i < BUCKETS.length; i++) if (s <= BUCKETS[i]!) h[i]!++;
    this.#histSum += s;
    this.#histCount++;
  }

  /** Current value of a counter, for tests and health checks. */
  value(
    name: 'connections' | 'echRequired' | 'alerts' | 'handshakeErrors' | 'active' | 'backendConnections' | 'backendConnectFailures' | 'poolExhausted',
    labels: Labels = {},
  ): number {
    const f = {
      connections: this.#connections,
      echRequired: this.#echRequired,
      alerts: this.#alerts,
      handshakeErrors: this.#handshakeErrors,
      active: this.#active,
      backendConnections: this.#backendConnections,
      backendConnectFailures: this.#backendFailures,
      poolExhausted: this.#poolExhausted,
    }[name];
    return f.get(labels);
  }

  /** Prometheus text exposition (version 0.0.4). */
  render(): string {
    const hist = [
      '# HELP ech_handshake_duration_seconds Time from the first byte to a completed handshake (terminated) or to the backend connection (passthrough).',
      '# TYPE ech_handshake_duration_seconds histogram',
      ...BUCKETS.map((b, i) => `ech_handshake_duration_seconds_bucket{le="${b}"} ${this.#hist[i]}`),
      `ech_handshake_duration_seconds_bucket{le="+Inf"} ${this.#histCount}`,
      `ech_handshake_duration_seconds_sum ${this.#histSum}`,
      `ech_handshake_duration_seconds_count ${this.#histCount}`,
    ].join('\n');
    const up = new Family('ech_backend_up', 'Backend state: 1 up, 0 down, by route and backend.', 'gauge');
    const active = new Family('ech_backend_active_connections', 'Connections open through a backend now, by route and backend.', 'gauge');
    for (const g of this.backendGauges?.() ?? []) {
      up.add({ route: g.route, backend: g.backend }, g.up ? 1 : 0);
      active.add({ route: g.route, backend: g.backend }, g.active);
    }
    return (
      [this.#connections, this.#echRequired, this.#alerts, this.#handshakeErrors, this.#bytes, this.#active, this.#reloads, this.#backendConnections, this.#backendFailures, this.#poolExhausted, up, active]
        .map((f) => f.render())
        .join('\n') +
      '\n' +
      hist +
      '\n'
    );
  }
}
