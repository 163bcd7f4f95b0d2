/**
 * ECH key rotation: a key manager that creates keys on a schedule, publishes
 * them (DNS, files), makes them the retry config once published, retires the
 * keys they replace and deletes those once no client can still hold them.
 *
 * Timeline of one key (defaults in brackets):
 *
 * | phase | when | decrypts | retry_configs | in DNS | file |
 * | --- | --- | --- | --- | --- | --- |
 * | pending | created (every `period` [1 day]) | yes, at once | no | no | `X.pem` |
 * | active | `publishDelay` [0] after creation, once the publisher succeeded | yes | yes | yes | `X.pem` |
 * | withdrawn | the next key became active (the publish that put it in DNS took this one out) | yes | no | no | `X.retired.pem` |
 * | deleted | `ttl` [300 s] + `margin` [1 h] after withdrawal (or the longer TTL DNS served, see below) | no | no | no | removed |
 *
 * A resolver may keep the list a publish replaced for as long as the TTL the
 * DNS server served it with, which need not be `ttl` (a record that existed
 * before rotation started keeps whatever TTL it had until the first publish
 * rewrites it). A publisher that reports `maxTtl` (both built-in ones do)
 * moves the deletion of the keys that publish withdrew to
 * `max(ttl, maxTtl) + margin` after the withdrawal.
 *
 * When publishing fails nothing is promoted, withdrawn or deleted: the keys
 * that were serving keep serving, and the step is tried again after
 * `retryInterval`.
 *
 * Hot swap: the manager never mutates a key set a server may be using. Each
 * change builds a new {@link EchKeySet} (sharing the same key objects) and
 * emits it as a `'keys'` event; `manager.keySet` always returns the newest.
 * A server takes `manager.keySet` when a connection starts and keeps that
 * reference for the connection's lifetime, so a handshake in progress (and
 * its second ClientHello after a HelloRetryRequest) never sees a key vanish.
 *
 * State survives restarts: it is derived from the key directory (which keys
 * exist, `*.retired.pem` for withdrawn ones) and a small JSON state file with
 * the timestamps, written atomically with mode 0600.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EchError, InvalidArgumentError } from '../wire/alert.js';
import { toBase64 } from '../wire/bytes.js';
import { encodeEchConfigList } from '../ech/config.js';
import { type KemName, generateEchKey } from './generate.js';
import { type EchKey, EchKeySet } from './key-set.js';
import { ensureKeyDirectory, readEchKeyFile, writeEchKeyFile } from './files.js';

/**
 * Where a manager publishes the ECHConfigList: DNS UPDATE, files, or
 * anything else with this shape (the publishers live in `dns/`).
 * @group Keys
 * @example
 * ```ts
 * const logOnly: EchPublisher = {
 *   description: 'log',
 *   async publish(names, list) { console.log(names, list.length); },
 * };
 * ```
 */
export interface EchPublisher {
  /** A short description for logs (no secrets). */
  readonly description?: string;
  /**
   * Make `echConfigList` the `ech` SvcParam of each name's HTTPS record.
   * Resolves once the change is in place; rejects when it is not.
   */
  publish(names: readonly string[], echConfigList: Uint8Array): Promise<unknown>;
  /**
   * Check, without changing anything, that publishing can work: the server
   * answers and accepts the credentials (for RFC 2136, a TSIG-signed query
   * whose signed answer verifies). Rejects with a clear error when not.
   */
  check?(): Promise<void>;
}

/**
 * The clock and timers a manager runs on; tests inject a fake one.
 * @group Keys
 * @example
 * ```ts
 * const clock: EchClock = {
 *   now: () => Date.now(),
 *   setTimer: (fn, ms) => setTimeout(fn, ms),
 *   clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
 * };
 * ```
 */
export interface EchClock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Call `fn` once after `ms` milliseconds; returns a handle for {@link EchClock.clearTimer}. */
  setTimer(fn: () => void, ms: number): unknown;
  /** Cancel a timer. */
  clearTimer(handle: unknown): void;
}

/**
 * The real clock (`Date.now`, `setTimeout`; timers are unref'd so they do
 * not keep the process alive).
 * @group Keys
 * @example
 * ```ts
 * const manager = await EchKeyManager.open({ ...opts, clock: systemClock });
 * ```
 */
