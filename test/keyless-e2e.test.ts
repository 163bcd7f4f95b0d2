// @module-tag peer-boringssl
// Keyless mode end to end, in separate processes: `ech-server keyserver`
// holds the ECH key and the certificate keys; `ech-server serve` holds only
// public material (ECHCONFIG-only key files, certificates without keys) and
// its own client credential. A BoringSSL client gets ECH accepted and the
// inner page, with HRR too; the key server's audit log shows the decap and
// the sign. Killing the key server makes handshakes fail fast with
// internal_error; a second key server keeps them going; a restarted one is
// used again without restarting the front end. A front end whose client
// certificate comes from another CA is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { createServer } from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadEchKeyDirectory } from '../src/keys/files.js';
import { formatPublicEchFile } from '../src/keyless/files.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const MAIN = join(DIST, 'cli', 'main.js');

let dir: string;
let feDir: string;
let pki: TestPki;
let other: TestPki;
let caFile: string;
let listB64: string;
let ksCfg: Record<string, unknown>;
let feBase: Record<string, unknown>;
let edge: { certPath: string; keyPath: string };
const started: Array<{ stop(): Promise<unknown> }> = [];

interface KeyServerProcess {
  child: ChildProcess;
  port: number;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start `ech-server keyserver` as a child process. */
async function startKeyServer(name: string, port: number, auditLog: string, extra: Record<string, unknown> = {}): Promise<KeyServerProcess> {
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify({ ...ksCfg, listen: `127.0.0.1:${port}`, auditLog, ...extra }, null, 2));
  const child = spawn(process.execPath, [MAIN, 'keyserver', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  const bound = await new Promise<number>((res, rej) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`keyserver did not start: ${out}`));
    }, 15_000);
    child.stdout!.on('data', () => {
      const m = /"listening":"[^"]*:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        res(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`keyserver exited with ${code}: ${out}`));
    });
  });
  const p: KeyServerProcess = {
    child,
    port: bound,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  started.push(p);
  return p;
}

async function serve(extra: Record<string, unknown>): Promise<ServeProcess> {
  const s = await startServe(feDir, { ...feBase, ...extra });
  started.push(s);
  return s;
}

async function auditOf(file: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * The audit log once it holds at least `n` entries that pass `keep` (at most
 * 5 s): the key server answers before its audit line reaches the file, so a
 * client's handshake can finish before the last line is written.
 */
async function auditAtLeast(file: string, n: number, keep: (e: Record<string, unknown>) => boolean = () => true): Promise<Array<Record<string, unknown>>> {
  for (let i = 0; i < 100 && (await auditOf(file)).filter(keep).length < n; i++) await new Promise((res) => setTimeout(res, 50));
  return (await auditOf(file)).filter(keep);
}

function getMetrics(port: number): Promise<string> {
  return new Promise((res, rej) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (r) => {
      let b = '';
      r.on('data', (d) => (b += d));
      r.on('end', () => res(b));
    }).on('error', rej);
  });
}

const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;
const body = (response: string | null) => JSON.parse(response!.slice(response!.indexOf('\r\n\r\n') + 4));
const hello = (port: number, extra: Partial<Parameters<typeof runClient>[0]> = {}) =>
  runClient({ port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, alpn: ['http/1.1'], send: GET('alpha.example'), read: true, socketTimeoutSec: 10, ...extra });

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-keyless-'));
  feDir = join(dir, 'front-end');
  await mkdir(join(feDir, 'keys'), { recursive: true });
  pki = makePki();
  other = makePki();
  caFile = join(pki.dir, 'ca.pem');
  const ks = pki.leaf('ec', ['keyserver.test']);
  edge = pki.leaf('ec', ['edge.test']);
  const cover = pki.leaf('ec', ['cover.example']);
  const alpha = pki.leaf('ec', ['alpha.example']);
  // The key server's side: the ECH key with its private key, the certificate keys.
  const keygen = await promisify(execFile)(process.execPath, [join(DIST, 'cli', 'main.js'), 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'ech-keys'), '--max-name-length', '16']);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  ksCfg = {
    cert: ks.certPath,
    key: ks.keyPath,
    ca: caFile,
    echKeys: join(dir, 'ech-keys'),
    tlsKeys: [
      { cert: cover.certPath, key: cover.keyPath },
      { cert: alpha.certPath, key: alpha.keyPath },
    ],
    clients: [{ name: 'edge.test', ech: ['cover.example'], tls: ['cover.example', 'alpha.example'] }],
  };
  // The front end's side: public material only (its own client credential lives with the PKI).
  const keys = await loadEchKeyDirectory(join(dir, 'ech-keys'));
  await writeFile(join(feDir, 'keys', 'cover.pem'), formatPublicEchFile(keys.keys().map((k) => k.config)));
  await copyFile(cover.certPath, join(feDir, 'cover.pem'));
  await copyFile(alpha.certPath, join(feDir, 'alpha.pem'));
  feBase = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: 'cover.pem' },
    routes: [{ serverName: 'alpha.example', cert: 'alpha.pem', respond: 'ech-status' }],
    admin: '127.0.0.1:0',
    drainTimeoutMs: 500,
  };
}, 120_000);

