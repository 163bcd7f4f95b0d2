/**
 * End-to-end: Node's own TLS client (OpenSSL 3) against our TLS 1.3 server
 * engine — every cipher suite, both groups, HelloRetryRequest, ECDSA / RSA /
 * Ed25519 certificates, SNI selection, ALPN, tickets, KeyUpdate, https.get
 * through an http.Server fed with our sockets.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { makePki, startServer, type Running, type TestPki } from './tls13-helpers.js';
import type { EchServerOptions } from '../src/tls13/config.js';
import type { TlsSocket } from '../src/tls13/socket.js';

let pki: TestPki;
let ec: ReturnType<TestPki['leaf']>;
let rsa: ReturnType<TestPki['leaf']>;
let ed: ReturnType<TestPki['leaf']>;
let other: ReturnType<TestPki['leaf']>;

beforeAll(() => {
  pki = makePki();
  ec = pki.leaf('ec', ['localhost', 'ec.test']);
  rsa = pki.leaf('rsa', ['rsa.test']);
  ed = pki.leaf('ed25519', ['ed.test']);
  other = pki.leaf('ec', ['*.wild.test']);
});
afterAll(() => pki.cleanup());

interface ClientResult {
  echoed: string;
  cipher: string;
  alpn: string | false | null;
  group: string | undefined;
  peerNames: string | undefined;
  session: Buffer | undefined;
  reused: boolean;
}

/** Connect, send a line, read the echo, collect what the client saw. */
function roundTrip(port: number, opts: tls.ConnectionOptions, payload = 'ping\n'): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    let session: Buffer | undefined;
    const c = tls.connect({ host: '127.0.0.1', port, ca: pki.caPem, minVersion: 'TLSv1.3', servername: 'localhost', ...opts });
    let echoed = '';
    let info: Omit<ClientResult, 'echoed' | 'session'> | undefined;
    c.on('session', (s: Buffer) => {
      session ??= s;
    });
    c.on('secureConnect', () => {
      const pc = c.getPeerCertificate();
      info = {
        cipher: c.getCipher().name,
        alpn: c.alpnProtocol,
        group: (c.getEphemeralKeyInfo() as { name?: string }).name,
        peerNames: pc.subjectaltname,
        reused: c.isSessionReused(),
      };
      c.write(payload);
    });
    c.on('data', (d: Buffer) => {
      echoed += d.toString('latin1');
      if (echoed.length >= payload.length) {
        // Give the ticket a moment to arrive (it follows the handshake).
        setTimeout(() => c.end(), 20);
      }
    });
    c.on('error', reject);
    c.on('close', () => (info ? resolve({ echoed, session, ...info }) : reject(new Error('closed before secureConnect'))));
  });
}

async function withServer<T>(options: EchServerOptions, fn: (srv: Running) => Promise<T>, onSecure?: (s: TlsSocket) => void): Promise<T> {
  const srv = await startServer(options, onSecure);
  try {
    return await fn(srv);
  } finally {
    await srv.close();
  }
}

