// @module-tag peer-boringssl
// `ech-server serve` as a user runs it (a child process), against BoringSSL
// as the ECH client: accepted with the inner certificate and page, stale
// config → retry_configs → accepted, GREASE, HRR; and config errors that
// name their field.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readFirstHandshakeMessage } from '../src/tls/record.js';
import { decodeClientHello, findExtension } from '../src/tls/client-hello.js';
import { decodeServerName } from '../src/tls/extensions.js';
import { ExtensionType } from '../src/tls/constants.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { generateEchKey } from '../src/keys/generate.js';
import { loadEchKeyDirectory } from '../src/keys/files.js';
import { toBase64 } from '../src/wire/bytes.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { recordingRelay, startServe, type ServeProcess } from './helpers/serve-process.js';
import { configIdsOf, greaseOutcome } from './helpers/grease.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;
let pki: TestPki;
let caFile: string;
let listB64: string;
let baseConfig: Record<string, unknown>;

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-serve-'));
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  const cover = pki.leaf('ec', ['cover.example']);
  const alpha = pki.leaf('ec', ['alpha.example']);
  const beta = pki.leaf('rsa', ['beta.example']);
  const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys'), '--max-name-length', '16']);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  baseConfig = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [
      { serverName: 'alpha.example', cert: alpha.certPath, key: alpha.keyPath, respond: 'ech-status' },
      { serverName: 'beta.example', cert: beta.certPath, key: beta.keyPath, respond: 'ech-status' },
    ],
  };
}, 120_000);
afterAll(async () => {
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;
const body = (response: string | null) => JSON.parse(response!.slice(response!.indexOf('\r\n\r\n') + 4));

async function withServe<T>(extra: Record<string, unknown>, fn: (s: ServeProcess) => Promise<T>): Promise<T> {
  const s = await startServe(dir, { ...baseConfig, ...extra });
  try {
    return await fn(s);
  } finally {
    expect(await s.stop()).toBe(0);
  }
}

describe('ech-server serve with BoringSSL', () => {
  it('accepts ECH: inner certificate verified, ech-status page reports the inner name, the wire shows only the public name', async () => {
    await withServe({}, async (s) => {
      const relay = await recordingRelay(s.port);
      try {
        const r = await runClient({ port: relay.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, alpn: ['http/1.1'], send: GET('alpha.example'), read: true });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(r.verified).toBe(true);
        expect(r.peerCertSubject).toMatch(/alpha\.example/);
        expect(body(r.response)).toMatchObject({ site: 'alpha.example', echStatus: 'accepted', innerServerName: 'alpha.example', outerServerName: 'cover.example', helloRetryRequest: false });
        const wire = relay.clientBytes();
        const hello = decodeClientHello(readFirstHandshakeMessage(new Uint8Array(wire))!.message.body);
        expect(decodeServerName(findExtension(hello.extensions, ExtensionType.server_name)!.data)).toBe('cover.example');
        expect(wire.includes(Buffer.from('alpha.example'))).toBe(false);
      } finally {
        await relay.close();
      }
    });
  });

  it('a stale config is rejected with the current retry_configs, the public-name certificate verifies, and the retry is accepted', async () => {
    const stale = toBase64(encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]));
    const current = toBase64((await loadEchKeyDirectory(join(dir, 'keys'))).retryConfigList()!);
    await withServe({}, async (s) => {
      const r = await runClient({ port: s.port, sni: 'beta.example', echConfigList: stale, ca: caFile, retry: true, send: GET('beta.example'), read: true });
      expect(r.first!.echRejected).toBe(true);
      expect(r.first!.verified).toBe(true);
      expect(r.firstRetryConfigs).toBe(current);
      expect(r.echAccepted).toBe(true);
      expect(body(r.response)).toMatchObject({ site: 'beta.example', echStatus: 'accepted', innerServerName: 'beta.example' });
    });
  });

  it('GREASE completes without ECH and the page says so', async () => {
    await withServe({}, async (s) => {
      const r = await runClient({ port: s.port, sni: 'alpha.example', grease: true, ca: caFile, send: GET('alpha.example'), read: true });
      expect(r.handshake).toBe(true);
      expect(r.echAccepted).toBe(false);
      const page = body(r.response);
      expect(page).toMatchObject({ site: 'alpha.example', innerServerName: null });
      greaseOutcome(page, configIdsOf(listB64));
    });
  });

  it('restricted to secp256r1: HelloRetryRequest, and ECH is still accepted', async () => {
    await withServe({ groups: ['secp256r1'] }, async (s) => {
      const r = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, groups: ['X25519', 'P-256'], send: GET('alpha.example'), read: true });
      expect(r.hrr).toBe(true);
      expect(r.echAccepted).toBe(true);
      expect(body(r.response)).toMatchObject({ echStatus: 'accepted', innerServerName: 'alpha.example', helloRetryRequest: true, group: 'prime256v1' });
    });
  });

  it('config errors name the field and nothing listens', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ listen: 'nowhere' }, /listen: 'nowhere' is not "host:port"/],
      [{ keys: 'missing-dir' }, /keys: cannot read key directory/],
      [{ groups: ['x448'] }, /groups\[0\]: must be one of/],
      [{ routes: [{ serverName: 'a.example', cert: 'nope.pem', key: 'nope.key', respond: 'ech-status' }] }, /routes\[0\]\.(cert|key): cannot read/],
      [{ routes: [{ serverName: 'a.example', cert: 'x', key: 'y' }] }, /routes\[0\]: needs one of respond, passthrough, forward, forwardTls/],
      [{ bogus: 1 }, /bogus: is not a known field/],
      [{ routes: [{ serverName: 'a.example', cert: 'x', key: 'y', respond: 'ech-status', forwardGrease: true }] }, /routes\[0\]\.forwardGrease: only applies to passthrough routes/],
    ];
    for (const [extra, re] of cases) {
      const file = join(dir, 'bad.json');
      await writeFile(file, JSON.stringify({ ...baseConfig, ...extra }));
      const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code, JSON.stringify(extra)).toBe(1);
      expect(r.stderr).toMatch(re);
    }
  });
});
