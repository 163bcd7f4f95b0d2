// @module-tag peer-boringssl
// Load balancing (issue 18): backend pools per route, balance policies,
// failover before any byte is committed, passive and active health checks,
// the `select` hook — with real processes on loopback (BoringSSL split-mode
// backends, Node HTTP and TLS backends) and the project's ECH client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { toBase64 } from '../src/wire/bytes.js';
import { connectEch } from '../src/tls13/ech-client.js';
import { EchFrontEnd, type FrontEndOptions, type FrontEndRoute } from '../src/front/front-end.js';
import { BackendPool, balancePolicies, connectBackend, type SelectContext } from '../src/front/pool.js';
import { mkdir } from 'node:fs/promises';
import { ServeConfigError, validateServeConfig } from '../src/front/config.js';
import { startServe } from '../src/front/serve.js';
import { writeEchKeyFile } from '../src/keys/files.js';
import { buildHarness, runClient, startServer as startBoring, type BoringServer } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';

type Leaf = ReturnType<TestPki['leaf']>;
let pki: TestPki;
let caFile: string;
let cover: Leaf;
let secret: Leaf;
let web: Leaf;
const key = generateEchKey({ publicName: 'cover.example', configId: 9, maximumNameLength: 32 });
const keys = new EchKeySet([key]);
const listBytes = encodeEchConfigList([key.config]);
const list = toBase64(listBytes);

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  cover = pki.leaf('ec', ['cover.example']);
  secret = pki.leaf('ec', ['secret.example']);
  web = pki.leaf('ec', ['web.example']);
}, 120_000);
afterAll(() => pki?.cleanup());

async function frontEnd(routes: FrontEndRoute[], extra: Partial<FrontEndOptions> = {}): Promise<{ fe: EchFrontEnd; port: number; events: Array<Record<string, unknown>> }> {
  const events: Array<Record<string, unknown>> = [];
  const fe = new EchFrontEnd({ keys, publicName: { cert: cover.cert, key: cover.key }, routes, log: (e) => events.push(e), ...extra });
  const { port } = await fe.listen(0);
  return { fe, port, events };
}

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, '127.0.0.1', () => res((server.address() as AddressInfo).port));
  });
}
function closeServer(server: net.Server): Promise<void> {
  return new Promise((res) => server.close(() => res()));
}
async function freePort(): Promise<number> {
  const s = net.createServer();
  const p = await listen(s);
  await closeServer(s);
  return p;
}
async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One ECH connection through the front end: resolves true when the backend echoed our bytes. */
async function echOnce(port: number): Promise<boolean> {
  try {
    const r = await connectEch({ host: '127.0.0.1', port, servername: 'secret.example', echConfigList: listBytes, ca: pki.caPem, timeoutMs: 10_000 });
    if (r.echStatus !== 'accepted') return false;
    const s = r.socket;
    return await new Promise<boolean>((res) => {
      let got = '';
      const t = setTimeout(() => {
        s.destroy();
        res(false);
      }, 10_000);
      s.on('data', (d: Buffer) => {
        got += d.toString();
        if (got === 'ping') {
          clearTimeout(t);
          s.end();
          res(true);
        }
      });
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(t);
        res(got === 'ping');
      });
      s.write('ping');
    });
  } catch {
    return false;
  }
}

/** `n` connections, `concurrency` at a time; the number that failed. */
async function many(port: number, n: number, concurrency = 8): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        if (!(await echOnce(port))) failed++;
      }
    }),
  );
  return failed;
}

/** Handshakes a BoringSSL backend completed (health probes show up as connections without one). */
const served = (s: BoringServer) => s.results.filter((r) => r.handshake).length;