afterAll(async () => {
  for (const p of started.reverse()) await p.stop().catch(() => undefined);
  pki?.cleanup();
  other?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const keyless = (ports: number[], extra: Record<string, unknown> = {}) => ({
  keyless: {
    servers: ports.map((p) => `127.0.0.1:${p}`),
    serverName: 'keyserver.test',
    cert: edge.certPath,
    key: edge.keyPath,
    ca: caFile,
    timeoutMs: 700,
    reconnectMinMs: 50,
    reconnectMaxMs: 300,
    ...extra,
  },
});

describe('keyless configuration errors', () => {
  const run = (args: string[]) =>
    promisify(execFile)(process.execPath, args).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it('keyserver: --help, and errors that name their field before anything listens', async () => {
    const help = await run([MAIN, 'keyserver', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/ech-server keyserver --config FILE/);
    expect((await run([MAIN, 'keyserver'])).code).toBe(2);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ clients: undefined }, /clients: is required/],
      [{ tlsKeys: [{ cert: join(dir, 'nope.pem'), key: join(dir, 'nope.key') }] }, /tlsKeys\[0\]\.cert: cannot read/],
      [{ echKeys: join(dir, 'missing') }, /echKeys: cannot read key directory/],
    ];
    for (const [extra, re] of cases) {
      const file = join(dir, 'bad-ks.json');
      await writeFile(file, JSON.stringify({ ...ksCfg, listen: '127.0.0.1:0', ...extra }));
      const r = await run([MAIN, 'keyserver', '--config', file]);
      expect(r.code, JSON.stringify(extra)).toBe(1);
      expect(r.stderr).toMatch(re);
    }
  });

  it('keyserver on a busy port: exit 69, one line naming the port', async () => {
    const holder = createServer();
    await new Promise<void>((res) => holder.listen(0, '127.0.0.1', res));
    const busy = (holder.address() as { port: number }).port;
    try {
      const file = join(dir, 'busy-ks.json');
      await writeFile(file, JSON.stringify({ ...ksCfg, listen: `127.0.0.1:${busy}` }));
      const r = await run([MAIN, 'keyserver', '--config', file]);
      expect(r.code, r.stderr).toBe(69);
      expect(r.stderr).toBe(`ech-server keyserver: cannot listen on 127.0.0.1:${busy}: address already in use (EADDRINUSE)\n`);
    } finally {
      await new Promise<void>((res) => holder.close(() => res()));
    }
  });

  it('serve: keyless errors name their field', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ keyless: { servers: ['127.0.0.1:1'], cert: 'nope.pem', key: edge.keyPath, ca: caFile } }, /keyless\.cert: cannot read/],
      [{ keyless: { servers: [], cert: edge.certPath, key: edge.keyPath, ca: caFile } }, /keyless\.servers: must be a non-empty list/],
      [{}, /publicName\.key: is required/],
    ];
    for (const [extra, re] of cases) {
      const file = join(feDir, 'bad.json');
      await writeFile(file, JSON.stringify({ ...feBase, ...extra }));
      const r = await run([join(DIST, 'cli', 'main.js'), 'serve', '--config', file]);
      expect(r.code, JSON.stringify(extra)).toBe(1);
      expect(r.stderr).toMatch(re);
    }
    await rm(join(feDir, 'bad.json'));
  });

  it('serve --check in keyless mode: exits 0 with no key server running (nothing to wait for), 1 for a certificate that does not cover its route', async () => {
    const file = join(feDir, 'check.json');
    await writeFile(file, JSON.stringify({ ...feBase, ...keyless([1]) }));
    const started = Date.now();
    const ok = await run([join(DIST, 'cli', 'main.js'), 'serve', '--config', file, '--check']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, keys: 1, routes: ['alpha.example'] });
    expect(Date.now() - started).toBeLessThan(10_000);
    await writeFile(file, JSON.stringify({ ...feBase, ...keyless([1]), routes: [{ serverName: 'alpha.example', cert: 'cover.pem', respond: 'ech-status' }] }));
    const bad = await run([join(DIST, 'cli', 'main.js'), 'serve', '--config', file, '--check']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/routes\[0\]\.cert: \S+cover\.pem does not cover alpha\.example/);
    await rm(file);
  });
});

