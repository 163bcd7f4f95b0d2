/**
 * `serve` on every core: `"workers": "auto" | N` runs one primary process
 * and N worker processes sharing one listening port through `node:cluster`
 * with `SCHED_NONE` scheduling (the primary binds the socket once, hands the
 * handle to every worker and each worker accepts from it: the kernel picks
 * the worker, the primary is not on the path of a connection).
 *
 * The primary owns what must happen once: the ticket-key secret (48 random
 * bytes, so a ticket issued by one worker resumes on any other), the ECH key
 * set (read from the key directory, or made by the key manager when
 * `rotation` is on, then sent to every worker, private keys included, over
 * the IPC channel of the same user), DNS publishing, the admin listener
 * (`/metrics` sums the workers' counters), SIGHUP (every worker reloads, or
 * none does) and SIGTERM (every worker drains). A worker that dies is
 * restarted; the others do not notice.
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import net, { type AddressInfo } from 'node:net';
import { EchError } from '../wire/alert.js';
import { EchKeySet } from '../keys/key-set.js';
import { loadKeyDirectoryWith, parseEchKeyFile } from '../keys/files.js';
import { EchKeyManager } from '../keys/manager.js';
import { ServeConfigError, type ServeConfig } from './config.js';
import { EchFrontEnd } from './front-end.js';
import { jsonLines, type LogSink, silent } from './log.js';
import { ServeListenError, frontEndOptionsFromConfig, startServe, type RunningServe } from './serve.js';
import { startRotation } from './rotation.js';
import { listenAdmin } from './admin.js';

/**
 * One ECH key as the primary sends it to a worker: the key file's text
 * (PKCS#8 private key and ECHConfig), whether it is a retry config, and
 * where it came from.
 * @group Front end
 */
export interface SharedEchKey {
  text: string;
  retry: boolean;
  source: string;
}

/**
 * The number of workers a `workers` setting asks for: `'auto'` is
 * `os.availableParallelism()`; absent is 1.
 * @group Front end
 * @example
 * ```ts
 * resolveWorkers('auto'); // 2 on a two-core machine
 * ```
 */
export function resolveWorkers(setting: number | 'auto' | undefined): number {
  if (setting === undefined) return 1;
  return setting === 'auto' ? availableParallelism() : setting;
}

/**
 * Rebuild a key set from what the primary sent.
 * @group Front end
 * @example
 * ```ts
 * const keys = keySetFromShared(message.keys);
 * ```
 */
export function keySetFromShared(keys: readonly SharedEchKey[]): EchKeySet {
  return new EchKeySet(keys.map((k) => ({ ...parseEchKeyFile(k.text, k.source), retry: k.retry })));
}

/**
 * Sum Prometheus text expositions series by series (same name and labels),
 * keeping the first `# HELP` / `# TYPE` of each family. Families named in
 * `skip` are left out.
 * @group Front end
 * @example
 * ```ts
 * sumMetrics(['a_total 1\n', 'a_total 2\n']); // 'a_total 3\n'
 * ```
 */
