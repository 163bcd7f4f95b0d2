// @module-tag peer-boringssl
// EchFrontEnd end to end, in process, against BoringSSL as the ECH client:
// split mode (passthrough to our engine in backend mode and to BoringSSL's
// server, also after a HelloRetryRequest at the backend), terminate-and-
// forward to a plain Node HTTP backend and to a Node HTTPS backend with its
// own CA, each with a PROXY v2 header the backend parses, and the limits
// (stalled first flight, oversized ClientHello, 1,000 stalled clients).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { join } from 'node:path';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { buildClientHello, buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { encodeClientHelloMessage } from '../src/tls/client-hello.js';
import { writeRecords } from '../src/tls/record.js';
import { ContentType, ExtensionType } from '../src/tls/constants.js';
import { toBase64 } from '../src/wire/bytes.js';
import { AlertDescription } from '../src/wire/alert.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import { EchFrontEnd, type FrontEndOptions, type FrontEndRoute } from '../src/front/front-end.js';
import { decodeProxyV2, type ProxyAddresses } from '../src/front/proxy-protocol.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { buildHarness, runClient, startServer as startBoring } from './peers/boringssl.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';
import { rawPeer, expectAlertRecord } from './helpers/raw-client.js';

type Leaf = ReturnType<TestPki['leaf']>;
let pki: TestPki;
let backendPki: TestPki;
let caFile: string;
let cover: Leaf;
let secret: Leaf;
let web: Leaf;
let legacyFront: Leaf;
let legacyBackend: Leaf;
const key = generateEchKey({ publicName: 'cover.example', configId: 7, maximumNameLength: 32 });
const keys = new EchKeySet([key]);
const list = toBase64(encodeEchConfigList([key.config]));

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  backendPki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  cover = pki.leaf('ec', ['cover.example']);
  secret = pki.leaf('ec', ['secret.example']);
  web = pki.leaf('ec', ['web.example']);
  legacyFront = pki.leaf('ec', ['legacy.example']);
  // The legacy HTTPS backend's certificate comes from another CA and names
  // an internal host: the front end must verify it with that CA and SNI.
  legacyBackend = backendPki.leaf('ec', ['legacy.internal']);
}, 120_000);
afterAll(() => {
  pki?.cleanup();
  backendPki?.cleanup();
});

interface Running {
  fe: EchFrontEnd;
  port: number;
  /** Remote ports of the TCP connections the front end accepted, in order. */
  clientPorts: number[];
  close(): Promise<void>;
}

async function frontEnd(routes: FrontEndRoute[], extra: Partial<FrontEndOptions> = {}): Promise<Running> {
  const fe = new EchFrontEnd({ keys, publicName: { cert: cover.cert, key: cover.key }, routes, ...extra });
  const clientPorts: number[] = [];
  fe.server.on('connection', (s: Socket) => clientPorts.push(s.remotePort!));
  const { port } = await fe.listen(0);
  return { fe, port, clientPorts, close: () => fe.close() };
}

function listen(server: net.Server): Promise<number> {
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port)));
}
function closeServer(server: net.Server): Promise<void> {
  return new Promise((res) => server.close(() => res()));
}

