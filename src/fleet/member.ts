/**
 * A fleet member: one front end's view of the keys the fleet shares
 * through etcd, and, while it is the elected leader, the fleet's rotation.
 *
 * Every member:
 * - checks at start that its KEK opens `P/kek-check` (a wrong KEK stops it
 *   with a clear error instead of loading garbage keys);
 * - watches the prefix and rebuilds its key set and ticket keys from etcd
 *   on every change (and every `resync` interval as a safety net), opening
 *   each sealed key once; the key set a handshake uses is always local;
 * - keeps `P/members/NAME` (on its lease) listing the key ids it loaded;
 * - campaigns in the etcd election `P/election/leader`.
 *
 * The leader steps the rotation with its state in `P/state`: put a new key
 * → wait until every live member reports it → publish the new
 * ECHConfigList → withdraw the older keys → delete them after the DNS TTL
 * plus the margin. Every write of the state is a transaction that only
 * succeeds while this member's campaign key exists and the state is the
 * one it read, so a deposed leader can never write.
 *
 * When etcd does not answer the member keeps the keys it has, reports it
 * ({@link FleetMember.health}, metrics, a log line), and the rotation
 * pauses; the watch, lease and campaign come back by themselves.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Etcd3, Lease, Watcher, Campaign } from 'etcd3';
import { EchError } from '../wire/alert.js';
import { fromBase64, toBase64 } from '../wire/bytes.js';
import { type EchConfig, decodeEchConfig, decodeEchConfigList, encodeEchConfigList } from '../ech/config.js';
import { kemPrivateKeyFromPkcs8, kemPrivateKeyToPkcs8, loadKemPrivateKey } from '../crypto/kem.js';
import { parseEchPem } from '../keys/pem.js';
import { type EchKey, type EchPrivateKey, EchKeySet } from '../keys/key-set.js';
import { type KemName, generateEchKey } from '../keys/generate.js';
import type { EchClock, EchPublisher } from '../keys/manager.js';
import { systemClock } from '../keys/manager.js';
import type { FleetConfig } from './config.js';
import { type FleetKek, FleetKekError, openSealed, seal } from './kek.js';
import {
  type FleetKeyRecord,
  type FleetMemberRecord,
  type FleetState,
  KEK_CHECK_TEXT,
  etcdClient,
  etcdMessage,
  fleetPaths,
  parseFleetState,
} from './store.js';

/**
 * The rotation the leader runs (the serve config's `rotation` section).
 * Durations in seconds.
 * @group Fleet
 */
export interface FleetRotation {
  publicName: string;
  kem?: KemName;
  maximumNameLength?: number;
  /** A new key this often. */
  period: number;
  /** TTL of the published HTTPS records. */
  ttl: number;
  /** Extra decrypt time after withdrawal, beyond the TTL; default 3600. */
  margin?: number;
  /** Minimum time between creating a key and publishing it; default 0. */
  publishDelay?: number;
  /** After a failed publish, try again this much later; default 60. */
  retryInterval?: number;
  /** Names whose HTTPS records carry the keys. */
  names: string[];
}

/**
 * Options of {@link FleetMember}.
 * @group Fleet
 */
export interface FleetMemberOptions {
  config: FleetConfig;
  kek: FleetKek;
  /** Key directory imported by the first leader when etcd holds no keys. */
  importDirectory?: string;
  /** The rotation the leader runs; without it keys never rotate (imported keys only). */
  rotation?: FleetRotation;
  /** Where the leader publishes; without one a key counts as published once every member has it. */
  publisher?: EchPublisher;
  /** Keyless mode: the private half of a key etcd holds no private key for. */
  privateKeyFor?: (config: EchConfig) => EchPrivateKey;
  /** Structured log. */
  log?: (entry: Record<string, unknown>) => void;
  clock?: EchClock;
}

/**
 * Events of {@link FleetMember}.
 * @group Fleet
 */
export interface FleetMemberEvents {
  /** A new ECH key set. */
  keys: [EchKeySet];
  /** New ticket secrets: the first seals, all open. */
  tickets: [Uint8Array[]];
}

/**
 * What `/healthz` and `fleet status` report about this member.
 * @group Fleet
 */
export interface FleetHealth {
  member: string;
  etcd: 'ok' | 'unavailable';
  /** ISO time etcd stopped answering, when it did. */
  unavailableSince: string | null;
  lastError: string | null;
  leader: boolean;
  keyIds: string[];
  /** Members the pending key waits for (leader only). */
  waitingFor: string[];
}