describe('Node tls.connect against the engine', () => {
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
    test(`cipher suite ${suite}`, async () => {
      const r = await withServer({ key: ec.key, cert: ec.cert }, (srv) => roundTrip(srv.port, { ciphers: suite }));
      expect(r.cipher).toBe(suite);
      expect(r.echoed).toBe('ping\n');
    });
  }

  for (const [curve, name] of [
    ['X25519', 'X25519'],
    ['P-256', 'prime256v1'],
  ] as const) {
    test(`group ${curve}`, async () => {
      let serverGroup: string | undefined;
      const r = await withServer(
        { key: ec.key, cert: ec.cert },
        (srv) => roundTrip(srv.port, { ecdhCurve: curve }),
        (s) => {
          serverGroup = s.group;
          s.pipe(s);
        },
      );
      expect(r.group).toBe(name);
      expect(serverGroup).toBe(name);
    });
  }

  test('HelloRetryRequest when the client has no share for the server group', async () => {
    // OpenSSL sends a key share for its first group only (X25519).
    let hrr: boolean | undefined;
    const r = await withServer(
      { key: ec.key, cert: ec.cert, ecdhCurve: 'P-256' },
      (srv) => roundTrip(srv.port, { ecdhCurve: 'X25519:P-256' }),
      (s) => {
        hrr = s.handshake?.helloRetry;
        s.pipe(s);
      },
    );
    expect(hrr).toBe(true);
    expect(r.group).toBe('prime256v1');
    expect(r.echoed).toBe('ping\n');
  });

  test('RSA certificate (rsa_pss_rsae_sha256)', async () => {
    let scheme: number | undefined;
    const r = await withServer(
      { key: rsa.key, cert: rsa.cert },
      (srv) => roundTrip(srv.port, { servername: 'rsa.test' }),
      (s) => {
        scheme = s.handshake?.signatureScheme;
        s.pipe(s);
      },
    );
    expect(r.peerNames).toBe('DNS:rsa.test');
    expect(scheme).toBe(0x0804);
  });

  test('Ed25519 certificate', async () => {
    const r = await withServer({ key: ed.key, cert: ed.cert }, (srv) => roundTrip(srv.port, { servername: 'ed.test' }));
    expect(r.peerNames).toBe('DNS:ed.test');
  });

  test('certificate chosen by SNI: exact, wildcard, default', async () => {
    const opts: EchServerOptions = {
      key: ec.key,
      cert: ec.cert,
      certificates: [
        { key: rsa.key, cert: rsa.cert },
        { key: other.key, cert: other.cert },
      ],
    };
    await withServer(opts, async (srv) => {
      expect((await roundTrip(srv.port, { servername: 'rsa.test' })).peerNames).toBe('DNS:rsa.test');
      expect((await roundTrip(srv.port, { servername: 'a.wild.test' })).peerNames).toBe('DNS:*.wild.test');
      // A name nobody serves gets the default; the client then refuses it.
      await expect(roundTrip(srv.port, { servername: 'nobody.test' })).rejects.toThrow(/altnames|Hostname/i);
      const noCheck = await roundTrip(srv.port, { servername: 'nobody.test', checkServerIdentity: () => undefined });
      expect(noCheck.peerNames).toBe('DNS:localhost, DNS:ec.test');
    });
  });

  test('SNICallback supplies the certificate', async () => {
    const seen: string[] = [];
    const r = await withServer(
      {
        key: ec.key,
        cert: ec.cert,
        SNICallback: (name, cb) => {
          seen.push(name);
          cb(null, name === 'rsa.test' ? { key: rsa.key, cert: rsa.cert } : undefined);
        },
      },
      (srv) => roundTrip(srv.port, { servername: 'rsa.test' }),
    );
    expect(seen).toEqual(['rsa.test']);
    expect(r.peerNames).toBe('DNS:rsa.test');
  });

  test('ALPN: server preference among the client offer; none when the client offers none', async () => {
    await withServer({ key: ec.key, cert: ec.cert, ALPNProtocols: ['h2', 'http/1.1'] }, async (srv) => {
      expect((await roundTrip(srv.port, { ALPNProtocols: ['http/1.1', 'h2'] })).alpn).toBe('h2');
      expect((await roundTrip(srv.port, { ALPNProtocols: ['http/1.1'] })).alpn).toBe('http/1.1');
      expect((await roundTrip(srv.port, {})).alpn).toBe(false);
    });
  });

  test('ALPNCallback chooses, or refuses with no_application_protocol', async () => {
    const calls: Array<{ servername: string | undefined; protocols: string[] }> = [];
    await withServer(
      {
        key: ec.key,
        cert: ec.cert,
        ALPNCallback: (arg) => {
          calls.push(arg);
          return arg.protocols.includes('refuse') ? undefined : arg.protocols[arg.protocols.length - 1];
        },
      },
      async (srv) => {
        expect((await roundTrip(srv.port, { ALPNProtocols: ['h2', 'http/1.1'] })).alpn).toBe('http/1.1');
        await expect(roundTrip(srv.port, { ALPNProtocols: ['refuse'] })).rejects.toThrow(/alert number 120|no application protocol/i);
      },
    );
    expect(calls[0]).toEqual({ servername: 'localhost', protocols: ['h2', 'http/1.1'] });
  });

  test('ALPN without overlap ends in no_application_protocol', async () => {
    await withServer({ key: ec.key, cert: ec.cert, ALPNProtocols: ['h2'] }, async (srv) => {
      await expect(roundTrip(srv.port, { ALPNProtocols: ['spdy/1'] })).rejects.toThrow(/no application protocol|alert number 120/i);
      await new Promise((r) => setTimeout(r, 50));
      expect(srv.errors.map((e) => (e as { alert?: string }).alert)).toContain('no_application_protocol');
    });
  });

  test('session ticket resumption', async () => {
    await withServer({ key: ec.key, cert: ec.cert, ALPNProtocols: ['http/1.1'] }, async (srv) => {
      const first = await roundTrip(srv.port, { ALPNProtocols: ['http/1.1'] });
      expect(first.reused).toBe(false);
      expect(first.session).toBeDefined();
      const second = await roundTrip(srv.port, { ALPNProtocols: ['http/1.1'], session: first.session! });
      expect(second.reused).toBe(true);
      expect(second.echoed).toBe('ping\n');
      // A ticket for another name is not accepted.
      const third = await roundTrip(srv.port, { servername: 'ec.test', ALPNProtocols: ['http/1.1'], session: first.session! });
      expect(third.reused).toBe(false);
    });
  });

  test('honorCipherOrder picks the server order', async () => {
    // OpenSSL's client order: AES-256-GCM, ChaCha20, AES-128-GCM.
    const opts = { key: ec.key, cert: ec.cert, ciphers: 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256' };
    expect((await withServer(opts, (srv) => roundTrip(srv.port, {}))).cipher).toBe('TLS_CHACHA20_POLY1305_SHA256');
    const honor = await withServer({ ...opts, honorCipherOrder: true }, (srv) => roundTrip(srv.port, {}));
    expect(honor.cipher).toBe('TLS_AES_128_GCM_SHA256');
  });

  test('tickets disabled with sessionTimeout 0', async () => {
    const r = await withServer({ key: ec.key, cert: ec.cert, sessionTimeout: 0 }, (srv) => roundTrip(srv.port, {}));
    expect(r.session).toBeUndefined();
  });

  test('large transfers span many records, KeyUpdate both ways', async () => {
    const big = 'x'.repeat(200_000) + '\n';
    let keyUpdates = { sent: 0, received: 0 };
    const echoed = await withServer(
      { key: ec.key, cert: ec.cert },
      (srv) =>
        new Promise<string>((resolve, reject) => {
          const c = tls.connect({ host: '127.0.0.1', port: srv.port, ca: pki.caPem, servername: 'localhost' });
          let got = '';
          let phase = 0;
          c.on('secureConnect', () => c.write(big));
          c.on('data', (d: Buffer) => {
            got += d.toString('latin1');
            // OpenSSL answers a KeyUpdate with its own before its next write.
            if (phase === 0 && got.length === big.length) {
              phase = 1;
              c.write('more\n');
            } else if (phase === 1 && got.length === big.length + 5) c.end();
          });
          c.on('error', reject);
          c.on('close', () => resolve(got));
        }),
      (s) => {
        let n = 0;
        s.on('data', (d: Buffer) => {
          n += d.length;
          s.write(d);
          // Mid-stream: update our keys and ask the client to update its own.
          if (keyUpdates.sent === 0 && n > 50_000) {
            s.keyUpdate(true);
            keyUpdates = s.connection.keyUpdates;
          }
        });
        s.on('end', () => s.end());
      },
    );
    expect(echoed).toBe(big + 'more\n');
    expect(keyUpdates).toEqual({ sent: 1, received: 1 });
  });

  test('http.Server fed with our sockets serves https.get', async () => {
    const app = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(`hello ${req.url} over ${(req.socket as unknown as TlsSocket).getProtocol()}`);
    });
    await withServer(
      { key: ec.key, cert: ec.cert, ALPNProtocols: ['http/1.1'] },
      async (srv) => {
        const agent = new https.Agent({ keepAlive: true, ca: pki.caPem });
        const get = (path: string): Promise<{ status?: number; body: string }> =>
          new Promise((resolve, reject) => {
            https
              .get({ host: '127.0.0.1', port: srv.port, path, servername: 'localhost', agent }, (res) => {
                let body = '';
                res.on('data', (d: Buffer) => (body += d.toString()));
                res.on('end', () => resolve({ status: res.statusCode, body }));
              })
              .on('error', reject);
          });
        const a = await get('/one');
        const b = await get('/two');
        agent.destroy();
        expect(a).toEqual({ status: 200, body: 'hello /one over TLSv1.3' });
        expect(b).toEqual({ status: 200, body: 'hello /two over TLSv1.3' });
        // Connection: close — the server side ends the TLS stream after the response.
        const closed = await new Promise<{ body: string; closed: boolean }>((resolve, reject) => {
          https
            .get({ host: '127.0.0.1', port: srv.port, path: '/bye', servername: 'localhost', ca: pki.caPem, agent: false }, (res) => {
              let body = '';
              res.on('data', (d: Buffer) => (body += d.toString()));
              res.on('end', () => res.socket.once('close', () => resolve({ body, closed: true })));
            })
            .on('error', reject);
        });
        expect(closed).toEqual({ body: 'hello /bye over TLSv1.3', closed: true });
      },
      (s) => app.emit('connection', s),
    );
    app.close();
  });

  test('exported keying material agrees with the Node client', async () => {
    let serverEkm = '';
    const clientEkm = await withServer(
      { key: ec.key, cert: ec.cert },
      (srv) =>
        new Promise<string>((resolve, reject) => {
          const c = tls.connect({ host: '127.0.0.1', port: srv.port, ca: pki.caPem, servername: 'localhost' }, () => {
            const k = c.exportKeyingMaterial(32, 'EXPORTER-ech-server-test', Buffer.from('ctx')).toString('hex');
            c.write('x');
            c.once('data', () => {
              c.end();
              resolve(k);
            });
          });
          c.on('error', reject);
        }),
      (s) => {
        serverEkm = s.exportKeyingMaterial(32, 'EXPORTER-ech-server-test', Buffer.from('ctx')).toString('hex');
        s.pipe(s);
      },
    );
    expect(clientEkm).toMatch(/^[0-9a-f]{64}$/);
    expect(serverEkm).toBe(clientEkm);
  });

  test('socket reports servername, cipher, remote address', async () => {
    let seen: Record<string, unknown> = {};
    await withServer(
      { key: ec.key, cert: ec.cert },
      (srv) => roundTrip(srv.port, { servername: 'ec.test' }),
      (s) => {
        seen = {
          servername: s.servername,
          encrypted: s.encrypted,
          cipher: s.getCipher()?.name,
          remoteAddress: s.remoteAddress,
          remotePort: typeof s.remotePort,
          protocol: s.getProtocol(),
        };
        s.pipe(s);
      },
    );
    expect(seen).toEqual({
      servername: 'ec.test',
      encrypted: true,
      // OpenSSL's default client order puts AES-256-GCM first.
      cipher: 'TLS_AES_256_GCM_SHA384',
      remoteAddress: '127.0.0.1',
      remotePort: 'number',
      protocol: 'TLSv1.3',
    });
    expect(new X509Certificate(ec.cert).subjectAltName).toContain('ec.test');
  });
});