export const systemClock: EchClock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Options of {@link EchKeyManager}. Durations are in seconds.
 * @group Keys
 * @example
 * ```ts
 * const opts: EchKeyManagerOptions = {
 *   keyDirectory: '/etc/ech', stateFile: '/var/lib/ech/rotation.json',
 *   publicName: 'cover.example', names: ['secret.example'], publisher,
 * };
 * ```
 */
export interface EchKeyManagerOptions {
  /** Directory of the RFC 9934 PEM key files (created 0700 if missing). */
  keyDirectory: string;
  /** The JSON state file (timestamps), written atomically with mode 0600. */
  stateFile: string;
  /** public_name of new keys. */
  publicName: string;
  /** KEM of new keys; default `x25519`. */
  kem?: KemName;
  /** maximum_name_length of new keys; default 0. */
  maximumNameLength?: number;
  /** Create a new key this often; default 86400 (1 day). */
  period?: number;
  /** TTL of the published HTTPS records; default 300. */
  ttl?: number;
  /** Extra time a withdrawn key still decrypts, beyond `ttl`; default 3600. */
  margin?: number;
  /**
   * Time between creating a key (it decrypts at once) and publishing it;
   * default 0. Set it when several servers share the key directory, so that
   * every one of them has loaded the key before clients learn it.
   */
  publishDelay?: number;
  /** After a failed publish, try again this much later; default 60. */
  retryInterval?: number;
  /** Names (`HOST` or `HOST:PORT`) whose HTTPS records carry the keys. */
  names?: string[];
  /** Where to publish; without one, a key counts as published when due (DNS managed by hand). */
  publisher?: EchPublisher;
  /** Clock and timers; default {@link systemClock}. */
  clock?: EchClock;
}

/**
 * A key's place in the rotation.
 * @group Keys
 * @example
 * ```ts
 * const phase: KeyPhase = manager.status().find((k) => k.retry)!.phase; // 'active'
 * ```
 */
export type KeyPhase = 'pending' | 'active' | 'withdrawn';

/**
 * One key as the manager reports it.
 * @group Keys
 * @example
 * ```ts
 * for (const k of manager.status()) console.log(k.configId, k.phase, k.deleteAfter);
 * ```
 */
export interface ManagedKeyStatus {
  configId: number;
  phase: KeyPhase;
  /** Whether it is sent in retry_configs. */
  retry: boolean;
  /** Key file path. */
  file: string;
  /** ISO times. */
  created: string;
  published: string | null;
  withdrawn: string | null;
  /** When it will be deleted (withdrawn keys). */
  deleteAfter: string | null;
}

/**
 * What one {@link EchKeyManager.step} did.
 * @group Keys
 * @example
 * ```ts
 * const r = await manager.step();
 * if (r.error) console.error(r.error.code, r.error.message);
 * ```
 */
export interface RotationStepReport {
  /** ISO time of the step. */
  time: string;
  /** config_ids of keys created. */
  created: number[];
  /** What was published, or `null` when DNS was already up to date. */
  published: { configIds: number[]; echConfigList: string; names: string[]; result: unknown } | null;
  /** config_ids withdrawn from DNS and retry_configs (files renamed `*.retired.pem`). */
  withdrawn: number[];
  /** config_ids deleted (key set and file). */
  deleted: number[];
  /** The publishing failure, when there was one; nothing was promoted or deleted then. */
  error: { code: string; message: string } | null;
  /** Every key after the step. */
  keys: ManagedKeyStatus[];
  /** ISO time the next step is due. */
  next: string;
}

/** Persistent facts about one key; phase follows from the timestamps. */
interface KeyRecord {
  /** File name without `.pem` / `.retired.pem`. */
  base: string;
  configId: number;
  created: number;
  published: number | null;
  withdrawn: number | null;
  /**
   * Seconds a resolver may still serve a list holding this key after its
   * withdrawal, as the publisher reported it (`maxTtl`); absent: `ttl`.
   */
  servedTtl?: number;
}

interface StateFile {
  version: 1;
  keys: KeyRecord[];
  lastPublished: { at: number; configIds: number[]; echConfigList: string; names: string[] } | null;
  lastError: { at: number; code: string; message: string } | null;
}

const phaseOf = (r: KeyRecord): KeyPhase => (r.withdrawn !== null ? 'withdrawn' : r.published !== null ? 'active' : 'pending');

