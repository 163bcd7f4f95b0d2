// @module-tag peer-boringssl
// @module-tag peer-chromium
// `ech-server serve` with "workers": 2 (src/front/workers.ts), as a user runs
// it: one port, every worker with the same ECH keys (BoringSSL accepted on
// each) and the same ticket secret (a ticket from one worker resumes on the
// other and on a restarted one, Node's client); SIGHUP reloads every worker
// or none; /metrics sums the workers; rotation runs once; a killed worker is
// restarted while the other's connections carry on; SIGTERM drains all.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { BASE_FLAGS, chromiumBinary } from './peers/chromium.js';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import net from 'node:net';
import { HARNESS_BINARY, buildHarness, runClient } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';
import { FrontEndMetrics } from '../src/front/metrics.js';
import { resolveWorkers, sumMetrics } from '../src/front/workers.js';
import { validateServeConfig } from '../src/front/config.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;
let pki: TestPki;
let ca: string;
let listB64: string;
let alpha1: { certPath: string; keyPath: string; cert: string };
let alpha2: { certPath: string; keyPath: string; cert: string };
let base: Record<string, unknown>;

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-workers-'));
  pki = makePki();
  ca = pki.caPem;
  const cover = pki.leaf('ec', ['cover.example']);
  alpha1 = pki.leaf('ec', ['alpha.example']);
  alpha2 = pki.leaf('ec', ['alpha.example']);
  const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys')]);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  base = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [{ serverName: 'alpha.example', cert: alpha1.certPath, key: alpha1.keyPath, respond: 'ech-status' }],
    admin: '127.0.0.1:0',
    workers: 2,
    drainTimeoutMs: 5000,
  };
}, 120_000);
afterAll(async () => {
  pki?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(f: () => T | undefined | Promise<T | undefined>, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

type Event = Record<string, unknown> & { event: string };
const events = (s: ServeProcess): Event[] =>
  s
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{"time"'))
    .map((l) => JSON.parse(l) as Event);
const handshakes = (s: ServeProcess) => events(s).filter((e) => e.event === 'handshake');
const workerPids = (s: ServeProcess): Map<number, number> => {
  const m = new Map<number, number>();
  for (const e of events(s)) if (e.event === 'worker_started') m.set(e['worker'] as number, e['pid'] as number);
  return m;
};
const adminPort = (s: ServeProcess) => Number(/"admin":(\d+)/.exec(s.output())![1]);
const GET = (host: string, close = true) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: ${close ? 'close' : 'keep-alive'}\r\n\r\n`;

interface NodeResult {
  reused: boolean;
  fingerprint: string;
  session: Buffer | undefined;
  body: string;
}

/** One Node TLS 1.3 client connection (no ECH) to alpha.example with one GET. */
function nodeGet(port: number, session?: Buffer): Promise<NodeResult> {
  return new Promise((res, rej) => {
    let last: Buffer | undefined;
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'alpha.example', ca, ALPNProtocols: ['http/1.1'], minVersion: 'TLSv1.3', ...(session ? { session } : {}) });
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
    s.on('session', (t) => (last = t));
    let body = '';
    let secure = false;
    s.on('secureConnect', () => {
      secure = true;
      s.write(GET('alpha.example'));
    });
    s.on('data', (d) => (body += d));
    s.on('error', rej);
    s.on('close', () => rej(new Error('closed before the response ended')));
    s.on('end', () => {
      if (!secure) return rej(new Error('ended before the handshake'));
      res({ reused: s.isSessionReused(), fingerprint: s.getPeerCertificate()?.fingerprint256 ?? '', session: last, body });
      s.destroy();
    });
  });
}

/** A Node connection and the worker that served it (from the handshake log line it adds). */
async function servedBy<T>(s: ServeProcess, f: () => Promise<T>): Promise<{ r: T; worker: number }> {
  const before = handshakes(s).length;
  const r = await f();
  const worker = await until(() => {
    const h = handshakes(s);
    return h.length > before ? (h[h.length - 1]!['worker'] as number) : undefined;
  }, 'the handshake log line');
  return { r, worker };
}

/** Connect until both workers served at least one connection; every result goes to `check`. */
async function onBothWorkers<T>(s: ServeProcess, f: () => Promise<T>, check: (r: T) => void, max = 60): Promise<void> {
  const seen = new Set<number>();
  for (let i = 0; i < max && seen.size < 2; i++) {
    const { r, worker } = await servedBy(s, f);
    check(r);
    seen.add(worker);
  }
  expect([...seen].sort()).toEqual([1, 2]);
}

const fingerprintOf = (pem: string) => new X509Certificate(pem).fingerprint256;

async function metrics(s: ServeProcess): Promise<string> {
  return new Promise((res, rej) => {
    http.get({ host: '127.0.0.1', port: adminPort(s), path: '/metrics' }, (r) => {
      let b = '';
      r.on('data', (d) => (b += d));
      r.on('end', () => res(b));
    }).on('error', rej);
  });
}
const series = (text: string, re: RegExp) =>
  text
    .split('\n')
    .filter((l) => re.test(l))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function withServe<T>(extra: Record<string, unknown>, fn: (s: ServeProcess) => Promise<T>): Promise<T> {
  const s = await startServe(dir, { ...base, ...extra });
  try {
    return await fn(s);
  } finally {
    const pids = [...workerPids(s).values()];
    const code = await s.stop();
    if (code !== 0) console.error(s.output());
    expect(code).toBe(0);
    // SIGTERM to the primary drains and stops every worker.
    for (const pid of pids) expect(alive(pid)).toBe(false);
  }
}

describe('serve with "workers": 2', () => {
  it('every worker accepts ECH with the same keys (BoringSSL), and /metrics sums the workers', async () => {
    await withServe({}, async (s) => {
      expect(workerPids(s).size).toBe(2);
      let n = 0;
      await onBothWorkers(
        s,
        () => runClient({ port: s.port, sni: 'alpha.example', echConfigList: listB64, ca: join(pki.dir, 'ca.pem'), alpn: ['http/1.1'], send: GET('alpha.example'), read: true }),
        (r) => {
          n++;
          expect(r.error).toBeNull();
          expect(r.echAccepted).toBe(true);
          expect(r.peerCertSubject).toMatch(/alpha\.example/);
        },
      );
      const m = await metrics(s);
      // The sum over workers, and per-worker series adding up to it.
      expect(series(m, /^ech_connections_total\{status="accepted"\}/)).toBe(n);
      expect(series(m, /^ech_worker_connections_total\{worker="[12]"\}/)).toBe(n);
      expect(series(m, /^ech_worker_connections_total\{worker="1"\}/)).toBeGreaterThan(0);
      expect(series(m, /^ech_worker_connections_total\{worker="2"\}/)).toBeGreaterThan(0);
      expect(series(m, /^ech_handshake_duration_seconds_count/)).toBe(n);
      expect(m).toMatch(/^ech_worker_up\{worker="1"\} 1$/m);
      expect(m).toMatch(/^ech_worker_up\{worker="2"\} 1$/m);
    });
  }, 90_000);

  it('a session ticket issued by one worker resumes on the other, and on restarted workers', async () => {
    await withServe({}, async (s) => {
      const first = await servedBy(s, () => nodeGet(s.port));
      expect(first.r.reused).toBe(false);
      const ticket = first.r.session!;
      expect(ticket).toBeDefined();
      // Resume until a resumption lands on the other worker.
      let other: NodeResult | undefined;
      for (let i = 0; i < 60 && !other; i++) {
        const x = await servedBy(s, () => nodeGet(s.port, ticket));
        expect(x.r.reused).toBe(true);
        if (x.worker !== first.worker) other = x.r;
      }
      expect(other?.reused).toBe(true);
      // Kill both workers: the primary restarts them with the same ticket secret.
      const before = workerPids(s);
      for (const pid of before.values()) process.kill(pid, 'SIGKILL');
      await until(() => {
        const now = workerPids(s);
        return [1, 2].every((w) => now.get(w) !== before.get(w)) ? true : undefined;
      }, 'both workers restarted');
      expect(events(s).filter((e) => e.event === 'worker_died')).toHaveLength(2);
      const again = await nodeGet(s.port, ticket);
      expect(again.reused).toBe(true);
      expect(again.body).toMatch(/"site":"alpha\.example"/);
    });
  }, 90_000);

  it('SIGHUP reloads every worker; a broken config leaves every worker on the old one', async () => {
    await withServe({}, async (s) => {
      const fp1 = fingerprintOf(alpha1.cert);
      const fp2 = fingerprintOf(alpha2.cert);
      await onBothWorkers(s, () => nodeGet(s.port), (r) => expect(r.fingerprint).toBe(fp1));
      const next = { ...base, routes: [{ serverName: 'alpha.example', cert: alpha2.certPath, key: alpha2.keyPath, respond: 'ech-status' }] };
      await writeFile(s.file, JSON.stringify(next));
      s.child.kill('SIGHUP');
      await until(() => (events(s).some((e) => e.event === 'reloaded' && e['workers'] === 2) ? true : undefined), 'the reload');
      expect(events(s).filter((e) => e.event === 'reloaded' && e['worker'] !== undefined)).toHaveLength(2);
      await onBothWorkers(s, () => nodeGet(s.port), (r) => expect(r.fingerprint).toBe(fp2));
      // Broken: a certificate file that does not exist.
      await writeFile(s.file, JSON.stringify({ ...base, routes: [{ serverName: 'alpha.example', cert: join(dir, 'missing.pem'), key: alpha1.keyPath, respond: 'ech-status' }] }));
      s.child.kill('SIGHUP');
      const failed = await until(() => events(s).find((e) => e.event === 'reload_failed'), 'reload_failed');
      expect(String(failed['error'])).toMatch(/routes\[0\]\.cert/);
      await onBothWorkers(s, () => nodeGet(s.port), (r) => expect(r.fingerprint).toBe(fp2));
      const m = await metrics(s);
      expect(m).toMatch(/^ech_reloads_total\{result="ok"\} 1$/m);
      expect(m).toMatch(/^ech_reloads_total\{result="error"\} 1$/m);
    });
  }, 90_000);

  it('rotation and DNS publishing run once, in the primary; every worker gets the new key', async () => {
    const zone = join(dir, 'rot-https.zone');
    const keys = join(dir, 'rot-keys');
    await withServe(
      {
        keys,
        rotation: {
          publicName: 'cover.example',
          period: 600,
          ttl: 1,
          margin: 1,
          names: ['alpha.example'],
          stateFile: 'rot-state.json',
          publisher: { type: 'file', prefix: 'rot-https' },
        },
      },
      async (s) => {
        const published = await until(async () => {
          try {
            return /ech=(\S+)/.exec(await readFile(zone, 'utf8'))?.[1];
          } catch {
            return undefined;
          }
        }, 'the published key');
        await onBothWorkers(
          s,
          () => runClient({ port: s.port, sni: 'alpha.example', echConfigList: published, ca: join(pki.dir, 'ca.pem'), send: GET('alpha.example'), read: true }),
          (r) => expect(r.echAccepted).toBe(true),
        );
        expect(events(s).filter((e) => e.event === 'rotation_started')).toHaveLength(1);
        expect((await readdir(keys)).filter((n) => n.endsWith('.pem'))).toHaveLength(1);
      },
    );
  }, 90_000);

  it('a killed worker is restarted with a log line; the other worker\'s connections and handshakes carry on', async () => {
    await withServe({}, async (s) => {
      // Established keep-alive connections, each known to be on worker 1 or 2.
      const open: { sock: tls.TLSSocket; worker: number }[] = [];
      for (let i = 0; i < 40 && !(open.some((o) => o.worker === 1) && open.filter((o) => o.worker === 2).length >= 3); i++) {
        const { r, worker } = await servedBy(
          s,
          () =>
            new Promise<tls.TLSSocket>((res, rej) => {
              const sock = tls.connect({ port: s.port, host: '127.0.0.1', servername: 'alpha.example', ca, ALPNProtocols: ['http/1.1'] }, () => res(sock));
              sock.on('error', rej);
            }),
        );
        r.on('error', () => undefined);
        open.push({ sock: r, worker });
      }
      expect(open.some((o) => o.worker === 1)).toBe(true);
      expect(open.some((o) => o.worker === 2)).toBe(true);
      // A stream of handshakes (two at a time) while worker 1 is killed.
      const victim = workerPids(s).get(1)!;
      let ok = 0;
      const failures: string[] = [];
      const end = Date.now() + 3000;
      const stream = async () => {
        while (Date.now() < end) {
          try {
            const r = await nodeGet(s.port);
            if (/"site":"alpha\.example"/.test(r.body)) ok++;
            else failures.push(`bad body ${r.body.slice(0, 40)}`);
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
      };
      const streams = Promise.all([stream(), stream()]);
      await sleep(800);
      process.kill(victim, 'SIGKILL');
      await streams;
      // Only the handshakes in flight on the killed worker can fail.
      expect(failures.length).toBeLessThanOrEqual(2);
      expect(ok).toBeGreaterThan(10);
      const died = events(s).find((e) => e.event === 'worker_died');
      expect(died).toMatchObject({ worker: 1, pid: victim, signal: 'SIGKILL' });
      await until(() => (workerPids(s).get(1) !== victim ? true : undefined), 'worker 1 restarted');
      // The other worker's established connections still answer.
      const answers = await Promise.all(
        open.map(
          (o) =>
            new Promise<boolean>((res) => {
              let b = '';
              o.sock.on('data', (d) => {
                b += d;
                if (b.includes('"site":"alpha.example"')) res(true);
              });
              o.sock.on('close', () => res(false));
              if (o.sock.destroyed) res(false);
              else o.sock.write(GET('alpha.example'));
              setTimeout(() => res(false), 5000);
            }),
        ),
      );
      open.forEach((o, i) => expect({ worker: o.worker, answered: answers[i] }).toEqual({ worker: o.worker, answered: o.worker === 2 }));
      for (const o of open) o.sock.destroy();
    });
  }, 90_000);

  it('the primary is on no connection\'s path: 100 ECH handshakes (BoringSSL) do not wake it, and both workers serve', async () => {
    // SCHED_NONE: each worker accepts from the shared socket itself, and its
    // logs go straight to the inherited stderr. Round-robin scheduling (the
    // primary accepts and sends each connection to a worker) or an IPC
    // message per connection would wake the primary at least once per
    // handshake.
    const wakeups = (pid: number) =>
      readdirSync(`/proc/${pid}/task`).reduce((n, t) => {
        try {
          return n + Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'))?.[1] ?? 0);
        } catch {
          return n; // the thread ended
        }
      }, 0);
    await withServe({}, async (s) => {
      const primary = s.child.pid!;
      await sleep(500);
      const before = wakeups(primary);
      const { stdout } = await promisify(execFile)(
        HARNESS_BINARY,
        ['client', '--connect', `127.0.0.1:${s.port}`, '--sni', 'alpha.example', '--ech-config-list', listB64, '--alpn', 'http/1.1', '--send-b64', Buffer.from(GET('alpha.example')).toString('base64'), '--read', '--count', '100', '--timeout', '10'],
        { timeout: 60_000 },
      );
      await sleep(300);
      const woken = wakeups(primary) - before;
      const summary = JSON.parse(stdout.trim().split('\n').pop()!) as { handshakes: number; echAccepted: number };
      expect(summary).toMatchObject({ handshakes: 100, echAccepted: 100 });
      // Round-robin scheduling woke it 270 times for these 100 handshakes;
      // an idle primary wakes a few times on its own (V8's idle-time tasks),
      // more on a loaded machine: half the handshakes is the bound.
      expect(woken).toBeLessThan(50);
      const by = handshakes(s).reduce((m, e) => m.set(e['worker'] as number, (m.get(e['worker'] as number) ?? 0) + 1), new Map<number, number>());
      expect([...by.keys()].sort()).toEqual([1, 2]);
    });
  }, 90_000);

  it('Chromium loads the page through two workers (TLS 1.3, ECH GREASE, hybrid share skipped)', async () => {
    await withServe({}, async (s) => {
      const home = await mkdtemp(join(tmpdir(), 'ech-workers-chromium-'));
      try {
        const dom = await new Promise<string>((res, rej) => {
          const p = spawn(chromiumBinary(), [...BASE_FLAGS, '--ignore-certificate-errors', `--user-data-dir=${join(home, 'profile')}`, '--dump-dom', `https://127.0.0.1:${s.port}/`], {
            env: { ...process.env, HOME: home },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let out = '';
          p.stdout!.on('data', (d) => (out += d));
          const t = setTimeout(() => p.kill('SIGKILL'), 45_000);
          p.on('error', rej);
          p.on('exit', () => {
            clearTimeout(t);
            res(out);
          });
        });
        expect(dom).toMatch(/<html/);
        expect(dom).toMatch(/TLSv1\.3/);
        expect(handshakes(s).length).toBeGreaterThan(0);
        expect(handshakes(s).every((e) => e['status'] === 'grease' || e['status'] === 'not-offered')).toBe(true);
      } finally {
        await rm(home, { recursive: true, force: true });
      }
    });
  }, 90_000);

  it('"workers" must be "auto" or a whole number', async () => {
    const file = join(dir, 'bad-workers.json');
    await writeFile(file, JSON.stringify({ ...base, workers: 0 }));
    const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file]).catch((e: { code: number; stderr: string }) => e);
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toMatch(/^ech-server serve: workers: must be "auto" or a whole number/);
  });

  it('a busy port: one line naming it, exit 1', async () => {
    const busy = net.createServer();
    await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const file = join(dir, 'busy.json');
      await writeFile(file, JSON.stringify({ ...base, listen: `127.0.0.1:${port}` }));
      const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file], { timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
      // As without workers (test/cli-errors.test.ts): exit 69, one line.
      expect((r as { code: number }).code).toBe(69);
      expect((r as { stderr: string }).stderr.trim()).toBe(`ech-server serve: listen: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)`);
    } finally {
      busy.close();
    }
  });
});