describe('round-robin over two BoringSSL split-mode backends', () => {
  it('1,000 ECH connections split 500 ± 10 %; one backend killed: no client fails, down logged once; restarted: it rejoins after `rise` checks', async () => {
    const t0 = Date.now();
    let a: BoringServer | undefined = await startBoring({ cert: secret.certPath, key: secret.keyPath, lifetimeSec: 120 });
    let b: BoringServer | undefined = await startBoring({ cert: secret.certPath, key: secret.keyPath, lifetimeSec: 120 });
    const bPort = b.port;
    const { fe, port, events } = await frontEnd([
      {
        serverName: 'secret.example',
        action: { passthrough: { host: '127.0.0.1', port: a.port } },
        backends: [
          { host: '127.0.0.1', port: a.port },
          { host: '127.0.0.1', port: b.port },
        ],
        healthCheck: { intervalMs: 200, timeoutMs: 500, fall: 3, rise: 2 },
      },
    ]);
    try {
      // BoringSSL itself for a few, checking the backend saw the inner hello.
      for (let i = 0; i < 4; i++) {
        const r = await runClient({ port, sni: 'secret.example', echConfigList: list, ca: caFile, send: 'hi' });
        expect(r.echAccepted).toBe(true);
        expect(r.response).toBe('hi');
      }
      expect(await many(port, 996)).toBe(0);
      await waitFor(() => served(a!) + served(b!) === 1000);
      expect(a.results.filter((r) => r.handshake).every((r) => r.sni === 'secret.example' && r.clientHelloEch === 'inner')).toBe(true);
      expect(Math.abs(served(a) - 500)).toBeLessThanOrEqual(50);
      expect(Math.abs(served(b) - 500)).toBeLessThanOrEqual(50);
      const addrB = `127.0.0.1:${bPort}`;
      expect(fe.metrics.value('backendConnections', { route: 'routes[0]', backend: addrB })).toBe(served(b));

      // Kill B: every later connection still succeeds (refused → A).
      await b.close();
      b = undefined;
      const aBefore = served(a);
      expect(await many(port, 100)).toBe(0);
      await waitFor(() => served(a!) === aBefore + 100);
      await waitFor(() => events.some((e) => e['event'] === 'backend_down'));
      expect(await many(port, 50)).toBe(0);
      expect(events.filter((e) => e['event'] === 'backend_down')).toEqual([expect.objectContaining({ route: 'routes[0]', backend: addrB })]);
      expect(fe.metrics.render()).toContain(`ech_backend_up{backend="${addrB}",route="routes[0]"} 0`);
      expect(fe.metrics.render()).not.toMatch(/secret\.example/);

      // Restart B on the same port: up again after `rise` (2) checks, then it gets connections.
      b = await startBoring({ cert: secret.certPath, key: secret.keyPath, port: bPort, lifetimeSec: 60 });
      await waitFor(() => events.some((e) => e['event'] === 'backend_up'));
      const up = events.find((e) => e['event'] === 'backend_up')!;
      expect(up).toMatchObject({ backend: addrB, check: 'active' });
      expect(await many(port, 40)).toBe(0);
      await waitFor(() => served(b!) >= 15);
      expect(fe.metrics.render()).toContain(`ech_backend_up{backend="${addrB}",route="routes[0]"} 1`);
      expect(Date.now() - t0).toBeLessThan(60_000);
    } finally {
      await fe.close();
      await a?.close();
      await b?.close();
    }
  }, 90_000);
});

/** A TCP backend that says its name on every connection and keeps it open. */
async function idServer(name: string, port = 0): Promise<{ name: string; port: number; sockets: Set<Socket>; accepted: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const me = {
    name,
    port: 0,
    sockets,
    accepted: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
  const server = net.createServer((s) => {
    me.accepted++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.write(name);
    s.on('end', () => s.end());
  });
  me.port = await listen(server, port);
  return me;
}

/** A TLS client of the terminating route web.example: resolves with the backend's name and the open socket. */
function viaWeb(port: number, localAddress = '127.0.0.1'): Promise<{ name: string; socket: tls.TLSSocket }> {
  return new Promise((res, rej) => {
    // `localAddress` goes through to net.connect (the typings omit it).
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'web.example', ca: pki.caPem, localAddress } as tls.ConnectionOptions);
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.once('data', (d: Buffer) => res({ name: d.toString(), socket: s }));
    s.once('error', rej);
    s.once('close', () => rej(new Error('closed without an answer')));
  });
}
async function nameOnce(port: number, localAddress?: string): Promise<string> {
  const { name, socket } = await viaWeb(port, localAddress);
  socket.destroy();
  return name;
}

