// @module-tag peer-openssl
/**
 * `openssl s_client -tls1_3` (OpenSSL 3, a peer nobody here wrote) completes
 * handshakes against the engine and gets its line echoed back.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});
afterAll(() => pki.cleanup());

/** Run s_client, send a line, wait for the echo (bounded), kill it by PID. */
function sClient(port: number, args: string[], line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-ign_eof', '-CAfile', `${pki.dir}/ca.pem`, '-verify_return_error', ...args],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    let sent = false;
    const done = (): void => {
      clearTimeout(timer);
      if (p.exitCode === null && p.pid !== undefined) process.kill(p.pid, 'SIGTERM');
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`s_client timed out; output:\n${out}`));
    }, 15_000);
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // The handshake summary is printed: send our line, once.
      if (!sent && out.includes('Verify return code')) {
        sent = true;
        p.stdin.write(`${line}\n`);
      }
      const after = out.split('Verify return code')[1] ?? '';
      if (after.includes(`${line}\n`)) {
        done();
        resolve(out);
      }
    });
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', (e) => {
      done();
      reject(e);
    });
    p.on('exit', () => {
      clearTimeout(timer);
      const after = out.split('Verify return code')[1] ?? '';
      if (!after.includes(`${line}\n`)) reject(new Error(`s_client exited early:\n${out}`));
    });
  });
}

describe('openssl s_client against the engine', () => {
  const cases: Array<[string, 'ec' | 'rsa', string[]]> = [
    ['ECDSA, default suite', 'ec', []],
    ['RSA certificate, AES-128-GCM, P-256', 'rsa', ['-ciphersuites', 'TLS_AES_128_GCM_SHA256', '-groups', 'P-256']],
    ['ChaCha20-Poly1305, X25519, ALPN', 'ec', ['-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256', '-groups', 'X25519', '-alpn', 'h2']],
  ];
  for (const [name, kind, args] of cases) {
    test(name, async () => {
      const leaf = pki.leaf(kind, ['localhost']);
      const srv = await startServer({ key: leaf.key, cert: leaf.cert, ALPNProtocols: ['h2', 'http/1.1'] });
      try {
        const out = await sClient(srv.port, ['-servername', 'localhost', ...args], 'hello from s_client');
        expect(out).toMatch(/Verify return code: 0 \(ok\)/);
        expect(out).toMatch(/Protocol\s*: TLSv1\.3|New, TLSv1\.3/);
        const suite = args.includes('-ciphersuites') ? args[args.indexOf('-ciphersuites') + 1]! : 'TLS_AES_256_GCM_SHA384';
        expect(out).toContain(`Cipher is ${suite}`);
        if (args.includes('-alpn')) expect(out).toContain('ALPN protocol: h2');
      } finally {
        await srv.close();
      }
    });
  }

  test('HelloRetryRequest with s_client (server P-256 only, client X25519 first)', async () => {
    const leaf = pki.leaf('ec', ['localhost']);
    let hrr: boolean | undefined;
    const srv = await startServer({ key: leaf.key, cert: leaf.cert, ecdhCurve: 'P-256' }, (s) => {
      hrr = s.handshake?.helloRetry;
      s.pipe(s);
    });
    try {
      const out = await sClient(srv.port, ['-servername', 'localhost', '-groups', 'X25519:P-256'], 'after hrr');
      expect(out).toMatch(/Server Temp Key: ECDH, prime256v1/);
      expect(hrr).toBe(true);
    } finally {
      await srv.close();
    }
  });
});