const GET = (host: string) => `GET /who HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
const httpBody = (response: string | null) => JSON.parse(response!.slice(response!.indexOf('\r\n\r\n') + 4));

/**
 * A backend behind a PROXY v2 header: reads the header, then hands the rest
 * of the connection to `next` (an http.Server for plain HTTP, or a TLS
 * wrapper). Every header it parsed is kept.
 */
function proxyV2Listener(next: (socket: Socket, header: ProxyAddresses | undefined) => void): { server: net.Server; headers: Array<ProxyAddresses | undefined> } {
  const headers: Array<ProxyAddresses | undefined> = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let h;
      try {
        h = decodeProxyV2(new Uint8Array(buf));
      } catch {
        socket.destroy();
        return;
      }
      if (!h) return;
      socket.off('data', onData);
      socket.pause();
      headers.push(h.addresses);
      if (buf.length > h.length) socket.unshift(buf.subarray(h.length));
      next(socket, h.addresses);
    };
    socket.on('data', onData);
  });
  return { server, headers };
}

/**
 * The socket as a JS Duplex: node:tls reads a net.Socket's handle directly
 * and would miss bytes unshifted after the PROXY header.
 */
function asDuplex(socket: Socket): Duplex {
  const d = new Duplex({
    read: () => void socket.resume(),
    write: (c: Buffer, _e, cb) => void socket.write(c, cb),
    final: (cb) => {
      socket.end();
      cb();
    },
    destroy: (e, cb) => {
      socket.destroy();
      cb(e);
    },
  });
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  return d;
}

describe('split mode through EchFrontEnd: passthrough to an ECH-aware backend', () => {
  for (const hrr of [false, true]) {
    it(`(a) our engine in backend mode${hrr ? ', with a HelloRetryRequest at the backend' : ''}: ECH accepted end to end, the backend saw the inner name`, async () => {
      const backend = await startServer(
        { key: secret.key, cert: secret.cert, onClientHello: createEchHook({ role: 'backend' }), ...(hrr ? { ecdhCurve: 'P-256' } : {}) },
        (s: TlsSocket) => {
          s.on('error', () => undefined);
          s.once('data', () => s.end(JSON.stringify({ servername: s.servername, helloRetry: s.handshake?.helloRetry, ...s.attributes })));
        },
      );
      // The passthrough route carries no certificate and no key: the front
      // end cannot terminate secret.example, so it never holds its session keys.
      const route: FrontEndRoute = { serverName: 'secret.example', action: { passthrough: { host: '127.0.0.1', port: backend.port } } };
      const fe = await frontEnd([route]);
      try {
        expect(route.cert).toBeUndefined();
        expect(route.key).toBeUndefined();
        const r = await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, ca: caFile, groups: ['X25519', 'P-256'], send: 'hi', read: true });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(r.verified).toBe(true);
        expect(r.peerCertSubject).toMatch(/secret\.example/);
        expect(r.hrr).toBe(hrr);
        expect(JSON.parse(r.response!)).toMatchObject({ servername: 'secret.example', echStatus: 'accepted', echRole: 'backend', helloRetry: hrr });
        expect(fe.fe.metrics.value('connections', { status: 'accepted' })).toBe(1);
        // bytes are counted when the relay ends, under the route's position, not its (inner) name
        await waitFor(() => /ech_relayed_bytes_total\{direction="backend_to_client",route="routes\[0\]"\} [1-9]/.test(fe.fe.metrics.render()));
        expect(fe.fe.metrics.render()).not.toMatch(/secret\.example/);
      } finally {
        await fe.close();
        await backend.close();
      }
    });
  }

  for (const hrr of [false, true]) {
    it(`(b) BoringSSL's server as the backend${hrr ? ', with a HelloRetryRequest' : ''}: ECH accepted, the backend saw the inner name and the inner-type extension`, async () => {
      const boring = await startBoring({ cert: secret.certPath, key: secret.keyPath, ...(hrr ? { groups: ['P-256'] } : {}) });
      const fe = await frontEnd([{ serverName: 'secret.example', action: { passthrough: { host: '127.0.0.1', port: boring.port } } }]);
      try {
        const r = await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, ca: caFile, groups: ['X25519', 'P-256'], send: 'hi' });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(r.verified).toBe(true);
        expect(r.hrr).toBe(hrr);
        expect(r.response).toBe('hi');
        const s = await boring.result(0);
        expect(s.sni).toBe('secret.example');
        expect(s.clientHelloEch).toBe('inner');
        expect(s.hrr).toBe(hrr);
      } finally {
        await fe.close();
        await boring.close();
      }
    });
  }
});