const webRoute = (backends: Array<{ port: number }>, extra: Partial<FrontEndRoute> = {}): FrontEndRoute => ({
  serverName: 'web.example',
  cert: web.cert,
  key: web.key,
  action: { forward: { host: '127.0.0.1', port: backends[0]!.port } },
  backends: backends.map((b) => ({ host: '127.0.0.1', port: b.port })),
  ...extra,
});

describe('balance policies', () => {
  it('round-robin respects weights (2:1)', async () => {
    const a = await idServer('A');
    const b = await idServer('B');
    const { fe, port } = await frontEnd([webRoute([a, b], { backends: [{ host: '127.0.0.1', port: a.port, weight: 2 }, { host: '127.0.0.1', port: b.port }] })]);
    try {
      const names: string[] = [];
      for (let i = 0; i < 12; i++) names.push(await nameOnce(port));
      expect(names.filter((n) => n === 'A')).toHaveLength(8);
      expect(names.filter((n) => n === 'B')).toHaveLength(4);
    } finally {
      await fe.close();
      await a.close();
      await b.close();
    }
  });

  it('least-connections: with long-lived connections held open on A, new connections go to B', async () => {
    const a = await idServer('A');
    const b = await idServer('B');
    const { fe, port } = await frontEnd([webRoute([a, b], { balance: 'least-connections' })]);
    const held: tls.TLSSocket[] = [];
    try {
      // Four connections spread A, B, A, B; the two on B end.
      const first = await Promise.all([viaWeb(port), viaWeb(port), viaWeb(port), viaWeb(port)].map(async (p) => await p));
      for (const c of first) {
        if (c.name === 'B') c.socket.destroy();
        else held.push(c.socket);
      }
      expect(held).toHaveLength(2);
      await waitFor(() => b.sockets.size === 0 && fe.connections === 2);
      // Now A holds two, B none: the next two go to B.
      const next = [await viaWeb(port), await viaWeb(port)];
      held.push(...next.map((c) => c.socket));
      expect(next.map((c) => c.name)).toEqual(['B', 'B']);
      expect(fe.metrics.render()).toMatch(new RegExp(`ech_backend_active_connections\\{backend="127.0.0.1:${a.port}",route="routes\\[0\\]"\\} 2`));
    } finally {
      for (const s of held) s.destroy();
      await fe.close();
      await a.close();
      await b.close();
    }
  });

  it('client-hash: each client address sticks to one backend; when it dies its clients move, and stay on their new one', async () => {
    const servers = [await idServer('A'), await idServer('B'), await idServer('C')];
    const { fe, port, events } = await frontEnd([webRoute(servers, { balance: 'client-hash' })]);
    try {
      const clients = Array.from({ length: 12 }, (_, i) => `127.0.0.${10 + i}`);
      const home = new Map<string, string>();
      for (const c of clients) {
        const names = [await nameOnce(port, c), await nameOnce(port, c), await nameOnce(port, c)];
        expect(new Set(names).size).toBe(1);
        home.set(c, names[0]!);
      }
      // Spread over more than one backend.
      expect(new Set(home.values()).size).toBeGreaterThan(1);
      // Kill the backend with the most clients.
      const counts = ['A', 'B', 'C'].map((n) => [...home.values()].filter((h) => h === n).length);
      const victim = servers[counts.indexOf(Math.max(...counts))]!;
      await victim.close();
      for (const c of clients) {
        const names = [await nameOnce(port, c), await nameOnce(port, c), await nameOnce(port, c)];
        expect(new Set(names).size).toBe(1);
        if (home.get(c) === victim.name) expect(names[0]).not.toBe(victim.name);
        else expect(names[0]).toBe(home.get(c)); // the others did not move
      }
      expect(events.filter((e) => e['event'] === 'backend_down')).toHaveLength(1);
    } finally {
      await fe.close();
      for (const s of servers) await s.close().catch(() => undefined);
    }
  });
});

/**
 * A port that never answers: a listening socket (listen backlog 1: Node reads 0 as its default 511) that
 * never accepts, its one-slot accept queue filled, so further SYNs are dropped.
 */
