// `ech-server check` (src/cli/check.ts, built into dist/) as a user runs it —
// a child process — against `ech-server serve`, also a child process:
// accepted with the ech-status page's body, GREASE, a stale config with and
// without --retry, --keys, and usage errors.
import { configIdsOf, greaseOutcome } from './helpers/grease.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { encodeEchConfigList } from '../src/ech/config.js';
import { generateEchKey } from '../src/keys/generate.js';
import { toBase64 } from '../src/wire/bytes.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const CHECK = fileURLToPath(new URL('../dist/cli/check.js', import.meta.url));
let dir: string;
let pki: TestPki;
let caFile: string;
let listB64: string;
let config: Record<string, unknown>;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

/** `ech-server check ARGS` in a child process (runCheck from dist/, as main.ts runs it). */
async function check(args: string[]): Promise<Run> {
  const script = `import(${JSON.stringify(CHECK)}).then(async (m) => { process.exitCode = await m.runCheck(JSON.parse(process.argv[1])); });`;
  const r = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(args)], { timeout: 30_000 }).then(
    (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // usage errors print nothing on stdout
  }
  return { ...r, json };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-check-'));
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  const cover = pki.leaf('ec', ['cover.example']);
  const alpha = pki.leaf('ec', ['alpha.example']);
  const dead = pki.leaf('ec', ['dead.example']);
  // a port nothing listens on: the forward route's backend is down
  const deadPort = await new Promise<number>((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
  const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys'), '--max-name-length', '16']);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  config = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [
      { serverName: 'alpha.example', cert: alpha.certPath, key: alpha.keyPath, respond: 'ech-status' },
      { serverName: 'dead.example', cert: dead.certPath, key: dead.keyPath, forward: `127.0.0.1:${deadPort}` },
    ],
  };
}, 120_000);
afterAll(async () => {
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

let serve: ServeProcess;
beforeAll(async () => {
  serve = await startServe(dir, config);
}, 30_000);
afterAll(async () => {
  expect(await serve.stop()).toBe(0);
});

describe('ech-server check against ech-server serve', () => {
  it('accepted, with --get: the ech-status page reports the inner name', async () => {
    const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'alpha.example', '--ech-config-list', listB64, '--ca', caFile, '--get']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ handshake: true, echStatus: 'accepted', retried: false, retryConfigs: null, alpn: 'http/1.1', error: null, status: 200 });
    expect(r.json['peerCertificateSubject']).toMatch(/alpha\.example/);
    expect(r.json['body']).toMatchObject({ site: 'alpha.example', echStatus: 'accepted', innerServerName: 'alpha.example', outerServerName: 'cover.example' });
  });

  it('--keys DIR offers the retry keys of a key directory', async () => {
    const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'alpha.example', '--keys', join(dir, 'keys'), '--ca', caFile]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ handshake: true, echStatus: 'accepted' });
  });

  it('--grease: the handshake completes for the name in clear, the page says grease', async () => {
    const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'alpha.example', '--grease', '--ca', caFile, '--get']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ handshake: true, echStatus: 'grease', retryConfigs: null });
    const body = r.json['body'] as { echStatus: unknown; configId: unknown };
    expect(body).toMatchObject({ site: 'alpha.example', innerServerName: null });
    // 'rejected' only when the random config_id hit the server's (1 in 256).
    greaseOutcome(body, configIdsOf(listB64));
  });

  it('a stale config without --retry: exit 1, rejected, the retry configs and the public-name certificate are printed', async () => {
    const stale = toBase64(encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]));
    const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'alpha.example', '--ech-config-list', stale, '--ca', caFile]);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ handshake: false, echStatus: 'rejected', retryConfigs: listB64, error: { code: 'ERR_ECH_REJECTED', alert: 'ech_required' } });
    expect(r.json['peerCertificateSubject']).toMatch(/cover\.example/);
  });

  it('a stale config with --retry: the second connection uses the retry configs and is accepted', async () => {
    const stale = toBase64(encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]));
    const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'alpha.example', '--ech-config-list', stale, '--ca', caFile, '--retry', '--get']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ handshake: true, echStatus: 'accepted', retried: true, retryConfigs: listB64 });
    expect(r.json['body']).toMatchObject({ echStatus: 'accepted', innerServerName: 'alpha.example' });
  });

  it('a CA that did not sign the certificate: exit 1 with the alert', async () => {
    const other = makePki();
    try {
      const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'alpha.example', '--ech-config-list', listB64, '--ca', join(other.dir, 'ca.pem')]);
      expect(r.code).toBe(1);
      expect(r.json).toMatchObject({ handshake: false, error: { code: 'ERR_CERTIFICATE', alert: 'unknown_ca' } });
    } finally {
      other.cleanup();
    }
  });

  it('--get when the connection closes with no HTTP answer (a dead forward backend): exit 1, ERR_NO_HTTP_ANSWER', async () => {
    const r = await check(['--connect', `127.0.0.1:${serve.port}`, '--name', 'dead.example', '--ech-config-list', listB64, '--ca', caFile, '--get']);
    expect(r.code, r.stdout).toBe(1);
    // the handshake itself succeeded (ECH accepted for the hidden name); only the answer is missing
    expect(r.json).toMatchObject({ handshake: true, echStatus: 'accepted', status: null, error: { code: 'ERR_NO_HTTP_ANSWER', alert: null } });
    expect(r.json['peerCertificateSubject']).toMatch(/dead\.example/);
  });

  it('usage errors exit 2; --help exits 0', async () => {
    expect((await check(['--name', 'a.example'])).code).toBe(2);
    expect((await check(['--connect', 'nowhere', '--name', 'a.example'])).code).toBe(2);
    expect((await check(['--connect', '127.0.0.1:1', '--name', 'a', '--keys', 'k', '--ech-config-list', 'AAAA'])).code).toBe(2);
    const h = await check(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--ech-config-list BASE64/);
  });
});
