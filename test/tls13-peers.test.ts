// @module-tag peer-boringssl
// @module-tag peer-openssl
// The TLS 1.3 engine against peers nobody here wrote, on plain TLS (no ECH):
// our client against `openssl s_server -tls1_3`, and BoringSSL's client
// against our server, including a HelloRetryRequest forced by restricting
// the server to secp256r1 while the client's first share is X25519.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connectTls13 } from '../src/tls13/client-socket.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';

let pki: TestPki;
let leaf: ReturnType<TestPki['leaf']>;
beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  leaf = pki.leaf('ec', ['localhost']);
}, 120_000);
afterAll(() => pki?.cleanup());

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('our client against openssl s_server -tls1_3', () => {
  for (const [groups, hrr] of [['X25519', false], ['P-256', true]] as const) {
    test(`GET over TLS 1.3, server groups ${groups}${hrr ? ' (HelloRetryRequest)' : ''}`, async () => {
      const port = await freePort();
      const server = spawn('openssl', ['s_server', '-tls1_3', '-accept', `127.0.0.1:${port}`, '-cert', leaf.certPath, '-key', leaf.keyPath, '-groups', groups, '-www', '-naccept', '1'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      try {
        // readiness: s_server prints ACCEPT once listening
        await new Promise<void>((res, rej) => {
          const t = setTimeout(() => rej(new Error('s_server did not start')), 10_000);
          server.stdout!.on('data', (d: Buffer) => {
            if (d.toString().includes('ACCEPT')) {
              clearTimeout(t);
              res();
            }
          });
          server.once('exit', (c) => rej(new Error(`s_server exited ${c}`)));
        });
        const got = await new Promise<{ body: string; helloRetry: boolean | undefined; group: string | undefined }>((res, rej) => {
          const s = connectTls13({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.caPem });
          let body = '';
          s.on('secureConnect', () => s.write('GET / HTTP/1.0\r\n\r\n'));
          s.on('data', (d: Buffer) => (body += d.toString()));
          s.on('error', rej);
          s.on('close', () => res({ body, helloRetry: s.handshake?.helloRetry, group: s.handshake ? String(s.handshake.group) : undefined }));
        });
        expect(got.body).toMatch(/^HTTP\/1\.0 200 ok/);
        expect(got.body).toMatch(/TLSv1\.3/);
        expect(got.helloRetry).toBe(hrr);
      } finally {
        server.kill('SIGKILL');
      }
    });
  }
});

describe('BoringSSL client against our server (plain TLS 1.3)', () => {
  test('completes a handshake and echoes', async () => {
    const srv = await startServer({ key: leaf.key, cert: leaf.cert });
    try {
      const r = await runClient({ port: srv.port, sni: 'localhost', ca: join(pki.dir, 'ca.pem'), send: 'ping' });
      expect(r.error).toBeNull();
      expect(r.version).toBe('TLSv1.3');
      expect(r.verified).toBe(true);
      expect(r.hrr).toBe(false);
      expect(r.response).toBe('ping');
    } finally {
      await srv.close();
    }
  });

  test('server restricted to secp256r1, client share X25519 first: HelloRetryRequest, then P-256', async () => {
    const srv = await startServer({ key: leaf.key, cert: leaf.cert, ecdhCurve: 'P-256' });
    try {
      const r = await runClient({ port: srv.port, sni: 'localhost', ca: join(pki.dir, 'ca.pem'), groups: ['X25519', 'P-256'], send: 'ping' });
      expect(r.error).toBeNull();
      expect(r.hrr).toBe(true);
      expect(r.group).toBe('P-256');
      expect(r.response).toBe('ping');
    } finally {
      await srv.close();
    }
  });
});