const RESYNC_MS = 5000;
const RETRY_MS = 1000;
/** How long a member-record write may take before the lease is replaced. */
const PUT_TIMEOUT_MS = 3000;
const TICKET_SECRET_BYTES = 48;

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
}

function unavailable(message: string, cause?: unknown): EchError {
  return new EchError('ERR_FLEET_UNAVAILABLE', 'internal_error', message, cause === undefined ? undefined : { cause });
}

/**
 * One front end of a fleet. {@link FleetMember.start} resolves once the
 * member holds the fleet's keys (the first leader imports or makes them).
 * @group Fleet
 * @example
 * ```ts
 * const member = new FleetMember({ config: serveConfig.fleet, kek: await readKekFile(serveConfig.fleet.kekFile) });
 * member.on('keys', (keys) => frontEnd.update({ keys }));
 * await member.start();
 * ```
 */
export class FleetMember extends EventEmitter<FleetMemberEvents> {
  readonly #o: FleetMemberOptions;
  readonly #p: ReturnType<typeof fleetPaths>;
  readonly #clock: EchClock;
  #client: Etcd3 | undefined;
  #lease: Lease | undefined;
  #watcher: Watcher | undefined;
  #campaign: Campaign | undefined;
  #campaignKey: string | undefined;
  #leader = false;
  #closed = false;
  #set = new EchKeySet();
  #setSig = '';
  #tickets: Uint8Array[] = [];
  #ticketSig = '';
  #keyIds: string[] = [];
  #ticketIds: string[] = [];
  readonly #keyCache = new Map<string, EchKey>();
  readonly #ticketCache = new Map<string, Uint8Array>();
  #etcdOk = true;
  #unavailableSince: number | null = null;
  #lastError: string | null = null;
  #waitingFor: string[] = [];
  #reloadTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #stepTimer: unknown;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #stepping: Promise<void> | undefined;
  #stepAgain = false;
  #lastWaitLog = '';
  #publishRetryAt = 0;
  readonly #counters = { etcdErrors: 0, publishes: 0, publishErrors: 0, reloads: 0 };

  constructor(options: FleetMemberOptions) {
    super();
    this.#o = options;
    this.#p = fleetPaths(options.config.prefix);
    this.#clock = options.clock ?? systemClock;
  }

  /** The current key set; take it once per connection. */
  get keySet(): EchKeySet {
    return this.#set;
  }

  /** Ticket secrets (first seals, all open); empty until the leader made one. */
  get ticketSecrets(): Uint8Array[] {
    return this.#tickets;
  }

  /** Whether this member is the leader now. */
  get isLeader(): boolean {
    return this.#leader;
  }

