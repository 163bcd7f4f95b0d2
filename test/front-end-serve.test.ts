// @module-tag peer-boringssl
// `ech-server serve` as an operator runs it (a child process of the built
// CLI): SIGHUP with a new key file (new connections use it, a connection
// opened before keeps working), SIGTERM drains (a live connection still gets
// its answer, then exit 0 within drainTimeoutMs), and the admin /metrics
// endpoint counting a scripted mix of clients exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { encodeEchConfigList } from '../src/ech/config.js';
import { buildClientHello } from '../src/ech/builder.js';
import { encodeClientHelloMessage } from '../src/tls/client-hello.js';
import { encodeEchClientHello } from '../src/tls/extensions.js';
import { writeRecords } from '../src/tls/record.js';
import { ContentType, ExtensionType } from '../src/tls/constants.js';
import { generateEchKey } from '../src/keys/generate.js';
import { loadEchKeyDirectory, writeEchKeyFile } from '../src/keys/files.js';
import { toBase64 } from '../src/wire/bytes.js';
import { AlertDescription } from '../src/wire/alert.js';
import { connectTls13, type TlsClientSocket } from '../src/tls13/client-socket.js';
import { buildHarness, runClient, startServer as startBoring } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';
import { rawPeer, expectAlertRecord } from './helpers/raw-client.js';
import { configIdsOf, greaseOutcome } from './helpers/grease.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;
let pki: TestPki;
let caFile: string;
let listB64: string;
let baseConfig: Record<string, unknown>;
let secret: ReturnType<TestPki['leaf']>;

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-fe-serve-'));
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  const cover = pki.leaf('ec', ['cover.example']);
  const alpha = pki.leaf('ec', ['alpha.example']);
  secret = pki.leaf('ec', ['secret.example']);
  const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys'), '--max-name-length', '16']);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  baseConfig = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    admin: '127.0.0.1:0',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [{ serverName: 'alpha.example', cert: alpha.certPath, key: alpha.keyPath, respond: 'ech-status' }],
  };
}, 120_000);
afterAll(async () => {
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;
const body = (response: string | null) => JSON.parse(response!.slice(response!.indexOf('\r\n\r\n') + 4));

/** Polls `cond`; on timeout the error carries `context()` (the server's output), so a failure says what the server did. */
function waitFor(cond: () => boolean, ms = 5000, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((res, rej) => {
    const tick = () => {
      if (cond()) res();
      else if (Date.now() > deadline) rej(new Error(`condition not met in time${context() ? `; server output:\n${context().slice(-4000)}` : ''}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

/** A keep-alive HTTP/1.1 client on our TLS 1.3 client (no ECH): one request at a time. */
async function keepAlive(port: number): Promise<{ socket: TlsClientSocket; get(): Promise<Record<string, unknown>>; close(): void }> {
  const socket = connectTls13({ host: '127.0.0.1', port, servername: 'alpha.example', ca: pki.caPem, ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => undefined);
  await new Promise<void>((res, rej) => {
    socket.once('secureConnect', () => res());
    socket.once('error', rej);
  });
  let buf = '';
  let waiter: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    waiter?.();
  });
  socket.on('close', () => waiter?.());
  return {
    socket,
    async get() {
      socket.write('GET / HTTP/1.1\r\nHost: alpha.example\r\nAccept: application/json\r\n\r\n');
      const deadline = Date.now() + 5000;
      for (;;) {
        const head = buf.indexOf('\r\n\r\n');
        const m = /content-length: (\d+)/i.exec(buf);
        if (head >= 0 && m && buf.length >= head + 4 + Number(m[1])) {
          const text = buf.slice(head + 4, head + 4 + Number(m[1]));
          buf = buf.slice(head + 4 + Number(m[1]));
          return JSON.parse(text) as Record<string, unknown>;
        }
        if (socket.destroyed || Date.now() > deadline) throw new Error(`no response (${socket.destroyed ? 'closed' : 'timeout'}): ${buf}`);
        await new Promise<void>((res) => {
          const t = setTimeout(res, 100);
          waiter = () => {
            clearTimeout(t);
            res();
          };
        });
      }
    },
    close: () => socket.destroy(),
  };
}

function adminPort(s: ServeProcess): number {
  const m = /"admin":(\d+)/.exec(s.output());
  if (!m) throw new Error(`no admin port in ${s.output()}`);
  return Number(m[1]);
}

function scrape(port: number): Promise<string> {
  return new Promise((res, rej) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (r) => {
        let t = '';
        r.setEncoding('utf8');
        r.on('data', (d: string) => (t += d));
        r.on('end', () => res(t));
      })
      .on('error', rej);
  });
}

/** Every sample of a metric family, as `{labels} value` → number. */
function samples(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const sp = line.lastIndexOf(' ');
    out[line.slice(name.length, sp)] = Number(line.slice(sp + 1));
  }
  return out;
}

describe('ech-server serve: reload and drain', () => {
  it('SIGHUP with a new key file: new connections use the new config, a connection opened before keeps working', async () => {
    const s = await startServe(dir, baseConfig);
    // keygen picked a random config_id: the new key takes another one (a
    // fixed 200 collided with it 1 time in 256, and the reload was then
    // refused, RFC 9849 §4.1 distinct config_ids, failing this test).
    const keygenId = configIdsOf(listB64)[0]!;
    const newId = (keygenId + 1) % 256;
    const newKey = generateEchKey({ publicName: 'cover.example', configId: newId, maximumNameLength: 16 });
    const newList = toBase64(encodeEchConfigList([newKey.config]));
    const newFile = join(dir, 'keys', `ech-new-${newId.toString(16).padStart(2, '0')}.pem`);
    let live: Awaited<ReturnType<typeof keepAlive>> | undefined;
    try {
      live = await keepAlive(s.port);
      expect(await live.get()).toMatchObject({ site: 'alpha.example', echStatus: 'not-offered' });
      // Before the reload the new config is unknown: rejected.
      const before = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: newList, ca: caFile, send: GET('alpha.example'), read: true });
      expect(before.echAccepted).toBe(false);
      expect(before.echRejected).toBe(true);

      await writeEchKeyFile(newFile, newKey.config, newKey.privateKeyRaw);
      s.child.kill('SIGHUP');
      await waitFor(() => /"event":"reloaded"/.test(s.output()), 10_000, () => s.output());

      const after = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: newList, ca: caFile, send: GET('alpha.example'), read: true });
      expect(after.error).toBeNull();
      expect(after.echAccepted).toBe(true);
      expect(body(after.response)).toMatchObject({ echStatus: 'accepted', innerServerName: 'alpha.example', configId: newId });
      // The old key is still there too.
      const old = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, send: GET('alpha.example'), read: true });
      expect(old.echAccepted).toBe(true);
      // The connection opened before the reload still works.
      expect(await live.get()).toMatchObject({ site: 'alpha.example', echStatus: 'not-offered' });
      expect(live.socket.destroyed).toBe(false);
    } finally {
      live?.close();
      await rm(newFile, { force: true });
      expect(await s.stop()).toBe(0);
    }
  });

  it('SIGTERM drains: a live connection still gets its response, new ones are refused, then exit 0 within drainTimeoutMs', async () => {
    const drainTimeoutMs = 4000;
    const s = await startServe(dir, { ...baseConfig, drainTimeoutMs });
    const live = await keepAlive(s.port);
    try {
      expect(await live.get()).toMatchObject({ site: 'alpha.example' });
      const exited = new Promise<number | null>((res) => s.child.once('exit', (c) => res(c)));
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      await waitFor(() => /"event":"draining"/.test(s.output()), 3000, () => s.output());
      // no longer accepting
      const refused = await new Promise<boolean>((res) => {
        const c = net.connect(s.port, '127.0.0.1');
        c.once('connect', () => {
          c.destroy();
          res(false);
        });
        c.once('error', () => res(true));
      });
      expect(refused).toBe(true);
      // the live connection is served during the drain
      expect(await live.get()).toMatchObject({ site: 'alpha.example', echStatus: 'not-offered' });
      live.close();
      const code = await exited;
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(drainTimeoutMs);
    } finally {
      live.close();
      await s.stop();
    }
  });

  it('SIGTERM with a connection that stays open: exit 0 after drainTimeoutMs, not before, not much after', async () => {
    const drainTimeoutMs = 1500;
    const s = await startServe(dir, { ...baseConfig, drainTimeoutMs });
    const live = await keepAlive(s.port);
    try {
      const exited = new Promise<number | null>((res) => s.child.once('exit', (c) => res(c)));
      const t0 = Date.now();
      s.child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(drainTimeoutMs - 100);
      expect(elapsed).toBeLessThan(drainTimeoutMs + 3000);
    } finally {
      live.close();
      await s.stop();
    }
  });
});

describe('ech-server serve: a passthrough route (split mode)', () => {
  it('BoringSSL client → serve → BoringSSL backend with a HelloRetryRequest: ECH accepted, the backend saw the inner name; the config holds no key for it', async () => {
    const boring = await startBoring({ cert: secret.certPath, key: secret.keyPath, groups: ['P-256'] });
    const route = { serverName: 'secret.example', passthrough: `127.0.0.1:${boring.port}` };
    const s = await startServe(dir, { ...baseConfig, routes: [...(baseConfig['routes'] as unknown[]), route] });
    try {
      expect(Object.keys(route)).toEqual(['serverName', 'passthrough']); // no cert, no key
      const r = await runClient({ port: s.port, sni: 'secret.example', echConfigList: listB64, ca: caFile, groups: ['X25519', 'P-256'], send: 'hi' });
      expect(r.error).toBeNull();
      expect(r.echAccepted).toBe(true);
      expect(r.verified).toBe(true);
      expect(r.hrr).toBe(true);
      expect(r.response).toBe('hi');
      const b = await boring.result(0);
      expect(b.sni).toBe('secret.example');
      expect(b.clientHelloEch).toBe('inner');
      expect(b.hrr).toBe(true);
    } finally {
      expect(await s.stop()).toBe(0);
      await boring.close();
    }
  });
});

describe('ech-server serve: /metrics counts a scripted mix exactly', () => {
  it('N accepted, M rejected (stale key, ech_required), K GREASE, J hostile, P without ECH', async () => {
    const N = 3;
    const M = 2;
    const K = 2;
    const P = 1;
    const stale = toBase64(encodeEchConfigList([generateEchKey({ publicName: 'cover.example', configId: (await loadEchKeyDirectory(join(dir, 'keys'))).retryConfigs()[0]!.configId }).config]));
    const s = await startServe(dir, baseConfig);
    try {
      const port = adminPort(s);
      for (let i = 0; i < N; i++) {
        const r = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, send: GET('alpha.example'), read: true });
        expect(r.echAccepted).toBe(true);
      }
      for (let i = 0; i < M; i++) {
        const r = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: stale, ca: caFile });
        expect(r.echRejected).toBe(true);
        expect(r.alertSent?.code).toBe(121); // BoringSSL sends ech_required
      }
      // GREASE hitting one of our config_ids by chance is a rejection (helpers/grease.ts).
      const ids = (await loadEchKeyDirectory(join(dir, 'keys'))).keys().map((k) => k.config.configId);
      let collisions = 0;
      for (let i = 0; i < K; i++) {
        const r = await runClient({ port: s.port, sni: 'alpha.example', grease: true, ca: caFile, send: GET('alpha.example'), read: true });
        expect(r.handshake).toBe(true);
        if (greaseOutcome(body(r.response), ids) === 'rejected') collisions++;
      }
      for (let i = 0; i < P; i++) {
        const r = await runClient({ port: s.port, sni: 'alpha.example', ca: caFile, send: GET('alpha.example'), read: true });
        expect(body(r.response)).toMatchObject({ echStatus: 'not-offered' });
      }
      // Hostile 1: not TLS at all.
      const notTls = await rawPeer(s.port);
      notTls.send(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: alpha.example\r\n\r\n'));
      const a1 = await expectAlertRecord(notTls);
      await notTls.closed;
      expect(a1).toBe(AlertDescription.decode_error);
      // Hostile 2: an inner-type ECH extension in the first ClientHello (RFC 9849 §7: illegal_parameter).
      const innerType = buildClientHello({ serverName: 'cover.example', keyShares: [{ group: 0x1d, keyExchange: new Uint8Array(32).fill(3) }], extraExtensions: [{ type: ExtensionType.encrypted_client_hello, data: encodeEchClientHello({ type: 'inner' }) }] });
      const hostile = await rawPeer(s.port);
      hostile.send(writeRecords(ContentType.handshake, encodeClientHelloMessage(innerType), 0x0301));
      const a2 = await expectAlertRecord(hostile);
      await hostile.closed;
      expect(a2).toBe(AlertDescription.illegal_parameter);
      const J = 2;

      // The server counts after the handshake's last flight; give the last one a moment.
      let text = await scrape(port);
      const total = () => Object.values(samples(text, 'ech_connections_total')).reduce((a, b) => a + b, 0);
      for (let i = 0; i < 30 && (total() < N + M + K + P + J || (samples(text, 'ech_required_alerts_total')[''] ?? 0) < M); i++) {
        await new Promise((r) => setTimeout(r, 100));
        text = await scrape(port);
      }
      const conns = samples(text, 'ech_connections_total');
      expect(conns).toEqual({
        '{status="accepted"}': N,
        '{status="rejected"}': M + collisions,
        ...(K - collisions > 0 ? { '{status="grease"}': K - collisions } : {}),
        '{status="not-offered"}': P,
        '{status="error"}': J,
      });
      expect(samples(text, 'ech_required_alerts_total')).toEqual({ '': M });
      expect(samples(text, 'ech_alerts_sent_total')).toEqual({ '{alert="decode_error"}': 1, '{alert="illegal_parameter"}': 1 });
      // no inner names in the metrics
      expect(text).not.toMatch(/alpha\.example/);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});