describe('sumMetrics (the primary\'s /metrics)', () => {
  it('sums series by name and labels, keeps one HELP/TYPE per family, merges histograms, leaves out skipped families', () => {
    const a = new FrontEndMetrics();
    const b = new FrontEndMetrics();
    a.connection('accepted');
    a.connection('accepted');
    b.connection('accepted');
    b.connection('rejected');
    a.handshakeSeconds(0.002);
    b.handshakeSeconds(0.02);
    a.reload(true);
    const sum = sumMetrics([a.render(), b.render()], new Set(['ech_reloads_total']));
    expect(sum).toMatch(/^ech_connections_total\{status="accepted"\} 3$/m);
    expect(sum).toMatch(/^ech_connections_total\{status="rejected"\} 1$/m);
    expect(sum.match(/^# HELP ech_connections_total /gm)).toHaveLength(1);
    expect(sum.match(/^# TYPE ech_handshake_duration_seconds histogram$/gm)).toHaveLength(1);
    expect(sum).toMatch(/^ech_handshake_duration_seconds_bucket\{le="0\.0025"\} 1$/m);
    expect(sum).toMatch(/^ech_handshake_duration_seconds_bucket\{le="0\.025"\} 2$/m);
    expect(sum).toMatch(/^ech_handshake_duration_seconds_count 2$/m);
    expect(sum).not.toMatch(/ech_reloads_total/);
    // The summed text is itself valid input (every series once).
    const names = sum.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.slice(0, l.lastIndexOf(' ')));
    expect(new Set(names).size).toBe(names.length);
  });

  it('resolveWorkers: absent is 1, auto is the available parallelism', () => {
    expect(resolveWorkers(undefined)).toBe(1);
    expect(resolveWorkers(3)).toBe(3);
    expect(resolveWorkers('auto')).toBe(availableParallelism());
  });

  it('"workers" is validated, and refused with fleet (one process per fleet member)', () => {
    const base = { listen: '127.0.0.1:0', keys: 'keys', publicName: { cert: 'c.pem', key: 'c.key' }, routes: [] };
    for (const bad of [0, -1, 1.5, '2', 'all', 2000]) {
      expect(() => validateServeConfig({ ...base, workers: bad }, '/tmp'), String(bad)).toThrow(/workers: must be "auto" or a whole number from 1 to 1024/);
    }
    const fleet = { etcd: { endpoints: ['http://127.0.0.1:2379'] }, prefix: '/ech', member: 'a', kekFile: '/tmp/k' };
    expect(() => validateServeConfig({ ...base, workers: 2, fleet }, '/tmp')).toThrow(/workers: cannot be combined with fleet/);
    expect(validateServeConfig({ ...base, workers: 1, fleet }, '/tmp').fleet).toBeDefined();
  });
});