  #log(event: string, fields: Record<string, unknown> = {}): void {
    this.#o.log?.({ event, member: this.#o.config.member, ...fields });
  }

  /**
   * Connect, check the KEK, join (member record, watch, election) and wait
   * until the fleet's keys are loaded, for at most `timeoutMs`. Rejects
   * with a KEK error, or when no keys arrived in time.
   */
  async start(timeoutMs = 30_000): Promise<void> {
    const client = (this.#client = await etcdClient(this.#o.config.etcd));
    const began = Date.now();
    const deadline = began + timeoutMs;
    // The KEK check: a value every member must open; the first member writes it.
    for (;;) {
      try {
        await this.#checkKek(client);
        break;
      } catch (e) {
        if (e instanceof FleetKekError || Date.now() > deadline) {
          await this.close();
          throw e instanceof FleetKekError ? e : unavailable(`etcd at ${this.#o.config.etcd.endpoints.join(', ')}: ${etcdMessage(e)}`, e);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    this.#watcher = client.watch().prefix(this.#p.prefix).watcher();
    this.#watcher.on('data', () => this.#scheduleReload());
    this.#watcher.on('disconnected', (e: Error) => this.#etcdFailed(e));
    this.#watcher.on('connected', () => this.#scheduleReload());
    this.#watcher.on('error', (e: Error) => this.#etcdFailed(e));
    this.#newLease();
    this.#campaignLoop();
    this.#resync();
    for (;;) {
      await this.#reload().catch(() => undefined);
      if (this.#set.size > 0) break;
      if (Date.now() > deadline) {
        await this.close();
        throw unavailable(`no ECH keys from etcd (${this.#p.prefix}) within ${timeoutMs} ms${this.#lastError ? `: ${this.#lastError}` : ''}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    this.#log('fleet_joined', { keys: this.#keyIds, leader: this.#leader, ms: Date.now() - began });
  }

  async #checkKek(client: Etcd3): Promise<void> {
    const path = this.#p.kekCheck;
    const existing = await client.get(path).buffer();
    if (existing) {
      const text = Buffer.from(openSealed(this.#o.kek, path, existing)).toString();
      if (text !== KEK_CHECK_TEXT) throw new FleetKekError(`${path} does not hold the KEK check text`);
      return;
    }
    const sealed = Buffer.from(seal(this.#o.kek, path, Buffer.from(KEK_CHECK_TEXT)));
    const r = await client.if(path, 'Create', '==', 0).then(client.put(path).value(sealed)).commit();
    if (!r.succeeded) await this.#checkKek(client);
  }

  #etcdFailed(e: Error): void {
    this.#counters.etcdErrors++;
    this.#lastError = etcdMessage(e);
    if (this.#etcdOk) {
      this.#etcdOk = false;
      this.#unavailableSince = Date.now();
      this.#log('fleet_etcd_unavailable', { error: this.#lastError, keys: this.#keyIds });
    }
  }

  #etcdBack(): void {
    if (!this.#etcdOk) {
      this.#etcdOk = true;
      this.#log('fleet_etcd_available', { downMs: Date.now() - (this.#unavailableSince ?? Date.now()) });
      this.#unavailableSince = null;
      this.#lastError = null;
      // Our member record may have gone with the lease: write it again.
      void this.#putMember();
    }
  }

  #newLease(): void {
    if (this.#closed || !this.#client) return;
    const lease = (this.#lease = this.#client.lease(this.#o.config.leaseTtl));
    lease.on('lost', (e: Error) => {
      if (this.#closed || lease !== this.#lease) return;
      this.#etcdFailed(e);
      setTimeout(() => this.#newLease(), RETRY_MS).unref();
    });
    void this.#putMember();
  }

  async #putMember(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#closed) return;
    const rec: FleetMemberRecord = { name: this.#o.config.member, keyIds: this.#keyIds, ticketIds: this.#ticketIds, at: Date.now() };
    let timer: NodeJS.Timeout | undefined;
    try {
      // A lease that went bad in an etcd outage can leave a put waiting
      // forever (the leader then waits for a report that never comes):
      // bound it, and on a timeout start over with a new lease.
      await Promise.race([
        lease.put(this.#p.member(this.#o.config.member)).value(JSON.stringify(rec)),
        new Promise((_, rej) => {
          timer = setTimeout(() => rej(Object.assign(new Error('member record write timed out'), { timedOut: true })), PUT_TIMEOUT_MS);
          timer.unref();
        }),
      ]);
    } catch (e) {
      this.#etcdFailed(e as Error);
      if ((e as { timedOut?: boolean }).timedOut && lease === this.#lease && !this.#closed) {
        this.#lease = undefined;
        lease.revoke().catch(() => undefined);
        setTimeout(() => this.#newLease(), RETRY_MS).unref();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #campaignLoop(): void {
    if (this.#closed || !this.#client) return;
    const c = (this.#campaign = this.#client.namespace(this.#p.election).election('leader', this.#o.config.leaseTtl).campaign(this.#o.config.member));
    c.on('elected', () => {
      if (c !== this.#campaign || this.#closed) return;
      void c.getCampaignKey().then((k) => {
        this.#campaignKey = k;
        this.#leader = true;
        this.#log('fleet_leader_elected');
        this.#scheduleStep(0);
      });
    });
    c.on('error', (e: Error) => {
      if (c !== this.#campaign) return;
      if (this.#leader) this.#log('fleet_leader_lost', { error: e.message });
      this.#leader = false;
      this.#campaignKey = undefined;
      this.#etcdFailed(e);
      c.resign().catch(() => undefined);
      setTimeout(() => this.#campaignLoop(), RETRY_MS).unref();
    });
  }

  #resync(): void {
    if (this.#closed) return;
    this.#resyncTimer = setTimeout(
      () => {
        this.#scheduleReload();
        // Report again what this member holds (a heartbeat): a report lost
        // in an outage must not block the leader's publish for good.
        if (this.#etcdOk) void this.#putMember();
        this.#resync();
      },
      this.#etcdOk ? RESYNC_MS : RETRY_MS,
    ).unref();
  }

  #scheduleReload(): void {
    if (this.#closed || this.#reloadTimer) return;
    this.#reloadTimer = setTimeout(() => {
      this.#reloadTimer = undefined;
      this.#reload().catch(() => undefined);
    }, 50).unref();
  }

  /** Read keys, tickets and state from etcd and apply them (serialized). */
  #reload(): Promise<void> {
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    const run = async (): Promise<void> => {
      do {
        this.#reloadAgain = false;
        await this.#reloadOnce();
      } while (this.#reloadAgain && !this.#closed);
    };
    this.#reloading = run().finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  async #reloadOnce(): Promise<void> {
    const client = this.#client;
    if (!client || this.#closed) return;
    let state: FleetState;
    let keyKvs: { key: Buffer; value: Buffer }[];
    let ticketKvs: { key: Buffer; value: Buffer }[];
    try {
      const [s, k, t] = await Promise.all([
        client.get(this.#p.state).string(),
        client.getAll().prefix(this.#p.keys).exec(),
        client.getAll().prefix(this.#p.tickets).exec(),
      ]);
      state = parseFleetState(s);
      keyKvs = k.kvs;
      ticketKvs = t.kvs;
    } catch (e) {
      this.#etcdFailed(e as Error);
      throw e;
    }
    this.#etcdBack();
    this.#counters.reloads++;
    const records = new Map<string, FleetKeyRecord>();
    for (const kv of keyKvs) {
      try {
        const r = JSON.parse(kv.value.toString()) as FleetKeyRecord;
        records.set(r.id, r);
      } catch {
        this.#log('fleet_bad_record', { key: kv.key.toString() });
      }
    }
    // ECH keys in preference order: active, pending, withdrawn; newest first.
    const rank = (k: FleetState['keys'][number]) => (k.withdrawn !== null ? 2 : k.published !== null ? 0 : 1);
    const ordered = [...state.keys].sort((a, b) => rank(a) - rank(b) || b.created - a.created);
    const set = new EchKeySet();
    const ids: string[] = [];
    for (const k of ordered) {
      const key = this.#openKey(k.id, records.get(k.id));
      if (!key) continue;
      try {
        set.add({ ...key, retry: rank(k) === 0 });
        ids.push(k.id);
      } catch (e) {
        this.#log('fleet_key_refused', { id: k.id, error: (e as Error).message });
      }
    }
    for (const id of [...this.#keyCache.keys()]) if (!records.has(id)) this.#keyCache.delete(id);
    const sig = ordered.map((k) => `${k.id}:${rank(k)}`).filter((x) => ids.includes(x.split(':')[0]!)).join();
    // Tickets: the active one first (it seals), then the others (they open).
    const ticketMap = new Map<string, Uint8Array>();
    for (const kv of ticketKvs) {
      const path = kv.key.toString();
      const id = path.slice(this.#p.tickets.length);
      let secret = this.#ticketCache.get(id);
      if (!secret) {
        try {
          secret = openSealed(this.#o.kek, path, kv.value);
          if (secret.length !== TICKET_SECRET_BYTES) throw new FleetKekError(`${path}: not a ${TICKET_SECRET_BYTES}-byte ticket secret`);
          this.#ticketCache.set(id, secret);
        } catch (e) {
          this.#lastError = (e as Error).message;
          this.#log('fleet_ticket_key_unusable', { key: path, error: (e as Error).message });
          continue;
        }
      }
      ticketMap.set(id, secret);
    }
    for (const id of [...this.#ticketCache.keys()]) if (!ticketMap.has(id)) this.#ticketCache.delete(id);
    const tIds = [...ticketMap.keys()].sort((a, b) => (a === state.ticketActive ? -1 : b === state.ticketActive ? 1 : b.localeCompare(a)));
    const tSig = tIds.join();
    const changedKeys = sig !== this.#setSig && set.size > 0;
    const changedTickets = tSig !== this.#ticketSig && tIds.length > 0;
    if (changedKeys) {
      this.#set = set;
      this.#setSig = sig;
      this.#keyIds = ids;
      this.emit('keys', set);
      this.#log('fleet_keys_loaded', { keys: ids, retry: set.retryConfigs().map((c) => c.configId) });
    }
    if (changedTickets) {
      this.#tickets = tIds.map((id) => ticketMap.get(id)!);
      this.#ticketSig = tSig;
      this.#ticketIds = tIds;
      this.emit('tickets', this.#tickets);
      this.#log('fleet_ticket_keys_loaded', { tickets: tIds });
    }
    if (changedKeys || changedTickets) await this.#putMember();
    // The leader re-steps on every change: a member reporting a key may unblock a publish.
    if (this.#leader) this.#scheduleStep(0);
  }

  #openKey(id: string, rec: FleetKeyRecord | undefined): EchKey | undefined {
    const cached = this.#keyCache.get(id);
    if (cached) return cached;
    if (!rec) return undefined;
    const path = this.#p.key(id);
    try {
      const config = decodeEchConfig(fromBase64(rec.config));
      let privateKey: EchPrivateKey;
      if (rec.sealed === null) {
        if (!this.#o.privateKeyFor) throw new EchError('ERR_KEY_FILE', 'internal_error', `${path} has no private key (a keyless fleet) and this member is not keyless`);
        privateKey = this.#o.privateKeyFor(config);
      } else {
        const { kem, privateKey: raw } = kemPrivateKeyFromPkcs8(openSealed(this.#o.kek, path, fromBase64(rec.sealed)));
        privateKey = loadKemPrivateKey(kem, raw);
      }
      const key: EchKey = { config, privateKey, retry: false, source: `etcd ${path}` };
      this.#keyCache.set(id, key);
      return key;
    } catch (e) {
      this.#lastError = (e as Error).message;
      this.#log('fleet_key_unusable', { key: path, error: (e as Error).message });
      return undefined;
    }
  }

  // ---------------------------------------------------------------- leader

  #scheduleStep(ms: number): void {
    if (this.#closed || !this.#leader) return;
    if (this.#stepTimer !== undefined) this.#clock.clearTimer(this.#stepTimer);
    this.#stepTimer = this.#clock.setTimer(() => {
      this.#stepTimer = undefined;
      void this.#runStep();
    }, Math.max(0, ms));
  }

  async #runStep(): Promise<void> {
    if (!this.#leader || this.#closed) return;
    if (this.#stepping) {
      this.#stepAgain = true;
      return;
    }
    let next = RETRY_MS;
    this.#stepping = (async () => {
      do {
        this.#stepAgain = false;
        try {
          next = await this.#step();
        } catch (e) {
          // EchError: our own problem (a key file to import, a record); anything else is etcd's.
          if (!(e instanceof EchError)) this.#etcdFailed(e as Error);
          this.#log('fleet_rotation_step_failed', { error: (e as Error).message });
          next = RETRY_MS;
        }
      } while (this.#stepAgain && this.#leader && !this.#closed);
    })();
    await this.#stepping;
    this.#stepping = undefined;
    this.#scheduleStep(next);
  }

  /** Members and what they loaded (live records only: a stopped member's lease removes it). */
  async #members(): Promise<FleetMemberRecord[]> {
    const r = await this.#client!.getAll().prefix(this.#p.members).strings();
    return Object.values(r).flatMap((v) => {
      try {
        return [JSON.parse(v) as FleetMemberRecord];
      } catch {
        return [];
      }
    });
  }

  /**
   * Commit `puts` and `deletes` with the new state, only if this member is
   * still the leader and the state is still the one read at `rev`.
   */
  async #commit(rev: string, state: FleetState, puts: [string, string | Buffer][] = [], deletes: string[] = []): Promise<boolean> {
    const c = this.#client!;
    if (!this.#campaignKey) return false;
    const r = await c
      .if(this.#p.state, 'Mod', '==', rev)
      .and(this.#campaignKey, 'Create', '>', 0)
      .then(...puts.map(([k, v]) => c.put(k).value(v)), c.put(this.#p.state).value(JSON.stringify(state)), ...deletes.map((k) => c.delete().key(k)))
      .commit();
    if (!r.succeeded) this.#log('fleet_state_changed_under_us', {});
    return r.succeeded;
  }

  async #importKeys(now: number): Promise<{ id: string; record: FleetKeyRecord; configId: number; retired: boolean }[]> {
    const dir = this.#o.importDirectory;
    if (!dir) return [];
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.pem')).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: { id: string; record: FleetKeyRecord; configId: number; retired: boolean }[] = [];
    for (const n of names) {
      let pem;
      let configs: EchConfig[];
      try {
        pem = parseEchPem(await readFile(join(dir, n), 'utf8'));
        configs = decodeEchConfigList(pem.echConfigList).configs;
      } catch (e) {
        throw new EchError('ERR_KEY_FILE', 'internal_error', `cannot import ${join(dir, n)}: ${(e as Error).message}`, { cause: e });
      }
      let config = configs[0];
      let sealedPkcs8: Uint8Array | null = null;
      if (pem.privateKeyPkcs8) {
        const { kem, privateKey } = kemPrivateKeyFromPkcs8(pem.privateKeyPkcs8);
        const pub = loadKemPrivateKey(kem, privateKey).publicKey;
        config = configs.find((c) => c.kemId === kem && Buffer.from(c.publicKey).equals(Buffer.from(pub)));
        sealedPkcs8 = pem.privateKeyPkcs8;
      } else if (!this.#o.privateKeyFor) {
        throw new EchError('ERR_KEY_FILE', 'internal_error', `${join(dir, n)}: no PRIVATE KEY block (only a keyless fleet imports public configs)`);
      }
      if (!config) throw new EchError('ERR_KEY_FILE', 'internal_error', `${join(dir, n)}: no ECHConfig matches its private key`);
      const id = `${stamp(now)}-${config.configId.toString(16).padStart(2, '0')}`;
      const path = this.#p.key(id);
      out.push({
        id,
        configId: config.configId,
        retired: n.endsWith('.retired.pem'),
        record: { id, config: toBase64(config.raw), sealed: sealedPkcs8 ? toBase64(seal(this.#o.kek, path, sealedPkcs8)) : null },
      });
    }
    return out;
  }

  #newKey(now: number, state: FleetState): { id: string; record: FleetKeyRecord; configId: number } {
    const rot = this.#o.rotation!;
    const used = new Set(state.keys.map((k) => k.configId));
    let configId = 0;
    do configId = randomBytes(1)[0]!;
    while (used.has(configId) && used.size < 256);
    const key = generateEchKey({
      publicName: rot.publicName,
      ...(rot.kem ? { kem: rot.kem } : {}),
      ...(rot.maximumNameLength !== undefined ? { maximumNameLength: rot.maximumNameLength } : {}),
      // RFC 9849 §4.1: distinct config_ids among every key still decrypting.
      configId,
      retry: false,
    });
    const id = `${stamp(now)}-${configId.toString(16).padStart(2, '0')}`;
    const pkcs8 = kemPrivateKeyToPkcs8(key.config.kemId, key.privateKeyRaw);
    return { id, configId, record: { id, config: toBase64(key.config.raw), sealed: toBase64(seal(this.#o.kek, this.#p.key(id), pkcs8)) } };
  }

  /** One leader step; returns ms until the next one. */
  async #step(): Promise<number> {
    const c = this.#client!;
    const rot = this.#o.rotation;
    const now = this.#clock.now();
    const ttl = rot?.ttl ?? 300;
    const margin = rot?.margin ?? 3600;
    const grace = (k: FleetState['keys'][number]) => (Math.max(ttl, k.servedTtl ?? 0) + margin) * 1000;
    const res = await c.get(this.#p.state).exec();
    const kv = res.kvs[0];
    const rev = kv ? kv.mod_revision : '0';
    const state = parseFleetState(kv ? kv.value.toString() : null);
    this.#etcdBack();
    const puts: [string, string | Buffer][] = [];
    const deletes: string[] = [];
    let created = false;

    // 1. No keys yet: import the local directory, or make one.
    if (!state.keys.some((k) => k.withdrawn === null)) {
      const imported = await this.#importKeys(now);
      if (imported.length) {
        for (const k of imported) {
          puts.push([this.#p.key(k.id), JSON.stringify(k.record)]);
          // Keys that were serving are adopted as published (DNS is rewritten once every member has them).
          state.keys.push({ id: k.id, configId: k.configId, created: now, published: k.retired ? null : now, withdrawn: k.retired ? now : null });
        }
        this.#log('fleet_keys_imported', { from: this.#o.importDirectory, ids: imported.map((k) => k.id) });
      } else if (rot) {
        const k = this.#newKey(now, state);
        puts.push([this.#p.key(k.id), JSON.stringify(k.record)]);
        state.keys.push({ id: k.id, configId: k.configId, created: now, published: null, withdrawn: null });
        this.#log('fleet_key_created', { id: k.id, configId: k.configId });
      } else {
        this.#log('fleet_no_keys', { error: 'etcd holds no keys, there is no key directory to import and no rotation section to make one' });
        return RETRY_MS * 5;
      }
      created = true;
    }
    // 2. A new key when the newest is `period` old and none waits to be published.
    const live = state.keys.filter((k) => k.withdrawn === null);
    if (!created && rot && !live.some((k) => k.published === null) && Math.max(...live.map((k) => k.created)) + rot.period * 1000 <= now) {
      const k = this.#newKey(now, state);
      puts.push([this.#p.key(k.id), JSON.stringify(k.record)]);
      state.keys.push({ id: k.id, configId: k.configId, created: now, published: null, withdrawn: null });
      this.#log('fleet_key_created', { id: k.id, configId: k.configId });
      created = true;
    }
    // 3. Ticket keys: a new one every ticketPeriod; it seals once every member has it.
    const newestTicket = state.tickets[0];
    if (!newestTicket || (state.ticketActive === newestTicket.id && newestTicket.created + this.#o.config.ticketPeriod * 1000 <= now)) {
      const id = `${stamp(now)}-${randomBytes(4).toString('hex')}`;
      const secret = new Uint8Array(randomBytes(TICKET_SECRET_BYTES));
      puts.push([this.#p.ticket(id), Buffer.from(seal(this.#o.kek, this.#p.ticket(id), secret))]);
      state.tickets.unshift({ id, created: now });
      // Keep the one sealing now and the one before it (tickets it sealed are still valid).
      for (const t of state.tickets.splice(3)) deletes.push(this.#p.ticket(t.id));
      created = true;
    }
    if (rot) state.nextRotation = Math.max(...state.keys.filter((k) => k.withdrawn === null).map((k) => k.created)) + rot.period * 1000;
    if (created) {
      // Members load the new keys from the watch and report them; the next step publishes.
      return (await this.#commit(rev, state, puts, deletes)) ? 50 : RETRY_MS;
    }

    const members = await this.#members();
    const missing = (id: string, field: 'keyIds' | 'ticketIds') => members.filter((m) => !m[field].includes(id)).map((m) => m.name);
    let next = Infinity;
    let changed = false;

    // 4. Activate the newest ticket key once every member holds it.
    const nt = state.tickets[0];
    if (nt && state.ticketActive !== nt.id && missing(nt.id, 'ticketIds').length === 0) {
      state.ticketActive = nt.id;
      changed = true;
    }
    if (nt && state.ticketActive !== nt.id) next = Math.min(next, RETRY_MS);
    if (state.ticketActive) {
      const active = state.tickets.find((t) => t.id === state.ticketActive);
      if (active) next = Math.min(next, active.created + this.#o.config.ticketPeriod * 1000 - now);
    }

    // 5. Publish the newest live key once every live member has loaded it.
    const target = [...live].sort((a, b) => b.created - a.created)[0];
    const names = rot?.names ?? [];
    const upToDate = !!target && !!state.lastPublished && state.lastPublished.ids.length === 1 && state.lastPublished.ids[0] === target.id && state.lastPublished.names.join() === names.join();
    let waiting: string[] = [];
    if (target && !upToDate) {
      const due = target.created + (rot?.publishDelay ?? 0) * 1000;
      waiting = missing(target.id, 'keyIds');
      if (waiting.length) {
        const sig = `${target.id}:${waiting.join()}`;
        if (sig !== this.#lastWaitLog) this.#log('fleet_waiting_for_members', { key: target.id, members: waiting });
        this.#lastWaitLog = sig;
        next = Math.min(next, RETRY_MS);
      } else if (due > now) {
        next = Math.min(next, due - now);
      } else if (this.#publishRetryAt > now) {
        next = Math.min(next, this.#publishRetryAt - now);
      } else {
        const rec = await c.get(this.#p.key(target.id)).string();
        if (!rec) throw unavailable(`${this.#p.key(target.id)} is missing`);
        const list = encodeEchConfigList([decodeEchConfig(fromBase64((JSON.parse(rec) as FleetKeyRecord).config))]);
        // Still the leader? (a deposed leader must not publish)
        const still = this.#campaignKey ? await c.get(this.#campaignKey).exists() : false;
        if (!still) return RETRY_MS;
        let result: unknown;
        try {
          if (this.#o.publisher) result = await this.#o.publisher.publish(names, list);
        } catch (e) {
          this.#counters.publishErrors++;
          this.#log('fleet_publish_failed', { key: target.id, error: (e as Error).message });
          this.#publishRetryAt = now + (rot?.retryInterval ?? 60) * 1000;
          return (rot?.retryInterval ?? 60) * 1000;
        }
        this.#counters.publishes++;
        if (target.published === null) target.published = now;
        const maxTtl = (result as { maxTtl?: unknown } | undefined)?.maxTtl;
        const withdrawn: string[] = [];
        for (const k of state.keys) {
          if (k === target || k.withdrawn !== null || k.created > target.created) continue;
          k.withdrawn = now;
          if (typeof maxTtl === 'number' && Number.isFinite(maxTtl) && maxTtl > ttl) k.servedTtl = maxTtl;
          withdrawn.push(k.id);
        }
        state.lastPublished = { at: now, ids: [target.id], echConfigList: toBase64(list), names: [...names] };
        state.publishCount++;
        this.#log('fleet_published', { key: target.id, configId: target.configId, echConfigList: toBase64(list), names, withdrawn, count: state.publishCount });
        changed = true;
      }
    }
    if (waiting.join() !== state.waitingFor.join()) {
      state.waitingFor = waiting;
      changed = true;
    }
    this.#waitingFor = waiting;

    // 6. Delete keys withdrawn longer than max(ttl, TTL DNS served) + margin ago.
    for (const k of [...state.keys]) {
      if (k.withdrawn === null) continue;
      if (k.withdrawn + grace(k) <= now) {
        state.keys = state.keys.filter((x) => x !== k);
        deletes.push(this.#p.key(k.id));
        this.#log('fleet_key_deleted', { key: k.id, configId: k.configId });
        changed = true;
      } else {
        next = Math.min(next, k.withdrawn + grace(k) - now);
      }
    }
    if (rot && state.nextRotation !== null) next = Math.min(next, state.nextRotation - now);
    if (changed && !(await this.#commit(rev, state, puts, deletes))) return RETRY_MS;
    return Math.min(Math.max(next, 200), 60_000);
  }

  /** This member's view, for `/healthz` and logs. */
  health(): FleetHealth {
    return {
      member: this.#o.config.member,
      etcd: this.#etcdOk ? 'ok' : 'unavailable',
      unavailableSince: this.#unavailableSince === null ? null : new Date(this.#unavailableSince).toISOString(),
      lastError: this.#lastError,
      leader: this.#leader,
      keyIds: this.#keyIds,
      waitingFor: this.#leader ? this.#waitingFor : [],
    };
  }

  /** Prometheus text for the admin endpoint. */
  renderMetrics(): string {
    const m = this.#o.config.member.replace(/["\\\n]/g, '_');
    const lines = [
      '# HELP ech_fleet_etcd_up Whether etcd answers this member (1) or not (0).',
      '# TYPE ech_fleet_etcd_up gauge',
      `ech_fleet_etcd_up{member="${m}"} ${this.#etcdOk ? 1 : 0}`,
      '# HELP ech_fleet_leader Whether this member is the fleet leader.',
      '# TYPE ech_fleet_leader gauge',
      `ech_fleet_leader{member="${m}"} ${this.#leader ? 1 : 0}`,
      '# HELP ech_fleet_keys ECH keys loaded from etcd.',
      '# TYPE ech_fleet_keys gauge',
      `ech_fleet_keys{member="${m}"} ${this.#keyIds.length}`,
      '# HELP ech_fleet_member_not_ready Members the pending key waits for (leader only; publishing is blocked).',
      '# TYPE ech_fleet_member_not_ready gauge',
      ...(this.#leader ? this.#waitingFor.map((w) => `ech_fleet_member_not_ready{member="${w.replace(/["\\\n]/g, '_')}"} 1`) : []),
      '# HELP ech_fleet_etcd_errors_total etcd calls that failed.',
      '# TYPE ech_fleet_etcd_errors_total counter',
      `ech_fleet_etcd_errors_total ${this.#counters.etcdErrors}`,
      '# HELP ech_fleet_publishes_total ECHConfigLists this member published as leader.',
      '# TYPE ech_fleet_publishes_total counter',
      `ech_fleet_publishes_total ${this.#counters.publishes}`,
      '# HELP ech_fleet_publish_errors_total Failed publishes.',
      '# TYPE ech_fleet_publish_errors_total counter',
      `ech_fleet_publish_errors_total ${this.#counters.publishErrors}`,
    ];
    return `${lines.join('\n')}\n`;
  }

  /** Leave the fleet: resign, remove the member record, close the client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#reloadTimer, this.#resyncTimer]) if (t) clearTimeout(t);
    if (this.#stepTimer !== undefined) this.#clock.clearTimer(this.#stepTimer);
    await this.#stepping;
    const quick = <T>(p: Promise<T> | undefined) => Promise.race([p?.catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
    await quick(this.#campaign?.resign());
    await quick(this.#watcher?.cancel());
    await quick(this.#lease?.revoke());
    this.#leader = false;
    this.#client?.close();
  }
}