describe('passthrough without ECH', () => {
  it('a client offering no ECH is relayed as is, by its clear name, to the passthrough backend (a plain node:tls server)', async () => {
    const backend = tls.createServer({ cert: secret.cert, key: secret.key }, (s) => s.end(`backend saw ${s.servername}`));
    backend.on('tlsClientError', () => undefined);
    const port = await listen(backend);
    const fe = await frontEnd([{ serverName: 'secret.example', action: { passthrough: { host: '127.0.0.1', port } } }]);
    try {
      const got = await new Promise<string>((res, rej) => {
        const c = tls.connect({ host: '127.0.0.1', port: fe.port, servername: 'secret.example', ca: pki.caPem });
        let t = '';
        c.on('data', (d) => (t += d));
        c.on('end', () => res(t));
        c.on('error', rej);
      });
      expect(got).toBe('backend saw secret.example');
      await waitFor(() => fe.fe.metrics.value('connections', { status: 'not-offered' }) === 1);
    } finally {
      await fe.close();
      await closeServer(backend);
    }
  });
});

describe('backends that are down', () => {
  it('passthrough and forward to a closed port: the client is closed promptly and the error is counted', async () => {
    const dead = net.createServer();
    const deadPort = await listen(dead);
    await closeServer(dead);
    const fe = await frontEnd([
      { serverName: 'secret.example', action: { passthrough: { host: '127.0.0.1', port: deadPort } } },
      { serverName: 'web.example', cert: web.cert, key: web.key, action: { forward: { host: '127.0.0.1', port: deadPort } } },
    ]);
    try {
      const t0 = Date.now();
      const a = await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, ca: caFile, send: 'hi', timeoutMs: 10_000 });
      expect(a.handshake).toBe(false);
      const b = await runClient({ port: fe.port, sni: 'web.example', echConfigList: list, ca: caFile, send: 'GET / HTTP/1.0\r\n\r\n', read: true, timeoutMs: 10_000 });
      expect(b.echAccepted).toBe(true); // terminated here, then the backend is unreachable
      expect(b.response ?? '').toBe('');
      expect(Date.now() - t0).toBeLessThan(5000);
      await waitFor(() => fe.fe.metrics.value('handshakeErrors', { reason: 'ECONNREFUSED' }) === 1);
      await waitFor(() => fe.fe.connections === 0);
    } finally {
      await fe.close();
    }
  });
});

