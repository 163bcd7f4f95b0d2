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
