/**
 * Our TLS 1.3 client against Node's own TLS server (OpenSSL 3): suites,
 * groups and HelloRetryRequest, ALPN, ticket resumption, certificate chain
 * and name verification; and against our own server over TCP.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';
import { connectTls13, type ConnectOptions } from '../src/tls13/client-socket.js';
import type { ClientSession } from '../src/tls13/client.js';

let pki: TestPki;
let ec: ReturnType<TestPki['leaf']>;
let rsa: ReturnType<TestPki['leaf']>;
beforeAll(() => {
  pki = makePki();
  ec = pki.leaf('ec', ['localhost']);
  rsa = pki.leaf('rsa', ['localhost']);
});
afterAll(() => pki.cleanup());

async function nodeServer(opts: tls.TlsOptions): Promise<{ port: number; close: () => Promise<void> }> {
  const server = tls.createServer({ minVersion: 'TLSv1.3', ...opts }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface Result {
  echoed: string;
  cipher?: string;
  alpn: string | false;
  reused: boolean;
  helloRetry?: boolean;
  sessions: ClientSession[];
}

function exchange(port: number, opts: Omit<ConnectOptions, 'host' | 'port'>, line = 'hello\n'): Promise<Result> {
  return new Promise((resolve, reject) => {
    const s = connectTls13({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.caPem, ...opts });
    const sessions: ClientSession[] = [];
    let echoed = '';
    s.on('session', (x: ClientSession) => sessions.push(x));
    s.on('secureConnect', () => s.write(line));
    s.on('data', (d: Buffer) => {
      echoed += d.toString();
      if (echoed.length >= line.length) setTimeout(() => s.end(), 30);
    });
    s.on('error', reject);
    s.on('close', () =>
      resolve({
        echoed,
        cipher: s.getCipher()?.name,
        alpn: s.alpnProtocol,
        reused: s.isSessionReused(),
        helloRetry: s.handshake?.helloRetry,
        sessions,
      }),
    );
  });
}

describe('our client against Node tls.createServer', () => {
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
    test(suite, async () => {
      const srv = await nodeServer({ key: ec.key, cert: ec.cert });
      try {
        const r = await exchange(srv.port, { ciphers: suite });
        expect(r).toMatchObject({ echoed: 'hello\n', cipher: suite });
      } finally {
        await srv.close();
      }
    });
  }

  test('RSA-PSS certificate, ALPN, HelloRetryRequest to P-256', async () => {
    const srv = await nodeServer({ key: rsa.key, cert: rsa.cert, ALPNProtocols: ['h2', 'http/1.1'], ecdhCurve: 'P-256' });
    try {
      const r = await exchange(srv.port, { ALPNProtocols: ['http/1.1'], ecdhCurve: 'X25519:P-256' });
      expect(r).toMatchObject({ echoed: 'hello\n', alpn: 'http/1.1', helloRetry: true });
    } finally {
      await srv.close();
    }
  });

  test('resumes with an OpenSSL ticket', async () => {
    const srv = await nodeServer({ key: ec.key, cert: ec.cert });
    try {
      const first = await exchange(srv.port, {});
      expect(first.sessions.length).toBeGreaterThan(0);
      const second = await exchange(srv.port, { session: first.sessions[0]! });
      expect(second.reused).toBe(true);
      expect(second.echoed).toBe('hello\n');
    } finally {
      await srv.close();
    }
  });

  test('an untrusted chain is unknown_ca; a wrong name is bad_certificate', async () => {
    const srv = await nodeServer({ key: ec.key, cert: ec.cert });
    const other = makePki();
    try {
      await expect(exchange(srv.port, { ca: other.caPem })).rejects.toMatchObject({ alert: 'unknown_ca' });
      await expect(exchange(srv.port, { servername: 'elsewhere.test' })).rejects.toMatchObject({ alert: 'bad_certificate' });
    } finally {
      other.cleanup();
      await srv.close();
    }
  });
});

describe('our client against our server over TCP', () => {
  test('handshake, echo, ticket, resumption', async () => {
    const srv = await startServer({ key: ec.key, cert: ec.cert });
    try {
      const first = await exchange(srv.port, {});
      expect(first.echoed).toBe('hello\n');
      const second = await exchange(srv.port, { session: first.sessions[0]! });
      expect(second.reused).toBe(true);
    } finally {
      await srv.close();
    }
  });
});