async function blackhole(port: number): Promise<{ close(): void }> {
  const { spawn } = await import('node:child_process');
  // A Node child whose event loop is blocked right after listen(): it never accepts.
  const script = `const s = require('node:net').createServer(); s.listen({ port: ${port}, host: '127.0.0.1', backlog: 1 }, () => { process.stdout.write('ok\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000)); });`;
  const p = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    p.stdout.once('data', () => res());
    p.once('exit', (c) => rej(new Error(`blackhole exited ${c}`)));
  });
  // Linux queues backlog + 1 connections: fill both slots.
  const fillers = [net.connect(port, '127.0.0.1'), net.connect(port, '127.0.0.1')];
  for (const f of fillers) f.on('error', () => undefined);
  await Promise.all(fillers.map((f) => new Promise((r) => f.once('connect', r))));
  return {
    close: () => {
      for (const f of fillers) f.destroy();
      p.kill();
    },
  };
}

function httpGet(port: number): Promise<{ body: string; ms: number }> {
  const t = Date.now();
  return new Promise((res, rej) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', createConnection: () => tls.connect({ port, host: '127.0.0.1', servername: 'web.example', ca: pki.caPem }) }, (r) => {
      let body = '';
      r.on('data', (d: Buffer) => (body += d.toString()));
      r.on('end', () => res({ body, ms: Date.now() - t }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request hung')));
    req.on('error', rej);
  });
}

describe('health checks', () => {
  it('forward pool of two Node HTTP backends; one replaced by a port that never answers: active checks (timeoutMs) mark it down, no request hangs past the timeout', async () => {
    const mk = (name: string) => http.createServer((_q, r) => r.end(name));
    const a = mk('A');
    const b = mk('B');
    const aPort = await listen(a);
    const bPort = await listen(b);
    const { fe, port, events } = await frontEnd([webRoute([{ port: aPort }, { port: bPort }], { healthCheck: { intervalMs: 150, timeoutMs: 300, fall: 2, rise: 2 } })]);
    let hole: { close(): void } | undefined;
    try {
      const before = [];
      for (let i = 0; i < 4; i++) before.push((await httpGet(port)).body);
      expect(before.sort()).toEqual(['A', 'A', 'B', 'B']);
      b.closeAllConnections();
      await closeServer(b);
      hole = await blackhole(bPort);
      // Requests at once, before and while the checks decide: each one that
      // meets the dead port fails over after 300 ms.
      for (let i = 0; i < 6; i++) {
        const r = await httpGet(port);
        expect(r.body).toBe('A');
        expect(r.ms).toBeLessThan(1500);
      }
      await waitFor(() => events.some((e) => e['event'] === 'backend_down'), 3000);
      expect(events.find((e) => e['event'] === 'backend_down')).toMatchObject({ backend: `127.0.0.1:${bPort}` });
      const t = Date.now();
      for (let i = 0; i < 4; i++) expect((await httpGet(port)).body).toBe('A');
      expect(Date.now() - t).toBeLessThan(2000);
    } finally {
      hole?.close();
      await fe.close();
      a.closeAllConnections();
      await closeServer(a);
    }
  });

  it('all backends down: the client is closed, counted, and the state logged once (pool_down), not once per connection; close() stops the checks', async () => {
    const a = await idServer('A');
    const { fe, port, events } = await frontEnd([webRoute([a, { port: await freePort() }], { healthCheck: { intervalMs: 100, timeoutMs: 300, fall: 1, rise: 1 } })]);
    try {
      expect(await nameOnce(port)).toBe('A');
      await a.close();
      await waitFor(() => events.some((e) => e['event'] === 'pool_down'));
      for (let i = 0; i < 5; i++) await expect(nameOnce(port)).rejects.toThrow();
      expect(events.filter((e) => e['event'] === 'pool_down')).toHaveLength(1);
      expect(fe.metrics.value('poolExhausted', { route: 'routes[0]' })).toBe(5);
      // Back: a fresh backend on A's port rejoins after `rise`.
      const again = await idServer('A2', a.port);
      await waitFor(() => events.some((e) => e['event'] === 'pool_up'));
      expect(await nameOnce(port)).toBe('A2');
      await fe.close();
      // No more probes once closed.
      const seen = again.accepted;
      await new Promise((r) => setTimeout(r, 400));
      expect(again.accepted).toBe(seen);
      await again.close();
    } finally {
      await fe.close();
    }
  });

  it('forwardTls: the active check is a TLS handshake verified as the route verifies it (a backend with a certificate from another CA is marked down)', async () => {
    const other = makePki();
    const good = tls.createServer({ ...pki.leaf('ec', ['legacy.internal']) }, (s) => s.end('good'));
    const bad = tls.createServer({ ...other.leaf('ec', ['legacy.internal']) }, (s) => s.end('bad'));
    good.on('tlsClientError', () => undefined);
    bad.on('tlsClientError', () => undefined);
    const goodPort = await listen(good);
    const badPort = await listen(bad);
    const route: FrontEndRoute = {
      serverName: 'web.example',
      cert: web.cert,
      key: web.key,
      action: { forwardTls: { host: '127.0.0.1', port: goodPort, ca: pki.caPem, servername: 'legacy.internal' } },
      backends: [
        { host: '127.0.0.1', port: badPort },
        { host: '127.0.0.1', port: goodPort },
      ],
      healthCheck: { intervalMs: 100, timeoutMs: 1000, fall: 1, rise: 1 },
    };
    const { fe, port, events } = await frontEnd([route]);
    try {
      await waitFor(() => events.some((e) => e['event'] === 'backend_down'));
      expect(events.filter((e) => e['event'] === 'backend_down')).toEqual([expect.objectContaining({ backend: `127.0.0.1:${badPort}`, check: 'active' })]);
      for (let i = 0; i < 4; i++) expect(await nameOnce(port)).toBe('good');
    } finally {
      await fe.close();
      await closeServer(good);
      await closeServer(bad);
      other.cleanup();
    }
  });

  it('without active checks: a backend failing `fall` times is skipped, then retried after a back-off', async () => {
    const a = await idServer('A');
    const deadPort = await freePort();
    const pool = new BackendPool({ backends: [{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: deadPort }] });
    const ctx = { serverName: 'x', alpn: [], echStatus: 'accepted', remoteAddress: '127.0.0.1' };
    try {
      for (let i = 0; i < 8; i++) {
        const { socket, backend } = await connectBackend(pool, ctx);
        expect(backend.port).toBe(a.port);
        socket.destroy();
      }
      const dead = pool.backends[1]!;
      expect(dead.state).toBe('down');
      expect(dead.connectFailures).toBe(3);
      // Due for a retry after the back-off (1 s): tried once more, still refused.
      dead.retryAt = Date.now();
      for (let i = 0; i < 2; i++) (await connectBackend(pool, ctx)).socket.destroy();
      expect(dead.connectFailures).toBe(4);
      expect(dead.retryAt).toBeGreaterThan(Date.now() + 1000); // doubled
    } finally {
      pool.close();
      await a.close();
    }
  });
});

describe('the select hook (library API)', () => {
  it('a program embedding EchFrontEnd picks the backend from the inner name, ALPN, ECH status and client address', async () => {
    const a = await idServer('A');
    const b = await idServer('B');
    const seen: SelectContext[] = [];
    const route: FrontEndRoute = {
      serverName: 'secret.example',
      cert: secret.cert,
      key: secret.key,
      action: { forward: { host: '127.0.0.1', port: a.port } },
      backends: [
        { host: '127.0.0.1', port: a.port },
        { host: '127.0.0.1', port: b.port },
      ],
      // h2 clients to B, the rest by the built-in round-robin over the candidates.
      select: (ctx) => {
        seen.push(ctx);
        return ctx.alpn.includes('h2') ? ctx.pool.backends[1] : balancePolicies['round-robin'](ctx);
      },
    };
    const { fe, port } = await frontEnd([route], { ALPNProtocols: ['h2', 'http/1.1'] });
    const ask = async (alpn: string[]) => {
      const r = await connectEch({ host: '127.0.0.1', port, servername: 'secret.example', echConfigList: listBytes, ca: pki.caPem, ALPNProtocols: alpn });
      expect(r.echStatus).toBe('accepted');
      const name = await new Promise<string>((res) => {
        r.socket.once('data', (d: Buffer) => res(d.toString()));
        r.socket.once('close', () => res('(closed)'));
        r.socket.on('error', () => undefined);
      });
      r.socket.destroy();
      return name;
    };
    try {
      expect([await ask(['h2']), await ask(['h2']), await ask(['h2'])]).toEqual(['B', 'B', 'B']);
      expect(new Set([await ask(['http/1.1']), await ask(['http/1.1'])])).toEqual(new Set(['A', 'B']));
      expect(seen[0]).toMatchObject({ serverName: 'secret.example', alpn: ['h2'], echStatus: 'accepted', remoteAddress: '127.0.0.1', tried: [] });
      expect(seen[0]!.candidates.map((c) => c.port)).toEqual([a.port, b.port]);
      expect(seen[0]!.pool.backends.map((c) => c.state)).toEqual(['up', 'up']);

      // A hook returning nothing: the connection is closed and counted.
      fe.update({ routes: [{ ...route, select: () => undefined }] });
      expect(await ask(['h2'])).toBe('(closed)');
      expect(fe.metrics.value('poolExhausted', { route: 'routes[0]' })).toBe(1);
    } finally {
      await fe.close();
      await a.close();
      await b.close();
    }
  });
});

describe('reload', () => {
  it('a reload that removes a backend: new connections stop going there, established ones run to completion; health state of kept backends carries over', async () => {
    const a = await idServer('A');
    const b = await idServer('B');
    const { fe, port } = await frontEnd([webRoute([a, b])]);
    try {
      const one = await viaWeb(port);
      const two = await viaWeb(port);
      const onB = one.name === 'B' ? one : two;
      expect(new Set([one.name, two.name])).toEqual(new Set(['A', 'B']));
      fe.update({ routes: [webRoute([a])] });
      for (let i = 0; i < 4; i++) expect(await nameOnce(port)).toBe('A');
      // The connection to B still relays both ways.
      const echo = new Promise<string>((res) => onB.socket.once('data', (d: Buffer) => res(d.toString())));
      for (const s of b.sockets) s.write('still here');
      expect(await echo).toBe('still here');
      one.socket.destroy();
      two.socket.destroy();
    } finally {
      await fe.close();
      await a.close();
      await b.close();
    }
  });
});

describe('bad pools in the library API', () => {
  it('a weight of 0 or an unknown balance is a typed error, and update() changes nothing', async () => {
    const a = await idServer('A');
    const { fe, port } = await frontEnd([webRoute([a])]);
    try {
      for (const bad of [{ backends: [{ host: '127.0.0.1', port: a.port, weight: 0 }] }, { balance: 'random' as never }, { backends: [] }]) {
        let err: unknown;
        try {
          fe.update({ routes: [webRoute([a], { healthCheck: { intervalMs: 50 } }), webRoute([a], { serverName: 'other.example', ...bad })] });
        } catch (e) {
          err = e;
        }
        expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      }
      expect(await nameOnce(port)).toBe('A');
      // The first route's pool (with checks) made before the failure was closed: no probes.
      const seen = a.accepted;
      await new Promise((r) => setTimeout(r, 250));
      expect(a.accepted).toBe(seen);
    } finally {
      await fe.close();
      await a.close();
    }
  });
});

describe('serve configuration', () => {
  const base = (route: Record<string, unknown>) => ({ listen: '127.0.0.1:0', keys: 'keys', publicName: { cert: 'c.pem', key: 'k.pem' }, routes: [{ serverName: 'a.example', ...route }] });

  it('passthrough, forward and forwardTls.to take a list with weights; balance and healthCheck on the route', () => {
    const c = validateServeConfig(
      base({ passthrough: ['10.0.0.1:443', { to: '10.0.0.2:443', weight: 2 }], balance: 'client-hash', healthCheck: { intervalMs: 2000, timeoutMs: 1000, fall: 3, rise: 2 } }),
      '/etc',
    );
    expect(c.routes[0]).toMatchObject({
      action: { passthrough: { host: '10.0.0.1', port: 443 } },
      backends: [{ host: '10.0.0.1', port: 443 }, { host: '10.0.0.2', port: 443, weight: 2 }],
      balance: 'client-hash',
      healthCheck: { intervalMs: 2000, timeoutMs: 1000, fall: 3, rise: 2 },
    });
    const f = validateServeConfig(base({ cert: 'c', key: 'k', forward: ['[::1]:80', '127.0.0.1:81'] }), '/etc');
    expect(f.routes[0]!.backends).toEqual([{ host: '::1', port: 80 }, { host: '127.0.0.1', port: 81 }]);
    const t = validateServeConfig(base({ cert: 'c', key: 'k', forwardTls: { to: ['b1:443', 'b2:443'], servername: 'x.internal' } }), '/etc');
    expect(t.routes[0]!.backends).toHaveLength(2);
    // A single "host:port" stays as it was: no pool fields.
    expect(validateServeConfig(base({ passthrough: '10.0.0.1:443' }), '/etc').routes[0]!.backends).toBeUndefined();
  });

  for (const [route, field] of [
    [{ passthrough: [] }, 'routes[0].passthrough'],
    [{ passthrough: ['10.0.0.1:443', { to: '10.0.0.1:443' }] }, 'routes[0].passthrough[1]'],
    [{ passthrough: [{ to: '10.0.0.1:443', weight: 0 }] }, 'routes[0].passthrough[0].weight'],
    [{ passthrough: [{ to: '10.0.0.1:443', wieght: 2 }] }, 'routes[0].passthrough[0].wieght'],
    [{ passthrough: ['nope'] }, 'routes[0].passthrough[0]'],
    [{ passthrough: '10.0.0.1:443', balance: 'random' }, 'routes[0].balance'],
    [{ respond: 'ech-status', cert: 'c', key: 'k', healthCheck: {} }, 'routes[0].healthCheck'],
    [{ passthrough: '10.0.0.1:443', healthCheck: { intervalMs: -1 } }, 'routes[0].healthCheck.intervalMs'],
    [{ passthrough: '10.0.0.1:443', healthCheck: { every: 5 } }, 'routes[0].healthCheck.every'],
  ] as const) {
    it(`rejects ${JSON.stringify(route)} naming ${field}`, () => {
      let err: unknown;
      try {
        validateServeConfig(base(route), '/etc');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ServeConfigError);
      expect((err as ServeConfigError).field).toBe(field);
    });
  }

  it('startServe: a forward pool from the file, /metrics per backend labelled by route position; SIGHUP-style reload removes a backend', async () => {
    const dir = join(pki.dir, 'serve-pool');
    await mkdir(join(dir, 'keys'), { recursive: true });
    await writeEchKeyFile(join(dir, 'keys', 'k.pem'), key.config, key.privateKeyRaw);
    const a = await idServer('A');
    const b = await idServer('B');
    const config = (to: string[]) =>
      validateServeConfig(
        {
          listen: '127.0.0.1:0',
          admin: '127.0.0.1:0',
          keys: 'keys',
          publicName: { cert: cover.certPath, key: cover.keyPath },
          routes: [{ serverName: 'web.example', cert: web.certPath, key: web.keyPath, forward: to, healthCheck: { intervalMs: 100, timeoutMs: 500 } }],
        },
        dir,
      );
    const s = await startServe(config([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`]));
    try {
      expect(new Set([await nameOnce(s.port), await nameOnce(s.port)])).toEqual(new Set(['A', 'B']));
      const metrics = await new Promise<string>((res) => http.get({ port: s.adminPort, path: '/metrics' }, (r) => { let t = ''; r.on('data', (d: Buffer) => (t += d.toString())); r.on('end', () => res(t)); }));
      expect(metrics).toContain(`ech_backend_connections_total{backend="127.0.0.1:${a.port}",route="routes[0]"} 1`);
      expect(metrics).toContain(`ech_backend_up{backend="127.0.0.1:${b.port}",route="routes[0]"} 1`);
      expect(metrics).not.toContain('web.example');
      await s.reload(config([`127.0.0.1:${b.port}`]));
      for (let i = 0; i < 3; i++) expect(await nameOnce(s.port)).toBe('B');
      // The removed backend is no longer probed.
      await new Promise((r) => setTimeout(r, 150));
      const probes = a.accepted;
      await new Promise((r) => setTimeout(r, 350));
      expect(a.accepted).toBe(probes);
    } finally {
      await s.close();
      await a.close();
      await b.close();
    }
  });
});
