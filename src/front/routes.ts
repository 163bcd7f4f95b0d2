/**
 * The routing table: which route a connection goes to, by server name
 * (exact, then `*.` wildcard) and optionally ALPN, with a default route.
 *
 * @module
 */

/**
 * What a route matches on.
 * @group Front end
 */
export interface RouteMatch {
  /** `host.example` or `*.example` (one label). */
  serverName: string;
  /** Only connections that negotiated one of these ALPN protocols. */
  alpn?: string[];
}

/**
 * A routing table over routes of any shape carrying a {@link RouteMatch}.
 * Lookups are case-insensitive; an exact name beats a wildcard; among
 * routes for the same name, one with a matching `alpn` list beats one
 * without.
 * @group Front end
 * @example
 * ```ts
 * const table = new RoutingTable([{ serverName: 'a.example', id: 1 }, { serverName: '*.example', id: 2 }]);
 * table.lookup('b.example')?.id; // 2
 * ```
 */
export class RoutingTable<R extends RouteMatch> {
  readonly #exact = new Map<string, R[]>();
  readonly #wild = new Map<string, R[]>();
  readonly #default: R | undefined;

  constructor(routes: readonly R[], defaultRoute?: R) {
    for (const r of routes) {
      const name = r.serverName.toLowerCase().replace(/\.$/, '');
      const [map, key] = name.startsWith('*.') ? [this.#wild, name.slice(2)] : [this.#exact, name];
      const list = map.get(key) ?? [];
      list.push(r);
      map.set(key, list);
    }
    this.#default = defaultRoute;
  }

  static #pick<R extends RouteMatch>(list: R[] | undefined, alpn: string | false | readonly string[] | undefined): R | undefined {
    if (!list) return undefined;
    const offered = alpn === undefined || alpn === false ? [] : typeof alpn === 'string' ? [alpn] : alpn;
    return list.find((r) => r.alpn && r.alpn.some((p) => offered.includes(p))) ?? list.find((r) => !r.alpn);
  }

  /**
   * The route for a server name and ALPN (the negotiated protocol, or the
   * list a ClientHello offers when routing before the handshake), or the
   * default route.
   */
  lookup(serverName: string | false | undefined, alpn?: string | false | readonly string[]): R | undefined {
    if (serverName) {
      const name = serverName.toLowerCase().replace(/\.$/, '');
      const exact = RoutingTable.#pick(this.#exact.get(name), alpn);
      if (exact) return exact;
      const dot = name.indexOf('.');
      if (dot > 0) {
        const wild = RoutingTable.#pick(this.#wild.get(name.slice(dot + 1)), alpn);
        if (wild) return wild;
      }
    }
    return this.#default;
  }
}
