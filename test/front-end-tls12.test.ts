// @module-tag peer-openssl
// @module-tag peer-curl
// TLS 1.2 clients on the cover name (issue 15): a client offering no TLS 1.3
// (so no ECH) is terminated by node:tls with the certificate the TLS 1.3
// path would present — the public name's for the public name and unknown
// names, the route's for terminating routes — then routed as usual (ech-status
// page, forward, handler); passthrough routes still get its bytes untouched.
// Real peers decide: curl --tls-max 1.2, openssl s_client -tls1_2, Node's
// tls client. Also: ECH in a TLS 1.2-only hello (RFC 9849 §6.1), the limits,
// failed handshakes, `tls12: false`, metrics and `ech-server serve`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { buildClientHello } from '../src/ech/builder.js';
import { encodeClientHelloMessage } from '../src/tls/client-hello.js';
import { encodeEchClientHello } from '../src/tls/extensions.js';
import { writeRecords } from '../src/tls/record.js';
import { ContentType, ExtensionType, ProtocolVersion } from '../src/tls/constants.js';
import { AlertDescription } from '../src/wire/alert.js';
import { EchFrontEnd, type FrontEndOptions, type FrontEndRoute } from '../src/front/front-end.js';
import { validateServeConfig } from '../src/front/config.js';
import { signWithScheme } from '../src/tls13/certificates.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { rawPeer, expectAlertRecord, type RawPeer } from './helpers/raw-client.js';
import { recordingRelay, startServe } from './helpers/serve-process.js';
import { echHelloWithTls12Outer } from './helpers/tls12-outer.js';
import { decryptClientHello } from '../src/ech/decrypt.js';

const run = promisify(execFile);
type Leaf = ReturnType<TestPki['leaf']>;
let pki: TestPki;
let backendPki: TestPki;
let caFile: string;
let cover: Leaf;
let web: Leaf;
let status: Leaf;
let hand: Leaf;
let rsaSite: Leaf;
let passLeaf: Leaf;
const key = generateEchKey({ publicName: 'cover.example', configId: 7, maximumNameLength: 32 });
const keys = new EchKeySet([key]);

// Backends: a plain HTTP one (for `forward`) and a Node TLS server allowing
// TLS 1.2 behind a byte-recording relay (for `passthrough`).
let httpBackend: http.Server;
let httpPort: number;
let tlsBackend: tls.Server;
let passRelay: Awaited<ReturnType<typeof recordingRelay>>;

beforeAll(async () => {
  pki = makePki();
  backendPki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  cover = pki.leaf('ec', ['cover.example']);
  web = pki.leaf('ec', ['web.example']);
  status = pki.leaf('ec', ['status.example']);
  hand = pki.leaf('ec', ['*.hand.example']);
  rsaSite = pki.leaf('rsa', ['rsa.example']);
  passLeaf = backendPki.leaf('ec', ['pass.example']);
  httpBackend = http.createServer((req, res) => res.end(JSON.stringify({ backend: 'web', host: req.headers.host, url: req.url })));
  httpPort = await listen(httpBackend);
  tlsBackend = tls.createServer({ cert: passLeaf.cert, key: passLeaf.key, minVersion: 'TLSv1.2' }, (s) => {
    s.on('error', () => undefined);
    s.end(`pass backend ${s.getProtocol()} ${s.servername}\n`);
  });
  tlsBackend.on('tlsClientError', () => undefined);
  passRelay = await recordingRelay(await listen(tlsBackend));
}, 120_000);
afterAll(async () => {
  await passRelay?.close();
  await new Promise((r) => tlsBackend?.close(r));
  httpBackend?.closeAllConnections();
  await new Promise((r) => httpBackend?.close(r));
  pki?.cleanup();
  backendPki?.cleanup();
});

function listen(server: net.Server): Promise<number> {
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port)));
}

