/**
 * The fleet's data in etcd: the key layout under the prefix, the record
 * shapes, and the etcd client made from a {@link FleetEtcdConfig}.
 *
 * | key | value |
 * | --- | --- |
 * | `P/kek-check` | a known text sealed with the KEK: a member with another KEK stops at start |
 * | `P/ech/ID` | `{ id, config, sealed }`: one ECHConfig (base64) and its private key sealed (PKCS#8; `null` in keyless mode) |
 * | `P/tickets/ID` | a 48-byte ticket secret, sealed |
 * | `P/state` | the rotation state ({@link FleetState}), written by the leader only |
 * | `P/members/NAME` | `{ name, keyIds, ticketIds, at }` with the member's lease |
 * | `P/election/leader/LEASE` | etcd election (one key per candidate) |
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import type { Etcd3, IOptions } from 'etcd3';
import { EchError } from '../wire/alert.js';
import type { FleetEtcdConfig } from './config.js';

/**
 * One ECH key in the rotation state. Phase follows from the times:
 * pending (`published` null), active, withdrawn (`withdrawn` set).
 * @group Fleet
 */
export interface FleetKeyState {
  /** Key id: `P/ech/ID`. */
  id: string;
  configId: number;
  /** ms since the epoch. */
  created: number;
  published: number | null;
  withdrawn: number | null;
  /** TTL DNS served the list that withdrew it, when longer than `ttl`. */
  servedTtl?: number;
}

/**
 * The rotation state in `P/state` (the leader's schedule; a new leader
 * continues from it).
 * @group Fleet
 */
export interface FleetState {
  version: 1;
  keys: FleetKeyState[];
  /** Ticket keys, newest first. */
  tickets: { id: string; created: number }[];
  /** The ticket key that seals new tickets (every member holds it). */
  ticketActive: string | null;
  /** The last ECHConfigList published (base64) and which keys it holds. */
  lastPublished: { at: number; ids: string[]; echConfigList: string; names: string[] } | null;
  /** How many publishes the fleet made. */
  publishCount: number;
  /** When the next key is due (ms), when rotation is configured. */
  nextRotation: number | null;
  /** Members that have not loaded the key waiting to be published. */
  waitingFor: string[];
}

/**
 * `P/ech/ID`.
 * @group Fleet
 */
export interface FleetKeyRecord {
  id: string;
  /** One encoded ECHConfig, base64. */
  config: string;
  /** The PKCS#8 private key sealed with the KEK (base64), `null` in keyless mode. */
  sealed: string | null;
}

/**
 * `P/members/NAME`.
 * @group Fleet
 */
export interface FleetMemberRecord {
  name: string;
  /** ECH key ids this member has loaded. */
  keyIds: string[];
  /** Ticket key ids it has loaded. */
  ticketIds: string[];
  /** ms since the epoch of the last update. */
  at: number;
}

/**
 * The etcd paths of a fleet.
 * @group Fleet
 * @example
 * ```ts
 * const p = fleetPaths('/ech-server/prod');
 * p.key('20261128T2100-0a'); // '/ech-server/prod/ech/20261128T2100-0a'
 * ```
 */
export function fleetPaths(prefix: string) {
  return {
    prefix: `${prefix}/`,
    kekCheck: `${prefix}/kek-check`,
    state: `${prefix}/state`,
    keys: `${prefix}/ech/`,
    key: (id: string) => `${prefix}/ech/${id}`,
    tickets: `${prefix}/tickets/`,
    ticket: (id: string) => `${prefix}/tickets/${id}`,
    members: `${prefix}/members/`,
    member: (name: string) => `${prefix}/members/${name}`,
    election: `${prefix}/`,
  };
}

/** Text sealed at `P/kek-check`. */
export const KEK_CHECK_TEXT = 'ech-server fleet kek check v1';

/**
 * An empty rotation state.
 * @group Fleet
 * @example
 * ```ts
 * const s = emptyFleetState();
 * ```
 */
export function emptyFleetState(): FleetState {
  return { version: 1, keys: [], tickets: [], ticketActive: null, lastPublished: null, publishCount: 0, nextRotation: null, waitingFor: [] };
}

/**
 * Parse `P/state`; throws on a value that is not a version 1 state.
 * @group Fleet
 * @example
 * ```ts
 * const s = parseFleetState(text);
 * ```
 */
export function parseFleetState(text: string | null): FleetState {
  if (text === null) return emptyFleetState();
  const s = JSON.parse(text) as FleetState;
  if (s.version !== 1 || !Array.isArray(s.keys) || !Array.isArray(s.tickets)) throw new Error('not a version 1 fleet state');
  return { ...emptyFleetState(), ...s };
}

/**
 * One line from an etcd/gRPC error (gRPC appends a multi-line "Resolution
 * note").
 * @group Fleet
 * @example
 * ```ts
 * log({ event: 'etcd_failed', error: etcdMessage(e) });
 * ```
 */
export function etcdMessage(e: unknown): string {
  return String((e as Error)?.message ?? e).replace(/\s*Resolution note:[\s\S]*$/, '').split('\n')[0]!;
}

/** Per-call deadline for unary etcd calls (streams have none). */
export const ETCD_CALL_TIMEOUT_MS = 3000;

/**
 * An etcd client for the `fleet.etcd` section: TLS and authentication as
 * configured; every unary call has a {@link ETCD_CALL_TIMEOUT_MS} deadline,
 * so a lost quorum makes calls fail instead of hanging.
 * @group Fleet
 * @example
 * ```ts
 * const client = await etcdClient({ endpoints: ['http://127.0.0.1:2379'] });
 * ```
 */
export async function etcdClient(cfg: FleetEtcdConfig): Promise<Etcd3> {
  const read = async (f: string, field: string) => {
    try {
      return await readFile(f);
    } catch (e) {
      throw new EchError('ERR_CONFIG', 'internal_error', `fleet.etcd.${field}: cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const opts: IOptions = {
    hosts: cfg.endpoints,
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
  };
  if (cfg.ca) {
    opts.credentials = {
      rootCertificate: await read(cfg.ca, 'ca'),
      ...(cfg.key ? { privateKey: await read(cfg.key, 'key') } : {}),
      ...(cfg.cert ? { certChain: await read(cfg.cert, 'cert') } : {}),
    };
  }
  if (cfg.username && cfg.password) opts.auth = { username: cfg.username, password: cfg.password };
  // Loaded on first use: commands that never talk to etcd do not load gRPC.
  const { Etcd3: Client } = await import('etcd3');
  return new Client(opts);
}
