// @module-tag peer-boringssl
// `ech-server demo`: keys and a test CA made on the first run in the named
// directory and reused later, the cover-domain front end on 127.0.0.1,
// driven by an ECH client (accepted; stale key → retry → accepted; GREASE;
// no ECH), and a table of what the wire showed next to what the server saw.
// The table is checked with BoringSSL as the client (a peer nobody here
// wrote), and through the CLI with the library's own ECH client (connectEch).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import { runDemo } from '../src/cli/demo.js';
import { createTestPki } from '../src/testing/pki.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { boringsslRequest } from './helpers/boringssl-request.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
let work: string;

beforeAll(async () => {
  await buildHarness();
  work = await mkdtemp(join(tmpdir(), 'ech-demo-test-'));
}, 120_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** BoringSSL as the demo's client. */
const boring = boringsslRequest(() => work);

/** The table's rows as cells. */
function table(text: string): string[][] {
  const lines = text.split('\n');
  const head = lines.findIndex((l) => l.startsWith('client'));
  const rows: string[][] = [];
  for (const l of lines.slice(head + 2)) {
    if (!l.includes(' | ')) break;
    rows.push(l.split(' | ').map((c) => c.trim()));
  }
  return rows;
}

function expectDemoTable(text: string, configId: number): void {
  const rows = table(text);
  expect(rows.map((r) => r[0])).toEqual(['ECH to alpha.example', 'ECH, stale key, retry', 'GREASE ECH', 'no ECH']);
  const [accepted, retry, grease, plain] = rows as [string[], string[], string[], string[]];
  // accepted: the wire shows only the cover name; the server saw the inner name
  expect(accepted.slice(1)).toEqual([
    'cover.example',
    expect.stringMatching(new RegExp(`^config_id ${configId}, \\d+-byte payload$`)),
    'accepted, inner alpha.example',
    'ECH accepted, page of alpha.example',
  ]);
  // stale key: rejected with retry_configs, ech_required, then accepted
  expect(retry[1]).toBe('cover.example → cover.example');
  expect(retry[2]).toMatch(new RegExp(`^config_id ${configId}, \\d+-byte payload → config_id ${configId}, \\d+-byte payload$`));
  expect(retry[3]).toBe('rejected: cover.example + retry_configs → client sent ech_required → accepted, inner beta.example');
  expect(retry[4]).toBe('ECH accepted after retry, page of beta.example');
  // GREASE: the public name's handshake
  expect(grease[1]).toBe('cover.example');
  expect(grease[2]).toMatch(/^config_id \d+, \d+-byte payload$/);
  // a GREASE config_id equal to the server's by chance is a rejection (helpers/grease.ts)
  const greaseId = Number(/^config_id (\d+)/.exec(grease[2]!)![1]);
  expect(grease[3]).toBe(`${greaseId === configId ? 'rejected' : 'grease'}: cover.example + retry_configs`);
  expect(grease[4]).toBe('ECH grease, page of cover.example');
  // no ECH: the name is in the clear
  expect(plain.slice(1)).toEqual(['beta.example', 'none', 'no ECH, beta.example', 'ECH not-offered, page of beta.example']);
}

describe('demo', () => {
  it('first run generates keys and a CA, drives the front end and prints the table; the second run reuses them', async () => {
    const dir = join(work, 'demo1');
    let text = '';
    expect(await runDemo(dir, { once: true, client: boring, out: { write: (s: string) => (text += s) } })).toBe(0);
    expect(text).toMatch(/^Generated ECH keys and a test CA in /);
    const configId = Number(/config_id (\d+);/.exec(text)![1]);
    expectDemoTable(text, configId);
    // secrets are private
    expect((await stat(join(dir, 'pki', 'ca.key'))).mode & 0o077).toBe(0);
    expect((await stat(join(dir, 'pki', 'alpha.example.key'))).mode & 0o077).toBe(0);
    const caBefore = await readFile(join(dir, 'pki', 'ca.pem'), 'utf8');

    let again = '';
    expect(await runDemo(dir, { once: true, client: boring, out: { write: (s: string) => (again += s) } })).toBe(0);
    expect(again).toMatch(/^Reusing ECH keys and a test CA in /);
    expect(Number(/config_id (\d+);/.exec(again)![1])).toBe(configId);
    expect(await readFile(join(dir, 'pki', 'ca.pem'), 'utf8')).toBe(caBefore);
    expectDemoTable(again, configId);
  }, 60_000);

  it('stays up with instructions until told to stop', async () => {
    const dir = join(work, 'demo2');
    let text = '';
    let stop!: () => void;
    const until = new Promise<void>((res) => (stop = res));
    const running = runDemo(dir, { client: boring, until, out: { write: (s: string) => (text += s) } });
    const deadline = Date.now() + 30_000;
    while (!/ech-server check/.test(text) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const port = Number(/stays up on 127\.0\.0\.1:(\d+)/.exec(text)![1]);
    const list = /ECHConfigList: (\S+)/.exec(text)![1]!;
    expect(text).toContain(`ech-server check --connect 127.0.0.1:${port} --name alpha.example --keys ${join(dir, 'keys')} --ca ${join(dir, 'pki', 'ca.pem')} --get`);
    // it is really up: BoringSSL with the printed config reaches the hidden site
    const caFile = join(dir, 'pki', 'ca.pem');
    const r = await runClient({ port, sni: 'alpha.example', echConfigList: list, ca: caFile, send: 'GET / HTTP/1.1\r\nHost: alpha.example\r\nAccept: application/json\r\nConnection: close\r\n\r\n', read: true });
    expect(r.echAccepted).toBe(true);
    expect(r.verified).toBe(true);
    // the printed `ech-server check` line works as printed (run through runCheck, what main.ts wires up)
    const checkArgs = /ech-server check (.*)/.exec(text)![1]!.trim().split(/\s+/);
    const CHECK_JS = fileURLToPath(new URL('../dist/cli/check.js', import.meta.url));
    const check = await new Promise<{ code: number | null; out: string }>((res) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(CHECK_JS)}); process.exitCode = await m.runCheck(process.argv.slice(1));`, '--', ...checkArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('exit', (code) => {
        clearTimeout(kill);
        res({ code, out });
      });
    });
    expect(check.code, check.out).toBe(0);
    expect(JSON.parse(check.out)).toMatchObject({ handshake: true, echStatus: 'accepted', body: { site: 'alpha.example', innerServerName: 'alpha.example', outerServerName: 'cover.example' } });
    stop();
    expect(await running).toBe(0);
  }, 60_000);

  it('the test CA issues certificates node:tls verifies', async () => {
    const pki = createTestPki();
    const leaf = pki.issue(['alpha.example', 'www.alpha.example']);
    const server = tls.createServer({ cert: leaf.cert, key: leaf.key }, (s) => s.end('ok'));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    try {
      const port = (server.address() as { port: number }).port;
      const got = await new Promise<string>((res, rej) => {
        const c = tls.connect({ port, host: '127.0.0.1', servername: 'www.alpha.example', ca: pki.caCert }, () => undefined);
        let t = '';
        c.on('data', (d) => (t += d));
        c.on('end', () => res(t));
        c.on('error', rej);
      });
      expect(got).toBe('ok');
      const reopened = createTestPki({ caCert: pki.caCert, caKey: pki.caKey });
      expect(reopened.issue(['beta.example']).cert).toMatch(/BEGIN CERTIFICATE/);
    } finally {
      await new Promise<void>((res) => server.close(() => res()));
    }
  });

  it('`node dist/cli/main.js demo --dir DIR` prints the table and the instructions (its Try line runs as printed from the project directory), and exits 0 on SIGTERM', async () => {
    const dir = join(work, 'demo3');
    const child = spawn(process.execPath, [BIN, 'demo', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    const kill = setTimeout(() => child.kill('SIGKILL'), 40_000);
    try {
      const deadline = Date.now() + 30_000;
      while (!/ech-server check/.test(out) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(out, err).toMatch(/ech-server check --connect 127\.0\.0\.1:\d+ --name alpha\.example/);
      // the CLI drives the front end with the library's ECH client
      expectDemoTable(out, Number(/config_id (\d+);/.exec(out)![1]));
      // the Try line, run by a shell exactly as printed, from the project
      // directory (npx finds the package's own bin there; offline: never the registry)
      const lines = out.split('\n');
      const tryLine = lines[lines.findIndex((l) => l.startsWith('Try')) + 1]!.trim();
      expect(tryLine).toMatch(/^npx ech-server check --connect 127\.0\.0\.1:\d+ --name alpha\.example /);
      const printed = await new Promise<{ code: number | null; out: string; err: string }>((res) => {
        const sh = spawn('sh', ['-c', tryLine], { cwd: ROOT, env: { ...process.env, npm_config_offline: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
        let o = '';
        let e = '';
        sh.stdout.on('data', (d) => (o += d));
        sh.stderr.on('data', (d) => (e += d));
        const k = setTimeout(() => sh.kill('SIGKILL'), 30_000);
        sh.once('exit', (code) => {
          clearTimeout(k);
          res({ code, out: o, err: e });
        });
      });
      expect(printed.code, printed.err).toBe(0);
      expect(JSON.parse(printed.out)).toMatchObject({ handshake: true, echStatus: 'accepted', status: 200, body: { site: 'alpha.example', innerServerName: 'alpha.example' } });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
  it('a demo whose stdin pipe closes (its parent went away) stops and exits 0', async () => {
    const dir = join(work, 'demo4');
    const child = spawn(process.execPath, [BIN, 'demo', '--dir', dir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', () => undefined);
    const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    const kill = setTimeout(() => child.kill('SIGKILL'), 40_000);
    try {
      const deadline = Date.now() + 30_000;
      while (!/ech-server check/.test(out) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(/stays up on 127\.0\.0\.1:\d+/);
      child.stdin.end();
      expect(await exited).toBe(0);
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
  it('runDemoCli (what main.ts runs for `ech-server demo`): --once prints the table and exits 0; a bad option is a usage error (2)', async () => {
    const DEMO_JS = fileURLToPath(new URL('../dist/cli/demo.js', import.meta.url));
    const cli = (...args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((res) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(DEMO_JS)}); process.exitCode = await m.runDemoCli(process.argv.slice(1));`, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.once('exit', (code) => {
          clearTimeout(kill);
          res({ code, out, err });
        });
      });
    const once = await cli('--dir', join(work, 'demo5'), '--once');
    expect(once.code, once.err).toBe(0);
    expectDemoTable(once.out, Number(/config_id (\d+);/.exec(once.out)![1]));
    expect(once.out).not.toMatch(/stays up/);
    const bad = await cli('--bogus');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/ech-server demo: .*bogus[\s\S]*--once/);
    const port = await cli('--port', 'x', '--once');
    expect(port.code).toBe(2);
  }, 60_000);
});

describe('the test PKI (src/testing/pki.ts)', () => {
  it('every certificate it issues loads in OpenSSL (minimal DER serials)', async () => {
    const { createTestPki } = await import('../src/testing/pki.js');
    const { X509Certificate } = await import('node:crypto');
    const { createSecureContext } = await import('node:tls');
    const pki = createTestPki();
    // 600 certificates: a 1-in-256 encoding fault shows up with probability > 0.9
    for (let i = 0; i < 600; i++) {
      const { cert, key } = pki.issue([`n${i}.example`]);
      expect(new X509Certificate(cert).serialNumber).not.toMatch(/^00/);
      createSecureContext({ cert, key });
    }
  }, 60_000);
});