function routes(): FrontEndRoute[] {
  return [
    { serverName: 'web.example', cert: web.cert, key: web.key, action: { forward: { host: '127.0.0.1', port: httpPort } } },
    { serverName: 'status.example', cert: status.cert, key: status.key, action: { respond: 'ech-status' } },
    { serverName: 'rsa.example', cert: rsaSite.cert, key: rsaSite.key, action: { respond: 'ech-status' } },
    {
      serverName: '*.hand.example',
      cert: hand.cert,
      key: hand.key,
      action: { handler: (s, info) => s.end(`${info.echStatus} ${s.getProtocol()} ${s.servername} ${info.route}\n`) },
    },
    { serverName: 'pass.example', action: { passthrough: { host: '127.0.0.1', port: passRelay.port } } },
  ];
}

async function frontEnd(extra: Partial<FrontEndOptions> = {}): Promise<{ fe: EchFrontEnd; port: number }> {
  const fe = new EchFrontEnd({ keys, publicName: { cert: cover.cert, key: cover.key }, routes: routes(), ...extra });
  const { port } = await fe.listen(0);
  return { fe, port };
}

/** curl restricted to TLS 1.2, verifying the certificate against the test CA for `name`. */
async function curl12(port: number, name: string, path = '/'): Promise<{ code: number; body: string; verbose: string }> {
  try {
    const r = await run(
      'curl',
      ['-sS', '-v', '--tlsv1.2', '--tls-max', '1.2', '--cacert', caFile, '--resolve', `${name}:${port}:127.0.0.1`, '-H', 'Accept: application/json', '--max-time', '15', `https://${name}:${port}${path}`],
      { timeout: 20_000 },
    );
    return { code: 0, body: r.stdout, verbose: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, body: x.stdout, verbose: x.stderr };
  }
}

/** openssl s_client -tls1_2: the certificate subject, protocol, verification and what the server sent. */
async function sClient(port: number, servername: string | undefined, args: string[] = [], send = ''): Promise<{ out: string; subject: string | undefined; protocol: string | undefined }> {
  const child = execFile(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-CAfile', caFile, '-ign_eof', ...(servername ? ['-servername', servername] : ['-noservername']), ...args],
    { timeout: 20_000 },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  child.stdin!.end(send);
  await new Promise((r) => child.once('close', r));
  return { out, subject: /^subject=(.*)$/m.exec(out)?.[1], protocol: /^\s*Protocol\s*:\s*(\S+)/m.exec(out)?.[1] };
}

/** Node's TLS client limited to TLS 1.2. */
function node12(port: number, servername: string, send = ''): Promise<{ protocol: string | null; san: string | undefined; cipher: string; data: string; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ port, host: '127.0.0.1', servername, ca: pki.caPem, maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, () => {
      const cert = c.getPeerCertificate();
      const info = { protocol: c.getProtocol(), san: cert.subjectaltname, cipher: c.getCipher().name, authorized: c.authorized };
      let data = '';
      c.on('data', (d) => (data += d));
      c.on('end', () => resolve({ ...info, data }));
      if (send) c.write(send);
    });
    c.on('error', reject);
    c.setTimeout(15_000, () => c.destroy(new Error('timeout')));
  });
}

/** A TLS 1.2-only ClientHello (supported_versions [0x0303]) as records, optionally with an ECH extension. */
function tls12Hello(serverName: string, ech?: { configId: number }): Uint8Array {
  const extra = ech
    ? [
        {
          type: ExtensionType.encrypted_client_hello,
          data: encodeEchClientHello({ type: 'outer', kdfId: 1, aeadId: 1, configId: ech.configId, enc: new Uint8Array(randomBytes(32)), payload: new Uint8Array(randomBytes(200)) }),
        },
      ]
    : [];
  const ch = buildClientHello({
    serverName,
    supportedVersions: [ProtocolVersion.TLS12],
    // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    cipherSuites: [0xc02b, 0xc02f],
    extraExtensions: [{ type: 11, data: new Uint8Array([1, 0]) }, ...extra],
  });
  return writeRecords(ContentType.handshake, encodeClientHelloMessage(ch));
}

function closedWithin(peer: RawPeer, ms: number): Promise<void> {
  return Promise.race([peer.closed, new Promise<void>((_, rej) => setTimeout(() => rej(new Error(`not closed within ${ms} ms`)), ms).unref())]);
}

