// @module-tag peer-boringssl
// Truncation by an on-path attacker (issue 14): once the handshake keys are in
// place every record is protected (RFC 9846 §5), so an unprotected
// close_notify injected after the client's Finished must end the connection
// with a fatal unexpected_message alert, not as a clean close. Real peers over
// a TCP relay: `ech-server serve` and BoringSSL as servers (client→server
// injection), our `connectEch` and BoringSSL as clients (server→client).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildHarness, runClient, startServer as startBoring } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';
import { injectRelay, type InjectDirection } from './helpers/inject-relay.js';
import { connectEch } from '../src/tls13/ech-client.js';
import { fromBase64 } from '../src/wire/bytes.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
/** An unprotected alert record: warning close_notify. */
const PLAIN_CLOSE_NOTIFY = Uint8Array.of(0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00);
const UNEXPECTED_MESSAGE = 10;
/**
 * What a reference implementation may answer: RFC 9846 §5 names
 * unexpected_message (Go's choice, and ours); BoringSSL hands the record to
 * its AEAD anyway and answers bad_record_mac (20). Either is a fatal alert,
 * never a clean close.
 */
const FATAL_FOR_UNPROTECTED = [UNEXPECTED_MESSAGE, 20];

let dir: string;
let pki: TestPki;
let caFile: string;
let alpha: { certPath: string; keyPath: string };
let listB64: string;
let serve: ServeProcess;

const GET = 'GET / HTTP/1.1\r\nHost: alpha.example\r\nAccept: application/json\r\nConnection: close\r\n\r\n';

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-inject-'));
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  const cover = pki.leaf('ec', ['cover.example']);
  alpha = pki.leaf('ec', ['alpha.example']);
  const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys')]);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  serve = await startServe(dir, {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [{ serverName: 'alpha.example', cert: alpha.certPath, key: alpha.keyPath, respond: 'ech-status' }],
  });
}, 120_000);

afterAll(async () => {
  if (serve) expect(await serve.stop()).toBe(0);
  pki?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function viaRelay<T>(port: number, direction: InjectDirection, fn: (relayPort: number) => Promise<T>): Promise<T> {
  const relay = await injectRelay(port, direction, PLAIN_CLOSE_NOTIFY);
  try {
    const r = await fn(relay.port);
    expect(relay.injected()).toBe(1);
    return r;
  } finally {
    await relay.close();
  }
}

describe('an unprotected close_notify injected after Finished (client → server)', () => {
  it('ech-server serve aborts with unexpected_message: the BoringSSL client sees the fatal alert, no clean end', async () => {
    const r = await viaRelay(serve.port, 'to-server', (port) =>
      runClient({ port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, send: GET, read: true, socketTimeoutSec: 5 }),
    );
    expect(r.handshake).toBe(true);
    expect(r.echAccepted).toBe(true);
    expect(r.alertReceived?.code).toBe(UNEXPECTED_MESSAGE);
    expect(r.error).not.toBeNull();
    expect(r.response ?? '').not.toContain('HTTP/1.1');
  });

  it('reference: a BoringSSL server behind the same relay aborts too (fatal alert, nothing read)', async () => {
    const server = await startBoring({ cert: alpha.certPath, key: alpha.keyPath, socketTimeoutSec: 5 });
    try {
      const r = await viaRelay(server.port, 'to-server', (port) =>
        runClient({ port, sni: 'alpha.example', ca: caFile, send: 'hello', read: true, socketTimeoutSec: 5 }),
      );
      expect(r.handshake).toBe(true);
      expect(FATAL_FOR_UNPROTECTED).toContain(r.alertReceived?.code);
      const s = await server.result(0);
      expect(s.alertSent?.code).toBe(r.alertReceived?.code);
      expect(s.peerClosed).toBe(false);
      expect(s.received).toBe('');
    } finally {
      await server.close();
    }
  });
});

describe('an unprotected close_notify injected after Finished (server → client)', () => {
  it('connectEch fails with unexpected_message instead of ending cleanly', async () => {
    const outcome = await viaRelay(serve.port, 'to-client', async (port) => {
      const r = await connectEch({ host: '127.0.0.1', port, servername: 'alpha.example', echConfigList: fromBase64(listB64), ca: [pki.caPem] });
      expect(r.echStatus).toBe('accepted');
      return new Promise<{ error: (Error & { alert?: string }) | undefined; ended: boolean; data: string }>((resolve) => {
        let data = '';
        let ended = false;
        let error: (Error & { alert?: string }) | undefined;
        const timer = setTimeout(() => r.socket.destroy(new Error('no end within 5 s')), 5000);
        r.socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
        r.socket.on('end', () => (ended = true));
        r.socket.on('error', (e: Error) => (error ??= (r.socket.connection.error ?? e) as Error & { alert?: string }));
        r.socket.on('close', () => {
          clearTimeout(timer);
          resolve({ error, ended, data });
        });
        r.socket.write(GET);
      });
    });
    expect(outcome.ended).toBe(false);
    expect(outcome.error?.alert).toBe('unexpected_message');
    expect(outcome.data).toBe('');
  });

  it('reference: the BoringSSL client behind the same relay aborts with a fatal alert', async () => {
    const r = await viaRelay(serve.port, 'to-client', (port) =>
      runClient({ port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, send: GET, read: true, socketTimeoutSec: 5 }),
    );
    expect(r.handshake).toBe(true);
    expect(FATAL_FOR_UNPROTECTED).toContain(r.alertSent?.code);
    expect(r.error).not.toBeNull();
  });
});