export function sumMetrics(texts: readonly string[], skip: ReadonlySet<string> = new Set()): string {
  const families = new Map<string, { head: string[]; series: Map<string, number> }>();
  const familyOf = (series: string) => {
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(series)?.[0] ?? series;
    // A histogram's _bucket/_sum/_count series belong to its family.
    for (const suffix of ['_bucket', '_sum', '_count']) {
      const base = name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined;
      if (base && families.has(base)) return base;
    }
    return name;
  };
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { head: [], series: new Map() }));
    return f;
  };
  for (const text of texts) {
    const seenHead = new Set<string>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) /.exec(line);
      if (m) {
        const f = family(m[2]!);
        const tag = `${m[1]} ${m[2]}`;
        if (!seenHead.has(tag) && f.head.length < 2 && !f.head.some((h) => h.startsWith(`# ${m[1]} `))) f.head.push(line);
        seenHead.add(tag);
        continue;
      }
      if (line.startsWith('#')) continue;
      const at = line.lastIndexOf(' ');
      if (at <= 0) continue;
      const series = line.slice(0, at);
      const value = Number(line.slice(at + 1));
      if (!Number.isFinite(value)) continue;
      const f = family(familyOf(series));
      f.series.set(series, (f.series.get(series) ?? 0) + value);
    }
  }
  const out: string[] = [];
  for (const [name, f] of families) {
    if (skip.has(name)) continue;
    out.push(...f.head);
    for (const [series, value] of f.series) out.push(`${series} ${value}`);
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

// ------------------------------------------------------------------ IPC

type ToWorker =
  | { t: 'start'; index: number; config: ServeConfig; keys: SharedEchKey[] | undefined; ticketKeys: Uint8Array }
  | { t: 'reload'; id: number; config: ServeConfig; keys: SharedEchKey[] | undefined }
  | { t: 'keys'; keys: SharedEchKey[] }
  | { t: 'metrics'; id: number }
  | { t: 'drain' };

type FromWorker =
  | { t: 'hello' }
  | { t: 'ready'; host: string; port: number }
  | { t: 'failed'; message: string; field?: string; code?: string }
  | { t: 'reloaded'; id: number; ok: boolean; error?: string }
  | { t: 'metrics'; id: number; text: string; active: number };

/** What the primary hands a worker: the `serve` config minus what only the primary does. */
function workerConfig(config: ServeConfig): ServeConfig {
  const { admin: _admin, rotation: _rotation, ...rest } = config;
  return rest;
}

/**
 * A running multi-process `serve` (the primary's view).
 * @group Front end
 */
export interface RunningWorkers {
  host: string;
  port: number;
  /** The admin listener's port (in the primary), when configured. */
  adminPort: number | undefined;
  /** Worker process ids, by worker index. */
  pids(): number[];
  /**
   * Reload every worker with `config`, or none of them (the error says
   * why). Given a function (e.g. one reading the config file), its failure
   * is a failed reload too: logged (`reload_failed`), counted, rethrown.
   */
  reload(config: ServeConfig | (() => Promise<ServeConfig>)): Promise<void>;
  /** Drain every worker, then stop. */
  close(): Promise<void>;
}

interface Slot {
  index: number;
  worker: Worker;
  startedAt: number;
  restarts: number;
}

/**
 * Start the primary of a multi-process `serve`: `resolveWorkers(config.workers)`
 * workers (built from the compiled `worker-main.js` next to this module),
 * each running {@link startServe} with the keys and ticket secret the
 * primary gives it. Resolves once every worker listens; a worker that cannot
 * start (bad file, busy port) stops them all and rejects with its error.
 * @group Front end
 * @example
 * ```ts
 * const running = await startWorkers({ ...config, workers: 'auto' }, jsonLines());
 * process.on('SIGHUP', async () => running.reload(await loadServeConfig(file)));
 * ```
 */
export async function startWorkers(config: ServeConfig, log: LogSink = silent): Promise<RunningWorkers> {
  const count = resolveWorkers(config.workers);
  let current = config;
  let manager: EchKeyManager | undefined;
  const texts = new Map<string, string>();

  // Keys as every worker gets them: from the key manager (rotation), from
  // the key directory, or undefined in keyless mode (each worker loads the
  // ECHCONFIG-only files and decapsulates through its key-server client).
  const sharedFromSet = async (set: EchKeySet): Promise<SharedEchKey[]> =>
    Promise.all(
      set.keys().map(async (k) => {
        const source = k.source!;
        let text = texts.get(source);
        if (text === undefined) texts.set(source, (text = await readFile(source, 'utf8')));
        return { text, retry: k.retry, source };
      }),
    );
  const loadShared = async (c: ServeConfig): Promise<SharedEchKey[] | undefined> => {
    if (manager) return sharedFromSet(manager.keySet);
    if (c.keyless) return undefined;
    const list: SharedEchKey[] = [];
    try {
      await loadKeyDirectoryWith(c.keys, (text, path) => {
        const key = parseEchKeyFile(text, path);
        list.push({ text, retry: !path.endsWith('.retired.pem'), source: path });
        return [key];
      });
    } catch (e) {
      throw new ServeConfigError('keys', (e as Error).message);
    }
    return list;
  };
  // Everything a worker will load, loaded once here first, so a broken
  // configuration is reported before any worker sees it.
  const precheck = async (c: ServeConfig, keys: SharedEchKey[] | undefined) => {
    if (c.keyless) return; // the key server is the workers' to reach
    try {
      new EchFrontEnd(await frontEndOptionsFromConfig(c, silent, undefined, keySetFromShared(keys!)));
    } catch (e) {
      if (e instanceof ServeConfigError || !(e instanceof EchError)) throw e;
      throw new ServeConfigError('publicName', e.message);
    }
  };

  if (config.rotation) {
    manager = await startRotation(config, log);
  }
  let keys: SharedEchKey[] | undefined;
  try {
    keys = await loadShared(config);
    await precheck(config, keys);
  } catch (e) {
    await manager?.stop();
    throw e;
  }
  const ticketKeys = new Uint8Array(randomBytes(48));
  // The primary shares one socket per listen address (as the workers name
  // it) and closes it when the last worker using it is gone. Port 0 is
  // resolved here first, so every worker (restarted ones too) names the
  // same port and a restart after every worker died binds it again.
  if (config.listen.port === 0) {
    try {
      current = { ...current, listen: { ...current.listen, port: await freePort(config.listen.host) } };
    } catch (e) {
      await manager?.stop();
      throw new ServeListenError('listen', { host: config.listen.host, port: 0 }, e);
    }
  }

  // SCHED_NONE: the workers accept from the shared socket themselves (the
  // default round-robin would put the primary on every connection's path).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker-main.js', import.meta.url)), serialization: 'advanced', args: [] });

  const slots: Slot[] = [];
  let stopping = false;
  let nextId = 1;
  const pending = new Map<number, (m: FromWorker) => void>();
  let reloadsOk = 0;
  let reloadsFailed = 0;

  const request = <T extends FromWorker>(w: Worker, message: ToWorker & { id: number }, timeoutMs: number): Promise<T | undefined> =>
    new Promise((res) => {
      const t = setTimeout(() => {
        pending.delete(message.id);
        res(undefined);
      }, timeoutMs);
      pending.set(message.id, (m) => {
        clearTimeout(t);
        pending.delete(message.id);
        res(m as T);
      });
      try {
        w.send(message);
      } catch {
        clearTimeout(t);
        pending.delete(message.id);
        res(undefined);
      }
    });

  const fork = (index: number, restarts: number): Promise<{ host: string; port: number }> => {
    const worker = cluster.fork({ ECH_SERVER_WORKER: String(index) });
    const slot: Slot = { index, worker, startedAt: Date.now(), restarts };
    slots[index] = slot;
    return new Promise((res, rej) => {
      let started = false;
      worker.on('message', (m: FromWorker) => {
        // The worker asks once its handler is in place (a message sent at
        // 'online' can arrive before the worker's ESM entry has loaded, and
        // a message with no listener is dropped).
        if (m.t === 'hello') worker.send({ t: 'start', index, config: workerConfig(current), keys, ticketKeys } satisfies ToWorker);
        else if (m.t === 'ready') {
          started = true;
          log({ event: 'worker_started', worker: index, pid: worker.process.pid });
          res({ host: m.host, port: m.port });
        } else if (m.t === 'failed') {
          const e =
            m.code && /^E[A-Z]+$/.test(m.code) && (m.field === undefined || m.field === 'listen')
              ? new ServeListenError('listen', current.listen, Object.assign(new Error(m.message), { code: m.code }))
              : m.field
                ? new ServeConfigError(m.field, m.message.replace(/^[^:]*: /, ''))
                : new EchError('ERR_CONFIG', 'internal_error', m.message);
          rej(e);
        } else if ('id' in m) pending.get(m.id)?.(m);
      });
      worker.on('exit', (code, signal) => {
        if (!started) rej(new EchError('ERR_CONFIG', 'internal_error', `worker ${index} exited before listening (${signal ?? code})`));
        if (stopping || slots[index] !== slot) return;
        log({ event: 'worker_died', worker: index, pid: worker.process.pid, code, signal });
        // A worker that dies at once again and again is restarted slower.
        const delay = Date.now() - slot.startedAt < 2000 ? Math.min(10_000, 500 * 2 ** Math.min(slot.restarts, 5)) : 0;
        setTimeout(() => {
          if (stopping) return;
          fork(index, slot.restarts + 1).catch((e: Error) => log({ event: 'worker_restart_failed', worker: index, error: e.message }));
        }, delay).unref();
      });
    });
  };

  let addr: { host: string; port: number };
  try {
    const addrs = await Promise.all(Array.from({ length: count }, (_, i) => fork(i + 1, 0)));
    addr = addrs[0]!;
  } catch (e) {
    stopping = true;
    for (const s of slots) if (s && !s.worker.isDead()) s.worker.process.kill('SIGKILL');
    await manager?.stop();
    throw e;
  }
  const live = () => slots.filter((s): s is Slot => s !== undefined && !s.worker.isDead());

  manager?.on('keys', (set: EchKeySet) => {
    sharedFromSet(set).then(
      (k) => {
        keys = k;
        for (const s of live()) s.worker.send({ t: 'keys', keys: k } satisfies ToWorker);
        log({ event: 'keys_rotated', keys: set.size, retry: set.retryConfigs().map((c) => c.configId) });
      },
      (e: Error) => log({ event: 'keys_sync_failed', error: e.message }),
    );
  });

  const metrics = async (): Promise<string> => {
    const answers = await Promise.all(
      live().map(async (s) => ({ s, m: await request<Extract<FromWorker, { t: 'metrics' }>>(s.worker, { t: 'metrics', id: nextId++ }, 5000) })),
    );
    const sum = sumMetrics(
      answers.flatMap((a) => (a.m ? [a.m.text] : [])),
      new Set(['ech_reloads_total']),
    );
    const per = [
      '# HELP ech_worker_up Whether the worker answered this scrape.',
      '# TYPE ech_worker_up gauge',
      ...slots.filter(Boolean).map((s) => `ech_worker_up{worker="${s.index}"} ${answers.some((a) => a.s === s && a.m) ? 1 : 0}`),
      '# HELP ech_worker_active_connections Connections open now, per worker.',
      '# TYPE ech_worker_active_connections gauge',
      ...answers.map((a) => `ech_worker_active_connections{worker="${a.s.index}"} ${a.m?.active ?? 0}`),
      '# HELP ech_worker_connections_total Connections handled, per worker (since it started).',
      '# TYPE ech_worker_connections_total counter',
      ...answers.map((a) => `ech_worker_connections_total{worker="${a.s.index}"} ${a.m ? sumSeries(a.m.text, 'ech_connections_total') : 0}`),
      '# HELP ech_worker_restarts_total Times the worker was restarted after dying.',
      '# TYPE ech_worker_restarts_total counter',
      ...slots.filter(Boolean).map((s) => `ech_worker_restarts_total{worker="${s.index}"} ${s.restarts}`),
      '# HELP ech_reloads_total Configuration reloads, by result.',
      '# TYPE ech_reloads_total counter',
      `ech_reloads_total{result="ok"} ${reloadsOk}`,
      `ech_reloads_total{result="error"} ${reloadsFailed}`,
    ];
    return `${sum}${per.join('\n')}\n`;
  };

  let admin: http.Server | undefined;
  let adminPort: number | undefined;
  if (config.admin) {
    try {
      ({ server: admin, port: adminPort } = await listenAdmin(config.admin, {
        metrics,
        health: () => {
          const ok = !stopping && live().length > 0;
          return { ok, body: ok ? 'ok\n' : 'draining\n' };
        },
      }));
    } catch (e) {
      stopping = true;
      for (const s of live()) s.worker.process.kill('SIGKILL');
      await manager?.stop();
      throw new ServeListenError('admin', config.admin, e);
    }
    log({ event: 'admin_listening', port: adminPort });
  }
  log({ event: 'workers_listening', workers: count, host: addr.host, port: addr.port });

  return {
    host: addr.host,
    port: addr.port,
    adminPort,
    pids: () => slots.filter(Boolean).map((s) => s.worker.process.pid!),
    async reload(source: ServeConfig | (() => Promise<ServeConfig>)) {
      const old = { config: current, keys };
      try {
        const next = typeof source === 'function' ? await source() : source;
        const nextKeys = await loadShared(next);
        await precheck(next, nextKeys);
        const workers = live();
        const results = await Promise.all(
          workers.map((s) => request<Extract<FromWorker, { t: 'reloaded' }>>(s.worker, { t: 'reload', id: nextId++, config: workerConfig({ ...next, listen: current.listen }), keys: nextKeys }, 60_000)),
        );
        const failed = results.map((r, i) => ({ r, s: workers[i]! })).filter((x) => !x.r?.ok);
        if (failed.length > 0) {
          // All or none: the workers that took the new configuration go back.
          await Promise.all(
            results.map((r, i) =>
              r?.ok ? request(workers[i]!.worker, { t: 'reload', id: nextId++, config: workerConfig(old.config), keys: old.keys }, 60_000) : undefined,
            ),
          );
          throw new EchError('ERR_CONFIG', 'internal_error', `worker ${failed[0]!.s.index}: ${failed[0]!.r?.error ?? 'no answer'}`);
        }
        current = { ...next, listen: current.listen };
        keys = nextKeys;
        reloadsOk++;
        log({ event: 'reloaded', workers: workers.length, routes: next.routes.length });
      } catch (e) {
        reloadsFailed++;
        log({ event: 'reload_failed', error: (e as Error).message });
        throw e;
      }
    },
    async close() {
      stopping = true;
      await manager?.stop();
      const exits = live().map(
        (s) =>
          new Promise<void>((res) => {
            const kill = setTimeout(() => s.worker.process.kill('SIGKILL'), current.drainTimeoutMs + 5000);
            s.worker.once('exit', () => {
              clearTimeout(kill);
              res();
            });
            try {
              s.worker.send({ t: 'drain' } satisfies ToWorker);
            } catch {
              s.worker.process.kill('SIGTERM');
            }
          }),
      );
      await Promise.all(exits);
      if (admin) {
        admin.closeAllConnections();
        await new Promise<void>((res) => admin!.close(() => res()));
      }
      log({ event: 'stopped' });
    },
  };
}

function freePort(host: string): Promise<number> {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.once('error', rej);
    srv.listen(0, host, () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => res(port));
    });
  });
}