/** Largest delay a Node timer accepts. */
const MAX_TIMER = 2 ** 31 - 1;
/** A lock older than this is from a crashed run. */
const STALE_LOCK_MS = 10 * 60_000;

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
}

function seconds(name: string, v: number | undefined, dflt: number, min = 0): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min) throw new InvalidArgumentError(`${name} must be a number of seconds >= ${min}`);
  return x;
}

function stateError(message: string, cause?: unknown): EchError {
  return new EchError('ERR_KEY_FILE', 'internal_error', message, cause === undefined ? undefined : { cause });
}

/**
 * Events of {@link EchKeyManager}.
 * @group Keys
 * @example
 * ```ts
 * manager.on('keys', (set) => server.setKeys(set));
 * manager.on('publishError', (e) => log.warn(e.message));
 * ```
 */
export interface EchKeyManagerEvents {
  /** A new key set snapshot (after a key was created, promoted, withdrawn or deleted). */
  keys: [EchKeySet];
  /** A step finished. */
  step: [RotationStepReport];
  /** Publishing failed; keys are unchanged. */
  publishError: [Error];
  /** A scheduled step failed for another reason (disk, lock); it is tried again later. */
  stepError: [Error];
}

/**
 * Rotates the ECH keys of one key directory. One manager per directory: a
 * lock file (`STATE.lock`) keeps two processes from stepping at once.
 * @group Keys
 * @example
 * ```ts
 * const manager = await EchKeyManager.open({
 *   keyDirectory: '/etc/ech', stateFile: '/var/lib/ech/rotation.json',
 *   publicName: 'cover.example', names: ['secret.example'],
 *   publisher: new Rfc2136Publisher({ server: '192.0.2.53', zone: 'example', tsig }),
 * });
 * manager.on('keys', (set) => { currentKeys = set; });
 * await manager.start(); // steps now, then whenever something is due
 * // per connection: const keys = manager.keySet; ... decryptClientHello(hello, keys)
 * ```
 */
export class EchKeyManager extends EventEmitter<EchKeyManagerEvents> {
  readonly #opts: Required<Omit<EchKeyManagerOptions, 'publisher' | 'kem' | 'maximumNameLength'>> & Pick<EchKeyManagerOptions, 'publisher' | 'kem' | 'maximumNameLength'>;
  #state: StateFile = { version: 1, keys: [], lastPublished: null, lastError: null };
  /** Parsed keys by base name (file contents never change once written). */
  readonly #cache = new Map<string, EchKey>();
  #set = new EchKeySet();
  #timer: unknown;
  #running = false;
  #ticking: Promise<void> | undefined;
  #chain: Promise<unknown> = Promise.resolve();

