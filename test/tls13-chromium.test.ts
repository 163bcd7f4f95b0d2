// @module-tag peer-chromium
/**
 * Headless Chromium (Debian `chromium`) loads a page from an http.Server fed
 * by our TLS 1.3 sockets over loopback. Chromium's ClientHello carries a
 * post-quantum hybrid share (X25519MLKEM768) first, GREASE values and ECH
 * GREASE: the engine skips what it does not speak and negotiates the hybrid
 * group (draft-ietf-tls-ecdhe-mlkem) by default.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { NamedGroup } from '../src/tls/constants.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});
afterAll(() => pki.cleanup());

function runChromium(url: string): Promise<string> {
  const home = mkdtempSync(join(tmpdir(), 'tls13-chromium-'));
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.env['CHROMIUM_BIN'] ?? '/usr/bin/chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        '--ignore-certificate-errors',
        `--user-data-dir=${join(home, 'profile')}`,
        '--dump-dom',
        url,
      ],
      { env: { ...process.env, HOME: home }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      if (p.pid !== undefined) process.kill(-p.pid, 'SIGKILL');
    }, 45_000);
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => {
      clearTimeout(timer);
      rmSync(home, { recursive: true, force: true });
      reject(e);
    });
    p.on('exit', () => {
      clearTimeout(timer);
      rmSync(home, { recursive: true, force: true });
      if (out.includes('<html')) resolve(out);
      else reject(new Error(`no page from Chromium; stderr:\n${err.slice(-2000)}`));
    });
  });
}

test('Chromium loads a page over the engine with X25519MLKEM768 negotiated', async () => {
  const leaf = pki.leaf('ec', ['localhost']);
  const secured: Array<{ group?: number; alpn: string | false }> = [];
  const hybridOffered: boolean[] = [];
  const app = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<html><body><p id="r">served ${req.url} over ${(req.socket as unknown as TlsSocket).getProtocol()}</p></body></html>`);
  });
  const srv = await startServer(
    {
      key: leaf.key,
      cert: leaf.cert,
      ALPNProtocols: ['http/1.1'],
      onClientHello: ({ clientHello }) => {
        const ks = clientHello.extensions.find((e) => e.type === 51);
        // Look for the X25519MLKEM768 code point (0x11ec) among the shares.
        const data = ks?.data ?? new Uint8Array(0);
        let hybrid = false;
        for (let i = 2; i + 4 <= data.length; ) {
          const g = (data[i]! << 8) | data[i + 1]!;
          const n = (data[i + 2]! << 8) | data[i + 3]!;
          if (g === NamedGroup.X25519MLKEM768) hybrid = true;
          i += 4 + n;
        }
        hybridOffered.push(hybrid);
        return undefined;
      },
    },
    (s) => {
      secured.push({ group: s.handshake?.group, alpn: s.alpnProtocol });
      app.emit('connection', s);
    },
  );
  try {
    const dom = await runChromium(`https://127.0.0.1:${srv.port}/hello`);
    expect(dom).toContain('served /hello over TLSv1.3');
    expect(secured.length).toBeGreaterThan(0);
    expect(secured.every((x) => x.group === NamedGroup.X25519MLKEM768 && x.alpn === 'http/1.1')).toBe(true);
    // Chromium offers the hybrid share first; the engine took it.
    expect(hybridOffered.length).toBeGreaterThan(0);
    expect(hybridOffered.every((x) => x)).toBe(true);
  } finally {
    app.close();
    await srv.close();
  }
}, 60_000);