function sumSeries(text: string, name: string): number {
  let n = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) n += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  return n;
}

/**
 * The worker side: wait for the primary's `start` message, run
 * {@link startServe} with the shared keys and ticket secret, then follow the
 * primary's reload, keys, metrics and drain messages. Logs carry `worker`.
 * Exits when the primary goes away.
 * @group Front end
 * @example
 * ```ts
 * // worker-main.js
 * await runWorker();
 * ```
 */
export async function runWorker(): Promise<void> {
  const send = (m: FromWorker) => {
    if (process.connected) process.send!(m);
  };
  const base = jsonLines(process.stderr);
  let running: RunningServe | undefined;
  let keys: EchKeySet | undefined;
  let closing: Promise<void> | undefined;
  const drain = () => {
    closing ??= (running ? running.close() : Promise.resolve()).finally(() => process.exit(0));
    return closing;
  };
  // The primary signals the workers; a terminal's ^C reaches them too.
  process.on('SIGHUP', () => undefined);
  process.on('SIGINT', () => void drain());
  process.on('SIGTERM', () => void drain());
  process.on('disconnect', () => void drain());
  process.on('message', (m: ToWorker) => {
    if (m.t === 'start') {
      const log: LogSink = (e) => base({ ...e, worker: m.index });
      keys = m.keys ? keySetFromShared(m.keys) : undefined;
      startServe(m.config, log, { ...(keys ? { keys: () => keys! } : {}), ticketKeys: m.ticketKeys }).then(
        (r) => {
          running = r;
          send({ t: 'ready', host: r.host, port: r.port });
        },
        (e: Error & { field?: string; code?: string }) => {
          send({ t: 'failed', message: e.message, ...(e.field ? { field: e.field } : {}), ...(e.code ? { code: e.code } : {}) });
          setTimeout(() => process.exit(1), 50);
        },
      );
    } else if (m.t === 'reload') {
      const before = keys;
      try {
        if (m.keys) keys = keySetFromShared(m.keys);
      } catch (e) {
        send({ t: 'reloaded', id: m.id, ok: false, error: (e as Error).message });
        return;
      }
      running!.reload(m.config).then(
        () => {
              send({ t: 'reloaded', id: m.id, ok: true });
        },
        (e: Error) => {
          keys = before;
          send({ t: 'reloaded', id: m.id, ok: false, error: e.message });
        },
      );
    } else if (m.t === 'keys') {
      keys = keySetFromShared(m.keys);
      running?.frontEnd.update({ keys });
    } else if (m.t === 'metrics') {
      send({ t: 'metrics', id: m.id, text: running?.metricsText() ?? '', active: running?.frontEnd.connections ?? 0 });
    } else if (m.t === 'drain') {
      void drain();
    }
  });
  send({ t: 'hello' });
}