  private constructor(opts: EchKeyManagerOptions) {
    super();
    this.#opts = {
      ...opts,
      period: seconds('period', opts.period, 86400, 1),
      ttl: seconds('ttl', opts.ttl, 300),
      margin: seconds('margin', opts.margin, 3600),
      publishDelay: seconds('publishDelay', opts.publishDelay, 0),
      retryInterval: seconds('retryInterval', opts.retryInterval, 60, 1),
      names: opts.names ?? [],
      clock: opts.clock ?? systemClock,
    };
  }

  /**
   * Open a manager: create the key directory if needed and load the keys
   * and the state file (nothing is created or published until
   * {@link EchKeyManager.step} or {@link EchKeyManager.start}).
   */
  static async open(opts: EchKeyManagerOptions): Promise<EchKeyManager> {
    const m = new EchKeyManager(opts);
    await ensureKeyDirectory(opts.keyDirectory);
    await m.#load();
    m.#rebuild(false);
    return m;
  }

  /** The current key set snapshot; take it once per connection. */
  get keySet(): EchKeySet {
    return this.#set;
  }

  /** Every key and its phase. */
  status(): ManagedKeyStatus[] {
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    return this.#ordered().map((r) => ({
      configId: r.configId,
      phase: phaseOf(r),
      retry: phaseOf(r) === 'active',
      file: this.#path(r),
      created: new Date(r.created).toISOString(),
      published: iso(r.published),
      withdrawn: iso(r.withdrawn),
      deleteAfter: r.withdrawn === null ? null : new Date(r.withdrawn + this.#grace(r)).toISOString(),
    }));
  }

  /** When the next step is due (ms since the epoch). */
  nextDue(): number {
    const o = this.#opts;
    const now = o.clock.now();
    const live = this.#state.keys.filter((r) => r.withdrawn === null);
    const times: number[] = [];
    const newest = Math.max(...live.map((r) => r.created));
    if (!live.length) times.push(now);
    else if (!live.some((r) => r.published === null)) times.push(newest + o.period * 1000);
    for (const r of live) if (r.published === null) times.push(r.created + o.publishDelay * 1000);
    for (const r of this.#state.keys) if (r.withdrawn !== null) times.push(r.withdrawn + this.#grace(r));
    if (!this.#dnsUpToDate()) times.push(now);
    const next = Math.min(...times);
    // After a failed publish, wait retryInterval before anything else.
    const err = this.#state.lastError;
    return err ? Math.max(next, err.at + o.retryInterval * 1000) : next;
  }

  /**
   * Run one rotation step now: create a key if one is due, publish the
   * newest due key, withdraw the keys it replaces, delete keys past their
   * grace period. Steps never overlap (calls queue). A publishing failure
   * does not throw: it is in the report's `error`, and nothing changed.
   */
  step(): Promise<RotationStepReport> {
    const p = this.#chain.then(() => this.#locked(() => this.#step()));
    this.#chain = p.catch(() => undefined);
    return p;
  }

  /** Step now, then keep stepping whenever something is due, until {@link EchKeyManager.stop}. */
  async start(): Promise<RotationStepReport> {
    this.#running = true;
    return this.#tick();
  }

  /**
   * Resolves when no step is running and the next one is scheduled: what a
   * test on a fake clock awaits after firing a timer.
   */
  async whenIdle(): Promise<void> {
    for (;;) {
      const t = this.#ticking;
      await Promise.all([this.#chain, t]);
      if (t === this.#ticking) return;
    }
  }

  /** Stop the schedule and wait for a step in progress. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== undefined) this.#opts.clock.clearTimer(this.#timer);
    this.#timer = undefined;
    await this.whenIdle();
  }

  async #tick(): Promise<RotationStepReport> {
    this.#timer = undefined;
    let report: RotationStepReport;
    let failed = true;
    try {
      report = await this.step();
      failed = false;
    } finally {
      if (this.#running) {
        const clock = this.#opts.clock;
        // After an unexpected failure (disk, lock) try again in retryInterval.
        const due = failed ? clock.now() + this.#opts.retryInterval * 1000 : this.nextDue();
        const delay = Math.min(MAX_TIMER, Math.max(1000, due - clock.now()));
        this.#timer = clock.setTimer(() => {
          this.#ticking = this.#tick().then(
            () => undefined,
            (e: unknown) => {
              this.emit('stepError', e as Error);
            },
          );
        }, delay);
      }
    }
    return report;
  }

  /** How long after its withdrawal a key keeps decrypting, in ms. */
  #grace(r: KeyRecord): number {
    return (Math.max(this.#opts.ttl, r.servedTtl ?? 0) + this.#opts.margin) * 1000;
  }

  /**
   * Check that the publisher can publish (its `check`, e.g. a TSIG-signed
   * query to the DNS server), without changing anything. Resolves at once
   * when there is no publisher or it has no check.
   */
  async check(): Promise<void> {
    await this.#opts.publisher?.check?.();
  }

  #path(r: KeyRecord): string {
    return join(this.#opts.keyDirectory, `${r.base}${r.withdrawn !== null ? '.retired.pem' : '.pem'}`);
  }

  /** Keys in preference order: active, pending, withdrawn; newest first in each. */
  #ordered(): KeyRecord[] {
    const rank = { active: 0, pending: 1, withdrawn: 2 } as const;
    return [...this.#state.keys].sort((a, b) => rank[phaseOf(a)] - rank[phaseOf(b)] || b.created - a.created);
  }

  /** What the key set snapshot depends on: which keys, in which phase. */
  #signature(): string {
    return this.#ordered().map((r) => `${r.base}:${phaseOf(r)}`).join();
  }

  /** Build a new key set snapshot; emit it when asked. */
  #rebuild(emit: boolean): void {
    const set = new EchKeySet();
    for (const r of this.#ordered()) {
      const k = this.#cache.get(r.base);
      if (!k) continue;
      // A fresh EchKey object per snapshot, so an older snapshot's retry flags never change.
      set.add({ ...k, retry: phaseOf(r) === 'active' });
    }
    this.#set = set;
    if (emit) this.emit('keys', set);
  }

  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    const lock = `${this.#opts.stateFile}.lock`;
    let fh;
    try {
      fh = await open(lock, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw stateError(`cannot create lock ${lock}: ${(e as Error).message}`, e);
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs < STALE_LOCK_MS) throw stateError(`another rotation is running (lock ${lock}); remove it if that process is gone`);
      await unlink(lock).catch(() => undefined);
      fh = await open(lock, 'wx', 0o600);
    }
    try {
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      // Another process may have stepped since we loaded: start from disk.
      const before = this.#signature();
      await this.#load();
      if (this.#signature() !== before) this.#rebuild(true);
      return await fn();
    } finally {
      await unlink(lock).catch(() => undefined);
    }
  }

  async #load(): Promise<void> {
    const o = this.#opts;
    let state: StateFile = { version: 1, keys: [], lastPublished: null, lastError: null };
    let text: string | undefined;
    try {
      text = await readFile(o.stateFile, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw stateError(`cannot read state file ${o.stateFile}: ${(e as Error).message}`, e);
    }
    if (text !== undefined) {
      try {
        state = JSON.parse(text) as StateFile;
        if (state.version !== 1 || !Array.isArray(state.keys)) throw new Error('not a version 1 state file');
      } catch (e) {
        throw stateError(`state file ${o.stateFile} is not valid: ${(e as Error).message}`, e);
      }
    }
    const names = (await readdir(o.keyDirectory)).filter((n) => n.endsWith('.pem')).sort();
    const byBase = new Map(state.keys.map((r) => [r.base, r]));
    const now = o.clock.now();
    const keys: KeyRecord[] = [];
    for (const n of names) {
      const retired = n.endsWith('.retired.pem');
      const base = n.slice(0, -(retired ? '.retired.pem' : '.pem').length);
      const path = join(o.keyDirectory, n);
      // X.pem next to X.retired.pem (a copy, not our rename): the retired one
      // counts, and the copy goes, or it would come back as a live key.
      if (!retired && names.includes(`${base}.retired.pem`)) {
        await unlink(path);
        continue;
      }
      let key = this.#cache.get(base);
      if (!key) {
        key = await readEchKeyFile(path);
        this.#cache.set(base, key);
      }
      let r = byBase.get(base);
      if (!r) {
        // A key file the manager did not make (e.g. `ech-server keygen`):
        // adopt it as serving since its file time; a retired one is
        // withdrawn now, so it keeps decrypting for the full grace period.
        const mtime = (await stat(path)).mtimeMs;
        r = { base, configId: key.config.configId, created: Math.min(mtime, now), published: retired ? null : Math.min(mtime, now), withdrawn: retired ? now : null };
      }
      // A crash between renaming a file and writing the state: the file is the later truth.
      if (retired && r.withdrawn === null) r = { ...r, withdrawn: now };
      r = { ...r, configId: key.config.configId };
      if (!retired && r.withdrawn !== null) {
        await rename(path, join(o.keyDirectory, `${base}.retired.pem`));
      }
      keys.push(r);
    }
    for (const b of [...this.#cache.keys()]) if (!keys.some((r) => r.base === b)) this.#cache.delete(b);
    this.#state = { ...state, keys };
  }

  async #saveState(): Promise<void> {
    const path = this.#opts.stateFile;
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  }

  /** The key DNS should carry: the newest active or due pending key. */
  #target(now: number): KeyRecord | undefined {
    const due = this.#state.keys.filter(
      (r) => r.withdrawn === null && (r.published !== null || r.created + this.#opts.publishDelay * 1000 <= now),
    );
    return due.sort((a, b) => b.created - a.created)[0];
  }

  #dnsUpToDate(): boolean {
    const t = this.#target(this.#opts.clock.now());
    const lp = this.#state.lastPublished;
    if (!t) return true;
    if (t.published === null) return false;
    if (!this.#opts.publisher) return true;
    return !!lp && lp.configIds.length === 1 && lp.configIds[0] === t.configId && lp.names.join() === this.#opts.names.join();
  }

  async #step(): Promise<RotationStepReport> {
    const o = this.#opts;
    const now = o.clock.now();
    const report: RotationStepReport = { time: new Date(now).toISOString(), created: [], published: null, withdrawn: [], deleted: [], error: null, keys: [], next: '' };
    let changed = false;

    // 1. Create a key when none is live, or the newest is `period` old and
    //    none is still waiting to be published (a DNS outage must not pile up keys).
    const live = this.#state.keys.filter((r) => r.withdrawn === null);
    const waiting = live.some((r) => r.published === null);
    if (!live.length || (!waiting && Math.max(...live.map((r) => r.created)) + o.period * 1000 <= now)) {
      const key = generateEchKey({
        publicName: o.publicName,
        ...(o.kem ? { kem: o.kem } : {}),
        ...(o.maximumNameLength !== undefined ? { maximumNameLength: o.maximumNameLength } : {}),
        // RFC 9849 §4.1: distinct config_ids among every key still decrypting.
        configId: this.#set.unusedConfigId(),
        retry: false,
      });
      const base = `ech-${o.publicName}-${stamp(now)}-${key.config.configId.toString(16).padStart(2, '0')}`;
      const r: KeyRecord = { base, configId: key.config.configId, created: now, published: null, withdrawn: null };
      await writeEchKeyFile(join(o.keyDirectory, `${base}.pem`), key.config, key.privateKeyRaw);
      const { privateKeyRaw: _secret, ...echKey } = key;
      this.#cache.set(base, { ...echKey, source: join(o.keyDirectory, `${base}.pem`) });
      this.#state.keys.push(r);
      report.created.push(r.configId);
      changed = true;
      // Accept it for decryption at once, before anyone can learn it.
      this.#rebuild(true);
      await this.#saveState();
    }

    // 2. Publish the newest due key; on success it becomes the retry config
    //    and every older live key is withdrawn.
    const target = this.#target(now);
    if (target && !this.#dnsUpToDate()) {
      const config = this.#cache.get(target.base)!.config;
      const list = encodeEchConfigList([config]);
      let result: unknown;
      try {
        if (o.publisher) result = await o.publisher.publish(o.names, list);
      } catch (e) {
        const err = e as Error & { code?: string };
        report.error = { code: err.code ?? 'ERR_PUBLISH', message: err.message };
        this.#state.lastError = { at: now, ...report.error };
        await this.#saveState();
        if (changed) this.#rebuild(false);
        report.keys = this.status();
        report.next = new Date(this.nextDue()).toISOString();
        this.emit('publishError', err);
        this.emit('step', report);
        return report;
      }
      this.#state.lastError = null;
      if (target.published === null) target.published = now;
      this.#state.lastPublished = { at: now, configIds: [target.configId], echConfigList: toBase64(list), names: [...o.names] };
      report.published = { configIds: [target.configId], echConfigList: toBase64(list), names: [...o.names], result: result ?? null };
      const maxTtl = (result as { maxTtl?: unknown } | undefined)?.maxTtl;
      for (const r of this.#state.keys) {
        if (r === target || r.withdrawn !== null || r.created > target.created) continue;
        const from = this.#path(r);
        r.withdrawn = now;
        if (typeof maxTtl === 'number' && Number.isFinite(maxTtl) && maxTtl > o.ttl) r.servedTtl = maxTtl;
        // State first: a crash after this leaves a withdrawn key whose file
        // #load renames; the other order could lose the withdrawal time.
        await this.#saveState();
        await rename(from, this.#path(r));
        report.withdrawn.push(r.configId);
      }
      changed = true;
    }

    // 3. Delete keys withdrawn more than max(ttl, the TTL DNS served) + margin ago.
    for (const r of [...this.#state.keys]) {
      if (r.withdrawn === null || r.withdrawn + this.#grace(r) > now) continue;
      this.#state.keys = this.#state.keys.filter((x) => x !== r);
      await this.#saveState();
      await unlink(this.#path(r)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw stateError(`cannot delete ${this.#path(r)}: ${e.message}`, e);
      });
      this.#cache.delete(r.base);
      report.deleted.push(r.configId);
      changed = true;
    }

    await this.#saveState();
    if (changed) this.#rebuild(true);
    report.keys = this.status();
    report.next = new Date(this.nextDue()).toISOString();
    this.emit('step', report);
    return report;
  }
}