describe('terminate and forward, with a PROXY v2 header the backend parses', () => {
  it('forward: a plain Node HTTP backend learns the real client address and port', async () => {
    const app = http.createServer((req, res) => {
      const h = proxied.get(req.socket);
      res.end(JSON.stringify({ host: req.headers.host, proxy: h }));
    });
    const proxied = new WeakMap<object, ProxyAddresses | undefined>();
    const { server, headers } = proxyV2Listener((socket, h) => {
      proxied.set(socket, h);
      app.emit('connection', socket);
      socket.resume();
    });
    const backendPort = await listen(server);
    const fe = await frontEnd([{ serverName: 'web.example', cert: web.cert, key: web.key, action: { forward: { host: '127.0.0.1', port: backendPort, proxyProtocol: true } } }]);
    try {
      const r = await runClient({ port: fe.port, sni: 'web.example', echConfigList: list, ca: caFile, send: GET('web.example'), read: true });
      expect(r.error).toBeNull();
      expect(r.echAccepted).toBe(true);
      expect(r.peerCertSubject).toMatch(/web\.example/);
      const body = httpBody(r.response);
      expect(body.host).toBe('web.example');
      expect(headers).toHaveLength(1);
      expect(body.proxy).toEqual({ sourceAddress: '127.0.0.1', sourcePort: fe.clientPorts[0], destinationAddress: '127.0.0.1', destinationPort: fe.port });
    } finally {
      await fe.close();
      app.closeAllConnections();
      await closeServer(server);
    }
  });

  it('forwardTls: a Node HTTPS backend with its own CA and SNI learns the real client address and port', async () => {
    const ctx = tls.createSecureContext({ cert: legacyBackend.cert, key: legacyBackend.key });
    const sniSeen: Array<string | false> = [];
    const app = http.createServer((req, res) => {
      const s = req.socket as tls.TLSSocket & { proxy?: ProxyAddresses };
      res.end(JSON.stringify({ host: req.headers.host, sni: s.servername, tls: s.encrypted === true, proxy: s.proxy }));
    });
    const { server, headers } = proxyV2Listener((socket, h) => {
      const t = new tls.TLSSocket(asDuplex(socket), { isServer: true, secureContext: ctx }) as tls.TLSSocket & { proxy?: ProxyAddresses };
      t.proxy = h;
      t.on('error', () => undefined);
      t.once('secure', () => sniSeen.push(t.servername ?? false));
      app.emit('connection', t);
      socket.resume();
    });
    const backendPort = await listen(server);
    const fe = await frontEnd([
      {
        serverName: 'legacy.example',
        cert: legacyFront.cert,
        key: legacyFront.key,
        action: { forwardTls: { host: '127.0.0.1', port: backendPort, ca: backendPki.caPem, servername: 'legacy.internal', proxyProtocol: true } },
      },
    ]);
    try {
      const r = await runClient({ port: fe.port, sni: 'legacy.example', echConfigList: list, ca: caFile, send: GET('legacy.example'), read: true });
      expect(r.error).toBeNull();
      expect(r.echAccepted).toBe(true);
      expect(r.peerCertSubject).toMatch(/legacy\.example/);
      const body = httpBody(r.response);
      expect(body).toMatchObject({ host: 'legacy.example', sni: 'legacy.internal', tls: true });
      expect(sniSeen).toEqual(['legacy.internal']);
      expect(headers).toHaveLength(1);
      expect(body.proxy).toEqual({ sourceAddress: '127.0.0.1', sourcePort: fe.clientPorts[0], destinationAddress: '127.0.0.1', destinationPort: fe.port });
    } finally {
      await fe.close();
      app.closeAllConnections();
      await closeServer(server);
    }
  });

  it('forwardTls refuses a backend whose certificate does not chain to the configured CA', async () => {
    const ctx = tls.createSecureContext({ cert: legacyBackend.cert, key: legacyBackend.key });
    const backend = tls.createServer({ secureContext: ctx }, (s) => s.end('should not be reached'));
    backend.on('tlsClientError', () => undefined);
    const backendPort = await listen(backend);
    const fe = await frontEnd([
      { serverName: 'legacy.example', cert: legacyFront.cert, key: legacyFront.key, action: { forwardTls: { host: '127.0.0.1', port: backendPort, ca: pki.caPem, servername: 'legacy.internal' } } },
    ]);
    try {
      const r = await runClient({ port: fe.port, sni: 'legacy.example', echConfigList: list, ca: caFile, send: GET('legacy.example'), read: true });
      expect(r.echAccepted).toBe(true);
      expect(r.response ?? '').not.toMatch(/should not be reached/);
    } finally {
      await fe.close();
      await closeServer(backend);
    }
  });
});

describe('logs', () => {
  for (const logInnerNames of [false, true]) {
    it(`inner names appear in logs and metrics ${logInnerNames ? 'when logInnerNames is set' : 'never by default'}`, async () => {
      const backend = await startServer({ key: secret.key, cert: secret.cert, onClientHello: createEchHook({ role: 'backend' }) }, (s: TlsSocket) => {
        s.on('error', () => undefined);
        s.once('data', (d) => s.end(d));
      });
      const events: Array<Record<string, unknown>> = [];
      const fe = await frontEnd(
        [
          { serverName: 'secret.example', action: { passthrough: { host: '127.0.0.1', port: backend.port } } },
          { serverName: 'web.example', cert: web.cert, key: web.key, action: { respond: 'ech-status' } },
        ],
        { log: (e) => events.push(e), logInnerNames },
      );
      try {
        const a = await runClient({ port: fe.port, sni: 'secret.example', echConfigList: list, ca: caFile, send: 'hi', read: true });
        expect(a.echAccepted).toBe(true);
        const b = await runClient({ port: fe.port, sni: 'web.example', echConfigList: list, ca: caFile, send: GET('web.example'), read: true });
        expect(b.echAccepted).toBe(true);
        await waitFor(() => events.some((e) => e['event'] === 'passthrough_closed'));
        const text = JSON.stringify(events) + fe.fe.metrics.render();
        expect(events.filter((e) => e['event'] === 'handshake' || e['event'] === 'passthrough_closed').map((e) => e['outer'])).toEqual(['cover.example', 'cover.example']);
        if (logInnerNames) {
          expect(text).toContain('secret.example');
          expect(text).toContain('web.example');
        } else {
          expect(text).not.toContain('secret.example');
          expect(text).not.toContain('web.example');
        }
      } finally {
        await fe.close();
        await backend.close();
      }
    });
  }
});