describe('keyless mode across processes (BoringSSL client)', () => {
  it('the front end holds no private key; ECH is accepted with the inner page, the key server did the decap and the signature, with and without HRR', async () => {
    const audit = join(dir, 'audit-1.jsonl');
    const ks = await startKeyServer('ks-1', 0, audit);
    for (const g of [undefined, ['secp256r1']]) {
      const s = await serve({ ...keyless([ks.port]), ...(g ? { groups: g } : {}) });
      // Nothing the front end was configured with holds a private key.
      const files = [...(await readdir(feDir)).map((n) => join(feDir, n)).filter((p) => !p.endsWith('keys')), ...(await readdir(join(feDir, 'keys'))).map((n) => join(feDir, 'keys', n))];
      expect(files.length).toBeGreaterThanOrEqual(4);
      for (const f of files) expect(await readFile(f, 'utf8'), f).not.toContain('PRIVATE KEY');
      const before = await auditOf(audit);
      const r = await hello(s.port, g ? { groups: ['X25519', 'P-256'] } : {});
      expect(r.error).toBeNull();
      expect(r.echAccepted).toBe(true);
      expect(r.verified).toBe(true);
      expect(r.hrr).toBe(g !== undefined);
      expect(body(r.response)).toMatchObject({ site: 'alpha.example', echStatus: 'accepted', innerServerName: 'alpha.example', helloRetryRequest: g !== undefined });
      const ops = (await auditAtLeast(audit, before.length + 2)).slice(before.length);
      // One decap per connection (the HRR's second ClientHello opens with the kept context) and one signature.
      expect(ops.map((e) => `${e.op} ${e.key} ${e.client} ${e.result}`).sort()).toEqual([
        expect.stringMatching(/^decap ech:\d+ cover\.example edge\.test ok$/),
        'sign tls:alpha.example edge.test ok',
      ]);
      expect(await s.stop()).toBe(0);
    }
    expect(await ks.stop()).toBe(0);
  }, 90_000);

  it('with the key server killed, handshakes fail fast with internal_error (log line, metric); after a restart they succeed again, same front end', async () => {
    const audit = join(dir, 'audit-2.jsonl');
    let ks = await startKeyServer('ks-2', 0, audit);
    const port = ks.port;
    const s = await serve(keyless([port]));
    expect((await hello(s.port)).echAccepted).toBe(true);
    // Killed during a run: every handshake in flight ends, accepted or with internal_error, none hangs.
    const inFlight = Array.from({ length: 6 }, async (_, i) => {
      await new Promise((res) => setTimeout(res, i * 40));
      const t0 = Date.now();
      const r = await hello(s.port);
      return { r, ms: Date.now() - t0 };
    });
    await new Promise((res) => setTimeout(res, 100));
    await ks.stop('SIGKILL');
    for (const { r, ms } of await Promise.all(inFlight)) {
      expect(r.echAccepted || r.alertReceived?.code === 80, JSON.stringify(r.error)).toBe(true);
      expect(ms).toBeLessThan(5000);
    }
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const r = await hello(s.port);
      expect(r.handshake).toBe(false);
      expect(r.alertReceived?.code).toBe(80); // internal_error
      expect(Date.now() - t0).toBeLessThan(4000); // keyless timeout 700 ms + BoringSSL start-up; nothing hangs
    }
    // The front end's own account: each failed operation gave up within its 700 ms deadline.
    const gaveUp = s.output().split('\n').filter((l) => l.includes('"event":"keyless_unavailable"')).map((l) => JSON.parse(l) as { elapsedMs: number });
    expect(gaveUp.length).toBeGreaterThanOrEqual(3);
    for (const g of gaveUp) expect(g.elapsedMs).toBeLessThanOrEqual(800);
    expect(s.output()).toMatch(/"code":"ERR_KEYLESS_UNAVAILABLE"/);
    const adminPort = Number(/"admin":(\d+)/.exec(s.output())![1]);
    const metrics = await getMetrics(adminPort);
    expect(metrics).toMatch(/ech_keyless_requests_total\{op="decap",result="unavailable"\} [1-9]/);
    expect(metrics).toMatch(/ech_keyless_server_up\{server="127\.0\.0\.1:\d+"\} 0/);
    expect(metrics).toMatch(/ech_handshake_errors_total\{reason="ERR_KEYLESS_UNAVAILABLE"\} [1-9]/);
    ks = await startKeyServer('ks-2', port, audit);
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) {
      ok = (await hello(s.port)).echAccepted;
      if (!ok) await new Promise((res) => setTimeout(res, 200));
    }
    expect(ok).toBe(true);
    expect(await getMetrics(adminPort)).toMatch(/ech_keyless_server_up\{server="127\.0\.0\.1:\d+"\} 1/);
    expect(await s.stop()).toBe(0);
    expect(await ks.stop()).toBe(0);
  }, 90_000);

  it('with a second key server configured, killing the first does not interrupt service', async () => {
    const a = await startKeyServer('ks-3a', 0, join(dir, 'audit-3a.jsonl'));
    const b = await startKeyServer('ks-3b', 0, join(dir, 'audit-3b.jsonl'));
    const s = await serve(keyless([a.port, b.port]));
    expect((await hello(s.port)).echAccepted).toBe(true);
    expect((await auditAtLeast(join(dir, 'audit-3a.jsonl'), 2)).length).toBe(2);
    await a.stop('SIGKILL');
    for (let i = 0; i < 4; i++) {
      const r = await hello(s.port);
      expect(r.error).toBeNull();
      expect(r.echAccepted).toBe(true);
    }
    expect((await auditAtLeast(join(dir, 'audit-3b.jsonl'), 8, (e) => e.result === 'ok')).length).toBe(8);
    // A reload (SIGHUP) keeps the key server client and its connections.
    s.child.kill('SIGHUP');
    for (let i = 0; i < 50 && !/"event":"reloaded"/.test(s.output()); i++) await new Promise((res) => setTimeout(res, 50));
    expect(s.output()).toMatch(/"event":"reloaded"/);
    expect((await hello(s.port)).echAccepted).toBe(true);
    expect(await s.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
  }, 90_000);

  it('a key server that stops answering (SIGSTOP): handshakes wait the configured deadline, then fail, or go to the second key server in time; SIGCONT recovers', async () => {
    const a = await startKeyServer('ks-5a', 0, join(dir, 'audit-5a.jsonl'));
    const b = await startKeyServer('ks-5b', 0, join(dir, 'audit-5b.jsonl'));
    // A deadline long enough to tell apart from a refused connection (~ms)
    // and from the BoringSSL client's own start-up.
    const single = await serve(keyless([a.port], { timeoutMs: 1500 }));
    const both = await serve(keyless([a.port, b.port], { timeoutMs: 1500 }));
    const unavailable = (out: string) => out.split('\n').filter((l) => l.includes('"event":"keyless_unavailable"')).map((l) => JSON.parse(l) as { elapsedMs: number; timeoutMs: number });
    try {
      expect((await hello(single.port)).echAccepted).toBe(true);
      expect((await hello(both.port)).echAccepted).toBe(true);
      a.child.kill('SIGSTOP');
      // Alive but stalled: TCP still connects, nothing answers. Sequential
      // handshakes, then four at once: each waits the deadline, none hangs.
      const waits: number[] = [];
      const one = async () => {
        const t0 = Date.now();
        const r = await hello(single.port, { socketTimeoutSec: 20 });
        waits.push(Date.now() - t0);
        expect(r.handshake).toBe(false);
        expect(r.alertReceived?.code).toBe(80); // internal_error
      };
      for (let i = 0; i < 2; i++) await one();
      await Promise.all([one(), one(), one(), one()]);
      expect(single.output()).toMatch(/"event":"keyless_timeout"/);
      const gaveUp = unavailable(single.output());
      expect(gaveUp.length).toBeGreaterThanOrEqual(6);
      // The deadline is what bounds a stall: the first operations on the
      // stalled server waited exactly it (a refused connection fails in
      // milliseconds, so this is the deadline firing), and none waited
      // longer. Once the server is known down (its reconnect timed out too),
      // operations fail at once until it answers again.
      for (const g of gaveUp) {
        expect(g.timeoutMs).toBe(1500);
        expect(g.elapsedMs).toBeLessThanOrEqual(2000); // timers fire late on a busy machine
      }
      expect(gaveUp[0]!.elapsedMs).toBeGreaterThanOrEqual(1490);
      expect(waits[0]).toBeGreaterThanOrEqual(1500);
      for (const w of waits) expect(w).toBeLessThan(6000); // deadline + BoringSSL start-up on a busy machine
      console.log(`keyless stalled key server: handshake waits ${waits.join(', ')} ms; key operations gave up after ${gaveUp.map((g) => g.elapsedMs).join(', ')} ms (deadline 1500 ms)`);
      for (let i = 0; i < 3; i++) expect((await hello(both.port)).echAccepted).toBe(true);
      a.child.kill('SIGCONT');
      const t1 = Date.now();
      let ok = false;
      for (let i = 0; i < 30 && !ok; i++) {
        ok = (await hello(single.port)).echAccepted;
        if (!ok) await new Promise((res) => setTimeout(res, 200));
      }
      expect(ok).toBe(true);
      console.log(`keyless stalled key server: first accepted handshake ${Date.now() - t1} ms after SIGCONT`);
    } finally {
      a.child.kill('SIGCONT');
      expect(await single.stop()).toBe(0);
      expect(await both.stop()).toBe(0);
      await a.stop();
      await b.stop();
    }
  }, 90_000);

  it('a front end whose client certificate comes from another CA is refused; one without a policy for a key gets an error', async () => {
    const ks = await startKeyServer('ks-4', 0, join(dir, 'audit-4.jsonl'), { admin: '127.0.0.1:0' });
    const ksAdmin = Number(/"admin":(\d+)/.exec(ks.output())![1]);
    const refusals = () =>
      ks.output().split('\n').filter((l) => l.includes('"event":"keyserver_client_refused"')).map((l) => JSON.parse(l) as { remote: string; remotePort: number; reason: string; error: string });
    const intruder = other.leaf('ec', ['edge.test']);
    const s = await serve(keyless([ks.port], { cert: intruder.certPath, key: intruder.keyPath }));
    const r = await hello(s.port);
    expect(r.handshake).toBe(false);
    expect(r.alertReceived?.code).toBe(80); // internal_error
    // The refusal says who and why: the certificate did not verify.
    const byCert = refusals();
    expect(byCert.length).toBeGreaterThanOrEqual(1);
    for (const e of byCert) {
      expect(e).toMatchObject({ remote: '127.0.0.1', reason: 'certificate_rejected', error: expect.stringMatching(/^[A-Z_]+$/) });
      expect(e.remotePort).toBeGreaterThan(0);
    }
    expect(await auditOf(join(dir, 'audit-4.jsonl'))).toEqual([]);
    expect(await s.stop()).toBe(0);
    // A bare TCP connect-then-close is not a certificate problem.
    await new Promise<void>((res) => {
      const c = net.connect(ks.port, '127.0.0.1', () => c.end());
      c.on('close', () => res());
    });
    // A TLS client with no certificate.
    await new Promise<void>((res) => {
      const c = tls.connect({ port: ks.port, host: '127.0.0.1', ca: pki.caPem, servername: 'keyserver.test' });
      c.on('error', () => undefined);
      c.on('close', () => res());
    });
    for (let i = 0; i < 50 && refusals().length < byCert.length + 2; i++) await new Promise((res) => setTimeout(res, 50));
    const later = refusals().slice(byCert.length);
    expect(later.map((e) => e.reason).sort()).toEqual(['dropped', 'no_certificate']);
    for (const e of later) expect(e.remote).toBe('127.0.0.1');
    const m = await getMetrics(ksAdmin);
    expect(m).toMatch(new RegExp(`ech_keyserver_clients_refused_total\\{reason="certificate_rejected"\\} ${byCert.length}\\n`));
    expect(m).toMatch(/ech_keyserver_clients_refused_total\{reason="dropped"\} 1\n/);
    expect(m).toMatch(/ech_keyserver_clients_refused_total\{reason="no_certificate"\} 1\n/);
    // A known client, but the route's certificate key is not in its policy.
    const stranger = pki.leaf('ec', ['stranger.test']);
    const s2 = await serve(keyless([ks.port], { cert: stranger.certPath, key: stranger.keyPath }));
    const r2 = await hello(s2.port);
    expect(r2.handshake).toBe(false);
    expect(r2.alertReceived?.code).toBe(80);
    expect(s2.output()).toMatch(/"event":"keyless_refused".*"status":"forbidden"/);
    // The key server answers before its audit line reaches the file: wait for it (bounded).
    const audited = async () => (await auditOf(join(dir, 'audit-4.jsonl'))).map((e) => `${e.op} ${e.client} ${e.result}`);
    for (let i = 0; i < 100 && !(await audited()).includes('decap stranger.test forbidden'); i++) await new Promise((res) => setTimeout(res, 50));
    expect(await audited()).toContain('decap stranger.test forbidden');
    expect(await s2.stop()).toBe(0);
    expect(await ks.stop()).toBe(0);
  }, 90_000);
});