describe('front-end handoff', () => {
  test('a front end reads the first ClientHello itself and hands it to handleSocket', async () => {
    const { readClientHelloFrom } = await import('../src/tls13/socket.js');
    const net = await import('node:net');
    const engine = await startServer({ key: ec.key, cert: ec.cert, ALPNProtocols: ['http/1.1'] });
    const seen: number[] = [];
    const front = net.createServer((raw) => {
      readClientHelloFrom(raw).then(
        (start) => {
          seen.push(start.clientHello[0]!);
          engine.server.handleSocket(raw, start);
        },
        () => raw.destroy(),
      );
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    try {
      const port = (front.address() as { port: number }).port;
      const r = await roundTrip(port, { ALPNProtocols: ['http/1.1'] });
      expect(r.echoed).toBe('ping\n');
      expect(r.alpn).toBe('http/1.1');
      expect(seen).toEqual([1]);
    } finally {
      await new Promise<void>((r) => front.close(() => r()));
      await engine.close();
    }
  });
});

describe('http2 on our sockets', () => {
  test('http2.createServer fed with our sockets serves an http2.connect client (ALPN h2)', async () => {
    const http2 = await import('node:http2');
    const h2 = http2.createServer();
    h2.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`h2 says hi to ${headers[':path']}`);
    });
    await withServer(
      { key: ec.key, cert: ec.cert, ALPNProtocols: ['h2'] },
      async (srv) => {
        const session = http2.connect(`https://localhost:${srv.port}`, { ca: pki.caPem, host: '127.0.0.1', servername: 'localhost' } as never);
        const body = await new Promise<string>((resolve, reject) => {
          session.on('error', reject);
          const req = session.request({ ':path': '/x' });
          let b = '';
          req.on('data', (d: Buffer) => (b += d.toString()));
          req.on('end', () => resolve(b));
          req.on('error', reject);
          req.end();
        });
        await new Promise<void>((r) => session.close(() => r()));
        expect(body).toBe('h2 says hi to /x');
      },
      (s) => h2.emit('connection', s),
    );
    h2.close();
  });
});