async function settle(fe: EchFrontEnd): Promise<void> {
  for (let i = 0; fe.connections > 0 && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
}

describe('TLS 1.2-only clients on terminating routes', () => {
  it('curl --tls-max 1.2 reaches the public name: its certificate, the ech-status page, counted as tls12', async () => {
    const { fe, port } = await frontEnd();
    try {
      const r = await curl12(port, 'cover.example');
      expect(r.code, r.verbose).toBe(0);
      expect(r.verbose).toMatch(/SSL connection using TLSv1\.2 \/ ECDHE-ECDSA-AES(128|256)-GCM-SHA(256|384)/);
      expect(r.verbose).toMatch(/subject: CN=cover\.example/);
      expect(r.verbose).toMatch(/SSL certificate verify ok/);
      const page = JSON.parse(r.body);
      expect(page).toMatchObject({ site: 'cover.example', echStatus: 'not-offered', protocol: 'TLSv1.2', servername: 'cover.example', outerServerName: 'cover.example', innerServerName: null });
      expect(page.cipher).toMatch(/^TLS_ECDHE_ECDSA_WITH_AES_\d+_GCM_SHA\d+$/);
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(1);
      expect(fe.metrics.render()).toContain('ech_connections_total{status="tls12"} 1');
      await settle(fe);
      expect(fe.connections).toBe(0);
    } finally {
      await fe.close();
    }
  });

  it('unknown names and hellos without SNI get the public name certificate (openssl s_client -tls1_2)', async () => {
    const { fe, port } = await frontEnd();
    try {
      const unknown = await sClient(port, 'nowhere.example', [], 'GET / HTTP/1.1\r\nHost: nowhere.example\r\nConnection: close\r\n\r\n');
      expect(unknown.protocol, unknown.out).toBe('TLSv1.2');
      expect(unknown.subject).toBe('CN = cover.example');
      expect(unknown.out).toContain('ECH status');
      const none = await sClient(port, undefined, [], 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(none.protocol, none.out).toBe('TLSv1.2');
      expect(none.subject).toBe('CN = cover.example');
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(2);
    } finally {
      await fe.close();
    }
  });

  it('a forward route: the route certificate (curl verifies it) and the HTTP backend answer', async () => {
    const { fe, port } = await frontEnd();
    try {
      const r = await curl12(port, 'web.example', '/hello');
      expect(r.code, r.verbose).toBe(0);
      expect(r.verbose).toMatch(/SSL connection using TLSv1\.2/);
      expect(r.verbose).toMatch(/subject: CN=web\.example/);
      expect(JSON.parse(r.body)).toEqual({ backend: 'web', host: `web.example:${port}`, url: '/hello' });
      await settle(fe);
      expect(fe.connections).toBe(0);
    } finally {
      await fe.close();
    }
  });

  it('an ech-status route and an RSA route: each its own certificate and page', async () => {
    const { fe, port } = await frontEnd();
    try {
      const r = await curl12(port, 'status.example');
      expect(r.code, r.verbose).toBe(0);
      expect(r.verbose).toMatch(/subject: CN=status\.example/);
      expect(JSON.parse(r.body)).toMatchObject({ site: 'status.example', echStatus: 'not-offered', protocol: 'TLSv1.2' });
      const rsa = await curl12(port, 'rsa.example');
      expect(rsa.code, rsa.verbose).toBe(0);
      expect(rsa.verbose).toMatch(/SSL connection using TLSv1\.2 \/ ECDHE-RSA-AES/);
      expect(rsa.verbose).toMatch(/subject: CN=rsa\.example/);
      expect(JSON.parse(rsa.body)).toMatchObject({ site: 'rsa.example', protocol: 'TLSv1.2' });
    } finally {
      await fe.close();
    }
  });

  it('a handler route (wildcard certificate) gets a node:tls socket and ConnectionInfo with echStatus not-offered', async () => {
    const { fe, port } = await frontEnd();
    try {
      const r = await node12(port, 'a.hand.example');
      expect(r.authorized).toBe(true);
      expect(r.protocol).toBe('TLSv1.2');
      expect(r.san).toBe('DNS:*.hand.example');
      expect(r.cipher).toMatch(/^ECDHE-ECDSA-/);
      expect(r.data).toBe('not-offered TLSv1.2 a.hand.example *.hand.example\n');
    } finally {
      await fe.close();
    }
  });

  it('TLS 1.3 clients still use the engine on the same names', async () => {
    const { fe, port } = await frontEnd();
    try {
      const r = await new Promise<string>((resolve, reject) => {
        const c = tls.connect({ port, host: '127.0.0.1', servername: 'b.hand.example', ca: pki.caPem, minVersion: 'TLSv1.3' });
        let data = '';
        c.on('data', (d) => (data += d));
        c.on('end', () => resolve(data));
        c.on('error', reject);
      });
      expect(r).toBe('not-offered TLSv1.3 b.hand.example *.hand.example\n');
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(0);
      expect(fe.metrics.value('connections', { status: 'not-offered' })).toBe(1);
    } finally {
      await fe.close();
    }
  });
});

describe('TLS 1.2-only clients on passthrough routes', () => {
  it('pass through untouched to a Node TLS backend that allows TLS 1.2', async () => {
    const { fe, port } = await frontEnd();
    const clientSide = await recordingRelay(port);
    try {
      const before = passRelay.clientBytes().length;
      const r = await new Promise<{ protocol: string | null; san: string | undefined; data: string }>((resolve, reject) => {
        const c = tls.connect({ port: clientSide.port, host: '127.0.0.1', servername: 'pass.example', ca: backendPki.caPem, maxVersion: 'TLSv1.2' }, () => {
          const info = { protocol: c.getProtocol(), san: c.getPeerCertificate().subjectaltname };
          let data = '';
          c.on('data', (d) => (data += d));
          c.on('end', () => resolve({ ...info, data }));
        });
        c.on('error', reject);
      });
      expect(r).toEqual({ protocol: 'TLSv1.2', san: 'DNS:pass.example', data: 'pass backend TLSv1.2 pass.example\n' });
      await settle(fe);
      // Every byte the client sent reached the backend unchanged.
      const sent = clientSide.clientBytes();
      const got = passRelay.clientBytes().subarray(before);
      expect(sent.length).toBeGreaterThan(100);
      expect(Buffer.compare(got, sent)).toBe(0);
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(0);
      expect(fe.metrics.value('connections', { status: 'not-offered' })).toBe(1);
    } finally {
      await clientSide.close();
      await fe.close();
    }
  });
});

describe('TLS 1.2 edge cases', () => {
  // RFC 9849 §6.1: when offering ECH, ClientHelloOuter "MUST offer to
  // negotiate TLS 1.3 or above".
  it('an ECH extension in a TLS 1.2-only hello is illegal_parameter (GREASE config_id and a known one)', async () => {
    const { fe, port } = await frontEnd();
    try {
      for (const configId of [8, 7]) {
        const peer = await rawPeer(port);
        peer.send(tls12Hello('cover.example', { configId }));
        expect(await expectAlertRecord(peer)).toBe(AlertDescription.illegal_parameter);
        await closedWithin(peer, 3000);
        peer.close();
      }
      expect(fe.metrics.value('alerts', { alert: 'illegal_parameter' })).toBe(2);
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(0);
    } finally {
      await fe.close();
    }
  });

  // The same rule when the payload opens: the front end checks the outer
  // hello's versions on accepted connections too (by a scan of the raw hello).
  it('an accepted ECH hello whose outer offers only TLS 1.2 is illegal_parameter', async () => {
    const { fe, port } = await frontEnd();
    try {
      const message = await echHelloWithTls12Outer(key.config, 'web.example');
      expect((await decryptClientHello(message, keys)).status).toBe('accepted');
      const peer = await rawPeer(port);
      peer.send(writeRecords(ContentType.handshake, message));
      expect(await expectAlertRecord(peer)).toBe(AlertDescription.illegal_parameter);
      await closedWithin(peer, 3000);
      peer.close();
      expect(fe.metrics.value('alerts', { alert: 'illegal_parameter' })).toBe(1);
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(0);
    } finally {
      await fe.close();
    }
  });

  it('tls12: false refuses TLS 1.2 clients with protocol_version; passthrough is unaffected', async () => {
    const { fe, port } = await frontEnd({ tls12: false });
    try {
      const r = await curl12(port, 'cover.example');
      expect(r.code).not.toBe(0);
      expect(r.verbose).toMatch(/protocol version/i);
      const peer = await rawPeer(port);
      peer.send(tls12Hello('web.example'));
      expect(await expectAlertRecord(peer)).toBe(AlertDescription.protocol_version);
      peer.close();
      const pass = await sClient(port, 'pass.example', ['-verify_quiet'], '');
      expect(pass.protocol, pass.out).toBe('TLSv1.2');
      expect(pass.out).toContain('pass backend TLSv1.2 pass.example');
    } finally {
      await fe.close();
    }
  });

  it('handshakeTimeoutMs aborts a TLS 1.2 client that stalls after its ClientHello; nothing leaks', async () => {
    const handshakeTimeoutMs = 400;
    const { fe, port } = await frontEnd({ limits: { handshakeTimeoutMs } });
    try {
      const peer = await rawPeer(port);
      const t0 = Date.now();
      peer.send(tls12Hello('cover.example'));
      // node:tls answered (ServerHello ... ServerHelloDone), then the client stalls.
      expect((await peer.nextRecord()).type).toBe(ContentType.handshake);
      await closedWithin(peer, 5000);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(handshakeTimeoutMs - 20);
      expect(elapsed).toBeLessThan(handshakeTimeoutMs + 1500);
      expect(fe.metrics.value('handshakeErrors', { reason: 'ERR_TIMEOUT' })).toBe(1);
      expect(fe.metrics.value('connections', { status: 'error' })).toBe(1);
      await settle(fe);
      expect(fe.connections).toBe(0);
      expect(fe.metrics.value('active')).toBe(0);
    } finally {
      await fe.close();
    }
  });

  it('maxConcurrentHandshakes counts TLS 1.2 handshakes in progress', async () => {
    const { fe, port } = await frontEnd({ limits: { maxConcurrentHandshakes: 1, handshakeTimeoutMs: 10_000 } });
    try {
      const first = await rawPeer(port);
      first.send(tls12Hello('cover.example'));
      expect((await first.nextRecord()).type).toBe(ContentType.handshake);
      // The slot is held by a TLS 1.2 handshake in progress: the next client is closed at once.
      const second = await rawPeer(port);
      second.send(tls12Hello('cover.example'));
      await closedWithin(second, 3000);
      expect(fe.metrics.value('handshakeErrors', { reason: 'TOO_MANY_HANDSHAKES' })).toBe(1);
      first.close();
      await settle(fe);
      // The slot is free again once the first client left.
      const r = await curl12(port, 'cover.example');
      expect(r.code, r.verbose).toBe(0);
    } finally {
      await fe.close();
    }
  });

  it('a failed TLS 1.2 handshake (no ECDHE AEAD suite in common; garbage after the hello) closes the socket, counted, no leak', async () => {
    const { fe, port } = await frontEnd();
    try {
      const r = await sClient(port, 'cover.example', ['-cipher', 'AES128-SHA']);
      // OpenSSL's server sends a handshake_failure alert; s_client reports it and no cipher.
      expect(r.out).toMatch(/sslv3 alert handshake failure/);
      expect(r.out).toMatch(/Cipher is \(NONE\)/);
      const peer = await rawPeer(port);
      peer.send(tls12Hello('cover.example'));
      expect((await peer.nextRecord()).type).toBe(ContentType.handshake);
      // A "ClientKeyExchange" that is not one.
      peer.send(writeRecords(ContentType.handshake, new Uint8Array([16, 0, 0, 3, 1, 2, 3])));
      await closedWithin(peer, 5000);
      await settle(fe);
      expect(fe.connections).toBe(0);
      expect(fe.metrics.value('active')).toBe(0);
      expect(fe.metrics.value('connections', { status: 'error' })).toBe(2);
      expect(fe.metrics.value('handshakeErrors', { reason: 'ERR_SSL_NO_SHARED_CIPHER' })).toBe(1);
      expect(fe.metrics.value('connections', { status: 'tls12' })).toBe(0);
    } finally {
      await fe.close();
    }
  });

  it('a keyless public name (sign, no key) cannot serve TLS 1.2: protocol_version there, keyed routes still served', async () => {
    const coverKey = createPrivateKey(cover.key);
    const { fe, port } = await frontEnd({ publicName: { cert: cover.cert, sign: (scheme, data) => signWithScheme(scheme, coverKey, data) } });
    try {
      const r = await curl12(port, 'cover.example');
      expect(r.code).not.toBe(0);
      expect(r.verbose).toMatch(/protocol version/i);
      const w = await curl12(port, 'web.example');
      expect(w.code, w.verbose).toBe(0);
      expect(w.verbose).toMatch(/subject: CN=web\.example/);
    } finally {
      await fe.close();
    }
  });

  it('close() ends open TLS 1.2 connections', async () => {
    const { fe, port } = await frontEnd();
    const c = tls.connect({ port, host: '127.0.0.1', servername: 'status.example', ca: pki.caPem, maxVersion: 'TLSv1.2' });
    c.on('error', () => undefined);
    await new Promise((r) => c.once('secureConnect', r));
    expect(c.getProtocol()).toBe('TLSv1.2');
    const closed = new Promise((r) => c.once('close', r));
    await fe.close();
    await closed;
    expect(fe.connections).toBe(0);
  });
});

describe('ech-server serve and TLS 1.2', () => {
  it('validates tls12', () => {
    const base = { listen: '127.0.0.1:0', keys: 'k', publicName: { cert: 'c', key: 'k' } };
    expect(validateServeConfig(base, '/x').tls12).toBeUndefined();
    expect(validateServeConfig({ ...base, tls12: true }, '/x').tls12).toBeUndefined();
    expect(validateServeConfig({ ...base, tls12: false }, '/x').tls12).toBe(false);
    expect(() => validateServeConfig({ ...base, tls12: 'no' }, '/x')).toThrow(/tls12: must be true or false/);
  });

  it('serve (a process) answers curl --tls-max 1.2 on the public name and counts it in /metrics', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ech-serve-tls12-'));
    const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
    try {
      await run(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys')]);
      const admin = await new Promise<number>((res) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as AddressInfo).port;
          s.close(() => res(p));
        });
      });
      const s = await startServe(dir, {
        listen: '127.0.0.1:0',
        keys: 'keys',
        admin: `127.0.0.1:${admin}`,
        publicName: { cert: cover.certPath, key: cover.keyPath },
        routes: [{ serverName: 'web.example', cert: web.certPath, key: web.keyPath, forward: `127.0.0.1:${httpPort}` }],
      });
      try {
        const r = await curl12(s.port, 'cover.example');
        expect(r.code, r.verbose).toBe(0);
        expect(r.verbose).toMatch(/subject: CN=cover\.example/);
        expect(JSON.parse(r.body)).toMatchObject({ site: 'cover.example', protocol: 'TLSv1.2', echStatus: 'not-offered' });
        const w = await curl12(s.port, 'web.example', '/w');
        expect(w.code, w.verbose).toBe(0);
        expect(w.verbose).toMatch(/subject: CN=web\.example/);
        expect(JSON.parse(w.body)).toMatchObject({ backend: 'web', url: '/w' });
        const metrics = await new Promise<string>((resolve, reject) =>
          http.get({ host: '127.0.0.1', port: admin, path: '/metrics' }, (res) => {
            let b = '';
            res.on('data', (d) => (b += d));
            res.on('end', () => resolve(b));
          }).on('error', reject),
        );
        expect(metrics).toContain('ech_connections_total{status="tls12"} 2');
      } finally {
        expect(await s.stop()).toBe(0);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