function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((res, rej) => {
    const tick = () => {
      if (cond()) res();
      else if (Date.now() > deadline) rej(new Error('condition not met in time'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

function x25519Share() {
  return { group: 0x001d, keyExchange: new Uint8Array(32).fill(5) };
}

async function echHelloRecords(serverName: string): Promise<Uint8Array> {
  const h = await buildEchClientHello({ serverName, keyShares: [x25519Share()] }, { config: key.config, sealer: createEchSealer });
  return writeRecords(ContentType.handshake, h.outerMessage, 0x0301);
}

describe('limits', () => {
  it('a client that sends half a ClientHello and stalls is closed near firstFlightTimeoutMs', async () => {
    const timeoutMs = 400;
    const fe = await frontEnd([], { limits: { firstFlightTimeoutMs: timeoutMs } });
    try {
      const records = await echHelloRecords('secret.example');
      const peer = await rawPeer(fe.port);
      const t0 = Date.now();
      peer.send(records.subarray(0, Math.floor(records.length / 2)));
      await Promise.race([peer.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('not closed within 5 s')), 5000).unref())]);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 20);
      expect(elapsed).toBeLessThan(timeoutMs + 1000);
      expect(fe.fe.metrics.value('handshakeErrors', { reason: 'ERR_TIMEOUT' })).toBe(1);
      peer.close();
    } finally {
      await fe.close();
    }
  });

  it('an oversized ClientHello gets a record_overflow or decode_error alert and a close', async () => {
    const fe = await frontEnd([], { limits: { maxClientHelloBytes: 2048 } });
    try {
      // 8 KiB of padding (RFC 7685) in an otherwise ordinary ClientHello.
      const ch = buildClientHello({ serverName: 'cover.example', keyShares: [x25519Share()], extraExtensions: [{ type: ExtensionType.padding, data: new Uint8Array(8192) }] });
      const peer = await rawPeer(fe.port);
      peer.send(writeRecords(ContentType.handshake, encodeClientHelloMessage(ch), 0x0301));
      const alert = await expectAlertRecord(peer);
      expect([AlertDescription.record_overflow, AlertDescription.decode_error]).toContain(alert);
      await Promise.race([peer.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('not closed within 3 s')), 3000).unref())]);
      peer.close();
    } finally {
      await fe.close();
    }
  });

  it('maxClientHelloBytes is the limit on the ClientHello itself: one byte over is refused, the limit itself is served', async () => {
    const limit = 3000;
    const fe = await frontEnd([], { limits: { maxClientHelloBytes: limit } });
    try {
      // A ClientHello whose body is exactly `n` bytes, padded with a padding extension.
      const helloOfBody = (n: number) => {
        const base = buildClientHello({ serverName: 'cover.example', keyShares: [x25519Share()], extraExtensions: [{ type: ExtensionType.padding, data: new Uint8Array(0) }] });
        const baseBody = encodeClientHelloMessage(base).length - 4;
        return encodeClientHelloMessage({ ...base, extensions: base.extensions.map((e) => (e.type === ExtensionType.padding ? { ...e, data: new Uint8Array(n - baseBody) } : e)) });
      };
      const over = await rawPeer(fe.port);
      over.send(writeRecords(ContentType.handshake, helloOfBody(limit + 1), 0x0301));
      expect([AlertDescription.record_overflow, AlertDescription.decode_error]).toContain(await expectAlertRecord(over));
      over.close();
      const at = await rawPeer(fe.port);
      at.send(writeRecords(ContentType.handshake, helloOfBody(limit), 0x0301));
      // served: a ServerHello (handshake record), not an alert
      expect((await at.nextRecord()).type).toBe(ContentType.handshake);
      at.close();
    } finally {
      await fe.close();
    }
  });

  it('a client that sends a whole ClientHello and then stalls is aborted near handshakeTimeoutMs', async () => {
    const handshakeTimeoutMs = 500;
    const fe = await frontEnd([{ serverName: 'web.example', cert: web.cert, key: web.key, action: { respond: 'ech-status' } }], { limits: { handshakeTimeoutMs } });
    try {
      const peer = await rawPeer(fe.port);
      const t0 = Date.now();
      peer.send(await echHelloRecords('web.example'));
      // ServerHello arrives (the handshake started) ...
      expect((await peer.nextRecord()).type).toBe(ContentType.handshake);
      // ... and, with no client Finished, the connection is closed at the deadline.
      await Promise.race([peer.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('not closed within 5 s')), 5000).unref())]);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(handshakeTimeoutMs - 20);
      expect(elapsed).toBeLessThan(handshakeTimeoutMs + 1500);
      peer.close();
    } finally {
      await fe.close();
    }
  });

  it('maxConcurrentHandshakes: one more client is closed at once; once they leave, clients complete again', async () => {
    const fe = await frontEnd([{ serverName: 'web.example', cert: web.cert, key: web.key, action: { respond: 'ech-status' } }], { limits: { maxConcurrentHandshakes: 5 } });
    const stalled = await Promise.all(Array.from({ length: 5 }, () => rawPeer(fe.port)));
    try {
      const half = (await echHelloRecords('web.example')).subarray(0, 50);
      for (const p of stalled) p.send(half);
      await waitFor(() => fe.fe.connections === 5);
      const extra = await rawPeer(fe.port);
      await Promise.race([extra.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('not closed within 3 s')), 3000).unref())]);
      expect(fe.fe.metrics.value('handshakeErrors', { reason: 'TOO_MANY_HANDSHAKES' })).toBe(1);
      for (const p of stalled) p.close();
      await waitFor(() => fe.fe.connections === 0);
      const r = await runClient({ port: fe.port, sni: 'web.example', echConfigList: list, ca: caFile, send: GET('web.example'), read: true });
      expect(r.echAccepted).toBe(true);
    } finally {
      for (const p of stalled) p.close();
      await fe.close();
    }
  });

  it('1,000 concurrent stalled clients do not stop a well-behaved client from completing', async () => {
    const STALLED = 1000;
    const fe = await frontEnd([{ serverName: 'web.example', cert: web.cert, key: web.key, action: { respond: 'ech-status' } }], {
      limits: { firstFlightTimeoutMs: 20_000 },
    });
    const stalled: Socket[] = [];
    try {
      const half = (await echHelloRecords('web.example')).subarray(0, 100);
      const deadline = Date.now() + 20_000;
      // Open in batches of 100, each sending a partial first flight.
      for (let i = 0; i < STALLED && Date.now() < deadline; i += 100) {
        await Promise.all(
          Array.from({ length: 100 }, () =>
            new Promise<void>((res, rej) => {
              const s = net.connect(fe.port, '127.0.0.1', () => {
                s.write(half);
                res();
              });
              s.on('error', rej);
              stalled.push(s);
            }),
          ),
        );
      }
      expect(stalled).toHaveLength(STALLED);
      await waitFor(() => fe.fe.connections >= STALLED, 10_000);
      const t0 = Date.now();
      const r = await runClient({
        port: fe.port,
        sni: 'web.example',
        echConfigList: list,
        ca: caFile,
        send: 'GET / HTTP/1.1\r\nHost: web.example\r\nAccept: application/json\r\nConnection: close\r\n\r\n',
        read: true,
        timeoutMs: 15_000,
      });
      expect(r.error).toBeNull();
      expect(r.echAccepted).toBe(true);
      expect(httpBody(r.response)).toMatchObject({ echStatus: 'accepted', innerServerName: 'web.example' });
      expect(Date.now() - t0).toBeLessThan(10_000);
      // the stalled ones are still open (not closed to make room)
      expect(stalled.filter((s) => !s.destroyed && !s.readableEnded).length).toBe(STALLED);
    } finally {
      for (const s of stalled) s.destroy();
      await fe.close();
    }
    expect(fe.fe.connections).toBe(0);
  }, 60_000);
});
